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
from workbench.claims import Claim
from workbench.composites import COMPOSITES
from workbench.patterns import fit_estimators, signal_quality_of_estimators
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
                   test_fraction: float = 1 / 3, n: int | None = None, seed: int = 0,
                   batch_size: int = 32) -> datasets.ImageData:
    """scikit-image's shipped photos as a labelled data set for a classifier whose own data is
    not at hand (VGG-16 with ImageNet weights): each image labelled with the class ``model``
    predicts for it, the first ``test_fraction`` of the images the test part, the rest the part
    patterns are fitted on. Without ``n``: the seven default photos themselves (a handful of
    images: enough for heat maps, too few for ``rho`` on dense layers, which has one row per
    image); with ``n``: ``n`` random crops of every shipped photo (``data.photo_crops``, drawn
    under ``seed``). ``classes`` default to ImageNet's (torchvision's order)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n is None:
        images = datasets.photos(size).images
    else:
        crops = datasets.photo_crops(n, size, seed=seed)
        images = torch.cat([crops.x_train, crops.x_test])
    device = next(model.parameters()).device
    with torch.no_grad():
        predicted = torch.cat([model(chunk.to(device)).argmax(1).cpu()
                               for chunk in images.split(batch_size)])
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
                 methods: Mapping[str, tuple[str, dict[str, Any]]],
                 batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """Every method's attributions of ``inputs`` for ``target`` (an int, or one per input),
    ``batch_size`` inputs per call (all at once when None)."""
    step = len(inputs) if batch_size is None else batch_size
    starts = range(0, len(inputs), max(1, step))

    def part(start: int):
        if isinstance(target, torch.Tensor) and target.dim() > 0:
            return target[start:start + step]
        return target

    return {label: torch.cat([wb.attribute(model, inputs[start:start + step], name,
                                           target=part(start), **options) for start in starts])
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
                      seed: int = 0, batch_size: int = 256) -> DegradationStudy:
    """The image degradation experiment (Kindermans et al. 2018, section 6; region perturbation
    of Samek et al. 2017, arXiv 1509.06321): for each method the ``patch`` x ``patch`` regions
    are replaced most relevant first (by the method's relevance summed over the region,
    ``workbench.metrics.degradation``), ``steps`` of them, and the target output is tracked; a
    random order (from ``seed``) is the baseline. A method that ranks well drops fastest.
    ``batch_size``: degraded images per forward pass."""
    if "random" in methods:
        raise ValueError("methods: the label 'random' is kept for the random-order baseline")
    options = dict(patch=patch, steps=steps, replacement=replacement, target=target,
                   batch_size=batch_size)
    results = {label: metrics.degradation(model, images, relevance, order="most_relevant_first",
                                          **options)
               for label, relevance in attributions(model, images, target, methods,
                                                    batch_size).items()}
    results["random"] = metrics.degradation(model, images, images, order="random", seed=seed,
                                            **options)
    return DegradationStudy({k: r.curve.mean(0) for k, r in results.items()},
                            {k: float(r.area.mean()) for k, r in results.items()})


# ----------------------------------------------------------------------------------------------
# The paper's claims measured over seeds


@dataclass(frozen=True)
class StudySettings:
    """The sizes of the two quantitative experiments (Kindermans et al. 2018, section 5):
    patterns fitted on ``n_fit`` training images, ``rho`` scored on ``n_quality`` held-out
    images for at most ``max_neurons`` neurons per layer, and the degradation of
    ``n_degradation`` test images by ``patch`` x ``patch`` regions, ``steps`` of them;
    ``batch_size`` images per forward pass in all three (VGG-16 at 224 pixels wants ~16)."""

    n_fit: int = 1500
    n_quality: int = 500
    max_neurons: int = 64
    n_degradation: int = 64
    patch: int = 2
    steps: int = 64
    batch_size: int = 256

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class SeedMeasurement:
    """What one seed gives: ``rho`` per estimator and layer, each layer's kind (``"conv"`` or
    ``"dense"``), the degradation study, and the model and the ``S_a+-`` patterns it used."""

    seed: int
    rho: dict[str, dict[str, float]]
    kinds: dict[str, str]
    degradation: DegradationStudy
    model: nn.Module
    patterns: Any
    accuracy: float | None = None


def layer_kinds(model: nn.Module) -> dict[str, str]:
    """``"conv"`` for every convolution, ``"dense"`` for every linear layer, by dotted name."""
    kinds = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            kinds[name] = "conv"
        elif isinstance(module, nn.Linear):
            kinds[name] = "dense"
    return kinds


def _subset(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(count, generator=generator)[:min(size, count)].sort().values


def measure_seed(model: nn.Module, data: datasets.ImageData, seed: int,
                 settings: StudySettings = StudySettings(), accuracy: float | None = None,
                 progress: bool = False) -> SeedMeasurement:
    """Both quantitative experiments for one model: ``rho`` of every estimator per layer
    (section 5.1) and the degradation of the target output (section 5.2). ``seed`` draws the
    images (fitting, held-out and degraded subsets), the neurons ``rho`` scores, the random
    estimator and the random order of the patches."""
    generator = torch.Generator().manual_seed(seed)
    fit = data.x_train[_subset(len(data.x_train), settings.n_fit, generator)]
    held_out = data.x_test[_subset(len(data.x_test), settings.n_quality, generator)]
    chosen = _subset(len(data.x_test), settings.n_degradation, generator)
    patterns = fit_estimators(model, fit, ("w", "a", "a+-", "random"), settings.batch_size,
                              seed=seed, progress=progress)
    rho = signal_quality_of_estimators(model, held_out, patterns, settings.batch_size,
                                       max_neurons=settings.max_neurons, seed=seed,
                                       progress=progress)
    study = degradation_study(model, data.x_test[chosen], data.y_test[chosen],
                              with_patterns(DEGRADATION_METHODS, patterns["a+-"]),
                              patch=settings.patch, steps=settings.steps, replacement="mean",
                              seed=seed, batch_size=settings.batch_size)
    return SeedMeasurement(seed, rho, layer_kinds(model), study, model, patterns["a+-"],
                           accuracy)


def measure_zoo_seeds(model_name: str, seeds: Sequence[int],
                      settings: StudySettings = StudySettings(),
                      progress: bool = False) -> list[SeedMeasurement]:
    """``measure_seed`` for the zoo model ``model_name`` trained from each of ``seeds``
    (``workbench.models.zoo(model_name, seed=s)``, cached) on its own data."""
    from workbench import models

    data = models.zoo_data(model_name)
    measurements = []
    for seed in seeds:
        model, info = models.zoo(model_name, seed=seed, progress=progress)
        measurements.append(measure_seed(model.eval(), data, seed, settings,
                                         info.get("accuracy"), progress))
    return measurements


def measure_seeds_of(model: nn.Module, data: datasets.ImageData, seeds: Sequence[int],
                     settings: StudySettings = StudySettings(),
                     progress: bool = False) -> list[SeedMeasurement]:
    """``measure_seed`` for one fixed ``model`` (e.g. VGG-16 with given weights) at each of
    ``seeds``: only the draws of images, neurons and orders change between seeds."""
    return [measure_seed(model, data, seed, settings, progress=progress) for seed in seeds]


def _mean_over(rho: Mapping[str, float], layers: Sequence[str]) -> float:
    values = [rho[layer] for layer in layers if rho[layer] == rho[layer]]  # NaN left out
    if not values:
        raise ValueError(f"no defined rho on the layers {list(layers)}")
    return sum(values) / len(values)


def estimator_margins(rho: Mapping[str, Mapping[str, float]],
                      kinds: Mapping[str, str]) -> dict[str, float]:
    """The three estimator claims as numbers (keys of ``rho``: ``w``, ``a``, ``a+-``,
    ``random``; each ``rho[e]`` maps layer -> rho, averaged over layers of a kind):

    - ``conv``: mean rho(S_a+-) on conv layers minus the largest mean of the others (> 0: best);
    - ``dense``: mean rho(S_a) on dense layers minus the larger of S_w's and random's (> 0);
    - ``filter``: mean over all layers of rho(S_w) - min(rho(S_a), rho(S_a+-)) (< 0: poor).
    """
    conv = [layer for layer, kind in kinds.items() if kind == "conv"]
    dense = [layer for layer, kind in kinds.items() if kind == "dense"]
    if not conv or not dense:
        raise ValueError(f"kinds must hold conv and dense layers, got {dict(kinds)}")
    conv_means = {e: _mean_over(rho[e], conv) for e in ("w", "a", "a+-", "random")}
    dense_means = {e: _mean_over(rho[e], dense) for e in ("w", "a", "random")}
    gaps = {layer: rho["w"][layer] - min(rho["a"][layer], rho["a+-"][layer]) for layer in kinds}
    return {"conv": conv_means["a+-"] - max(conv_means[e] for e in ("w", "a", "random")),
            "dense": dense_means["a"] - max(dense_means["w"], dense_means["random"]),
            "filter": _mean_over(gaps, list(kinds))}


def degradation_margins(areas: Mapping[str, float],
                        method: str = "pattern_attribution") -> dict[str, float]:
    """``method``'s degradation area minus the smallest area of the other methods
    (``"others"``) and minus the random order's (``"random"``); below 0: it drops faster."""
    if method not in areas or "random" not in areas:
        raise ValueError(f"areas must hold {method!r} and 'random', got {list(areas)}")
    others = [area for label, area in areas.items() if label not in (method, "random")]
    if not others:
        raise ValueError("areas must hold at least one other method")
    return {"others": areas[method] - min(others), "random": areas[method] - areas["random"]}


