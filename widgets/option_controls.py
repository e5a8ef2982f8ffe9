"""The control that edits an option, by kind: one factory per entry of
``workbench.registry.OPTION_KINDS`` (a test checks that every kind has one).

Controls per kind: float and baseline -> FloatText (numbers only), int -> IntText, bool ->
Checkbox, seed and shape -> Text in the kind's text form (empty: None), choice -> Dropdown,
layer -> Dropdown of the model's modules (Text without a model), mask and object -> a label (not
editable; settable from code). A default the control cannot show (a tensor baseline, a module as
layer) gets the label too.
"""
from __future__ import annotations

import html
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
from torch import nn

from workbench.checks import check_finite
from workbench.registry import Option

_STYLE = {"description_width": "initial"}
_DEFAULT_LAYER = ""  # the layer dropdown's value for "None: the method's default layer"


@dataclass
class Control:
    """The widget editing one option of ``method``, and how to read and write its value."""

    option: Option
    method: str
    widget: widgets.Widget
    read: Callable[[], Any]
    write: Callable[[Any], None]
    editable: bool = True

    @property
    def where(self) -> str:
        return f"option '{self.option.name}' of {self.method}"

    def value(self) -> Any:
        """The control's value, validated; raises naming the option."""
        value = self.read()
        if not self.editable:
            return value
        value = self.option.validate(value, self.method)
        check_finite(value, self.where)
        return value

    def row(self) -> widgets.HBox:
        """The control with the option's help beside it."""
        return widgets.HBox([self.widget,
                             widgets.HTML(f"<small>{html.escape(self.option.help)}</small>")])


#: makes the control of an option: ``(option, method, model or None) -> Control``
ControlFactory = Callable[[Option, str, "nn.Module | None"], Control]


def _tooltip(option: Option) -> str:
    bounds = []
    if option.minimum is not None:
        bounds.append(f">= {option.minimum:g}")
    if option.maximum is not None:
        bounds.append(f"<= {option.maximum:g}")
    return option.help + (f" ({', '.join(bounds)})" if bounds else "")


def _common(option: Option) -> dict[str, Any]:
    return dict(description=option.name, tooltip=_tooltip(option), style=_STYLE)


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


def _control(option: Option, method: str, widget: widgets.Widget,
             read: Callable[[], Any], show: Callable[[Any], Any]) -> Control:
    """A control whose ``read`` gives the value and ``show(value)`` what the widget holds."""
    return Control(option, method, widget, read,
                   _setter(widget, show, f"option '{option.name}' of {method}"))


def _plain_number(value: Any) -> float:
    """``value`` as a float if it is a plain number (tensors cannot be shown in the UI)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def fixed(option: Option, method: str, model: nn.Module | None = None) -> Control:
    """A label for an option the UI cannot edit (mask, object, tensor defaults)."""
    label = widgets.Label(value=f"{option.name}: default", tooltip=option.help)
    label.add_class("wb-option-fixed")
    state = {"value": option.default}

    def write(value: Any) -> None:
        state["value"] = value
        label.value = f"{option.name}: {'default' if value is option.default else 'set in code'}"

    return Control(option, method, label, lambda: state["value"], write, editable=False)


def _number(option: Option, method: str, model: nn.Module | None) -> Control:
    try:
        shown = 0.0 if option.default is None else _plain_number(option.default)
    except TypeError:
        return fixed(option, method)  # e.g. a tensor baseline
    widget = widgets.FloatText(value=shown, **_common(option))
    return _control(option, method, widget, lambda: widget.value, _plain_number)


def _integer(option: Option, method: str, model: nn.Module | None) -> Control:
    widget = widgets.IntText(value=int(option.default or 0), **_common(option))
    return _control(option, method, widget, lambda: widget.value, int)


def _checkbox(option: Option, method: str, model: nn.Module | None) -> Control:
    widget = widgets.Checkbox(value=bool(option.default), indent=False, **_common(option))
    return _control(option, method, widget, lambda: widget.value, bool)


def _text(placeholder: str) -> ControlFactory:
    """A Text control in the kind's text form (``Option.format`` and ``Option.parse``)."""

    def make(option: Option, method: str, model: nn.Module | None) -> Control:
        try:
            text = option.format(option.default)
        except ValueError:
            return fixed(option, method)
        widget = widgets.Text(value=text, placeholder=placeholder, **_common(option))
        return _control(option, method, widget, lambda: option.parse(widget.value, method),
                        option.format)

    return make


def _choice(option: Option, method: str, model: nn.Module | None) -> Control:
    widget = widgets.Dropdown(options=list(option.choices), value=option.default,
                              **_common(option))
    return _control(option, method, widget, lambda: widget.value, str)


def _module_names(model: nn.Module) -> list[tuple[str, str]]:
    """(label, dotted name) of every module of ``model`` but the root."""
    return [(f"{name} ({type(module).__name__})", name)
            for name, module in model.named_modules() if name]


def _layer(option: Option, method: str, model: nn.Module | None) -> Control:
    """A dropdown of ``model``'s modules; a text field without a model."""
    if model is None:
        return _text("dotted module name (empty: none)")(option, method, model)
    if option.default is not None and not isinstance(option.default, str):
        return fixed(option, method)
    widget = widgets.Dropdown(options=[("default (None)", _DEFAULT_LAYER), *_module_names(model)],
                              value=option.default or _DEFAULT_LAYER, **_common(option))
    return _control(option, method, widget, lambda: widget.value or None,
                    lambda value: value or _DEFAULT_LAYER)


#: the control of each option kind, by the kind's name in ``OPTION_KINDS``
CONTROLS: dict[str, ControlFactory] = {
    "float": _number,
    "int": _integer,
    "bool": _checkbox,
    "seed": _text("none (fresh randomness)"),
    "baseline": _number,
    "shape": _text("e.g. 2, 2 (empty: none)"),
    "layer": _layer,
    "choice": _choice,
    "named": _choice,
    "mask": fixed,
    "object": fixed,
}


def control_for(option: Option, method: str, model: nn.Module | None = None) -> Control:
    """The control of ``option`` of ``method``; ``model`` lists the modules for layers."""
    return CONTROLS[option.kind](option, method, model)
