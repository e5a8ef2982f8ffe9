"""The computations behind notebook 04: Dey et al., "Neuron-based explanations of neural networks
sacrifice completeness and interpretability", arXiv 2011.03043 (2020; TMLR 2025). Per layer, how
many PCs and how many neurons explain a fraction of the variance, what the net still does
restricted to the top-k of each (the paper's two measures of completeness), and what the top
directions respond to (what its user study of interpretability shows people)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
import torch
from torch import nn

from workbench import basis as bases
from workbench import features, plots
from workbench.basis import AblationCurve, Basis
from workbench.batching import progress_batches
from workbench.decompositions import SampleOptions, SparseOptions
from workbench.features import FeatureVisualisation, TopActivating
from workbench.layers import ACTIVATION_MODULES
from workbench.model_layers import captured_outputs, find_layer, single_output

KIND_LABELS = {"pca": "PCs", "neurons": "neurons", "ica": "ICs", "nmf": "NMF factors",
               "sparse": "dictionary atoms"}
DIRECTION_LABELS = {"pca": "PC", "ica": "IC", "nmf": "factor", "sparse": "atom"}


def default_layers(model: nn.Module) -> list[str]:
    """The activation modules (ReLU, Tanh, ...) of ``model`` in order: the neurons' outputs."""
    return [name for name, module in model.named_modules()
            if name and isinstance(module, tuple(ACTIVATION_MODULES))]


def ablation_ks(dimension: int, points: int = 10) -> list[int]:
    """0, then about ``points`` log-spaced values from 1 to ``dimension`` (both included)."""
    if dimension < 1 or points < 2:
        raise ValueError(f"need dimension >= 1 and points >= 2, got {dimension}, {points}")
    logs = [math.log(dimension) * i / (points - 1) for i in range(points)]
    return sorted({0, dimension, *(max(1, round(math.exp(v))) for v in logs)})


@dataclass(frozen=True)
class LayerComparison:
    """One layer: both bases, the directions needed for ``fraction`` of the variance, the
    cumulative variance curves (entry k: top-k directions) and the ablation curves."""

    layer: str
    dimension: int
    samples: int
    fraction: float
    bases: dict[str, Basis]
    directions_needed: dict[str, int]
    cumulative: dict[str, list[float]]
    ablation: dict[str, AblationCurve]


def compare_bases(model: nn.Module, fit_inputs, test_inputs: torch.Tensor,
                  test_labels: torch.Tensor | None, layers: Sequence[str], fraction: float = 0.8,
                  points: int = 10, spatial: str = "positions", batch_size: int = 256,
                  progress: bool = True) -> dict[str, LayerComparison]:
    """Fit the PCA and neuron bases of every layer on ``fit_inputs`` (one pass for all layers)
    and measure the ablation curves on ``test_inputs`` (accuracy needs ``test_labels``)."""
    statistics = bases.activations(model, fit_inputs, list(layers), spatial, batch_size, progress)
    comparisons = {}
    for layer, stats in statistics.items():
        fitted = {kind: bases.basis_from_statistics(stats, kind)
                  for kind in bases.ORTHOGONAL_KINDS}
        ks = ablation_ks(stats.dimension, points)
        comparisons[layer] = LayerComparison(
            layer, stats.dimension, stats.count, fraction, fitted,
            {kind: bases.directions_for_variance(b, fraction) for kind, b in fitted.items()},
            {kind: bases.cumulative_variance_explained(b).tolist()
             for kind, b in fitted.items()},
            {kind: bases.ablation_curve(model, test_inputs, layer, b, ks, labels=test_labels,
                                        batch_size=batch_size, progress=progress)
             for kind, b in fitted.items()})
    return comparisons


def summary(comparisons: dict[str, LayerComparison]) -> list[dict]:
    """One row per layer (the paper's table): dimension, PCs and neurons for the fraction."""
    return [{"layer": c.layer, "dimension": c.dimension, "samples": c.samples,
             "fraction": c.fraction, "PCs": c.directions_needed["pca"],
             "neurons": c.directions_needed["neurons"]} for c in comparisons.values()]