def paper_claims(measurements: Sequence[SeedMeasurement]) -> list[Claim]:
    """The paper's four quantitative claims (Kindermans et al. 2018, section 6), one value per
    seed each: PatternAttribution degrades the target output fastest (against the other
    methods, and against a random order), ``S_a+-`` is the best estimator on conv layers,
    ``S_a`` is good on dense layers, and ``S_w`` (the filter) is poor."""
    if not measurements:
        raise ValueError("measurements must hold at least one seed")
    seeds = [m.seed for m in measurements]
    estimators = [estimator_margins(m.rho, m.kinds) for m in measurements]
    degradation = [degradation_margins(m.degradation.areas) for m in measurements]
    others = ", ".join(label for label in measurements[0].degradation.areas
                       if label not in ("pattern_attribution", "random"))
    scale_note = "a net trained here on 64-pixel photo crops, not VGG-16 on ImageNet"
    return [
        Claim("PatternAttribution degrades the target output fastest",
              f"area(PatternAttribution) - min area of {others}",
              [d["others"] for d in degradation], seeds, threshold=0.0, above=False,
              source="Kindermans et al. 2018, section 6, image degradation",
              note=f"{scale_note}; patches scaled to the image size"),
        Claim("PatternAttribution degrades faster than a random order",
              "area(PatternAttribution) - area(random order)",
              [d["random"] for d in degradation], seeds, threshold=0.0, above=False,
              source="Kindermans et al. 2018, section 6, image degradation", note=scale_note),
        Claim("S_a+- is the best signal estimator on convolution layers",
              "mean rho(S_a+-) - max mean rho(S_w, S_a, random), conv layers",
              [e["conv"] for e in estimators], seeds, threshold=0.0, above=True,
              source="Kindermans et al. 2018, section 6, signal quality per layer",
              note=f"{scale_note}; rho on a random subset of neurons per layer"),
        Claim("S_a is a good estimator on dense layers",
              "mean rho(S_a) - max mean rho(S_w, random), dense layers",
              [e["dense"] for e in estimators], seeds, threshold=0.0, above=True,
              source="Kindermans et al. 2018, section 6, signal quality per layer",
              note=scale_note),
        Claim("S_w (the filter: gradient, DeConvNet, Guided BackProp) is a poor estimator",
              "mean over layers of rho(S_w) - min(rho(S_a), rho(S_a+-))",
              [e["filter"] for e in estimators], seeds, threshold=0.0, above=False,
              source="Kindermans et al. 2018, sections 4 and 6", note=scale_note),
    ]
