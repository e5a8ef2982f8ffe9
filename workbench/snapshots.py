"""PNG snapshots of figures, so that an app's page shows every figure the moment it opens.

JupyterLab's plotly renderer (the ``jupyterlab-plotly`` extension, which Voilà uses too) shows a
figure output that carries an ``image/png`` beside plotly's JSON as that image, and builds the
interactive figure only when the pointer enters it. Without the image it builds every figure at
once and then renders each a second time for a PNG of its own, all in one uninterrupted run of
the page's main thread: 6-8 s for the eleven figures of the sanity-checks app on this 2-core
machine, against about 1 s for the images.

The snapshots are drawn by Kaleido (plotly's static-image engine, driving a headless
Chrome/Chromium) in the kernel, where they cost about 0.4 s a figure plus the browser's start.
That is worth it only where nobody waits for the kernel: in Voilà's preheated kernels, which run
the notebook before any page asks for it (``VOILA_PREHEAT=True`` in their environment), or
wherever ``WORKBENCH_SNAPSHOTS=1`` asks for them. Elsewhere (batch runs, tests, a plain kernel)
figures go out as before. Without Kaleido or a Chrome the figures go out without a snapshot and
the reason is logged once.

The browser is started on the first snapshot and stopped after :data:`IDLE_SECONDS` without one
(and when the interpreter exits), so a kernel does not hold a browser while a reader uses it.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

log = logging.getLogger(__name__)

#: set to "1" to attach snapshots in any kernel (e.g. a notebook saved with its images)
SNAPSHOT_VARIABLE = "WORKBENCH_SNAPSHOTS"
#: seconds without a snapshot after which the browser drawing them is stopped
IDLE_SECONDS = 20.0
#: size of a snapshot of a figure whose layout leaves it open: the plotly renderer's default
#: height, and about the width of a Voilà page's output area
DEFAULT_WIDTH, DEFAULT_HEIGHT = 900, 360


def requested() -> bool:
    """Whether this process should attach snapshots: a preheated Voilà kernel, or
    ``WORKBENCH_SNAPSHOTS=1``."""
    return (os.environ.get(SNAPSHOT_VARIABLE, "") == "1"
            or os.environ.get("VOILA_PREHEAT", "") == "True")


def size_of(figure: dict[str, Any]) -> tuple[int, int]:
    """``(width, height)`` in pixels that the page gives the plotly figure ``figure`` (a dict):
    the layout's own, else :data:`DEFAULT_WIDTH` and :data:`DEFAULT_HEIGHT`."""
    layout = figure.get("layout", {})
    return int(layout.get("width") or DEFAULT_WIDTH), int(layout.get("height") or DEFAULT_HEIGHT)


class _Drawer:
    """Kaleido's shared browser, started on demand and stopped when idle; one snapshot at a
    time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._running = False
        self._unavailable: str | None = None

    def png(self, figure: dict[str, Any]) -> bytes | None:
        """The PNG of ``figure`` (a plotly figure dict), or None where it cannot be drawn."""
        with self._lock:
            if self._unavailable is not None:
                return None
            if self._timer is not None:
                self._timer.cancel()
            try:
                import kaleido

                if not self._running:
                    kaleido.start_sync_server(silence_warnings=True)
                    self._running = True
                width, height = size_of(figure)
                return kaleido.calc_fig_sync(
                    figure, opts={"format": "png", "width": width, "height": height, "scale": 1})
            except Exception as error:  # noqa: BLE001 - no snapshot is no error: the figure stays
                self._unavailable = f"{type(error).__name__}: {error}"
                log.warning("figures go out without PNG snapshots: %s", self._unavailable)
                self._stop_locked()
                return None
            finally:
                if self._running:
                    self._timer = threading.Timer(IDLE_SECONDS, self.stop)
                    self._timer.daemon = True
                    self._timer.start()

    def stop(self) -> None:
        """Stop the browser (if started)."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running:
            import kaleido

            self._running = False
            try:
                kaleido.stop_sync_server(silence_warnings=True)
            except Exception:  # noqa: BLE001 - stopping at exit must not raise
                log.exception("stopping Kaleido's browser")


_drawer = _Drawer()
atexit.register(_drawer.stop)


def png_snapshot(figure: go.Figure | dict[str, Any]) -> bytes | None:
    """A PNG of ``figure`` at the size the page gives it (:func:`size_of`), or None where
    Kaleido or its browser is unavailable."""
    as_dict = figure if isinstance(figure, dict) else figure.to_dict()
    return _drawer.png(as_dict)


def stop() -> None:
    """Stop the browser that draws the snapshots now instead of after :data:`IDLE_SECONDS`."""
    _drawer.stop()
