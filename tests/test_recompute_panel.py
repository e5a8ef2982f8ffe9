"""The background recomputation of the paper apps' controls: a newer change cancels the run in
progress, only the latest change's figures are drawn, errors are shown and not raised, and each
paper's controls recompute its figures from the experiment functions."""
from __future__ import annotations

import threading

import ipywidgets as widgets
import plotly.graph_objects as go
import pytest

from widgets.recompute_panel import Progress, RecomputePanel

pytestmark = pytest.mark.usefixtures("one_thread")


def _figure(value) -> go.Figure:
    return go.Figure(go.Scatter(x=[0, 1], y=[0, value], name=f"value {value}"))


class SlowCompute:
    """Runs ``steps`` steps per call; the first call blocks at its first step until released.
    Records which calls started, finished and saw their cancellation."""

    def __init__(self, steps: int = 20, checks: bool = True) -> None:
        self.steps, self.checks = steps, checks
        self.release = threading.Event()
        self.first_started = threading.Event()
        self.started: list = []
        self.finished: list = []

    def __call__(self, values: dict, progress: Progress) -> list[go.Figure]:
        self.started.append(values["value"])
        progress.plan(self.steps)
        for step in range(self.steps):
            if len(self.started) == 1 and step == 0:
                self.first_started.set()
                assert self.release.wait(10)
            if self.checks:
                progress.advance()
        self.finished.append(values["value"])
        return [_figure(values["value"])]


def _panel(compute) -> tuple[RecomputePanel, widgets.IntSlider]:
    slider = widgets.IntSlider(value=0, min=0, max=10)
    return RecomputePanel({"value": slider}, compute), slider


def test_nothing_is_computed_before_a_change():
    compute = SlowCompute()
    panel, _ = _panel(compute)
    assert panel.wait(1) and compute.started == [] and panel.figures == []
    assert panel.status.value == "Change a control to recompute."


def test_a_newer_change_cancels_the_running_one_and_only_it_is_drawn():
    compute = SlowCompute()
    panel, slider = _panel(compute)
    slider.value = 1
    assert compute.first_started.wait(10)
    slider.value = 2
    slider.value = 3
    compute.release.set()
    assert panel.wait(30)
    # the first run stopped at its next step; the second was cancelled before it began
    assert compute.started == [1, 3] and compute.finished == [3]
    assert [trace.name for trace in panel.figures[0].data] == ["value 3"]
    assert len(panel.output.outputs) == 1
    drawn = panel.output.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert [trace["name"] for trace in drawn["data"]] == ["value 3"]
    assert panel.status.value.startswith("ready") and "value=3" in panel.status.value
    assert panel.progress.max == compute.steps and panel.progress.value == compute.steps
    assert panel.progress.layout.visibility == "hidden"
    assert panel.error.message == ""


def test_a_stale_result_is_discarded_even_when_the_computation_never_checks():
    compute = SlowCompute(checks=False)
    panel, slider = _panel(compute)
    slider.value = 4
    assert compute.first_started.wait(10)
    slider.value = 5
    compute.release.set()
    assert panel.wait(30)
    # runs are one after the other: the first finished, then the second; only the second drawn
    assert compute.finished == [4, 5]
    assert [trace.name for trace in panel.figures[0].data] == ["value 5"]


def test_an_error_is_shown_not_raised_and_the_next_change_clears_it():
    def compute(values, progress):
        if values["value"] == 7:
            raise ValueError("seven is not allowed")
        return [_figure(values["value"]), _figure(-values["value"])]

    panel, slider = _panel(compute)
    slider.value = 7
    assert panel.wait(10)
    assert panel.error.message == "ValueError: seven is not allowed"
    assert panel.status.value == "failed" and panel.figures == []
    slider.value = 2
    assert panel.wait(10)
    assert panel.error.message == "" and len(panel.output.outputs) == 2
    assert [trace.name for trace in panel.figures[1].data] == ["value -2"]


def test_an_error_of_a_replaced_run_is_not_shown():
    compute_calls = []
    release = threading.Event()

    def compute(values, progress):
        compute_calls.append(values["value"])
        if values["value"] == 1:
            assert release.wait(10)
            raise RuntimeError("late failure of a replaced run")
        return [_figure(values["value"])]

    panel, slider = _panel(compute)
    slider.value = 1
    slider.value = 2
    release.set()
    assert panel.wait(10)
    assert panel.error.message == "" and panel.status.value.startswith("ready")


def test_a_follower_updates_another_control_without_a_run_of_its_own():
    runs = []

    def compute(values, progress):
        runs.append(dict(values))
        return [_figure(0)]

    model = widgets.Dropdown(options=["a", "b"], value="a")
    layer = widgets.Dropdown(options=["a1", "a2"], value="a2")
    panel = RecomputePanel({"model": model, "layer": layer}, compute)
    panel.follow("model", lambda name: setattr(layer, "options", [f"{name}1", f"{name}2"]))
    model.value = "b"
    assert panel.wait(10)
    assert runs == [{"model": "b", "layer": "b1"}]
    with pytest.raises(ValueError, match="controls"):
        panel.follow("seed", print)


def test_the_panel_needs_a_control():
    with pytest.raises(ValueError, match="controls"):
        RecomputePanel({}, lambda values, progress: [])


# Each paper's controls: one change recomputes the paper's figures from the experiment functions
# (digits nets, a few images), with no error.
PAPER_CHANGES = [("patternnet_controls", "method", "gradient", 3),
                 ("unified_controls", "methods", ("Saliency", "Occlusion-1"), 2),
                 ("sanity_controls", "mode", "independent", 2),
                 ("basis_controls", "k", 1, 2)]


@pytest.mark.parametrize(("builder", "control", "value", "figures"), PAPER_CHANGES)
def test_each_paper_panel_recomputes_its_figures(builder, control, value, figures):
    from widgets import paper_controls

    panel = getattr(paper_controls, builder)()
    panel.controls[control].value = value
    assert panel.wait(180)
    assert panel.error.message == ""
    assert panel.status.value.startswith("ready")
    assert len(panel.output.outputs) == figures
    assert all(len(figure.data) > 0 for figure in panel.figures)


def test_the_patternnet_panel_draws_the_chosen_method_and_layer():
    from widgets import paper_controls

    panel = paper_controls.patternnet_controls(method="gradient")
    panel.controls["layer"].value = "features.conv2"
    assert panel.wait(180) and panel.error.message == ""
    rho, heatmaps, degradation = panel.figures
    assert "features.conv2" in rho.layout.title.text
    assert {trace.name for trace in rho.data} == {"S_w", "S_a+-"}
    assert [note.text for note in heatmaps.layout.annotations][:2] == ["input", "gradient"]
    assert {trace.name for trace in degradation.data} == {"gradient", "random"}
