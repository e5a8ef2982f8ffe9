"""What the widgets share: an error area that callbacks report to, and a thread-count scope.

Voilà hides tracebacks, so every callback a widget registers is wrapped with
:meth:`ErrorArea.guard`: an exception becomes a visible message and the widget stays usable.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import html
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import ipywidgets as widgets
import plotly.graph_objects as go
import torch

log = logging.getLogger("widgets")

Function = TypeVar("Function", bound=Callable[..., Any])


def describe(error: BaseException | str) -> str:
    """``TypeName: message`` for an exception, the text itself for a string."""
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return str(error)


class ErrorArea(widgets.HTML):
    """An HTML line showing the last error (empty when there is none).

    ``css_class`` names it for browser tests; ``wb-error`` is the app's main error area.
    """

    def __init__(self, css_class: str = "wb-error") -> None:
        super().__init__(value="")
        self.add_class(css_class)
        self._message = ""

    @property
    def message(self) -> str:
        """The error shown, as plain text ("" when none)."""
        return self._message

    def show(self, error: BaseException | str) -> None:
        """Show ``error`` (an exception or a text) in red."""
        self._message = describe(error)
        self.value = ('<span style="color:#b00020; white-space:pre-line">'
                      f"{html.escape(self._message)}</span>")

    def clear(self) -> None:
        """Remove the message."""
        self._message = ""
        self.value = ""

    def guard(self, function: Function) -> Function:
        """``function`` with exceptions logged and shown here instead of raised."""

        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - a widget callback must not die
                log.exception("error in widget callback %s", function.__name__)
                self.show(error)
                return None

        return guarded  # type: ignore[return-value]


def sync_figure(figure: go.FigureWidget) -> None:
    """Make the figure's current data and layout the state a new browser view starts from.

    plotly's ``FigureWidget`` sends edits as one-off messages and refreshes the state a view
    starts from only when the figure itself is displayed (``_repr_mimebundle_``). A figure
    inside a Box, or a page that connects after the edits (Voilà), would otherwise show the
    figure as it was constructed. These are the two lines of plotly's ``_repr_mimebundle_``.
    """
    figure._widget_layout = copy.deepcopy(figure._layout_obj._props)
    figure._widget_data = copy.deepcopy(figure._data)


def check_finite(value: Any, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``value`` is an infinite or NaN float."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value}")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(threads)`` (``None``: leave as is)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
