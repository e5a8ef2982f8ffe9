"""Widget logic without a kernel: the method picker, the layer inspector and the Explorer.

Browser-side values are simulated by setting the widgets' values, as a comm message would.
The Explorer runs on small untrained nets (no training); the timing check on the real zoo model
is marked slow and runs only when that model is already in the cache.
"""
from __future__ import annotations

import html
import io
import math

import anywidget
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from ipywidgets import Checkbox, Dropdown, FloatText, IntText, Label, Text, Widget
from PIL import Image

import workbench as wb
from widgets import Explorer, LayerInspector, MethodPicker
from widgets.heatmap_tiles import HeatmapTiles
from widgets.option_controls import CONTROLS, control_for
from workbench import models, plots
from workbench.layers import layer_output, layer_rules
from workbench.lrp_rules import AlphaBetaRule
from workbench.registry import OPTION_KINDS, Option

#: the control each option kind gets (without a model)
CONTROL = {"float": FloatText, "int": IntText, "bool": Checkbox, "seed": Text,
           "baseline": FloatText, "shape": Text, "choice": Dropdown, "named": Dropdown,
           "layer": Text,
           "mask": Label, "object": Label}
DIGITS_INFO = {"settings": {"dataset": "digits", "data": {"size": 8, "test_fraction": 0.25}},
               "classes": [str(c) for c in range(10)], "input_shape": [1, 8, 8], "accuracy": 0.0}


def tiny_model(name: str = "digits_cnn_relu") -> torch.nn.Module:
    """An untrained zoo-like net on 8x8 digits: a CNN, or an MLP when ``mlp`` is in the name."""
    activation = "tanh" if "tanh" in name else "relu"
    if "mlp" in name:
        return models.mlp(64, 10, hidden=(16,), activation=activation, seed=0).eval()
    return models.cnn(1, 10, 8, activation=activation, channels=(4,), hidden=16, seed=0).eval()


def tiny_zoo(name: str, **_ignored) -> tuple[torch.nn.Module, dict]:
    return tiny_model(name), dict(DIGITS_INFO)


@pytest.fixture
def digits_inputs() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(2, 1, 8, 8)


@pytest.fixture
def explorer() -> Explorer:
    return Explorer(model_names=("digits_cnn_relu", "digits_mlp_relu"), load_model=tiny_zoo)


# --- MethodPicker ---------------------------------------------------------------------------


def _shown(control, option):
    """The control's value as the Python value of the option."""
    if isinstance(control, Text):
        return None if control.value == "" else control.value
    return control.value


def test_picker_generates_controls_for_every_method_from_declared_options():
    picker = MethodPicker()
    assert picker.methods == wb.methods()
    assert "wb-method-picker" in picker._dom_classes
    assert "wb-method-dropdown" in picker.dropdown._dom_classes
    for method in wb.methods():
        picker.method = method
        declared = wb.method_info(method).options
        assert list(picker.controls) == [option.name for option in declared]
        for option in declared:
            control = picker.controls[option.name]
            assert type(control) is CONTROL[option.kind], (method, option.name)
            if isinstance(control, Label):
                assert "default" in control.value
            elif option.default is None or isinstance(control, (Dropdown, Checkbox)):
                assert _shown(control, option) == option.default
            else:
                assert control.value == option.default
        assert picker.options == {}
        assert picker.error_message == ""


def test_every_option_kind_has_a_control():
    assert set(CONTROLS) == set(OPTION_KINDS) == set(CONTROL)
    defaults = {"float": 0.5, "int": 3, "bool": True, "baseline": 1.0, "shape": (2, 2),
                "seed": 7, "layer": "features.conv1", "choice": "b", "named": "b"}
    for kind, control_type in CONTROL.items():
        option = Option("x", kind, defaults.get(kind), "h", choices=("a", "b"))
        control = control_for(option, "m")
        assert type(control.widget) is control_type, kind
        assert control.value() == option.default


def test_defaults_a_control_cannot_show_get_a_label():
    baseline = Option("baseline", "baseline", torch.zeros(3), "h")
    layer = Option("layer", "layer", torch.nn.ReLU(), "h")
    for option in (baseline, layer):
        control = control_for(option, "m", tiny_model())
        assert isinstance(control.widget, Label) and not control.editable
        assert control.value() is option.default


