"""A dropdown over the registered methods with controls generated from their declared options.

Nothing here knows any method: each control comes from an :class:`workbench.Option`'s kind,
default and bounds, and every value is checked with ``Option.validate`` (a browser can send
any state), so an invalid value shows a message and the last valid options stay in force.

>>> picker = MethodPicker()                      # doctest: +SKIP
>>> picker.method = "lrp_epsilon"                # doctest: +SKIP
>>> picker.options = {"epsilon": 0.01}           # doctest: +SKIP
>>> wb.attribute(model, x, picker.method, **picker.options)  # doctest: +SKIP
"""
from __future__ import annotations

import html
import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
from torch import nn

import workbench as wb
from widgets._common import ErrorArea, check_finite
from workbench.registry import Option

#: called with the method name and its options after every valid change
ChangeCallback = Callable[[str, dict[str, Any]], None]

_STYLE = {"description_width": "initial"}
_DEFAULT_LAYER = ""  # the layer dropdown's value for "None: the method's default layer"


@dataclass
class _Control:
    """The widget editing one option, and how to read and write its Python value."""

    option: Option
    widget: widgets.Widget
    read: Callable[[], Any]
    write: Callable[[Any], None]
    editable: bool = True


def _where(option: Option, method: str) -> str:
    return f"option '{option.name}' of {method}"


def _same(value: Any, default: Any) -> bool:
    """Whether ``value`` equals the option's ``default`` (False when they do not compare)."""
    if type(value) is not type(default) and not (
            isinstance(value, (int, float)) and isinstance(default, (int, float))):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError, RuntimeError):
        return False


def _parse_shape(text: str, where: str) -> tuple[int, ...] | None:
    """``"2, 2"`` -> ``(2, 2)``; empty or ``none`` -> ``None``."""
    text = text.strip().strip("()[]")
    if not text or text.lower() == "none":
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{where} must be comma-separated integers such as '2, 2' "
                         f"(empty: None), got {text!r}") from None


def _parse_seed(text: str, where: str) -> int | None:
    """``"7"`` -> ``7``; empty or ``none`` -> ``None``."""
    text = text.strip()
    if not text or text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where} must be an integer, or empty for None, got {text!r}") from None


def _tooltip(option: Option) -> str:
    bounds = []
    if option.minimum is not None:
        bounds.append(f">= {option.minimum:g}")
    if option.maximum is not None:
        bounds.append(f"<= {option.maximum:g}")
    return option.help + (f" ({', '.join(bounds)})" if bounds else "")


def _module_names(model: nn.Module) -> list[tuple[str, str]]:
    """(label, dotted name) of every module of ``model`` but the root."""
    return [(f"{name} ({type(module).__name__})", name)
            for name, module in model.named_modules() if name]


def _control(option: Option, method: str, model: nn.Module | None) -> _Control:
    """A control for ``option`` chosen by its kind; not editable for masks and objects."""
    where = _where(option, method)
    common = dict(description=option.name, tooltip=_tooltip(option), style=_STYLE)
    kind, default = option.kind, option.default
    number_default = isinstance(default, (int, float)) and not isinstance(default, bool)
    if kind in ("float", "baseline") and (number_default or default is None):
        widget = widgets.FloatText(value=float(default or 0.0), **common)
        return _Control(option, widget, lambda: widget.value, _setter(widget, _number, where))
    if kind == "int":
        widget = widgets.IntText(value=int(default or 0), **common)
        return _Control(option, widget, lambda: widget.value, _setter(widget, int, where))
    if kind == "bool":
        widget = widgets.Checkbox(value=bool(default), indent=False, **common)
        return _Control(option, widget, lambda: widget.value, _setter(widget, bool, where))
    if kind == "seed":
        widget = widgets.Text(value="" if default is None else str(default),
                              placeholder="none (fresh randomness)", **common)
        return _Control(option, widget, lambda: _parse_seed(widget.value, where),
                        _setter(widget, lambda v: "" if v is None else str(v), where))
    if kind == "shape":
        widget = widgets.Text(value=_shape_text(default), placeholder="e.g. 2, 2 (empty: none)",
                              **common)
        return _Control(option, widget, lambda: _parse_shape(widget.value, where),
                        _setter(widget, _shape_text, where))
    if kind == "choice":
        widget = widgets.Dropdown(options=list(option.choices), value=default, **common)
        return _Control(option, widget, lambda: widget.value, _setter(widget, str, where))
    if kind == "layer" and model is not None and (default is None or isinstance(default, str)):
        widget = widgets.Dropdown(
            options=[("default (None)", _DEFAULT_LAYER), *_module_names(model)],
            value=default or _DEFAULT_LAYER, **common)
        return _Control(option, widget, lambda: widget.value or None,
                        _setter(widget, lambda v: v or _DEFAULT_LAYER, where))
    if kind == "layer" and (default is None or isinstance(default, str)):
        widget = widgets.Text(value=default or "", placeholder="dotted module name (empty: none)",
                              **common)
        return _Control(option, widget, lambda: widget.value.strip() or None,
                        _setter(widget, lambda v: v or "", where))
    return _fixed(option)


