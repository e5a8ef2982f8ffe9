"""The noise/distractor generator of the linear toy (Kindermans et al. 2018), live.

Sliders set the signal and distractor directions, the noise level and the distractor
strength; the plot shows the samples, ``a_s``, ``a_d``, the model's filter ``w`` (which is also
what the gradient, DeConvNet and Guided BackProp return) and the learned patterns, and a table
gives the signal quality ``rho`` of every estimator. All numbers come from
``workbench.experiments.patternnet.toy_experiment``.
"""
from __future__ import annotations

import html
import math

import ipywidgets as widgets
import plotly.graph_objects as go

from widgets._common import ErrorArea
from workbench import snapshots
from workbench.experiments.patternnet import (ESTIMATOR_LABELS, ToyResult, toy_experiment,
                                              toy_figure)
from workbench.reporting import figure_bundle


def _unit(angle_degrees: float) -> tuple[float, float]:
    radians = math.radians(angle_degrees)
    return (math.cos(radians), math.sin(radians))


class ToyGenerator(widgets.VBox):
    """Live linear toy: change a slider, see the filter, the patterns and ``rho`` move.

    The plot is a plotly figure shown in an ``Output`` area (``figure``: the one shown), not a
    ``FigureWidget``: a page then loads plotly.js only when it draws a plot. In a preheated app
    kernel (``workbench.snapshots.requested()``) the first plot also carries a PNG snapshot,
    which the page shows at once and turns into the live plot when the pointer enters it.
    """

    def __init__(self, n: int = 1000, seed: int = 0):
        self.signal_angle = widgets.FloatSlider(0.0, min=-180, max=180, step=5,
                                                description="signal angle")
        self.distractor_angle = widgets.FloatSlider(45.0, min=-180, max=180, step=5,
                                                    description="distractor angle")
        self.noise = widgets.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="noise")
        self.strength = widgets.FloatSlider(1.0, min=0.0, max=3.0, step=0.1,
                                            description="distractor ×")
        self.n, self.seed = n, seed
        self.errors = ErrorArea("wb-error")
        self.table = widgets.HTML()
        self.table.add_class("wb-toy-quality")
        self.figure_area = widgets.Output()
        self.figure_area.add_class("wb-toy-figure")
        self.figure: go.Figure | None = None
        self.draws = 0
        self.result: ToyResult | None = None
        for slider in (self.signal_angle, self.distractor_angle, self.noise, self.strength):
            slider.continuous_update = False
            slider.observe(self.errors.guard(self._changed), names="value")
        controls = widgets.VBox([self.signal_angle, self.distractor_angle, self.noise,
                                 self.strength])
        super().__init__([widgets.HBox([controls, self.table]), self.errors,
                          self.figure_area])
        self.add_class("wb-toy-generator")
        self.errors.guard(self.update)()

    def _changed(self, _change) -> None:
        self.update()

    def update(self) -> None:
        """Recompute the toy for the current sliders and redraw."""
        if abs((self.signal_angle.value - self.distractor_angle.value) % 180) < 1e-9:
            raise ValueError("signal and distractor directions must differ (else no linear model "
                             "can separate them)")
        self.result = toy_experiment(self.n, _unit(self.signal_angle.value),
                                     _unit(self.distractor_angle.value), self.noise.value,
                                     self.strength.value, self.seed)
        self._draw(toy_figure(self.result))
        rows = "".join(
            f"<tr><td>{html.escape(ESTIMATOR_LABELS[k])}</td><td>"
            f"{'undefined' if math.isnan(v) else f'{v:.3f}'}</td></tr>"
            for k, v in self.result.signal_quality.items())
        self.table.value = (f"<table><tr><th>estimator</th><th>rho</th></tr>{rows}</table>"
                            f"<p>PatternNet recovers the signal: cosine "
                            f"{self.result.signal_recovery:.3f}</p>")
        self.errors.clear()

    def _draw(self, figure: go.Figure) -> None:
        """Show ``figure`` in place of the last one (with a snapshot the first time, in a
        preheated kernel: later plots are drawn while the reader watches)."""
        bundle = figure_bundle(figure, snapshot=self.draws == 0 and snapshots.requested())
        # the output set as the widget's state (as RecomputePanel draws), not captured from
        # display(): no kernel output machinery runs while the notebook cell builds the widget
        self.figure_area.outputs = ({"output_type": "display_data", "metadata": {},
                                     "data": bundle},)
        self.figure, self.draws = figure, self.draws + 1