def test_layer_option_is_a_dropdown_of_the_model_modules():
    model = tiny_model()
    picker = MethodPicker(method="grad_cam", model=model)
    dropdown = picker.controls["layer"]
    assert isinstance(dropdown, Dropdown)
    names = [value for _label, value in dropdown.options]
    assert names[1:] == [name for name, _ in model.named_modules() if name]
    dropdown.value = "features.conv1"
    assert picker.options == {"layer": "features.conv1"}
    dropdown.value = ""
    assert picker.options == {}


def test_setting_controls_changes_options_and_calls_back():
    picker = MethodPicker()
    seen = []
    picker.on_change(lambda method, options: seen.append((method, options)))
    picker.method = "integrated_gradients"
    picker.controls["steps"].value = 8
    picker.controls["quadrature"].value = "riemann_left"
    picker.controls["baseline"].value = 0.5
    assert picker.options == {"steps": 8, "quadrature": "riemann_left", "baseline": 0.5}
    picker.method = "smoothgrad"
    picker.controls["seed"].value = "7"
    picker.controls["noise"].value = 0.3
    assert picker.options == {"seed": 7, "noise": 0.3}
    picker.method = "occlusion"
    picker.controls["window"].value = "1, 2, 2"
    assert picker.options == {"window": (1, 2, 2)}
    picker.controls["window"].value = ""
    assert picker.options == {}
    assert seen[0] == ("integrated_gradients", {})
    assert seen[3] == ("integrated_gradients",
                       {"steps": 8, "quadrature": "riemann_left", "baseline": 0.5})
    assert ("occlusion", {"window": (1, 2, 2)}) in seen
    # the options are accepted by the engine as they are
    model, x = tiny_model(), torch.rand(1, 1, 8, 8)
    picker.method = "integrated_gradients"
    picker.options = {"steps": 4}
    assert wb.attribute(model, x, picker.method, **picker.options).shape == x.shape


@pytest.mark.parametrize("method, name, bad, good", [
    ("lrp_epsilon", "epsilon", -1.0, 0.5),
    ("integrated_gradients", "steps", 0, 3),
    ("occlusion", "window", "a,b", "1, 2, 2"),
    ("occlusion", "stride", "0, 1, 1", "1, 1, 1"),
    ("smoothgrad", "seed", "seven", "7"),
    ("smoothgrad", "noise", math.nan, 0.2),
    ("lrp_alpha_beta", "alpha", 2.0, 1.0),  # alpha - beta must be 1
])
def test_invalid_values_show_a_message_and_keep_the_last_valid_options(method, name, bad, good):
    picker = MethodPicker(method=method)
    seen = []
    picker.on_change(lambda *change: seen.append(change))
    control = picker.controls[name]
    control.value = good
    valid = picker.options
    calls = len(seen)
    control.value = bad  # as a browser could send it: no exception
    assert name in picker.error_message or "alpha - beta" in picker.error_message
    assert picker.error.value  # visible
    assert "wb-invalid" in control._dom_classes
    assert picker.options == valid
    assert len(seen) == calls
    control.value = good
    assert picker.error_message == ""
    assert "wb-invalid" not in control._dom_classes
    assert picker.options == valid


def test_alpha_beta_pair_becomes_valid_when_both_are_set():
    picker = MethodPicker(method="lrp_alpha_beta")
    picker.controls["alpha"].value = 2.0
    assert "alpha - beta must equal 1" in picker.error_message
    assert picker.options == {}
    picker.controls["beta"].value = 1.0
    assert picker.error_message == ""
    assert picker.options == {"alpha": 2.0, "beta": 1.0}


def test_picker_offers_lrp_with_a_composite_choice():
    from workbench.composites import COMPOSITES

    picker = MethodPicker(method="lrp")
    composite = picker.controls["composite"]
    assert isinstance(composite, Dropdown) and list(composite.options) == list(COMPOSITES)
    composite.value = "epsilon_gamma_box"
    assert picker.options == {"composite": "epsilon_gamma_box"}