def _number(value: Any) -> float:
    """``value`` as a float if it is a plain number (tensors cannot be shown in the UI)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def _shape_text(value: Any) -> str:
    return "" if value is None else ", ".join(str(v) for v in value)


def _setter(widget: widgets.Widget, convert: Callable[[Any], Any],
            where: str) -> Callable[[Any], None]:
    """Writes a Python value into ``widget``; ``ValueError`` if the widget cannot show it."""

    def write(value: Any) -> None:
        try:
            shown = convert(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: the picker cannot show {value!r}") from None
        if isinstance(widget, widgets.Dropdown) and shown not in [
                v if not isinstance(v, tuple) else v[1] for v in widget.options]:
            raise ValueError(f"{where}: {value!r} is not one of the choices shown")
        widget.value = shown

    return write


def _fixed(option: Option) -> _Control:
    """A label for an option the UI cannot edit (mask, object, tensor defaults)."""
    label = widgets.Label(value=f"{option.name}: default", tooltip=option.help)
    label.add_class("wb-option-fixed")
    state = {"value": option.default}

    def write(value: Any) -> None:
        state["value"] = value
        label.value = f"{option.name}: {'default' if value is option.default else 'set in code'}"

    return _Control(option, label, lambda: state["value"], write, editable=False)


class MethodPicker(widgets.VBox):
    """Pick an attribution method and set its options with generated, validated controls.

    Parameters
    ----------
    methods:
        Method names offered (default: every registered method, ``wb.methods()``).
    method:
        The method shown first (default: the first of ``methods``).
    model:
        Optional; when given, options of kind ``layer`` are a dropdown of its modules.
    options:
        Options of ``method`` shown first.

    ``options`` holds only the values that differ from the method's defaults (so it is short,
    readable as a label, and can be passed as ``wb.attribute(..., **picker.options)``). Controls
    per kind: float and baseline -> FloatText (numbers only), int -> IntText, bool -> Checkbox,
    seed -> Text (empty: None), shape -> Text of comma-separated integers (empty: None), choice
    -> Dropdown, layer -> Dropdown of the model's modules (Text without a model), mask and
    object -> a label (not editable; settable from code). Bounds are checked in Python, with the
    option's own message, not clamped silently by the browser.
    """

    def __init__(self, methods: Sequence[str] | None = None, method: str | None = None,
                 model: nn.Module | None = None, options: Mapping[str, Any] | None = None,
                 description: str = "method") -> None:
        names = list(wb.methods() if methods is None else methods)
        if not names:
            raise ValueError("methods must name at least one method, e.g. ['gradient']")
        for name in names:
            wb.method_info(name)  # unknown names raise here, listing the known ones
        method = names[0] if method is None else method
        if method not in names:
            raise ValueError(f"method '{method}' is not among the methods offered: {names}")
        self.dropdown = widgets.Dropdown(options=names, value=method, description=description,
                                         style=_STYLE)
        self.dropdown.add_class("wb-method-dropdown")
        self._help = widgets.HTML()
        self._help.add_class("wb-method-help")
        self._controls_box = widgets.VBox()
        self._controls_box.add_class("wb-method-options")
        self.error = ErrorArea("wb-option-error")
        self._controls: dict[str, _Control] = {}
        self._options: dict[str, Any] = {}
        self._callbacks: list[ChangeCallback] = []
        self._model = model
        self._quiet = False
        super().__init__(children=[self.dropdown, self._help, self._controls_box, self.error])
        self.add_class("wb-method-picker")
        self.dropdown.observe(self.error.guard(self._on_method), names="value")
        self._show(method, options or {})

    # --- public API --------------------------------------------------------------------------

    @property
    def method(self) -> str:
        """The chosen method's name; setting it shows its options at their defaults."""
        return self.dropdown.value

    @method.setter
    def method(self, name: str) -> None:
        if name != self.method:
            self.set(name)

    @property
    def options(self) -> dict[str, Any]:
        """The last valid options that differ from the method's defaults."""
        return dict(self._options)

    @options.setter
    def options(self, values: Mapping[str, Any]) -> None:
        self.set(self.method, values)

    @property
    def methods(self) -> list[str]:
        """The method names offered."""
        return list(self.dropdown.options)

    @property
    def controls(self) -> dict[str, widgets.Widget]:
        """The widget of each option of the current method, by option name."""
        return {name: control.widget for name, control in self._controls.items()}

    @property
    def error_message(self) -> str:
        """The message about invalid values shown now ("" when all are valid)."""
        return self.error.message

    @property
    def model(self) -> nn.Module | None:
        """The model whose modules ``layer`` options offer; setting it rebuilds the controls."""
        return self._model

    @model.setter
    def model(self, model: nn.Module | None) -> None:
        self._model = model
        names = {name for name, _ in model.named_modules()} if model is not None else set()
        kept = {
            name: value for name, value in self._options.items()
            if self._option(name).kind != "layer" or model is None
            or not isinstance(value, str) or value in names
        }
        self.set(self.method, kept, notify=kept != self._options)

    def set(self, method: str, options: Mapping[str, Any] | None = None,
            notify: bool = True) -> None:
        """Show ``method`` with ``options`` (others at defaults), then tell the callbacks.

        Raises ``ValueError``/``TypeError`` naming the option when a value is invalid; nothing
        changes then.
        """
        if method not in self.methods:
            raise ValueError(f"method '{method}' is not among the methods offered: "
                             f"{self.methods}")
        options = validate_options(method, options or {})
        controls = self._build(method, options)  # raises before anything changes
        self._quiet = True
        try:
            self.dropdown.value = method
        finally:
            self._quiet = False
        self._commit(method, controls, options)
        if notify:
            self._notify()

    def on_change(self, callback: ChangeCallback, remove: bool = False) -> None:
        """Call ``callback(method, options)`` after every valid change (``remove``: stop)."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    # --- internals ---------------------------------------------------------------------------

    def _option(self, name: str) -> Option:
        return self._controls[name].option

    def _show(self, method: str, options: Mapping[str, Any]) -> None:
        self._commit(method, self._build(method, options), options)

    def _build(self, method: str, options: Mapping[str, Any]) -> dict[str, _Control]:
        """The controls of ``method`` showing ``options``; raises if one cannot be shown."""
        spec = wb.method_info(method)
        controls = {option.name: _control(option, method, self._model) for option in spec.options}
        for name, value in spec.bind(options).items():
            controls[name].write(value)
        return controls

    def _commit(self, method: str, controls: dict[str, _Control],
                options: Mapping[str, Any]) -> None:
        """Show ``controls`` and take ``options`` (valid) as the current options."""
        spec = wb.method_info(method)
        for control in controls.values():
            if control.editable:
                control.widget.add_class(f"wb-option-{control.option.name}")
                control.widget.observe(self.error.guard(self._on_control), names="value")
        old_rows = self._controls_box.children
        self._controls = controls
        self._options = validate_options(method, options)
        reference = f" ({html.escape(spec.reference)})" if spec.reference else ""
        self._help.value = f"<small>{html.escape(spec.description)}{reference}</small>"
        self._controls_box.children = [
            widgets.HBox([c.widget, widgets.HTML(f"<small>{html.escape(c.option.help)}</small>")])
            for c in controls.values()
        ]
        for row in old_rows:  # free the comms of the controls no longer shown
            for child in row.children:
                child.close()
            row.close()
        self.error.clear()

    def _on_method(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._show(change["new"], {})
        self._notify()

    def _on_control(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        try:
            options = self._read()
        except (TypeError, ValueError) as error:
            if not any("wb-invalid" in c.widget._dom_classes for c in self._controls.values()):
                change["owner"].add_class("wb-invalid")  # a combination: mark the last edit
            self.error.show(error)  # the last valid options stay in force
            return
        self.error.clear()
        if options != self._options:
            self._options = options
            self._notify()

    def _read(self) -> dict[str, Any]:
        """Validated non-default values of the controls; raises with every problem found."""
        method, values, problems = self.method, {}, []
        for name, control in self._controls.items():
            try:
                value = control.read()
                if control.editable:
                    value = control.option.validate(value, method)
                    check_finite(value, _where(control.option, method))
            except (TypeError, ValueError) as error:
                control.widget.add_class("wb-invalid")
                problems.append(str(error))
                continue
            control.widget.remove_class("wb-invalid")
            if not _same(value, control.option.default):
                values[name] = value
        if problems:
            raise ValueError("; ".join(problems))
        return validate_options(method, values)

    def _notify(self) -> None:
        for callback in list(self._callbacks):
            self.error.guard(callback)(self.method, self.options)


def validate_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The validated ``options`` of ``method`` that differ from its defaults; raises otherwise.

    ``Method.bind`` checks each option; building the method's rules (when it has any) checks
    combinations such as ``alpha - beta = 1``.
    """
    spec = wb.method_info(method)
    values = spec.bind(options)
    for name, value in values.items():
        check_finite(value, f"option '{name}' of {method}")
    if spec.rules is not None:
        accepted = inspect.signature(spec.rules).parameters
        spec.rules(**{k: v for k, v in values.items() if k in accepted})
    defaults = {option.name: option.default for option in spec.options}
    return {name: value for name, value in values.items()
            if name in options and not _same(value, defaults[name])}
