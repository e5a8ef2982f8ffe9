"""The Explorer: a zoo model, a test image, and heat maps of several methods side by side; for a
text model (a test set of token ids, ``workbench.text_data.TokenData``), a test sentence with its
tokens highlighted per method (attributions at the model's embedding).

>>> app = Explorer()          # doctest: +SKIP
>>> app                       # doctest: +SKIP  (display in Jupyter or serve with Voilà)

Every change (model, test image, target, a method or its options, an LRP rule override in the
layer inspector) recomputes what changed and redraws the heat maps: PNG tiles coloured in Python
(:class:`widgets.heatmap_tiles.HeatmapTiles`), so the page loads no plotly.js. The layer
inspector's plotly figure is created only when its section is opened. Errors show in the app's
error area (class ``wb-error``); the status line (``wb-status``) says "ready" after each
successful update.
"""
from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

import workbench as wb
from widgets._common import ErrorArea, describe, log, torch_threads
from widgets.heatmap_tiles import HeatmapTiles
from widgets.layer_inspector import LayerInspector
from widgets.method_picker import MethodPicker
from workbench import models
from workbench.checks import resolve_target
from workbench.data import ImageData
from workbench.model_views import NOT_ON_VIEWS
from workbench.plots import heatmap_grid, to_map
from workbench.registry import takes_layer_rules, validate_options
from workbench.text_data import TokenData
from workbench.text_view import token_relevance, token_table

#: the zoo models offered, the first shown first: natural-image crops (a conv net, a vision
#: transformer), the fast digits nets, shapes, and two text classifiers (a CNN, a transformer)
DEFAULT_MODELS = ("photos_vgg", "photos_vit", "digits_cnn_relu", "digits_cnn_tanh",
                  "digits_mlp_relu", "digits_mlp_tanh", "shapes_cnn", "tokens_cnn",
                  "tokens_transformer")
DEFAULT_METHODS = ("gradient", "integrated_gradients", "lrp_epsilon", "guided_backprop")

#: loads a model by name: ``name -> (model, info)`` as ``workbench.models.zoo`` does
ModelLoader = Callable[[str], tuple[nn.Module, dict[str, Any]]]
#: a column: a method name, or a method name and its options
MethodSpec = str | tuple[str, Mapping[str, Any]]

_CACHE_SIZE = 512
_STYLE = {"description_width": "initial"}
_PREDICTED = -1  # the target dropdown's value for "the predicted class"


def _load_zoo(name: str) -> tuple[nn.Module, dict[str, Any]]:
    return models.zoo(name, device="cpu", progress=True)


def _data_for(name: str, info: Mapping[str, Any]) -> ImageData:
    """The data set a model was trained on: from its settings (``info["settings"]``, as
    ``models.trained`` gives them), else the zoo's (``models.zoo_data``)."""
    settings = info.get("settings") or {}
    if not settings.get("dataset"):
        if name not in models.ZOO:
            raise ValueError(f"model '{name}' is not in the zoo ({', '.join(models.ZOO)}) and "
                             "its info names no data set; give info['settings'] = "
                             "{'dataset': ..., 'data': {...}} as models.trained does")
        return models.zoo_data(name)
    if settings["dataset"] not in models.DATASETS:
        raise ValueError(f"model '{name}': no data set '{settings['dataset']}'; known: "
                         f"{list(models.DATASETS)}")
    return models.DATASETS[settings["dataset"]](**settings.get("data", {}))


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _label(method: str, options: Mapping[str, Any]) -> str:
    """``method`` or ``method(name=value, ...)`` for non-default options."""
    if not options:
        return method
    return f"{method}({', '.join(f'{k}={_format(v)}' for k, v in options.items())})"


