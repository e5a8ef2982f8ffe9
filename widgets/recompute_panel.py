"""Controls that recompute figures in the background: the reader's part of a paper app.

A :class:`RecomputePanel` holds a few controls, a progress bar, a status line, an error area
and the figures that ``compute(values, progress)`` returns. A change of any control starts a
new run in a worker thread, so the page stays responsive; the run it replaces is cancelled
cooperatively: ``progress.steps`` and ``progress.check`` raise :class:`Cancelled` at the next
step once a newer change has come, and whatever a replaced run still returns is discarded.
Runs execute one after the other (a new one waits for the cancelled one to stop), so two
computations never share the CPU or torch's thread setting. Nothing is computed before the
first change, so a notebook that builds a panel costs nothing in a batch run.
"""
from __future__ import annotations

import contextlib
import html
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
import plotly.io as pio

from widgets._common import ErrorArea, log


class Cancelled(Exception):
    """Raised inside a computation that a newer change has replaced."""


class Progress:
    """What a computation reports to: the steps it has done (the panel's progress bar), and the
    point where it stops when a newer change has cancelled it."""

    def __init__(self, bar: widgets.IntProgress, cancelled: threading.Event) -> None:
        self._bar = bar
        self._cancelled = cancelled

    @property
    def cancelled(self) -> bool:
        """Whether a newer change has replaced this computation."""
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if a newer change has replaced this computation."""
        if self._cancelled.is_set():
            raise Cancelled

    def plan(self, total: int) -> None:
        """Start the bar over for ``total`` steps."""
        self.check()
        self._bar.max = max(1, total)
        self._bar.value = 0

    def advance(self, desc: str = "") -> None:
        """One step done (``desc``: what comes next, shown beside the bar); raise
        :class:`Cancelled` if a newer change has replaced this computation."""
        self.check()
        self._bar.value = min(self._bar.value + 1, self._bar.max)
        self._bar.description = desc

    def steps(self, items: Iterable, desc: str = "") -> Iterator:
        """``items`` one by one, a step each (``advance`` after each, ``check`` before)."""
        for item in items:
            self.check()
            yield item
            self.advance(desc)


#: ``compute(values, progress) -> figures``: ``values`` maps each control's name to its value
Compute = Callable[[dict[str, Any], Progress], Sequence[go.Figure]]


class RecomputePanel(widgets.VBox):
    """Controls and the figures they recompute, without blocking the page.

    Parameters
    ----------
    controls:
        ``name -> widget`` (anything with a ``value``); shown in this order.
    compute:
        ``compute(values, progress)`` returns the figures to draw for ``values`` (``name ->
        value``); it marks its steps (``progress.plan``, ``advance``, ``steps``) so that the bar
        moves and a newer change can stop it.
    note:
        The status line's text before the first change (e.g. which figures above the current
        values reproduce).

    Key widgets, with CSS classes for browser tests: ``progress`` (``wb-recompute-progress``),
    ``status`` (``wb-recompute-status``: "ready" after each drawn result), ``error``
    (``wb-error``), ``output`` (``wb-recompute-figures``: the figures drawn last, which are
    ``figures``). The figures are outputs, not ``FigureWidget``s: a ``FigureWidget`` created
    after the page has connected (as a run's first result is) stays blank in Voilà.
    """

    def __init__(self, controls: Mapping[str, widgets.ValueWidget], compute: Compute,
                 note: str = "Change a control to recompute.") -> None:
        if not controls:
            raise ValueError("controls must name at least one widget")
        self.controls = dict(controls)
        self._compute = compute
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="")
        self.progress.add_class("wb-recompute-progress")
        self.progress.layout.visibility = "hidden"
        self.status = widgets.HTML(html.escape(note))
        self.status.add_class("wb-recompute-status")
        self.error = ErrorArea("wb-error")
        self.figures: list[go.Figure] = []
        self.output = widgets.Output()
        self.output.add_class("wb-recompute-figures")
        self._lock = threading.RLock()
        self._generation = 0
        self._cancel: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._quiet = 0
        self._followers: dict[str, list[Callable[[Any], None]]] = {}
        for name, control in self.controls.items():
            control.add_class(f"wb-control-{name}")
            if hasattr(control, "continuous_update"):
                control.continuous_update = False
            control.observe(self.error.guard(self._changed), names="value")
        super().__init__([widgets.HBox(list(self.controls.values()),
                                       layout=widgets.Layout(flex_flow="row wrap")),
                          widgets.HBox([self.progress, self.status]), self.error,
                          self.output])
        self.add_class("wb-recompute-panel")

    def values(self) -> dict[str, Any]:
        """The controls' current values, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def follow(self, name: str, update: Callable[[Any], None]) -> None:
        """On a change of control ``name``, call ``update(new value)`` before the run starts,
        with the changes it makes to other controls starting no run of their own (e.g. a model
        change that replaces the layer list)."""
        if name not in self.controls:
            raise ValueError(f"name must be one of the controls {list(self.controls)}, "
                             f"got {name!r}")
        self._followers.setdefault(name, []).append(update)

    def _changed(self, change: Any) -> None:
        if self._quiet:
            return
        name = next(n for n, c in self.controls.items() if c is change["owner"])
        with self.quietly():
            for update in self._followers.get(name, []):
                update(change["new"])
        self.recompute()

    @contextlib.contextmanager
    def quietly(self) -> Iterator[None]:
        """Changes of the controls inside the block start no run."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def recompute(self) -> None:
        """Start a run for the current values, cancelling the one in progress."""
        with self._lock:
            self._generation += 1
            if self._cancel is not None:
                self._cancel.set()
            cancel = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(self._generation, cancel, self.values(), self._thread),
                name=f"recompute-{self._generation}", daemon=True)
            self._cancel, self._thread = cancel, thread
            self.status.value = "computing…"
            self.progress.value = 0
            self.progress.layout.visibility = "visible"
            thread.start()  # under the lock: ``wait`` never sees a thread not yet started

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the latest run has ended (drawn, failed or cancelled); False if
        ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return True
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            with self._lock:
                if thread.is_alive():
                    return False
                if self._thread is thread:
                    return True

    def _current(self, generation: int) -> bool:
        return generation == self._generation

    def _run(self, generation: int, cancel: threading.Event, values: dict[str, Any],
             previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()  # cancelled: it stops at its next step
        started = time.monotonic()
        try:
            progress = Progress(self.progress, cancel)
            progress.check()
            figures = list(self._compute(values, progress))
        except Cancelled:
            return
        except Exception as error:  # noqa: BLE001 - shown on the page, the panel stays usable
            with self._lock:
                if not self._current(generation):
                    return
                log.exception("error recomputing %s", values)
                self.error.show(error)
                self.status.value = "failed"
                self.progress.layout.visibility = "hidden"
            return
        with self._lock:
            if not self._current(generation):
                return
            self._draw(figures)
            self.error.clear()
            self.progress.layout.visibility = "hidden"
            shown = ", ".join(f"{name}={_format(value)}" for name, value in values.items())
            self.status.value = html.escape(
                f"ready ({time.monotonic() - started:.1f} s): {shown}")

    def _draw(self, figures: Sequence[go.Figure]) -> None:
        """Show ``figures`` in place of the last ones, as plotly's JSON mimetype outputs (drawn
        by the page's plotly extension, as the notebook's own figures are)."""
        renderer = pio.renderers["plotly_mimetype"]
        self.output.outputs = tuple(
            {"output_type": "display_data", "metadata": {},
             "data": renderer.to_mimebundle(figure.to_dict())} for figure in figures)
        self.figures = list(figures)


def _format(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_format(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)