def test_picker_is_settable_from_code():
    picker = MethodPicker()
    picker.method = "lrp_epsilon"
    assert picker.dropdown.value == "lrp_epsilon"
    assert list(picker.controls) == ["epsilon", "layer_rules"]
    picker.options = {"epsilon": 0.01}
    assert picker.controls["epsilon"].value == 0.01
    assert picker.options == {"epsilon": 0.01}
    with pytest.raises(ValueError, match="epsilon"):
        picker.options = {"epsilon": -1.0}
    with pytest.raises(TypeError, match="unknown option"):
        picker.options = {"steps": 3}
    with pytest.raises(ValueError, match="not among the methods"):
        picker.method = "no_such_method"
    assert picker.options == {"epsilon": 0.01}
    picker.set("occlusion", {"window": (1, 2, 2)})
    assert picker.controls["window"].value == "1, 2, 2"
    picker.dropdown.value = "gradient"  # from the browser: options back to defaults
    assert picker.method == "gradient" and picker.options == {}


def test_errors_in_callbacks_show_in_the_picker():
    picker = MethodPicker(method="lrp_epsilon")

    def broken(_method, _options):
        raise RuntimeError("callback exploded")

    picker.on_change(broken)
    picker.controls["epsilon"].value = 0.1  # no exception
    assert "callback exploded" in picker.error_message
    assert picker.options == {"epsilon": 0.1}


# --- LayerInspector -------------------------------------------------------------------------


def test_inspector_shows_the_rules_of_the_chosen_composite(digits_inputs):
    model = tiny_model()
    inspector = LayerInspector(model, digits_inputs, layer="features.conv1")
    assert inspector.composite == "epsilon_plus"
    assert inspector.rules["lrp"] == "AlphaBetaRule(alpha=1, beta=0)"
    inspector.composite_dropdown.value = "epsilon_gamma_box"  # as from the browser
    assert inspector.rules["lrp"] == "ZBoxRule(low=0, high=1)"
    inspector.layer = "classifier.linear1"
    assert inspector.rules["lrp"] == "EpsilonRule(epsilon=1e-06)"
    inspector.set_rule("classifier.linear1", "LRP-0")  # an override on top of the composite
    assert inspector.rules["lrp"] == "ZeroRule()"
    assert inspector.rules["lrp_epsilon"] == "ZeroRule()"
    relevance = wb.attribute(model, digits_inputs, "lrp", target=0, composite=inspector.composite,
                             layer_rules=inspector.layer_rules)
    assert torch.isfinite(relevance).all()
    with pytest.raises(ValueError, match="composite must be one of"):
        inspector.composite = "epsilon_zplus"


def test_inspector_lists_layers_and_the_rule_of_each_method(digits_inputs):
    model = tiny_model()
    inspector = LayerInspector(model, digits_inputs)
    leaves = [name for name, module in model.named_modules()
              if name and not list(module.children())]
    assert inspector.layers == leaves
    assert [label for label, _ in inspector.layer_dropdown.options][0] == "features.conv1 (Conv2d)"
    expected = {method: {row.name: row.rule for row in layer_rules(model, method)}
                for method in wb.methods() if wb.method_info(method).rules is not None}
    assert {"lrp_epsilon", "lrp", "deeplift_rescale", "guided_backprop"} <= set(expected)
    for layer in leaves:
        inspector.layer = layer
        assert inspector.rules == {method: rules[layer] for method, rules in expected.items()}
    inspector.layer = "features.relu1"
    assert inspector.rules["guided_backprop"] == "guided"
    assert inspector.rules["deeplift_rescale"] == "rescale"
    assert "guided" in inspector._table.value
    inspector.layer = "features.conv1"
    assert inspector.rules["lrp_epsilon"].startswith("EpsilonRule")
    assert inspector.rules["guided_backprop"] == "gradient"


def test_inspector_shows_activations_and_weights(digits_inputs):
    model = tiny_model()
    inspector = LayerInspector(model, digits_inputs, layer="features.conv1")
    heat, bar, weights = inspector.figure.data
    output = layer_output(model, digits_inputs[:1], "features.conv1")[0]
    np.testing.assert_allclose(np.asarray(heat.z), output[0].numpy())
    inspector.channel_slider.value = 3
    np.testing.assert_allclose(np.asarray(heat.z), output[3].numpy())
    counts = np.asarray(weights.y)
    assert counts.sum() == model.features.conv1.weight.numel()
    inspector.layer = "classifier.linear1"
    assert bar.visible and not heat.visible
    np.testing.assert_allclose(
        np.asarray(bar.y), layer_output(model, digits_inputs[:1], "classifier.linear1")[0])
    inspector.layer = "features.relu1"
    assert "no weights" in inspector.figure.layout.annotations[1].text
    inspector.inputs = None
    assert inspector.activation is None
    assert "no input" in inspector.figure.layout.annotations[0].text


