"""A dropdown over the registered methods with controls generated from their declared options.

Nothing here knows any method: each control comes from an :class:`workbench.Option`'s kind
(the factories of :mod:`widgets.option_controls`), default and bounds, and every value is checked
with ``Option.validate`` (a browser can send any state), so an invalid value shows a message and
the last valid options stay in force.

>>> picker = MethodPicker()                      # doctest: +SKIP
>>> picker.method = "lrp_epsilon"                # doctest: +SKIP
>>> picker.options = {"epsilon": 0.01}           # doctest: +SKIP
>>> wb.attribute(model, x, picker.method, **picker.options)  # doctest: +SKIP
"""
from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
from torch import nn

import workbench as wb
from widgets._common import Callbacks, ErrorArea
from widgets.option_controls import Control, control_for
from workbench.registry import Option, check_combination, non_default, validate_options

__all__ = ["MethodPicker", "validate_options"]

#: called with the method name and its options after every valid change
ChangeCallback = Callable[[str, dict[str, Any]], None]

_STYLE = {"description_width": "initial"}


class MethodPicker(widgets.VBox):
    """Pick an attribution method and set its options with generated, validated controls.

    Parameters
    ----------
    methods:
        Method names offered (default: every registered method, ``wb.methods()``); with a
        ``model``, only those that apply to it (``Method.applies_to``: attention rollout only
        for models with attention).
    method:
        The method shown first (default: the first of ``methods``).
    model:
        Optional; when given, options of kind ``layer`` are a dropdown of its modules.
    options:
        Options of ``method`` shown first.

    ``options`` holds only the values that differ from the method's defaults (so it is short,
    readable as a label, and can be passed as ``wb.attribute(..., **picker.options)``). Controls
    per kind (``widgets.option_controls.CONTROLS``): float and baseline -> FloatText (numbers
    only), int -> IntText, bool -> Checkbox, seed -> Text (empty: None), shape -> Text of
    comma-separated integers (empty: None), choice -> Dropdown, layer -> Dropdown of the model's
    modules (Text without a model), mask and object -> a label (not editable; settable from
    code). Bounds are checked in Python, with the option's own message, not clamped silently by
    the browser.
    """

    def __init__(self, methods: Sequence[str] | None = None, method: str | None = None,
                 model: nn.Module | None = None, options: Mapping[str, Any] | None = None,
                 description: str = "method") -> None:
        names = list(wb.methods() if methods is None else methods)
        if not names:
            raise ValueError("methods must name at least one method, e.g. ['gradient']")
        for name in names:
            wb.method_info(name)  # unknown names raise here, listing the known ones
        self._candidates = names
        names = self._applicable(model)
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
        self._controls: dict[str, Control] = {}
        self._options: dict[str, Any] = {}
        self._callbacks = Callbacks(self.error)
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
        names = {name for name, _ in model.named_modules()} if model is not None else set()
        self._model = model
        offered = self._applicable(model)
        if offered != self.methods:
            self._quiet = True
            try:
                method = self.method if self.method in offered else offered[0]
                self.dropdown.options = offered
                self.dropdown.value = method
            finally:
                self._quiet = False
            if method != self._shown_method:
                self.set(method)
                return
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
        self._show(method, options or {})
        if notify:
            self._notify()

    def on_change(self, callback: ChangeCallback, remove: bool = False) -> None:
        """Call ``callback(method, options)`` after every valid change (``remove``: stop)."""
        self._callbacks.register(callback, remove)

    # --- internals ---------------------------------------------------------------------------

    def _applicable(self, model: nn.Module | None) -> list[str]:
        """The candidate methods that apply to ``model`` (all of them without a model)."""
        if model is None:
            return list(self._candidates)
        names = [name for name in self._candidates if wb.method_info(name).applies_to(model)]
        if not names:
            raise ValueError(f"none of the methods offered applies to {type(model).__name__}: "
                             f"{self._candidates}")
        return names

    def _option(self, name: str) -> Option:
        return self._controls[name].option

    def _show(self, method: str, options: Mapping[str, Any]) -> None:
        """Validate ``options`` (once), build the controls showing them, then show ``method``
        with them; raises before anything changes."""
        options = validate_options(method, options)
        controls = self._build(method, options)
        self._quiet = True
        try:
            self.dropdown.value = method
        finally:
            self._quiet = False
        self._commit(method, controls, options)

    def _build(self, method: str, options: Mapping[str, Any]) -> dict[str, Control]:
        """The controls of ``method`` showing ``options`` (validated, non-default) and the
        defaults; raises if one cannot be shown."""
        controls = {option.name: control_for(option, method, self._model)
                    for option in wb.method_info(method).options}
        for name, control in controls.items():
            control.write(options.get(name, control.option.default))
        return controls

    def _commit(self, method: str, controls: dict[str, Control],
                options: Mapping[str, Any]) -> None:
        """Show ``controls`` and take ``options`` (valid) as the current options."""
        spec = wb.method_info(method)
        for control in controls.values():
            if control.editable:
                control.widget.add_class(f"wb-option-{control.option.name}")
                control.widget.observe(self.error.guard(self._on_control), names="value")
        old_rows = self._controls_box.children
        self._controls = controls
        self._shown_method = method
        self._options = dict(options)
        reference = f" ({html.escape(spec.reference)})" if spec.reference else ""
        self._help.value = f"<small>{html.escape(spec.description)}{reference}</small>"
        self._controls_box.children = [control.row() for control in controls.values()]
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
        """The controls' values that differ from the defaults, each validated once, then
        checked together; raises with every problem found."""
        values, problems = {}, []
        for name, control in self._controls.items():
            try:
                values[name] = control.value()
            except (TypeError, ValueError) as error:
                control.widget.add_class("wb-invalid")
                problems.append(str(error))
                continue
            control.widget.remove_class("wb-invalid")
        if problems:
            raise ValueError("; ".join(problems))
        spec = wb.method_info(self.method)
        check_combination(spec, values)
        return non_default(spec, values)

    def _notify(self) -> None:
        self._callbacks(self.method, self.options)
