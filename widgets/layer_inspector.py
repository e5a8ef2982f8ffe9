"""Look inside a model layer by layer: activations, weights, and the rule each method applies.

The rule table comes from ``workbench.layers.layer_rules`` for every method that declares rules
(``Method.rules``); the LRP rule at a weighted layer can be overridden here, and
:attr:`LayerInspector.layer_rules` is what the ``layer_rules`` option of the LRP methods takes:

>>> inspector = LayerInspector(model, inputs)                    # doctest: +SKIP
>>> inspector.set_rule("features.conv1", "z+")                  # doctest: +SKIP
>>> wb.attribute(model, inputs, "lrp_epsilon", layer_rules=inspector.layer_rules)  # doctest: +SKIP
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import nn

import workbench as wb
from widgets._common import Callbacks, ErrorArea, sync_figure
from workbench.checks import check_finite, check_model
from workbench.composites import COMPOSITES
from workbench.layers import LayerRule, layer_output, layer_rules, rule_for
from workbench.lrp_rules import AlphaBetaRule, FlatRule, GammaRule, WSquareRule
from workbench.registry import Option, takes_layer_rules
from workbench.rules import AffineRule, EpsilonRule, Rules, ZeroRule

#: the rule overrides offered at a weighted layer: label -> rule (given the epsilon field)
RULE_CHOICES: dict[str, Callable[[float], AffineRule] | None] = {
    "method default": None,
    "epsilon": EpsilonRule,
    "z+ (alpha1-beta0)": lambda _epsilon: AlphaBetaRule(1.0, 0.0),
    "alpha2-beta1": lambda _epsilon: AlphaBetaRule(2.0, 1.0),
    "LRP-0": lambda _epsilon: ZeroRule(),
    "gamma (0.25)": lambda _epsilon: GammaRule(0.25),
    "flat (first layer)": lambda _epsilon: FlatRule(),
    "w-square (first layer)": lambda _epsilon: WSquareRule(),
}
#: the epsilon field's first value (a common choice for the upper layers, e.g. in Zennit)
DEFAULT_OVERRIDE_EPSILON = 0.25
_HISTOGRAM_BINS = 40
_EPSILON = Option("epsilon", "float", DEFAULT_OVERRIDE_EPSILON, "stabiliser of the epsilon rule",
                  minimum=0.0)

#: called with the new ``layer_rules`` after each edit
RulesCallback = Callable[[dict[str, AffineRule]], None]


class _Probe(AffineRule):
    """An affine rule that only marks where ``rule_for`` would apply an affine rule."""

    name = "probe"

    def __repr__(self) -> str:
        return "probe"


_PROBE_RULES = Rules(affine=_Probe())


def accepts_affine_rule(model: nn.Module, layer: str) -> bool:
    """Whether the engine applies an affine (LRP) rule at ``layer`` (a Linear or Conv layer)."""
    module = dict(model.named_modules())[layer]
    return rule_for(module, layer, _PROBE_RULES) == repr(_PROBE_RULES.affine)


def rule_methods() -> list[str]:
    """The registered methods that declare backward rules."""
    return [name for name in wb.methods() if wb.method_info(name).rules is not None]


def _leaf_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules()
            if name and not any(True for _ in module.children())]


def _figure() -> go.FigureWidget:
    """Activations (a heat map or a bar chart) on the left, the weight histogram on the right.

    One figure for both: each ``FigureWidget`` ships plotly.js (megabytes) to the browser.
    """
    figure = make_subplots(rows=1, cols=2, subplot_titles=("activations", "weights"),
                           horizontal_spacing=0.12)
    figure.add_trace(go.Heatmap(z=None, colorscale="Viridis", colorbar=dict(x=0.44, len=0.9)),
                     row=1, col=1)
    figure.add_trace(go.Bar(y=None, visible=False, marker=dict(color="#4c72b0"), yaxis="y3"))
    figure.add_trace(go.Bar(x=None, y=None, marker=dict(color="#555")), row=1, col=2)
    # heat maps read top-down, bars bottom-up: each on its own y axis, only one visible
    figure.update_layout(yaxis=dict(autorange="reversed"),
                         yaxis3=dict(overlaying="y", anchor="x", visible=False, tickmode="auto"))
    figure.update_annotations(font=dict(size=12))
    figure.update_layout(width=760, height=320, showlegend=False, bargap=0,
                         margin=dict(l=40, r=10, t=40, b=30))
    return go.FigureWidget(figure)


class LayerInspector(widgets.VBox):
    """Pick a layer of ``model``; see its activations for ``inputs`` (first sample), its
    weights, and the rule each rule-based method applies there; override the LRP rule at
    Linear/Conv layers.

    Properties: ``layer`` (dotted name, settable), ``layers`` (leaf modules), ``model`` and
    ``inputs`` (settable), ``rules`` ({method: rule name} at the current layer),
    ``layer_rules`` ({layer: AffineRule}, the overrides), ``activation`` (the layer's output).
    Key widgets: ``layer_dropdown`` (``wb-layer-dropdown``), ``figure`` (``wb-layer-figure``:
    activations left, a histogram of the weights right) with ``channel_slider``
    (``wb-channel-slider``), the rule table (``wb-rule-table``), ``rule_dropdown`` and
    ``rule_epsilon`` (``wb-rule-dropdown``, ``wb-rule-epsilon``), ``composite_dropdown``
    (``wb-composite-dropdown``: the composite the table shows for ``lrp``), ``error``
    (``wb-inspector-error``).

    ``defer_figure=True`` creates the plotly figure only on :meth:`show_figure` (or the first
    use of ``figure``): each ``FigureWidget`` makes the page load plotly.js (megabytes), which
    an app can spare until the inspector is opened.
    """

    def __init__(self, model: nn.Module, inputs: torch.Tensor | None = None,
                 layer: str | None = None, defer_figure: bool = False) -> None:
        self.error = ErrorArea("wb-inspector-error")
        self.layer_dropdown = widgets.Dropdown(description="layer",
                                                style={"description_width": "initial"})
        self.layer_dropdown.add_class("wb-layer-dropdown")
        self._info = widgets.HTML()
        self._info.add_class("wb-layer-info")
        self.channel_slider = widgets.IntSlider(description="channel", min=0, max=0,
                                                continuous_update=False)
        self.channel_slider.add_class("wb-channel-slider")
        self._figure: go.FigureWidget | None = None
        self._table = widgets.HTML()
        self._table.add_class("wb-rule-table")
        self.rule_dropdown = widgets.Dropdown(options=list(RULE_CHOICES),
                                              description="LRP rule here",
                                              style={"description_width": "initial"})
        self.rule_dropdown.add_class("wb-rule-dropdown")
        self.rule_epsilon = widgets.FloatText(value=DEFAULT_OVERRIDE_EPSILON,
                                              description="epsilon",
                                              style={"description_width": "initial"})
        self.rule_epsilon.add_class("wb-rule-epsilon")
        self.composite_dropdown = widgets.Dropdown(options=list(COMPOSITES),
                                                   value="epsilon_plus",
                                                   description="lrp composite",
                                                   style={"description_width": "initial"})
        self.composite_dropdown.add_class("wb-composite-dropdown")
        self._editor = widgets.HBox([self.rule_dropdown, self.rule_epsilon])
        self._editor.add_class("wb-rule-editor")
        self._overrides_html = widgets.HTML()
        self._overrides_html.add_class("wb-rule-overrides")
        self._clear = widgets.Button(description="clear overrides")
        self._clear.add_class("wb-clear-rules")
        self._model: nn.Module = model
        self._inputs: torch.Tensor | None = inputs
        self._overrides: dict[str, tuple[str, float]] = {}  # layer -> (choice, epsilon)
        self._layer_rules: dict[str, AffineRule] = {}
        self._rows: dict[str, dict[str, LayerRule]] = {}  # method -> layer -> row
        self._activation: torch.Tensor | None = None
        self._callbacks = Callbacks(self.error)
        self._quiet = False
        super().__init__(children=[
            widgets.HBox([self.layer_dropdown, self._info]),
            self.channel_slider,
            self._table, self.composite_dropdown, self._editor,
            widgets.HBox([self._overrides_html, self._clear]),
            self.error,
        ])
        self.add_class("wb-layer-inspector")
        guard = self.error.guard
        self.layer_dropdown.observe(guard(self._on_layer), names="value")
        self.channel_slider.observe(guard(self._on_channel), names="value")
        self.rule_dropdown.observe(guard(self._on_rule), names="value")
        self.rule_epsilon.observe(guard(self._on_rule), names="value")
        self.composite_dropdown.observe(guard(self._on_composite), names="value")
        self._clear.on_click(guard(lambda _button: self.clear_rules()))
        self.set_model(model, inputs, layer)
        if not defer_figure:
            self.show_figure()

    # --- public API --------------------------------------------------------------------------

    @property
    def figure(self) -> go.FigureWidget:
        """The plotly figure: activations left, the weight histogram right (created now if it
        was deferred)."""
        return self.show_figure()

    @property
    def has_figure(self) -> bool:
        """Whether the plotly figure exists (see ``defer_figure``)."""
        return self._figure is not None

    def show_figure(self) -> go.FigureWidget:
        """Create the figure if it was deferred, draw the current layer into it, and show it
        below the layer dropdown; returns it."""
        if self._figure is None:
            self._figure = _figure()
            self._figure.add_class("wb-layer-figure")
            first, *rest = self.children
            self.children = (first, self._figure, *rest)
            self._draw_weights()
            self._draw_activation()
            sync_figure(self._figure)
        return self._figure

    @property
    def model(self) -> nn.Module:
        """The model inspected; setting it clears the overrides."""
        return self._model

    @model.setter
    def model(self, model: nn.Module) -> None:
        self.set_model(model, self._inputs)

    @property
    def inputs(self) -> torch.Tensor | None:
        """The inputs whose first sample's activations are shown."""
        return self._inputs

    @inputs.setter
    def inputs(self, inputs: torch.Tensor | None) -> None:
        self._inputs = inputs
        self.error.clear()
        self._show_activation()

    @property
    def layers(self) -> list[str]:
        """Dotted names of the model's leaf modules."""
        return [value for _label, value in self.layer_dropdown.options]

    @property
    def layer(self) -> str:
        """The layer shown (dotted name)."""
        return self.layer_dropdown.value

    @layer.setter
    def layer(self, name: str) -> None:
        if name not in self.layers:
            raise ValueError(f"layer must be a leaf module of the model, one of {self.layers}; "
                             f"got {name!r}")
        self.layer_dropdown.value = name

    @property
    def rules(self) -> dict[str, str]:
        """The rule each rule-based method applies at the current layer (overrides included)."""
        return {method: rows[self.layer].rule for method, rows in self._rows.items()}

    @property
    def layer_rules(self) -> dict[str, AffineRule]:
        """The LRP rule overrides, for the ``layer_rules`` option of the LRP methods."""
        return dict(self._layer_rules)

    @property
    def composite(self) -> str:
        """The composite whose rules the table shows for methods with a ``composite`` option
        (``lrp``), for their ``composite`` option; settable."""
        return self.composite_dropdown.value

    @composite.setter
    def composite(self, name: str) -> None:
        if name not in COMPOSITES:
            raise ValueError(f"composite must be one of {list(COMPOSITES)}, got {name!r}")
        self.composite_dropdown.value = name

    @property
    def activation(self) -> torch.Tensor | None:
        """The current layer's output for the first input (None without inputs)."""
        return self._activation

    def set_model(self, model: nn.Module, inputs: torch.Tensor | None = None,
                  layer: str | None = None) -> None:
        """Inspect ``model`` (with ``inputs``); overrides are cleared, the layer kept if any."""
        check_model(model)
        leaves = _leaf_layers(model)
        if not leaves:
            raise ValueError("the model has no named leaf modules to inspect")
        names = [name for name, _module in leaves]
        previous = self.layer_dropdown.value
        layer = layer if layer is not None else previous if previous in names else names[0]
        if layer not in names:
            raise ValueError(f"layer must be a leaf module of the model, one of {names}; "
                             f"got {layer!r}")
        self._model, self._inputs = model, inputs
        changed = bool(self._layer_rules)
        self._overrides, self._layer_rules = {}, {}
        self._refresh_rows()
        self._quiet = True
        try:
            self.layer_dropdown.options = [(f"{name} ({type(module).__name__})", name)
                                            for name, module in leaves]
            self.layer_dropdown.value = layer
        finally:
            self._quiet = False
        self.error.clear()
        self._show_layer()
        if changed:
            self._notify()

    def set_rule(self, layer: str, choice: str, epsilon: float = DEFAULT_OVERRIDE_EPSILON) -> None:
        """Override the LRP rule at ``layer`` with ``choice`` (a key of ``RULE_CHOICES``)."""
        if layer not in self.layers or not accepts_affine_rule(self._model, layer):
            weighted = [n for n in self.layers if accepts_affine_rule(self._model, n)]
            raise ValueError(f"layer must be a Linear or Conv layer of the model, one of "
                             f"{weighted}; got {layer!r}")
        if choice not in RULE_CHOICES:
            raise ValueError(f"choice must be one of {list(RULE_CHOICES)}, got {choice!r}")
        epsilon = _EPSILON.validate(epsilon, f"the rule override at {layer}")
        check_finite(epsilon, f"option 'epsilon' of the rule override at {layer}")
        overrides = dict(self._overrides)
        if RULE_CHOICES[choice] is None:
            overrides.pop(layer, None)
        else:
            overrides[layer] = (choice, epsilon)
        self._apply(overrides)
        if layer == self.layer:
            self._show_editor()

    def clear_rules(self) -> None:
        """Remove every override."""
        self._apply({})
        self._show_editor()

    def on_change(self, callback: RulesCallback, remove: bool = False) -> None:
        """Call ``callback(layer_rules)`` after each change of the overrides."""
        self._callbacks.register(callback, remove)

    # --- internals ---------------------------------------------------------------------------

    def _apply(self, overrides: dict[str, tuple[str, float]]) -> None:
        rules = {layer: RULE_CHOICES[choice](epsilon)
                 for layer, (choice, epsilon) in overrides.items()}
        if overrides == self._overrides:
            return
        self._overrides, self._layer_rules = overrides, rules
        self._refresh_rows()
        self._show_rules()
        self._notify()

    def _notify(self) -> None:
        self._callbacks(self.layer_rules)

    def _refresh_rows(self) -> None:
        """The rule of every layer for every rule-based method, overrides included."""
        self._rows = {}
        for method in rule_methods():
            options = {"layer_rules": self._layer_rules} if takes_layer_rules(method) else {}
            if any(option.name == "composite" for option in wb.method_info(method).options):
                options["composite"] = self.composite_dropdown.value
            self._rows[method] = {row.name: row for row in
                                  layer_rules(self._model, method, **options)}

    def _on_composite(self, _change: dict[str, Any]) -> None:
        self._refresh_rows()
        self._show_rules()

    def _on_layer(self, _change: dict[str, Any]) -> None:
        if not self._quiet:
            self.error.clear()
            self._show_layer()

    def _on_channel(self, _change: dict[str, Any]) -> None:
        if not self._quiet:
            self._show_activation()

    def _on_rule(self, _change: dict[str, Any]) -> None:
        if self._quiet:
            return
        try:
            self.set_rule(self.layer, self.rule_dropdown.value, self.rule_epsilon.value)
        except ValueError as error:  # e.g. a negative epsilon: keep the last valid rules
            self.rule_epsilon.add_class("wb-invalid")
            self.error.show(error)
            return
        self.rule_epsilon.remove_class("wb-invalid")
        self.error.clear()

    def _show_layer(self) -> None:
        module = dict(self._model.named_modules())[self.layer]
        parameters = sum(p.numel() for p in module.parameters(recurse=False))
        self._info.value = (f"<b>{html.escape(type(module).__name__)}</b>, "
                            f"{parameters:,} parameters")
        self._show_rules()
        self._show_editor()
        self._show_activation(draw=False)
        if self._figure is not None:
            self._draw_weights()
            self._draw_activation()
            sync_figure(self._figure)

    def _show_rules(self) -> None:
        lines = ["<table><tr><th align='left'>method</th><th align='left'>rule at "
                 f"{html.escape(self.layer)}</th></tr>"]
        for method, rule in self.rules.items():
            marker = " (override)" if (self.layer in self._layer_rules
                                       and takes_layer_rules(method)) else ""
            lines.append(f"<tr><td>{method}</td><td>{html.escape(rule)}{marker}</td></tr>")
        self._table.value = "".join(lines) + "</table>"
        overrides = ", ".join(f"{html.escape(layer)} &rarr; {html.escape(repr(rule))}"
                              for layer, rule in self._layer_rules.items())
        self._overrides_html.value = f"<small>LRP overrides: {overrides or 'none'}</small>"

    def _show_editor(self) -> None:
        """Show the override of the current layer; hidden where no affine rule applies."""
        editable = (accepts_affine_rule(self._model, self.layer)
                    and any(takes_layer_rules(m) for m in rule_methods()))
        self._editor.layout.display = None if editable else "none"
        choice, epsilon = self._overrides.get(
            self.layer, ("method default", self.rule_epsilon.value))
        self._quiet = True
        try:
            self.rule_dropdown.value = choice
            self.rule_epsilon.value = epsilon
        finally:
            self._quiet = False
        self.rule_epsilon.remove_class("wb-invalid")
        self.rule_epsilon.disabled = choice != "epsilon"

    def _draw_weights(self) -> None:
        """The histogram of the current layer's weights (into the figure, which must exist)."""
        module = dict(self._model.named_modules())[self.layer]
        weight = getattr(module, "weight", None)
        with self._figure.batch_update():
            bar = self._figure.data[2]
            if isinstance(weight, torch.Tensor) and weight.numel():
                values = weight.detach().float().cpu().flatten()
                counts, edges = torch.histogram(values, bins=_HISTOGRAM_BINS)
                bar.x, bar.y = ((edges[:-1] + edges[1:]) / 2).numpy(), counts.numpy()
                bar.width = float(edges[1] - edges[0])
                title = f"weights of {self.layer}: {values.numel():,} values"
            else:
                bar.x, bar.y = None, None
                title = f"{self.layer} has no weights"
            self._figure.layout.annotations[1].text = html.escape(title)

    def _show_activation(self, draw: bool = True) -> None:
        """Compute the current layer's output; set up the channel slider for (C, H, W) outputs;
        redraw it if the figure exists (and ``draw``)."""
        self._activation = None
        if self._inputs is not None:
            self._activation = layer_output(self._model, self._inputs[:1], self.layer)[0]
        activation = self._activation
        channels = activation is not None and activation.dim() == 3
        self.channel_slider.layout.display = None if channels else "none"
        if channels:
            self._quiet = True
            try:
                self.channel_slider.max = activation.shape[0] - 1
            finally:
                self._quiet = False
        if draw and self._figure is not None:
            self._draw_activation()
            sync_figure(self._figure)

    def _draw_activation(self) -> None:
        """Channel ``channel_slider`` of (C, H, W) outputs, (C, L) as one heat map, else bars."""
        heat, bar, _weights = self._figure.data
        activation = self._activation
        as_image = activation is None or activation.dim() in (2, 3)
        channels = as_image and activation is not None and activation.dim() == 3
        with self._figure.batch_update():
            if activation is None:
                heat.z, bar.y = None, None
                title = "no input"
            elif channels:
                heat.z = activation[self.channel_slider.value].float().cpu().numpy()
                title = f"channel {self.channel_slider.value} of {activation.shape[0]}"
            elif as_image:
                heat.z, title = activation.float().cpu().numpy(), "activation"
            else:
                bar.y = activation.float().cpu().flatten().numpy()
                title = f"{activation.numel()} values"
            heat.visible, bar.visible = as_image, not as_image
            self._figure.layout.yaxis.visible = as_image
            self._figure.layout.yaxis3.visible = not as_image
            shape = "" if activation is None else f" {tuple(activation.shape)}"
            self._figure.layout.annotations[0].text = html.escape(
                f"{self.layer}{shape}: {title}")
