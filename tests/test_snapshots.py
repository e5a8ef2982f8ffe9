"""PNG snapshots of figures for preheated app pages (``workbench.snapshots``): when they are
asked for, that they are PNGs of the size the page gives the figure and show its content, that a
figure goes out without one (and nothing fails) where they cannot be drawn, and that the
browser drawing them stops when idle."""
from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from workbench import reporting, snapshots

pytestmark = pytest.mark.slow

needs_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("google-chrome")),
    reason="Kaleido needs a Chrome or Chromium (make test installs Chromium)")


def _figure() -> go.Figure:
    # a red square on a white page: the snapshot must show red where the bar is
    figure = go.Figure(go.Bar(x=[0], y=[1], marker_color="rgb(255,0,0)", width=1))
    figure.update_layout(width=320, height=200, margin=dict(l=0, r=0, t=0, b=0),
                         plot_bgcolor="white", xaxis_visible=False, yaxis_visible=False)
    return figure


@pytest.mark.parametrize(("variables", "expected"), [
    ({}, False), ({"VOILA_PREHEAT": "False"}, False), ({"VOILA_PREHEAT": "True"}, True),
    ({"WORKBENCH_SNAPSHOTS": "1"}, True), ({"WORKBENCH_SNAPSHOTS": "0"}, False)])
def test_snapshots_are_asked_for_by_preheated_kernels_or_the_variable(monkeypatch, variables,
                                                                       expected):
    monkeypatch.delenv("VOILA_PREHEAT", raising=False)
    monkeypatch.delenv("WORKBENCH_SNAPSHOTS", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert snapshots.requested() is expected


def test_a_figure_without_a_size_gets_the_renderers_default():
    assert snapshots.size_of({"layout": {}}) == (snapshots.DEFAULT_WIDTH,
                                                 snapshots.DEFAULT_HEIGHT)
    assert snapshots.size_of({"layout": {"width": 500, "height": 123}}) == (500, 123)


@needs_chromium
def test_the_bundle_carries_a_png_of_the_figure_at_its_size():
    try:
        bundle = reporting.figure_bundle(_figure(), snapshot=True)
    finally:
        snapshots.stop()
    assert "application/vnd.plotly.v1+json" in bundle
    image = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).convert("RGB")
    assert image.size == (320, 200)
    pixels = np.asarray(image).astype(int)
    red = int(((pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)).sum())
    assert red > 0.5 * 320 * 200  # the bar fills most of the plot area
    assert "image/png" not in reporting.figure_bundle(_figure(), snapshot=False)


def test_without_a_browser_the_figure_goes_out_without_a_snapshot(monkeypatch, caplog):
    kaleido = pytest.importorskip("kaleido")
    calls = []

    def no_browser(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("no Chrome found")

    monkeypatch.setattr(kaleido, "start_sync_server", no_browser)
    drawer = snapshots._Drawer()
    assert drawer.png(_figure().to_dict()) is None
    assert drawer.png(_figure().to_dict()) is None
    assert len(calls) == 1  # tried once, then figures go out without snapshots
    assert "no Chrome found" in caplog.text


@needs_chromium
def test_the_browser_stops_when_idle(monkeypatch):
    kaleido = pytest.importorskip("kaleido")
    stops = []
    real_stop = kaleido.stop_sync_server
    monkeypatch.setattr(kaleido, "stop_sync_server",
                        lambda **kwargs: (stops.append(1), real_stop(**kwargs)))
    monkeypatch.setattr(snapshots, "IDLE_SECONDS", 0.5)
    drawer = snapshots._Drawer()
    try:
        assert drawer.png(_figure().to_dict()) is not None
        timer = drawer._timer
        assert timer is not None
        timer.join(10)
        assert stops == [1] and not drawer._running
    finally:
        drawer.stop()
