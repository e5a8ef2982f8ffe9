"""Kindermans et al. 2018 (PatternNet / PatternAttribution): the toy and the estimator study."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.toy import LinearToy, fit_linear_model, make_linear_toy

ESTIMATOR_LABELS = {"x": "S_x", "w": "S_w", "a": "S_a", "a+-": "S_a+-", "random": "random"}


@dataclass(frozen=True)
class ToyResult:
    """Everything the toy figure shows: the model's filter, the true directions, what the
    gradient returns, the learned patterns and the quality of each estimator."""

    toy: LinearToy
    filter: torch.Tensor
    gradient: torch.Tensor
    patterns: dict[str, torch.Tensor]
    signal_quality: dict[str, float]
    signal_recovery: float  # cosine between PatternNet's output and the true signal


def toy_experiment(n: int = 2000, signal=(1.0, 0.0), distractor=(1.0, 1.0), noise: float = 0.0,
                   distractor_strength: float = 1.0, seed: int = 0) -> ToyResult:
    """Fit a linear model on the toy, learn the patterns, score the estimators on new samples."""
    dim = len(signal) if signal is not None else 2
    toy = make_linear_toy(n, dim, signal, distractor, noise, distractor_strength, seed)
    held_out = make_linear_toy(n, dim, toy.signal_direction, toy.distractor_direction, noise,
                               distractor_strength, seed + 1)
    model = fit_linear_model(toy)
    patterns, quality = {}, {}
    for estimator in ("w", "a", "a+-", "random"):
        fitted = wb.fit_patterns(model, toy.x, estimator, progress=False)
        patterns[estimator] = fitted.layers[""].positive[0]
        quality[estimator] = wb.signal_quality(model, held_out.x, fitted, progress=False)[""]
    quality["x"] = float("nan")
    fitted = wb.fit_patterns(model, toy.x, "a", progress=False)
    signal = wb.attribute(model, held_out.x, "pattern_net", target=0, patterns=fitted)
    recovery = F.cosine_similarity(signal.flatten(), held_out.signal.flatten(), dim=0).item()
    gradient = wb.attribute(model, held_out.x[:1], "gradient", target=0)[0]
    return ToyResult(toy, model.weight.detach()[0], gradient, patterns, quality, recovery)


def estimator_quality(model: nn.Module, fit_data, held_out, estimators=("x", "w", "a", "a+-",
                      "random"), max_neurons: int = 64, progress: bool = True
                      ) -> dict[str, dict[str, float]]:
    """``rho`` per layer for each estimator: patterns fitted on ``fit_data``, scored on
    ``held_out`` (the paper's figure of signal quality per layer)."""
    return {estimator: wb.signal_quality(model, held_out,
                                         wb.fit_patterns(model, fit_data, estimator,
                                                         progress=progress),
                                         max_neurons=max_neurons, progress=progress)
            for estimator in estimators}