@dataclass(frozen=True)
class Gallery:
    """The top directions of one basis: labels, top-activating inputs, feature visualisations."""

    kind: str
    labels: list[str]
    top: TopActivating
    visualisation: FeatureVisualisation


def direction_gallery(model: nn.Module, inputs: torch.Tensor, basis: Basis,
                      n_directions: int = 4, n_images: int = 6, steps: int = 256,
                      value_range: tuple[float, float] | None = None, seed: int = 0,
                      batch_size: int = 256, progress: bool = True) -> Gallery:
    """For the ``n_directions`` highest-variance directions of ``basis``: the ``n_images``
    inputs that activate each most, and a feature visualisation started from the inputs' mean
    and kept within their mean distance from it."""
    directions = list(range(min(n_directions, basis.dimension)))
    top = features.top_activating(model, inputs, basis, directions, n_images, batch_size, progress)
    mean = inputs.mean(0)
    radius = float((inputs - mean).flatten(1).norm(dim=1).mean())
    visualisation = features.feature_visualisation(model, basis, directions, mean, steps=steps,
                                                value_range=value_range, radius=radius,
                                                seed=seed)
    if basis.kind == "neurons":
        labels = [f"neuron {int(basis.neurons[i])}" for i in directions]
    else:
        labels = [f"{DIRECTION_LABELS[basis.kind]} {i + 1}" for i in directions]
    return Gallery(basis.kind, labels, top, visualisation)


# ----------------------------------------------------------------------------------------------
# All five bases of one layer side by side


def fit_bases(model: nn.Module, inputs, layer: str, kinds: Sequence[str] = bases.KINDS,
              options: dict[str, SampleOptions | SparseOptions] | None = None,
              spatial: str = "positions", batch_size: int = 256,
              progress: bool = True) -> dict[str, Basis]:
    """The bases ``kinds`` of ``layer`` fitted on ``inputs`` (``options[kind]`` for the
    sample-based kinds, their defaults otherwise)."""
    options = options or {}
    return {kind: bases.fit_basis(model, inputs, layer, kind, spatial, batch_size, progress,
                                  options=options.get(kind)) for kind in kinds}


def code_statistics(model: nn.Module, inputs, basis: Basis, batch_size: int = 256,
                    progress: bool = True) -> tuple[float, int]:
    """Over the layer's activation rows for ``inputs``: the fraction of codes that are exactly
    zero (codes, not centred codes: a ReLU neuron that is off, an NMF factor or a dictionary
    atom not used) and the number of dead directions, whose code varies by at most 1e-9 of the
    largest ``|code|`` over the rows (a dead neuron, a latent the autoencoder never uses)."""
    name, module = find_layer(model, basis.layer)
    zeros, total, largest = 0, 0, 0.0
    low = high = None
    with torch.no_grad():
        for batch, _ in progress_batches(inputs, batch_size, progress, "codes"):
            with captured_outputs(module, name) as outputs:
                model(bases.to_model_device(model, batch))
            rows = bases.layer_rows(single_output(outputs, name, module), basis.spatial)
            codes = basis.coder.codes(rows.double()).cpu()
            largest = max(largest, float(codes.abs().max()))
            zeros += int((codes == 0).sum())
            total += codes.numel()
            low = codes.min(0).values if low is None else torch.minimum(low, codes.min(0).values)
            high = codes.max(0).values if high is None else torch.maximum(high,
                                                                         codes.max(0).values)
    dead = int((high - low <= 1e-9 * max(largest, 1e-300)).sum())
    return zeros / total, dead