def test_editing_a_rule_changes_layer_rules_and_the_attribution(digits_inputs):
    model = tiny_model()
    inspector = LayerInspector(model, digits_inputs, layer="features.conv1")
    seen = []
    inspector.on_change(seen.append)
    assert inspector.layer_rules == {}
    inspector.rule_dropdown.value = "z+ (alpha1-beta0)"  # as from the browser
    rules = inspector.layer_rules
    assert list(rules) == ["features.conv1"] and isinstance(rules["features.conv1"],
                                                            AlphaBetaRule)
    assert seen == [rules]
    assert inspector.rules["lrp_epsilon"] == "AlphaBetaRule(alpha=1, beta=0)"
    assert "(override)" in inspector._table.value
    plain = wb.attribute(model, digits_inputs, "lrp_epsilon")
    edited = wb.attribute(model, digits_inputs, "lrp_epsilon", layer_rules=rules)
    reference = wb.attribute(model, digits_inputs, "lrp_epsilon",
                             layer_rules={"features.conv1": AlphaBetaRule(1.0, 0.0)})
    assert not torch.allclose(plain, edited)
    torch.testing.assert_close(edited, reference)
    inspector.rule_dropdown.value = "epsilon"
    inspector.rule_epsilon.value = 2.0
    assert repr(inspector.layer_rules["features.conv1"]) == "EpsilonRule(epsilon=2)"
    inspector.rule_dropdown.value = "method default"
    assert inspector.layer_rules == {}


def test_invalid_rule_epsilon_is_rejected_with_a_message(digits_inputs):
    inspector = LayerInspector(tiny_model(), digits_inputs, layer="classifier.linear1")
    inspector.rule_dropdown.value = "epsilon"
    valid = inspector.layer_rules
    inspector.rule_epsilon.value = -1.0
    assert "epsilon" in inspector.error.message and ">= 0" in inspector.error.message
    assert inspector.layer_rules.keys() == valid.keys()
    assert repr(inspector.layer_rules["classifier.linear1"]) == repr(valid["classifier.linear1"])
    inspector.rule_epsilon.value = 0.5
    assert inspector.error.message == ""


def test_a_deferred_figure_is_created_on_first_use_with_the_current_layer(digits_inputs):
    model = tiny_model()
    inspector = LayerInspector(model, digits_inputs, layer="features.conv1", defer_figure=True)
    assert not inspector.has_figure
    assert not any(isinstance(child, go.FigureWidget) for child in inspector.children)
    inspector.layer = "classifier.linear1"  # edits before the figure exists are kept
    inspector.rule_dropdown.value = "epsilon"
    assert list(inspector.layer_rules) == ["classifier.linear1"]
    figure = inspector.show_figure()
    assert inspector.has_figure and inspector.figure is figure
    assert inspector.children[1] is figure and "wb-layer-figure" in figure._dom_classes
    heat, bar, weights = figure.data
    assert bar.visible and not heat.visible
    np.testing.assert_allclose(
        np.asarray(bar.y), layer_output(model, digits_inputs[:1], "classifier.linear1")[0])
    assert np.asarray(weights.y).sum() == model.classifier.linear1.weight.numel()
    inspector.layer = "features.conv1"  # and it follows later changes
    np.testing.assert_allclose(np.asarray(heat.z),
                               layer_output(model, digits_inputs[:1], "features.conv1")[0][0])
    assert inspector.show_figure() is figure


def test_rule_editor_only_at_weighted_layers(digits_inputs):
    inspector = LayerInspector(tiny_model(), digits_inputs, layer="features.relu1")
    assert inspector._editor.layout.display == "none"
    with pytest.raises(ValueError, match="Linear or Conv"):
        inspector.set_rule("features.relu1", "epsilon")
    inspector.layer = "features.conv1"
    assert inspector._editor.layout.display != "none"


# --- HeatmapTiles and the Explorer ----------------------------------------------------------


def decode(png: bytes) -> np.ndarray:
    """The RGB pixels of a PNG (and a check that it is one)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        return np.asarray(picture)


def expected_tile(heat: np.ndarray, block: int) -> np.ndarray:
    """The pixels a map's tile must show: its symmetric RdBu_r colours, in blocks."""
    return np.repeat(np.repeat(plots.diverging_rgb(heat, "RdBu_r"), block, axis=0), block, axis=1)


