"""The computations behind notebook 01: Kindermans et al., "Learning how to explain neural
networks: PatternNet and PatternAttribution", ICLR 2018, arXiv 1705.05598. The linear toy
(section 2), the signal quality of the estimators per layer (section 4), heat maps and the image
degradation experiment (section 6)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench import data as datasets
from workbench import metrics, plots
from workbench.composites import COMPOSITES
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


def relabel(per_estimator: Mapping[str, Any]) -> dict[str, Any]:
    """The same entries keyed by the paper's names of the estimators (``ESTIMATOR_LABELS``)."""
    return {ESTIMATOR_LABELS.get(k, k): v for k, v in per_estimator.items()}


def toy_results(result: ToyResult) -> dict[str, Any]:
    """What ``results.json`` keeps of the toy: the filter, the gradient, the patterns and
    ``rho`` per estimator, and PatternNet's cosine with the true signal."""
    return {"filter": result.filter, "gradient": result.gradient,
            "patterns": relabel(result.patterns), "rho": relabel(result.signal_quality),
            "pattern_net_signal_cosine": result.signal_recovery}


def toy_figure(result: ToyResult) -> go.Figure:
    """The 2-D toy's samples and, as arrows, the signal and distractor directions, the filter
    (which the gradient equals) and the learned patterns ``S_a`` and ``S_a+-`` (its ``a+``)."""
    toy = result.toy
    if toy.x.shape[1] != 2:
        raise ValueError("the direction plot needs a 2-D toy (dim=2)")
    arrows = {"signal a_s": toy.signal_direction, "distractor a_d": toy.distractor_direction,
              "filter w = gradient": result.filter, "pattern S_a": result.patterns["a"],
              "pattern S_a+- (a+)": result.patterns["a+-"]}
    return plots.toy_directions(toy.x, toy.y, arrows, "Linear toy: the filter cancels the "
                                "distractor; the pattern is the signal")


def photo_stand_in(model: nn.Module, size: int = 224, classes: Sequence[str] | None = None,
                   test_fraction: float = 1 / 3) -> datasets.ImageData:
    """scikit-image's shipped photos as a labelled data set for a classifier whose own data is
    not at hand (VGG-16 with ImageNet weights): each photo labelled with the class ``model``
    predicts for it, the first ``test_fraction`` of the photos the test part, the rest the part
    patterns are fitted on. ``classes`` default to ImageNet's (torchvision's order)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    photos = datasets.photos(size)
    device = next(model.parameters()).device
    images = photos.images.to(device)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    n_test = max(1, int(round(len(images) * test_fraction, 9)))
    return datasets.ImageData(images[n_test:], predicted[n_test:], images[:n_test],
                              predicted[:n_test],
                              list(classes) if classes is not None
                              else datasets.imagenet_classes(), "photos")


#: the methods of the heat-map figure and of the degradation experiment
HEATMAP_METHODS = ("gradient", "deconvnet", "guided_backprop", "lrp_epsilon", "lrp_alpha_beta",
                   "pattern_net", "pattern_attribution")
DEGRADATION_METHODS = ("gradient", "guided_backprop", "lrp_epsilon", "pattern_attribution")


def lrp_composites(low: float, high: float) -> dict[str, tuple[str, dict[str, Any]]]:
    """``label -> (method, options)`` for the shipped LRP composites (Montavon et al. 2019,
    "Layer-wise relevance propagation: an overview"; Zennit's definitions); ``low`` and
    ``high`` bound the inputs for the z-box rule of ``epsilon_gamma_box``'s first layer."""
    return {f"lrp: {name}": ("lrp", {"composite": name, "low": low, "high": high})
            for name in COMPOSITES}


def with_patterns(names: Sequence[str], patterns) -> dict[str, tuple[str, dict[str, Any]]]:
    """``label -> (method, options)`` for ``names``: the pattern methods get ``patterns``."""
    return {name: (name, {"patterns": patterns} if name.startswith("pattern_") else {})
            for name in names}


def attributions(model: nn.Module, inputs: torch.Tensor, target,
                 methods: Mapping[str, tuple[str, dict[str, Any]]]) -> dict[str, torch.Tensor]:
    """Every method's attributions of ``inputs`` for ``target``."""
    return {label: wb.attribute(model, inputs, name, target=target, **options)
            for label, (name, options) in methods.items()}


@dataclass(frozen=True)
class DegradationStudy:
    """Per method (and ``"random"``, a random order of the patches), the target output after
    ``k`` patches were replaced, averaged over the images (``curves[label][k]``, ``k = 0`` the
    untouched images), and the area under each image's curve, averaged (lower: faster drop)."""

    curves: dict[str, torch.Tensor]
    areas: dict[str, float]


def degradation_study(model: nn.Module, images: torch.Tensor, target,
                      methods: Mapping[str, tuple[str, dict[str, Any]]], patch: int = 4,
                      steps: int = 24, replacement: str = "mean",
                      seed: int = 0) -> DegradationStudy:
    """The image degradation experiment (Kindermans et al. 2018, section 6; region perturbation
    of Samek et al. 2017, arXiv 1509.06321): for each method the ``patch`` x ``patch`` regions
    are replaced most relevant first (by the method's relevance summed over the region,
    ``workbench.metrics.degradation``), ``steps`` of them, and the target output is tracked; a
    random order (from ``seed``) is the baseline. A method that ranks well drops fastest."""
    if "random" in methods:
        raise ValueError("methods: the label 'random' is kept for the random-order baseline")
    options = dict(patch=patch, steps=steps, replacement=replacement, target=target)
    results = {label: metrics.degradation(model, images, relevance, order="most_relevant_first",
                                          **options)
               for label, relevance in attributions(model, images, target, methods).items()}
    results["random"] = metrics.degradation(model, images, images, order="random", seed=seed,
                                            **options)
    return DegradationStudy({k: r.curve.mean(0) for k, r in results.items()},
                            {k: float(r.area.mean()) for k, r in results.items()})