def compare_kinds(model: nn.Module, fitted: dict[str, Basis], test_inputs: torch.Tensor,
                  test_labels: torch.Tensor | None, k: int, batch_size: int = 256,
                  progress: bool = True) -> list[dict]:
    """One row per basis of ``fitted`` (one layer): its directions m, the variance explained
    (R² for the non-orthogonal kinds, on the fitted rows) and the test accuracy and agreement
    with the layer restricted to the top ``min(k, m)`` directions, the fraction of zero codes
    and the dead directions on ``test_inputs``."""
    table = []
    for kind, basis in fitted.items():
        kept = min(k, basis.dimension)
        curve = bases.ablation_curve(model, test_inputs, basis.layer, basis, [kept],
                                     labels=test_labels, batch_size=batch_size,
                                     progress=progress)
        zero_fraction, dead = code_statistics(model, test_inputs, basis, batch_size, progress)
        table.append({"layer": basis.layer, "kind": kind, "directions": basis.dimension,
                      "k": kept, "variance_explained": bases.variance_explained(basis, kept),
                      "accuracy": curve.accuracy[0] if curve.accuracy else None,
                      "agreement": curve.agreement[0], "zero_codes": zero_fraction,
                      "dead_directions": dead})
    return table


# ----------------------------------------------------------------------------------------------
# What the notebook plots and writes


def variance_panels(comparisons: dict[str, LayerComparison]) -> dict[str, dict[str, tuple]]:
    """Per layer, the cumulative variance explained against k, one series per basis."""
    return {layer: {KIND_LABELS[kind]: (range(len(curve)), curve)
                    for kind, curve in c.cumulative.items()}
            for layer, c in comparisons.items()}


def ablation_panels(comparisons: dict[str, LayerComparison],
                    measure: str = "accuracy") -> dict[str, dict[str, tuple]]:
    """Per layer, ``measure`` (``"accuracy"`` or ``"agreement"``) against k >= 1 (for a log
    axis), one series per basis."""
    panels = {}
    for layer, c in comparisons.items():
        panels[layer] = {}
        for kind, curve in c.ablation.items():
            values = getattr(curve, measure)
            if values is None:
                raise ValueError(f"no {measure} for layer '{layer}': the data had no labels")
            kept = [(k, v) for k, v in zip(curve.ks, values, strict=True) if k > 0]
            panels[layer][KIND_LABELS[kind]] = ([k for k, _ in kept], [v for _, v in kept])
    return panels


def gallery_figure(galleries: Sequence[Gallery], title: str = "") -> go.Figure:
    """The galleries side by side (``plots.direction_gallery``), e.g. a layer's PCs and neurons:
    per rank, each direction's feature visualisation and its top-activating inputs."""
    return plots.direction_gallery([g.labels for g in galleries],
                                   [g.visualisation.inputs for g in galleries],
                                   [g.top.inputs for g in galleries],
                                   [g.top.scores for g in galleries], title)


def results(comparisons: dict[str, LayerComparison],
            galleries: dict[str, dict[str, Gallery]] | None = None) -> dict:
    """Everything worth keeping in ``results.json`` (curves, counts, objectives), no images."""
    content = {"table": summary(comparisons), "per_layer": {}}
    for layer, c in comparisons.items():
        content["per_layer"][layer] = {
            "dimension": c.dimension, "samples": c.samples, "spatial": c.bases["pca"].spatial,
            "directions_needed": c.directions_needed, "cumulative_variance": c.cumulative,
            "ablation": {kind: {"ks": curve.ks, "accuracy": curve.accuracy,
                                "agreement": curve.agreement,
                                "original_accuracy": curve.original_accuracy}
                         for kind, curve in c.ablation.items()},
        }
        for kind, gallery in (galleries or {}).get(layer, {}).items():
            content["per_layer"][layer].setdefault("directions", {})[kind] = {
                "labels": gallery.labels, "top_indices": gallery.top.indices,
                "top_scores": gallery.top.scores,
                "visualisation_start_objective": gallery.visualisation.start_objective,
                "visualisation_objective": gallery.visualisation.objective,
            }
    return content
