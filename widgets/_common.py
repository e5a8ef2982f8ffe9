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
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import ipywidgets as widgets

if TYPE_CHECKING:  # plotly is imported by the widgets that draw figures
    import plotly.graph_objects as go

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
    ``on_error(error)``, if given, is called after a guarded callback's error is shown (e.g. to
    update a status line).
    """

    def __init__(self, css_class: str = "wb-error",
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        super().__init__(value="")
        self.add_class(css_class)
        self._message = ""
        self._on_error = on_error

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
                if self._on_error is not None:
                    self._on_error(error)
                return None

        return guarded  # type: ignore[return-value]


class Callbacks:
    """The callbacks a widget calls after each change, each guarded by ``error``: one that
    raises shows its error there and the others still run."""

    def __init__(self, error: ErrorArea) -> None:
        self._error = error
        self._callbacks: list[Callable[..., Any]] = []

    def register(self, callback: Callable[..., Any], remove: bool = False) -> None:
        """Add ``callback`` (``remove``: take it out again)."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def __call__(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            self._error.guard(callback)(*args)


def sync_figure(figure: go.FigureWidget) -> None:
    """Make the figure's current data and layout the state a new browser view starts from.

    plotly's ``FigureWidget`` sends edits as one-off messages and refreshes the state a view
    starts from only when the figure itself is displayed (``_repr_mimebundle_``). A figure
    inside a Box, or a page that connects after the edits (Voilà), would otherwise show the
    figure as it was constructed. These are the two lines of plotly's ``_repr_mimebundle_``.
    """
    figure._widget_layout = copy.deepcopy(figure._layout_obj._props)
    figure._widget_data = copy.deepcopy(figure._data)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(threads)`` (``None``: leave as is)."""
    if threads is None:
        yield
        return
    import torch  # here, not above: pages without a model (the study's) never load PyTorch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
