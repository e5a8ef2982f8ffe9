"""The first-paint reading of the load benchmark (``benchmarks.load.first_paint_s``) on event
sequences whose answer is known."""
from __future__ import annotations

from benchmarks.load import first_paint_s


def _event(t_ms: float, plots: int, widgets: int, ready: str = "complete") -> dict:
    return {"t": t_ms, "plots": plots, "images": 0, "widgets": widgets, "pending": 0,
            "ready": ready, "failed": False}


def test_first_paint_is_the_first_event_showing_what_the_last_one_shows():
    events = [_event(500, 0, 0, "interactive"), _event(1200, 2, 0), _event(2500, 4, 3),
              _event(4000, 4, 3)]
    assert first_paint_s(events)[0] == 2.5


def test_a_page_resting_before_its_widgets_arrive_is_not_painted_against_the_reference():
    """Figures drawn, widget views still loading: quiet, but short of what the app shows."""
    resting = [_event(1000, 4, 0), _event(3000, 4, 0)]
    assert first_paint_s(resting)[0] == 1.0  # without a reference it looks painted
    assert first_paint_s(resting, {"plots": 4, "widgets": 3})[0] is None
    arrived = [*resting, _event(9000, 4, 3)]
    assert first_paint_s(arrived, {"plots": 4, "widgets": 3})[0] == 9.0


def test_a_page_not_loaded_or_showing_nothing_is_not_painted():
    assert first_paint_s([])[0] is None
    assert first_paint_s([_event(800, 3, 1, "interactive")])[0] is None
    assert first_paint_s([_event(800, 0, 0)])[0] is None