def _embedding_of(model: nn.Module) -> str:
    """Dotted name of ``model``'s first ``nn.Embedding``: where a text model is explained."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            return name
    raise ValueError(f"the text model ({type(model).__name__}) has no nn.Embedding to be "
                     "explained at")


class Explorer(widgets.VBox):
    """Heat maps of several attribution methods for one test image of a zoo model.

    Parameters
    ----------
    model_names:
        Names offered in the model dropdown (keys of ``workbench.models.ZOO`` for the default
        loader); the first is loaded at once.
    methods:
        The columns shown first: method names, or ``(name, options)`` pairs.
    index:
        The test image shown first.
    load_model:
        ``name -> (model, info)``; default ``workbench.models.zoo`` (trains once, then cached).
        The test set comes from ``info["settings"]`` (data set and its arguments), else from
        ``workbench.models.zoo_data(name)``.
    threads:
        Torch threads while computing (``None``: leave torch's setting). One is fastest for the
        small zoo nets, above all when the cores are shared.

    Key widgets (public, with CSS classes for browser tests): ``model_dropdown``
    (``wb-model-dropdown``), ``index_slider`` (``wb-index-slider``), ``target_dropdown``
    (``wb-target-dropdown``), ``column_dropdown`` (``wb-column-dropdown``: the column the
    picker edits), ``add_button`` / ``remove_button`` (``wb-add-method`` / ``wb-remove-method``),
    ``picker`` (a :class:`MethodPicker`, ``wb-method-picker``), ``heatmaps`` (a
    :class:`HeatmapTiles`, ``wb-heatmaps``: the input, then one tile per column, each with a
    ``wb-heatmap-title``), ``error`` (``wb-error``), the status line (``wb-status``), and
    ``inspector`` (a :class:`LayerInspector` in the ``wb-layers`` accordion; its figure is
    created when the accordion is first opened). For a text model ``tokens`` (``wb-tokens``)
    replaces ``heatmaps``: the sentence once per column, its tokens highlighted.
    """

    def __init__(self, model_names: Sequence[str] = DEFAULT_MODELS,
                 methods: Sequence[MethodSpec] = DEFAULT_METHODS, index: int = 0,
                 load_model: ModelLoader | None = None, threads: int | None = 1) -> None:
        model_names = list(model_names)
        if not model_names:
            raise ValueError("model_names must name at least one model, e.g. ['digits_cnn_relu']")
        self._columns: list[tuple[str, dict[str, Any]]] = [self._column(m) for m in methods]
        if not self._columns:
            raise ValueError("methods must name at least one method, e.g. ['gradient']")
        self._load_model = load_model or _load_zoo
        self._threads = threads
        self._model: nn.Module | None = None
        self._loaded_name: str | None = None
        self._data: ImageData | None = None
        self._data_cache: dict[str, ImageData] = {}
        self._cache: dict[tuple, np.ndarray] = {}
        self._maps: dict[str, np.ndarray] = {}
        self._status_text = ""
        self._quiet = False
        self._loading = False
        self.inspector: LayerInspector | None = None

        self.model_dropdown = widgets.Dropdown(options=model_names, value=model_names[0],
                                               description="model", style=_STYLE)
        self.model_dropdown.add_class("wb-model-dropdown")
        self.index_slider = widgets.IntSlider(value=0, min=0, max=0, description="test image",
                                              continuous_update=False, style=_STYLE)
        self.index_slider.add_class("wb-index-slider")
        self.target_dropdown = widgets.Dropdown(options=[("predicted class", _PREDICTED)],
                                                value=_PREDICTED, description="target",
                                                style=_STYLE)
        self.target_dropdown.add_class("wb-target-dropdown")
        self._sample = widgets.HTML()
        self._sample.add_class("wb-sample-info")
        self.column_dropdown = widgets.Dropdown(description="edit column", style=_STYLE)
        self.column_dropdown.add_class("wb-column-dropdown")
        self.add_button = widgets.Button(description="add column", icon="plus",
                                         tooltip="add a column with the method and options "
                                                 "below")
        self.add_button.add_class("wb-add-method")
        self.remove_button = widgets.Button(description="remove column", icon="minus",
                                            tooltip="remove the column being edited")
        self.remove_button.add_class("wb-remove-method")
        method, options = self._columns[0]
        self.picker = MethodPicker(method=method, options=options)
        self.heatmaps = HeatmapTiles()
        self.tokens = widgets.HTML(layout=widgets.Layout(display="none"))
        self.tokens.add_class("wb-tokens")
        self._status = widgets.HTML()
        self._status.add_class("wb-status")
        self.error = ErrorArea("wb-error",
                               on_error=lambda _error: self._set_status("error (see below)"))
        self._log = widgets.Output()
        self._log.add_class("wb-log")
        self._layers = widgets.Accordion(children=[widgets.HTML("no model loaded")],
                                         titles=("layer inspector",), selected_index=None)
        self._layers.add_class("wb-layers")
        super().__init__(children=[
            widgets.HBox([self.model_dropdown, self.index_slider, self.target_dropdown,
                          self._sample]),
            widgets.HBox([self.column_dropdown, self.add_button, self.remove_button]),
            self.picker, self.heatmaps, self.tokens, self._status, self.error, self._log,
            self._layers,
        ])
        self.add_class("wb-explorer")
        self._refresh_columns(0)
        self._layers.observe(self.error.guard(self._on_layers_opened), names="selected_index")

        guard = self.error.guard
        self.model_dropdown.observe(guard(self._on_model), names="value")
        self.index_slider.observe(guard(self._on_input), names="value")
        self.target_dropdown.observe(guard(self._on_input), names="value")
        self.column_dropdown.observe(guard(self._on_column), names="value")
        self.add_button.on_click(
            guard(lambda _button: self.add_method(self.picker.method, self.picker.options)))
        self.remove_button.on_click(guard(lambda _button: self.remove_method(self.selected)))
        self.picker.on_change(guard(self._on_picker))
        guard(self._load)(model_names[0], index)

    # --- public API --------------------------------------------------------------------------

    @property
    def model(self) -> nn.Module | None:
        """The loaded model (None if none could be loaded)."""
        return self._model

    @property
    def model_name(self) -> str | None:
        """The loaded model's name; setting it loads that model."""
        return self._loaded_name

    @model_name.setter
    def model_name(self, name: str) -> None:
        if name not in self.model_dropdown.options:
            raise ValueError(f"model_name must be one of {list(self.model_dropdown.options)}, "
                             f"got {name!r}")
        self.model_dropdown.value = name

    @property
    def figure(self) -> go.Figure | None:
        """A plotly figure of what the tiles show (the input, then each computed map), for
        reports and notebooks; built on each call (the app itself shows PNG tiles)."""
        if self._data is None or not self._maps or self.is_text:
            return None
        maps = {label: torch.from_numpy(heat)[None] for label, heat in self._maps.items()}
        return heatmap_grid(self.inputs, maps)

    @property
    def is_text(self) -> bool:
        """Whether the loaded model reads token ids (explained at its embedding)."""
        return isinstance(self._data, TokenData)

    @property
    def data(self) -> ImageData | TokenData | None:
        """The data set of the loaded model; images come from its test part."""
        return self._data

    @property
    def index(self) -> int:
        """Index of the test image shown; setting it updates the maps."""
        return self.index_slider.value

    @index.setter
    def index(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= self.index_slider.max:
            raise ValueError(f"index must be an integer in [0, {self.index_slider.max}], "
                             f"got {value!r}")
        self.index_slider.value = value

    @property
    def target(self) -> int | None:
        """The explained class (None: the predicted class); settable."""
        value = self.target_dropdown.value
        return None if value == _PREDICTED else value

    @target.setter
    def target(self, value: int | None) -> None:
        choices = [v for _label, v in self.target_dropdown.options if v != _PREDICTED]
        if value is not None and value not in choices:
            raise ValueError(f"target must be None or a class index in {choices}, got {value!r}")
        self.target_dropdown.value = _PREDICTED if value is None else value

    @property
    def inputs(self) -> torch.Tensor | None:
        """The test image shown, shape (1, C, H, W) (a text model's sentence: (1, length))."""
        if self._data is None:
            return None
        return self._data.x_test[self.index:self.index + 1]

    @property
    def columns(self) -> list[tuple[str, dict[str, Any]]]:
        """The methods shown, with their (non-default) options."""
        return [(method, dict(options)) for method, options in self._columns]

    @property
    def labels(self) -> list[str]:
        """The title of each column (unique)."""
        labels: list[str] = []
        for method, options in self._columns:
            label = _label(method, options)
            if label in labels:
                label = f"{label} #{sum(x.split(' #')[0] == label for x in labels) + 1}"
            labels.append(label)
        return labels

    @property
    def selected(self) -> int:
        """Position of the column the method picker edits."""
        return self.column_dropdown.value

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """The (H, W) heat map of each column computed by the last update, by label (a text
        model's: the relevance per token, (length,))."""
        return {label: heat.copy() for label, heat in self._maps.items()}

    @property
    def status(self) -> str:
        """The status line as text ("ready: ..." after a successful update)."""
        return self._status_text

    @property
    def error_message(self) -> str:
        """The error shown ("" when none)."""
        return self.error.message

    def add_method(self, method: str, options: Mapping[str, Any] | None = None) -> None:
        """Add a column for ``method`` with ``options``, select it and update."""
        previous = self.selected
        self._columns.append(self._column((method, dict(options or {}))))
        try:
            self._refresh_columns(len(self._columns) - 1)
        except (TypeError, ValueError):  # options the picker cannot show (e.g. a tensor)
            del self._columns[-1]
            self._refresh_columns(previous)
            raise
        self.update()

    def remove_method(self, position: int) -> None:
        """Remove the column at ``position`` (the last column stays) and update."""
        if len(self._columns) == 1:
            raise ValueError("the last column cannot be removed; change its method instead")
        if not 0 <= position < len(self._columns):
            raise ValueError(f"position must be in [0, {len(self._columns) - 1}], got {position}")
        del self._columns[position]
        self._refresh_columns(min(position, len(self._columns) - 1))
        self.update()

    def select(self, position: int) -> None:
        """Let the method picker edit the column at ``position``."""
        self.column_dropdown.value = position

    def update(self) -> None:
        """Compute the maps of every column for the current image and redraw them."""
        if self._model is None or self._data is None:
            self._set_status("no model loaded")
            return
        start = time.perf_counter()
        inputs, labels = self.inputs, self.labels
        maps, failures, inapplicable = {}, [], []
        with torch_threads(self._threads):
            with torch.no_grad():
                predicted = int(resolve_target(None, self._model(inputs))[0])
            for label, (method, options) in zip(labels, self._columns):
                info = wb.method_info(method)
                if not info.applies_to(self._model):
                    inapplicable.append(f"{label}: {method} applies to "
                                        f"{info.requires.description} only")
                    continue
                try:
                    maps[label] = self._heat_map(method, options, inputs)
                except Exception as error:  # noqa: BLE001 - shown, the other columns still run
                    log.exception("attribution failed for column %s", label)
                    failures.append(f"{label}: {describe(error)}")
        self._maps = maps
        self._draw(labels, predicted)
        seconds = time.perf_counter() - start
        if failures:
            self.error.show("\n".join(failures + inapplicable))
            self._set_status(f"failed: {len(failures)} of {len(labels)} methods "
                             "(see the error below)")
        elif inapplicable:
            self.error.show("\n".join(inapplicable))
            self._set_status(f"ready: {len(labels) - len(inapplicable)} methods in "
                             f"{seconds:.2f} s; {len(inapplicable)} do not apply to "
                             f"{self._loaded_name} (see below; pick another method for the "
                             "column)")
        else:
            self.error.clear()
            self._set_status(f"ready: {len(labels)} methods in {seconds:.2f} s")

    # --- internals ---------------------------------------------------------------------------

    @staticmethod
    def _column(spec: MethodSpec) -> tuple[str, dict[str, Any]]:
        """A validated column; only options that differ from the defaults are kept."""
        method, options = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
        return method, validate_options(method, options)

    def _set_status(self, text: str) -> None:
        self._status_text = text
        self._status.value = html.escape(text)

    def _load(self, name: str, index: int | None = None) -> None:
        """Load model ``name`` and its test set; on failure the previous model stays."""
        self._set_status(f"loading {name} (the first use of a zoo model trains it: a minute)")
        self._loading = True
        try:
            with self._log:
                model, info = self._load_model(name)
            data = self._dataset(name, info)
            self._model, self._loaded_name, self._data = model, name, data
            self._cache.clear()
            self._quiet = True
            try:
                self.index_slider.max = len(data.x_test) - 1
                if index is not None:
                    self.index_slider.value = min(max(index, 0), self.index_slider.max)
                target = self.target_dropdown.value
                classes = [(f"class {c}", i) for i, c in enumerate(data.classes)]
                self.target_dropdown.options = [("predicted class", _PREDICTED), *classes]
                known = [v for _label, v in self.target_dropdown.options]
                self.target_dropdown.value = target if target in known else _PREDICTED
            finally:
                self._quiet = False
            self._log.clear_output()
            self.picker.model = model
            self._inspect(model)
        except Exception:
            self._revert_model_dropdown()
            raise
        finally:
            self._loading = False
        self.update()

    def _revert_model_dropdown(self) -> None:
        if self._loaded_name is not None and self.model_dropdown.value != self._loaded_name:
            self._quiet = True
            try:
                self.model_dropdown.value = self._loaded_name
            finally:
                self._quiet = False

    def _dataset(self, name: str, info: Mapping[str, Any]) -> ImageData:
        """``_data_for``, kept per data set and its arguments (per zoo name without them)."""
        settings = info.get("settings") or {}
        source = ([settings["dataset"], settings.get("data")] if settings.get("dataset")
                  else ["zoo", name])
        key = json.dumps(source, sort_keys=True, default=str)
        if key not in self._data_cache:
            self._data_cache[key] = _data_for(name, info)
        return self._data_cache[key]

    def _inspect(self, model: nn.Module) -> None:
        """Show ``model`` in the layer inspector; a model it cannot show still loads."""
        if self.is_text:
            if self.inspector is not None:
                self.inspector.close()
            self.inspector = None
            self._layers.children = [widgets.HTML("no layer inspector for text models: their "
                                                  "rules are the methods' own")]
            return
        try:
            if self.inspector is None:
                self.inspector = LayerInspector(model, self.inputs, defer_figure=True)
                self.inspector.on_change(self.error.guard(self._on_rules))
                self._layers.children = [self.inspector]
                self._on_layers_opened()
            else:
                self.inspector.set_model(model, self.inputs)
        except (TypeError, ValueError) as error:
            log.exception("the layer inspector cannot show the model")
            if self.inspector is not None:
                self.inspector.close()
            self.inspector = None  # no stale rule overrides for the new model
            self._layers.children = [widgets.HTML(html.escape(f"no layers: {describe(error)}"))]

    def _heat_map(self, method: str, options: Mapping[str, Any],
                  inputs: torch.Tensor) -> np.ndarray:
        options = dict(options)
        if self.inspector is not None and self.inspector.layer_rules and takes_layer_rules(
                method):
            options["layer_rules"] = self.inspector.layer_rules
        key = (id(self._model), self.index, self.target, method,
               repr(sorted(options.items())))
        if key not in self._cache:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            if self.is_text:  # token ids: explained at the embedding, reference the padding id
                if method in NOT_ON_VIEWS:
                    raise ValueError(f"{method} cannot explain token ids at the embedding: "
                                     f"{NOT_ON_VIEWS[method]}")
                attribution = wb.attribute(self._model, inputs, method, target=self.target,
                                           layer=_embedding_of(self._model), **options)
                heat = token_relevance(attribution.detach().float().cpu())[0]
            else:
                attribution = wb.attribute(self._model, inputs, method, target=self.target,
                                           **options)
                heat = to_map(attribution.detach().float().cpu())[0]
                if heat.shape != inputs.shape[-2:]:
                    raise ValueError(f"{method} returned a map of shape {tuple(heat.shape)}, "
                                     f"not the image's {tuple(inputs.shape[-2:])}: the "
                                     "Explorer draws maps over the image (upsample=False?)")
            self._cache[key] = heat.numpy()
        return self._cache[key]

    def _draw(self, labels: list[str], predicted: int) -> None:
        """Show the input and each column's map (a failed column shows a blank tile)."""
        classes = self._data.classes
        truth = classes[int(self._data.y_test[self.index])]
        target = "predicted" if self.target is None else f"class {classes[self.target]}"
        self._sample.value = html.escape(
            f"label {truth}, predicted {classes[predicted]}; explaining {target}")
        self.tokens.layout.display = None if self.is_text else "none"
        self.heatmaps.layout.display = "none" if self.is_text else None
        if self.is_text:
            words = self._data.words(self.inputs[0])
            self.tokens.value = token_table(words, {label: torch.from_numpy(self._maps[label])
                                                    for label in labels if label in self._maps})
            return
        image = self.inputs[0].detach().float().cpu().numpy()
        self.heatmaps.show(f"input (label {truth})", image,
                           [(label, self._maps.get(label)) for label in labels])

    def _refresh_columns(self, selected: int) -> None:
        """Relabel the column dropdown and show column ``selected`` in the picker."""
        self._quiet = True
        try:
            self.column_dropdown.options = [(f"{i + 1}: {label}", i)
                                             for i, label in enumerate(self.labels)]
            self.column_dropdown.value = selected
        finally:
            self._quiet = False
        method, options = self._columns[selected]
        self.picker.set(method, options, notify=False)
        self.remove_button.disabled = len(self._columns) == 1

    # --- callbacks ---------------------------------------------------------------------------

    def _on_model(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self._load(change["new"])

    def _on_input(self, _change: dict[str, Any]) -> None:
        if self._quiet or self._data is None:
            return
        if self.inspector is not None:
            self.inspector.inputs = self.inputs
        self.update()

    def _on_column(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["new"] is not None:
            method, options = self._columns[change["new"]]
            self.picker.set(method, options, notify=False)

    def _on_picker(self, method: str, options: dict[str, Any]) -> None:
        position = self.selected
        if self._columns[position] == (method, options):
            return
        self._columns[position] = (method, dict(options))
        self._refresh_columns(position)
        self.update()

    def _on_layers_opened(self, _change: dict[str, Any] | None = None) -> None:
        """Create the inspector's plotly figure the first time its section is open: a
        ``FigureWidget`` makes the page load plotly.js (megabytes), so a page that never opens
        the inspector loads none."""
        if self._layers.selected_index is not None and self.inspector is not None:
            self.inspector.show_figure()

    def _on_rules(self, _layer_rules: dict[str, Any]) -> None:
        if not self._loading:
            self.update()