def widget_tree(widget: Widget) -> list[Widget]:
    found = [widget]
    for child in getattr(widget, "children", ()):
        found.extend(widget_tree(child))
    return found


def test_tiles_show_titles_pngs_and_the_value_range():
    tiles = HeatmapTiles(tile_pixels=40)
    image = np.linspace(0, 1, 16).reshape(1, 4, 4)
    heat = np.array([[-2.0, 0.0, 1.0, 2.0]] * 4)
    tiles.show("input", image, [("gradient", heat), ("broken", None),
                                ("zeros", np.zeros((4, 4))), ("nan", np.full((4, 4), np.nan))])
    assert tiles.titles == ["input", "gradient", "broken (failed)", "zeros", "nan"]
    assert "wb-heatmaps" in tiles._dom_classes
    pictures = [decode(png) for png in tiles.images]
    assert all(picture.shape == (40, 40, 3) for picture in pictures)  # 4x4 in 10 px blocks
    np.testing.assert_array_equal(pictures[1], expected_tile(heat, 10))
    np.testing.assert_array_equal(pictures[0][::10, ::10], plots.image_rgb(image))
    tile = tiles.children[1]
    assert [child._dom_classes for child in tile.children] == [
        ("wb-heatmap-title",), ("wb-heatmap-image",), ("wb-heatmap-scale",)]
    assert ">-2<" in tile.children[2].value and ">2<" in tile.children[2].value
    assert "linear-gradient" in tile.children[2].value
    assert "no map" in tiles.children[2].children[2].value
    assert "all 0" in tiles.children[3].children[2].value
    assert "16 not finite" in tiles.children[4].children[2].value
    first = tiles.children[1]
    tiles.show("input", image, [("gradient", -heat)])  # fewer columns: tiles reused, rest closed
    assert tiles.titles == ["input", "gradient"] and tiles.children[1] is first
    np.testing.assert_array_equal(decode(tiles.images[1]), expected_tile(-heat, 10))
    two_channels = np.stack([image[0], 2 * image[0]])  # neither gray nor RGB: the channel sum
    tiles.show("two channels", two_channels, [])
    np.testing.assert_array_equal(decode(tiles.images[0])[::10, ::10], plots.image_rgb(image))


def test_explorer_shows_maps_of_the_default_methods(explorer):
    assert explorer.status.startswith("ready")
    assert explorer.error_message == ""
    assert list(explorer.maps) == ["gradient", "integrated_gradients", "lrp_epsilon",
                                   "guided_backprop"]
    assert all(heat.shape == (8, 8) for heat in explorer.maps.values())
    truth = explorer.data.classes[int(explorer.data.y_test[0])]
    assert explorer.heatmaps.titles == [f"input (label {truth})", *explorer.maps]
    images = explorer.heatmaps.images
    assert len(images) == 5
    for png, heat in zip(images[1:], explorer.maps.values()):
        np.testing.assert_array_equal(decode(png), expected_tile(heat, 20))  # 8x8 -> 160x160
    assert decode(images[0]).shape == (160, 160, 3)
    figure = explorer.figure  # a static figure of the same maps, for reports
    assert isinstance(figure, go.Figure) and not isinstance(figure, go.FigureWidget)
    assert len(figure.data) == 5
    np.testing.assert_allclose(np.asarray(figure.data[3].z),
                               np.flipud(explorer.maps["lrp_epsilon"]))
    for widget, css in [(explorer, "wb-explorer"), (explorer.picker, "wb-method-picker"),
                        (explorer.picker.dropdown, "wb-method-dropdown"),
                        (explorer.heatmaps, "wb-heatmaps"), (explorer._status, "wb-status"),
                        (explorer.error, "wb-error"), (explorer.index_slider, "wb-index-slider"),
                        (explorer.model_dropdown, "wb-model-dropdown")]:
        assert css in widget._dom_classes
    assert "ready" in explorer._status.value
    assert explorer.index_slider.max == len(explorer.data.x_test) - 1


