"""The live toy widget follows its sliders and reports bad settings in the app."""
from __future__ import annotations

import math

import torch

from widgets.toy_generator import ToyGenerator


def test_moving_the_distractor_moves_the_filter_but_the_pattern_stays_on_the_signal():
    widget = ToyGenerator(n=600)
    first_filter = widget.result.filter.clone()
    widget.distractor_angle.value = 90.0  # a_d = (0, 1): the filter must be orthogonal to it
    assert not torch.allclose(first_filter, widget.result.filter)
    w = widget.result.filter / widget.result.filter.norm()
    assert abs(float(w[1])) < 1e-6  # w is orthogonal to a_d = (0, 1)
    pattern = widget.result.patterns["a"]
    assert float(pattern[0]) > 0.95 and abs(float(pattern[1])) < 0.05  # a = a_s = (1, 0)
    assert widget.result.signal_quality["a"] > 0.95
    assert math.isnan(widget.result.signal_quality["x"])
    assert "undefined" in widget.table.value and widget.errors.message == ""
    assert len(widget.figure.data) == 6  # samples and five arrows


def test_parallel_signal_and_distractor_is_reported_not_raised():
    widget = ToyGenerator(n=300)
    widget.distractor_angle.value = 180.0  # parallel to the signal at 0 degrees
    assert "must differ" in widget.errors.message
    widget.distractor_angle.value = 60.0  # and the widget keeps working
    assert widget.errors.message == "" and widget.result is not None


def test_only_the_first_plot_of_a_preheated_kernel_carries_a_snapshot(monkeypatch):
    """A preheated app kernel draws the toy's first plot as a PNG too (shown at first paint,
    no plotly.js needed); the plots of later slider moves are drawn live."""
    from widgets import toy_generator
    from workbench import snapshots

    asked = []
    monkeypatch.setattr(snapshots, "requested", lambda: True)
    monkeypatch.setattr(toy_generator, "figure_bundle",
                        lambda figure, snapshot: asked.append(snapshot) or {"text/plain": ""})
    widget = ToyGenerator(n=300)
    widget.noise.value = 0.5
    assert asked == [True, False] and widget.draws == 2
    assert len(widget.figure.data) == 6