def test_a_default_explorer_creates_no_plotly_figure_until_the_inspector_is_opened(explorer):
    """Each plotly FigureWidget (an anywidget) makes the page load a 5 MB module, which failed
    under load (anywidget's 2 s initialisation timeout): the default page has none."""
    assert not any(isinstance(w, anywidget.AnyWidget) for w in widget_tree(explorer))
    assert not explorer.inspector.has_figure
    explorer._layers.selected_index = 0  # the user opens "layer inspector"
    assert explorer.inspector.has_figure
    figures = [w for w in widget_tree(explorer) if isinstance(w, go.FigureWidget)]
    assert figures == [explorer.inspector.figure]
    explorer.model_dropdown.value = "digits_mlp_relu"  # the open inspector follows the model
    assert explorer.inspector.figure.layout.annotations[0].text.startswith(
        explorer.inspector.layer)


def test_explorer_updates_when_the_input_or_the_method_changes(explorer):
    before = explorer.maps
    tiles_before = explorer.heatmaps.images
    explorer.index_slider.value = 5  # as from the browser
    after = explorer.maps
    assert explorer.status.startswith("ready")
    assert all(not np.allclose(before[k], after[k]) for k in before)
    assert all(not np.array_equal(decode(b), decode(a))
               for a, b in zip(tiles_before, explorer.heatmaps.images))
    tiles_before = explorer.heatmaps.images
    explorer.select(0)
    explorer.picker.dropdown.value = "gradient_x_input"
    assert explorer.columns[0] == ("gradient_x_input", {})
    assert list(explorer.maps)[0] == "gradient_x_input"
    assert not np.allclose(explorer.maps["gradient_x_input"], after["gradient"])
    tiles = explorer.heatmaps  # column 1's tile changed, the others did not
    assert tiles.titles[1:] == ["gradient_x_input", "integrated_gradients", "lrp_epsilon",
                                "guided_backprop"]
    assert tiles.images[1] != tiles_before[1]
    np.testing.assert_array_equal(decode(tiles.images[1]),
                                  expected_tile(explorer.maps["gradient_x_input"], 20))
    assert tiles.images[0] == tiles_before[0] and tiles.images[2:] == tiles_before[2:]
    explorer.select(2)
    assert explorer.picker.method == "lrp_epsilon"
    explorer.picker.controls["epsilon"].value = 10.0
    assert "lrp_epsilon(epsilon=10)" in explorer.maps
    explorer.target = 3
    assert explorer.status.startswith("ready")
    explorer.picker.controls["epsilon"].value = -1.0  # invalid: the picker says so
    assert "epsilon" in explorer.picker.error_message
    assert "lrp_epsilon(epsilon=10)" in explorer.maps


def test_explorer_adds_and_removes_columns(explorer):
    explorer.select(1)
    explorer.picker.controls["steps"].value = 4
    explorer.add_button.click()
    assert explorer.labels == ["gradient", "integrated_gradients(steps=4)", "lrp_epsilon",
                               "guided_backprop", "integrated_gradients(steps=4) #2"]
    assert explorer.selected == 4 and explorer.heatmaps.titles[1:] == explorer.labels
    explorer.picker.method = "deconvnet"
    assert explorer.labels[-1] == "deconvnet" and "deconvnet" in explorer.maps
    assert explorer.heatmaps.titles[-1] == "deconvnet"
    explorer.remove_button.click()
    assert len(explorer.columns) == 4 and len(explorer.heatmaps.titles) == 5
    assert explorer.status.startswith("ready")


def test_an_error_in_an_update_is_shown_and_the_app_stays_usable(explorer, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("attribution exploded")

    monkeypatch.setattr(wb, "attribute", broken)
    explorer.index_slider.value = 2  # no exception
    assert "attribution exploded" in explorer.error_message
    assert "attribution exploded" in explorer.error.value
    assert not explorer.status.startswith("ready")
    assert explorer.maps == {}
    monkeypatch.undo()
    explorer.index_slider.value = 3
    assert explorer.status.startswith("ready")
    assert explorer.error_message == ""
    assert len(explorer.maps) == 4


def test_a_failing_method_does_not_stop_the_others(explorer):
    explorer.model_dropdown.value = "digits_mlp_relu"  # grad_cam needs a conv layer
    explorer.add_method("grad_cam")
    assert "grad_cam" in explorer.error_message and "convolution" in explorer.error_message
    assert explorer.status.startswith("failed")
    assert len(explorer.maps) == 4 and "grad_cam" not in explorer.maps
    assert explorer.heatmaps.titles[-1] == "grad_cam (failed)"
    assert decode(explorer.heatmaps.images[-1]).shape == (160, 160, 3)


def test_a_model_that_cannot_be_loaded_leaves_the_previous_one(digits_inputs):
    def loader(name):
        if name == "broken":
            raise RuntimeError("cache file could not be loaded")
        return tiny_zoo(name)

    explorer = Explorer(model_names=("digits_cnn_relu", "broken"), load_model=loader)
    model = explorer.model
    explorer.model_dropdown.value = "broken"
    assert "could not be loaded" in explorer.error_message
    assert explorer.status.startswith("error")
    assert explorer.model is model and explorer.model_name == "digits_cnn_relu"
    assert explorer.model_dropdown.value == "digits_cnn_relu"
    explorer.index_slider.value = 1
    assert explorer.status.startswith("ready")


def test_explorer_loads_through_the_zoo_by_default(monkeypatch):
    loaded = []

    def zoo(name, **kwargs):
        loaded.append(name)
        return tiny_zoo(name)

    monkeypatch.setattr(models, "zoo", zoo)
    explorer = Explorer(model_names=("digits_cnn_tanh",), methods=("gradient",))
    assert loaded == ["digits_cnn_tanh"] and explorer.status.startswith("ready")


def test_the_test_set_follows_the_model():
    def loader(name):
        if name.startswith("shapes"):  # no settings in the info: the zoo's data set (zoo_data)
            return models.cnn(1, 4, 32, channels=(4,), hidden=8, seed=0).eval(), {}
        return tiny_zoo(name)

    explorer = Explorer(model_names=("digits_cnn_relu", "shapes_cnn"), methods=("gradient",),
                        load_model=loader)
    explorer.index = 300
    explorer.model_dropdown.value = "shapes_cnn"
    assert explorer.status.startswith("ready"), explorer.error_message
    assert explorer.data.name == "shapes" and explorer.inputs.shape == (1, 1, 32, 32)
    assert explorer.maps["gradient"].shape == (32, 32)
    assert explorer.index_slider.max == len(explorer.data.x_test) - 1
    assert [label for label, _ in explorer.target_dropdown.options][1:] == [
        f"class {c}" for c in explorer.data.classes]
    assert explorer.inspector.model is explorer.model


def test_a_text_model_shows_its_sentence_with_highlighted_tokens():
    # an untrained token classifier on the zoo's planted-word sentences (data from zoo_data)
    def loader(name):
        if name == "tokens_cnn":
            data = models.zoo_data("tokens_cnn")
            return models.token_cnn(len(data.vocabulary), 2, data.input_shape[0], channels=4,
                                    seed=0).eval(), {}
        return tiny_zoo(name)

    explorer = Explorer(model_names=("digits_cnn_relu", "tokens_cnn"),
                        methods=("integrated_gradients", "deeplift_rescale", "grad_cam"),
                        load_model=loader)
    assert explorer.tokens.layout.display == "none" and not explorer.is_text
    explorer.model_dropdown.value = "tokens_cnn"
    # Grad-CAM explains a conv layer of the model itself, never token ids at the embedding
    assert explorer.status.startswith("failed: 1 of 3"), explorer.error_message
    assert "grad_cam cannot explain token ids" in explorer.error_message
    assert explorer.is_text and explorer.inputs.dtype == torch.int64
    words = explorer.data.words(explorer.inputs[0])
    for label in ("integrated_gradients", "deeplift_rescale"):
        assert explorer.maps[label].shape == (len(words),)
    expected = wb.attribute(explorer.model, explorer.inputs, "integrated_gradients",
                            layer="embedding").sum(-1)[0]
    np.testing.assert_allclose(explorer.maps["integrated_gradients"], expected.numpy(),
                               rtol=1e-5, atol=1e-7)
    assert explorer.heatmaps.layout.display == "none" and explorer.tokens.layout.display is None
    assert explorer.tokens.value.count("<tr>") == 2
    assert all(html.escape(word) in explorer.tokens.value for word in words)
    assert explorer.figure is None and explorer.inspector is None
    explorer.index = 3  # another sentence
    assert explorer.data.words(explorer.inputs[0])[0] in explorer.tokens.value
    explorer.model_dropdown.value = "digits_cnn_relu"  # back to images: heat maps again
    assert explorer.status.startswith("ready: 3 methods"), explorer.error_message
    assert explorer.tokens.layout.display == "none" and explorer.heatmaps.layout.display is None
    assert explorer.inspector is not None


def test_the_text_transformer_is_explained_at_its_embedding_by_the_transformer_rules():
    def loader(name):
        data = models.zoo_data(name)
        return models.token_transformer(len(data.vocabulary), 2, data.input_shape[0], width=8,
                                        depth=1, heads=2, mlp_width=8, seed=0).eval(), {}

    explorer = Explorer(model_names=("tokens_transformer",),
                        methods=("attn_lrp", "integrated_gradients", "lrp_epsilon"),
                        load_model=loader)
    assert explorer.is_text
    assert explorer.status.startswith("ready: 2 methods"), explorer.error_message
    assert "lrp_epsilon" in explorer.error_message  # no rule for LayerNorm: named, not run
    expected = wb.attribute(explorer.model, explorer.inputs, "attn_lrp",
                            layer="embedding").sum(-1)[0]
    np.testing.assert_allclose(explorer.maps["attn_lrp"], expected.numpy(), rtol=1e-5,
                               atol=1e-7)
    assert explorer.tokens.value.count("<tr>") == 2


def test_a_model_outside_the_zoo_needs_its_data_set_in_the_info():
    def loader(name):
        return tiny_model(), {}  # no settings and not a zoo name: no data set to guess

    explorer = Explorer(model_names=("digits_net",), methods=("gradient",), load_model=loader)
    assert "'digits_net' is not in the zoo (digits_cnn_relu" in explorer.error_message
    assert "names no data set" in explorer.error_message
    assert explorer.model is None and explorer.status.startswith("error")


def test_rule_overrides_in_the_inspector_change_the_lrp_maps(explorer):
    before = explorer.maps
    explorer.inspector.layer = "features.conv1"
    explorer.inspector.rule_dropdown.value = "z+ (alpha1-beta0)"
    after = explorer.maps
    assert not np.allclose(before["lrp_epsilon"], after["lrp_epsilon"])
    np.testing.assert_allclose(before["gradient"], after["gradient"])
    expected = wb.attribute(explorer.model, explorer.inputs, "lrp_epsilon",
                            layer_rules=explorer.inspector.layer_rules)
    np.testing.assert_allclose(after["lrp_epsilon"], expected[0, 0].numpy(), rtol=1e-5)


def test_picker_offers_attention_rollout_only_for_models_with_attention():
    from workbench.models import vit

    conv = tiny_model()
    transformer = vit(3, 3, 8, patch=4, depth=1, heads=2, width=8, mlp_width=16, seed=0)
    picker = MethodPicker(model=conv)
    assert "attention_rollout" not in picker.methods
    assert picker.methods == wb.methods(conv)
    seen = []
    picker.on_change(lambda method, options: seen.append(method))
    picker.model = transformer
    assert "attention_rollout" in picker.methods
    picker.method = "attention_rollout"
    picker.model = conv  # no longer offered: the picker moves to the first method offered
    assert picker.method == wb.methods(conv)[0] and seen[-1] == picker.method
    with pytest.raises(ValueError, match="applies to"):
        MethodPicker(methods=["attention_rollout"], model=conv)


def test_the_explorer_on_a_transformer_runs_the_columns_that_apply_and_names_the_others():
    def loader(name):
        if name == "digits_norm":  # a transformer's LayerNorm in an MLP
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16),
                                       torch.nn.LayerNorm(16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, 10)).eval(), dict(DIGITS_INFO)
        return tiny_zoo(name)

    explorer = Explorer(model_names=("digits_cnn_relu", "digits_norm"),
                        methods=("gradient", "lrp_epsilon", "attn_lrp"), load_model=loader)
    assert set(explorer.maps) == {"gradient", "lrp_epsilon", "attn_lrp"}
    explorer.model_dropdown.value = "digits_norm"
    assert explorer.status.startswith("ready: 2 methods"), explorer.error_message
    assert "do not apply to digits_norm" in explorer.status
    assert set(explorer.maps) == {"gradient", "attn_lrp"}
    assert "lrp_epsilon applies to models without layer normalisation" in explorer.error_message
    explorer.model_dropdown.value = "digits_cnn_relu"  # the column comes back with the model
    assert set(explorer.maps) == {"gradient", "lrp_epsilon", "attn_lrp"}
    assert explorer.status.startswith("ready: 3 methods"), explorer.error_message
