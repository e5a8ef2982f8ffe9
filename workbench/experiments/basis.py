"""The computations behind notebook 04: Dey et al., "Neuron-based explanations of neural networks
sacrifice completeness and interpretability", arXiv 2011.03043 (2020; TMLR 2025). Per layer, how
many PCs and how many neurons explain a fraction of the variance, what the net still does with
the top-k of each removed (the paper's cumulative ablation) or only they kept (its reverse
order), and what the top directions respond to (what its user study of interpretability shows
people); per seed (a net trained from each seed, the images drawn with it), the paper's
completeness claims as ``workbench.claims.Claim``."""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
import torch
from torch import nn

from workbench import basis as bases
from workbench import features, plots
from workbench.basis import AblationCurve, Basis, to_model_device
from workbench.batching import progress_batches
from workbench.claims import Claim, t_interval
from workbench.decompositions import SampleOptions, SparseOptions
from workbench.features import FeatureVisualisation, TopActivating
from workbench.layers import ACTIVATION_MODULES
from workbench.model_layers import captured_outputs, find_layer, single_output

KIND_LABELS = {"pca": "PCs", "neurons": "neurons", "ica": "ICs", "nmf": "NMF factors",
               "sparse": "dictionary atoms"}
DIRECTION_LABELS = {"pca": "PC", "ica": "IC", "nmf": "factor", "sparse": "atom"}


def default_layers(model: nn.Module) -> list[str]:
    """The activation modules (ReLU, Tanh, GELU, ...) of ``model`` in order: the neurons'
    outputs; in a transformer also each attention block's output, the residual stream after the
    block (a module with an ``nn.MultiheadAttention`` child: torchvision's ``EncoderBlock``,
    ``nn.TransformerEncoderLayer``), listed after the layers inside it."""
    names: list[str] = []
    open_blocks: list[str] = []  # blocks whose inner layers are being listed
    for name, module in model.named_modules():
        while open_blocks and not name.startswith(open_blocks[-1] + "."):
            names.append(open_blocks.pop())
        if not name:
            continue
        if isinstance(module, tuple(ACTIVATION_MODULES)):
            names.append(name)
        elif any(isinstance(child, nn.MultiheadAttention) for child in module.children()):
            open_blocks.append(name)
    return names + open_blocks[::-1]


def ablation_ks(dimension: int, points: int = 10) -> list[int]:
    """0, then about ``points`` log-spaced values from 1 to ``dimension`` (both included)."""
    if dimension < 1 or points < 2:
        raise ValueError(f"need dimension >= 1 and points >= 2, got {dimension}, {points}")
    logs = [math.log(dimension) * i / (points - 1) for i in range(points)]
    return sorted({0, dimension, *(max(1, round(math.exp(v))) for v in logs)})


@dataclass(frozen=True)
class ComparisonOptions:
    """How ``compare_bases`` measures: ``fraction`` of the variance for the table, ``points``
    values of k per ablation curve (``ablation_ks``), conv ``spatial`` sampling, the ``fill``
    of the directions left out (``"mean"`` or ``"zero"``), the ``ablation_layers`` (None: all
    of them), ``batch_size`` and ``progress``."""

    fraction: float = 0.8
    points: int = 10
    spatial: str = "positions"
    fill: str = "mean"
    ablation_layers: Sequence[str] | None = None
    batch_size: int = 256
    progress: bool = True


@dataclass(frozen=True)
class LayerComparison:
    """One layer: both bases, the directions needed for ``fraction`` of the variance, the
    cumulative variance curves (entry k: top-k directions) and two ablation curves per basis:
    ``ablation``, only the top-k directions kept; ``removal``, the top-k directions removed
    (Dey et al.'s cumulative ablation, measured as the bottom m - k kept: ``removal_series``).
    Both are empty for a layer left out of the ablations."""

    layer: str
    dimension: int
    samples: int
    fraction: float
    bases: dict[str, Basis]
    directions_needed: dict[str, int]
    cumulative: dict[str, list[float]]
    ablation: dict[str, AblationCurve]
    removal: dict[str, AblationCurve]


def compare_bases(model: nn.Module, fit_inputs, test_inputs: torch.Tensor,
                  test_labels: torch.Tensor | None, layers: Sequence[str],
                  options: ComparisonOptions = ComparisonOptions()
                  ) -> dict[str, LayerComparison]:
    """Fit the PCA and neuron bases of every layer on ``fit_inputs`` (one pass for all layers)
    and measure the ablation curves on ``test_inputs`` (accuracy needs ``test_labels``): for
    each basis and k of ``ablation_ks``, the top-k directions kept and the top-k removed, all
    curves of a layer in one pass (``basis.ablation_curves``)."""
    o = options
    statistics = bases.activations(model, fit_inputs, list(layers), o.spatial, o.batch_size,
                                   o.progress)
    ablated = set(statistics if o.ablation_layers is None
                  else (find_layer(model, layer)[0] for layer in o.ablation_layers))
    if not ablated <= set(statistics):
        raise ValueError(f"ablation_layers {sorted(ablated - set(statistics))} are not among "
                         f"the layers compared, {list(statistics)}")
    comparisons = {}
    for layer, stats in statistics.items():
        fitted = {kind: bases.basis_from_statistics(stats, kind)
                  for kind in bases.ORTHOGONAL_KINDS}
        ks = ablation_ks(stats.dimension, o.points)
        curves = {}
        if layer in ablated:
            restrictions = [bases.Restriction(b, ks if keep == "top" else
                                              [stats.dimension - k for k in ks], keep, o.fill)
                            for keep in ("top", "bottom") for b in fitted.values()]
            measured = bases.ablation_curves(model, test_inputs, layer, restrictions,
                                             test_labels, o.batch_size, o.progress)
            curves = {(r.keep, r.basis.kind): curve
                      for r, curve in zip(restrictions, measured, strict=True)}
        comparisons[layer] = LayerComparison(
            layer, stats.dimension, stats.count, o.fraction, fitted,
            {kind: bases.directions_for_variance(b, o.fraction) for kind, b in fitted.items()},
            {kind: bases.cumulative_variance_explained(b).tolist()
             for kind, b in fitted.items()},
            {kind: curve for (keep, kind), curve in curves.items() if keep == "top"},
            {kind: curve for (keep, kind), curve in curves.items() if keep == "bottom"})
    return comparisons


def removal_series(comparison: LayerComparison, kind: str, measure: str = "accuracy"
                   ) -> tuple[list[int], list[float]]:
    """The removal curve of ``kind`` as (k removed, ``measure``), k ascending."""
    curve = comparison.removal[kind]
    values = _measure(curve, measure, comparison.layer)
    pairs = sorted((comparison.dimension - k, v) for k, v in zip(curve.ks, values, strict=True))
    return [k for k, _ in pairs], [v for _, v in pairs]


def _measure(curve: AblationCurve, measure: str, layer: str) -> list[float]:
    if measure not in ("accuracy", "agreement"):
        raise ValueError(f"measure must be 'accuracy' or 'agreement', got {measure!r}")
    values = getattr(curve, measure)
    if values is None:
        raise ValueError(f"no {measure} for layer '{layer}': the data had no labels")
    return values


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
# Over seeds: one net and one draw of the data per seed, and the paper's claims


@dataclass(frozen=True)
class Setting:
    """One seed's net and data: bases fitted on ``fit_inputs``, ablations run on
    ``test_inputs`` (accuracy needs ``test_labels``); ``accuracy``: the net's test accuracy."""

    model: nn.Module
    accuracy: float | None
    fit_inputs: torch.Tensor
    test_inputs: torch.Tensor
    test_labels: torch.Tensor | None


@dataclass(frozen=True)
class SeedRun:
    """One seed: its setting and the comparison of every layer."""

    seed: int
    setting: Setting
    comparisons: dict[str, LayerComparison]


def seeded_subset(inputs: torch.Tensor, labels: torch.Tensor | None, n: int, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` of ``inputs`` (all if fewer) drawn without replacement under ``seed``, with their
    labels."""
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))[:n]
    return inputs[order], None if labels is None else labels[order]


def layer_names(text: str, default: Sequence[str]) -> list[str]:
    """Comma-separated layer names from ``text``; ``default`` when it names none."""
    return [name.strip() for name in text.split(",") if name.strip()] or list(default)


_VGG_FOCUS = {"ablation": ("features.relu2_2", "features.relu3_2", "classifier.relu1"),
              "gallery": ("features.relu3_2", "classifier.relu1")}
_VIT_FOCUS = {"ablation": ("encoder.layers.encoder_layer_1", "encoder.layers.encoder_layer_3.mlp.1",
                           "encoder.layers.encoder_layer_3"),
              "gallery": ("encoder.layers.encoder_layer_3.mlp.1", "encoder.layers.encoder_layer_3")}
#: per zoo model, the layers notebook 04 ablates and shows when asked for "auto": a middle and
#: a late layer and the first dense one (VGG-style nets); the residual stream after the second
#: and last blocks and the last MLP's hidden layer (the vision transformer)
FOCUS: dict[str, dict[str, tuple[str, ...]]] = {
    "photos_vgg": _VGG_FOCUS, "digits32_vgg": _VGG_FOCUS, "photos_vit": _VIT_FOCUS}


def focus_layers(text: str, model_name: str, chosen: Sequence[str], purpose: str) -> list[str]:
    """The layers for ``purpose`` (``"ablation"`` or ``"gallery"``): ``"auto"`` is the zoo
    model's ``FOCUS`` (every chosen layer for a model without one); otherwise as
    :func:`layer_names` (empty: every chosen layer)."""
    if purpose not in ("ablation", "gallery"):
        raise ValueError(f"purpose must be 'ablation' or 'gallery', got {purpose!r}")
    if text.strip() != "auto":
        return layer_names(text, chosen)
    return list(FOCUS.get(model_name, {}).get(purpose, chosen))


@functools.lru_cache(maxsize=2)
def _zoo_data(model_name: str):
    from workbench import models

    return models.zoo_data(model_name)


def zoo_setting(model_name: str, seed: int, n_fit: int, n_test: int,
                progress: bool = True) -> Setting:
    """The zoo net ``model_name`` trained with ``seed`` (``models.zoo``, cached), and ``n_fit``
    training and ``n_test`` test images of its data set drawn under ``seed``."""
    from workbench import models

    model, info = models.zoo(model_name, seed=seed, progress=progress)
    data = _zoo_data(model_name)
    fit_inputs, _ = seeded_subset(data.x_train, None, n_fit, seed)
    test_inputs, test_labels = seeded_subset(data.x_test, data.y_test, n_test, seed)
    return Setting(model, info["accuracy"], fit_inputs, test_inputs, test_labels)


def images_setting(model: nn.Module, fit_pool: torch.Tensor, test_pool: torch.Tensor,
                   n_fit: int, n_test: int) -> Callable[[int], Setting]:
    """Settings of one given net (e.g. pretrained weights): per seed, ``n_fit`` of ``fit_pool``
    and ``n_test`` of ``test_pool`` (unlabelled) drawn under the seed."""
    def setting(seed: int) -> Setting:
        return Setting(model, None, seeded_subset(fit_pool, None, n_fit, seed)[0],
                       seeded_subset(test_pool, None, n_test, seed)[0], None)
    return setting


def compare_over_seeds(setting: Callable[[int], Setting], seeds: Sequence[int],
                       layers: Sequence[str] | None = None,
                       options: ComparisonOptions = ComparisonOptions()) -> list[SeedRun]:
    """``compare_bases`` on ``setting(seed)`` for every seed (``layers``: None for every
    activation module of the net)."""
    runs = []
    for seed in seeds:
        chosen = setting(seed)
        names = list(layers) if layers else default_layers(chosen.model)
        runs.append(SeedRun(seed, chosen, compare_bases(
            chosen.model, chosen.fit_inputs, chosen.test_inputs, chosen.test_labels, names,
            options)))
    return runs


def first_dense_layer(comparisons: dict[str, LayerComparison]) -> str | None:
    """The first layer whose outputs are vectors (N, d), e.g. AlexNet's fc1; None if none."""
    return next((layer for layer, c in comparisons.items()
                 if c.bases["pca"].spatial is None), None)


def kinds_default_layer(comparisons: dict[str, LayerComparison]) -> str | None:
    """Where the five-basis comparison runs by default: the first dense layer, or in a
    transformer (no dense layer) the last layer whose samples are token vectors."""
    dense = first_dense_layer(comparisons)
    if dense is not None:
        return dense
    return next((layer for layer, c in reversed(comparisons.items())
                 if c.bases["pca"].spatial == "tokens"), None)


def pc_advantage(comparison: LayerComparison, curves: str, measure: str = "accuracy") -> float:
    """The mean, over the grid's k with 0 < k < m, of how much better the PCs do than the
    neurons: ``curves="kept"``, measure(top-k PCs kept) - measure(top-k neurons kept);
    ``"removed"``, measure(top-k neurons removed) - measure(top-k PCs removed) (removing the
    PCs hurts more). Positive: the PCs carry more of the net's function."""
    if curves == "kept":
        series = {kind: dict(zip(c.ks, _measure(c, measure, comparison.layer), strict=True))
                  for kind, c in comparison.ablation.items()}
        sign = 1.0
    elif curves == "removed":
        series = {kind: dict(zip(*removal_series(comparison, kind, measure), strict=True))
                  for kind in comparison.removal}
        sign = -1.0
    else:
        raise ValueError(f"curves must be 'kept' or 'removed', got {curves!r}")
    if not series:
        raise ValueError(f"layer '{comparison.layer}' has no ablation curves")
    ks = [k for k in series["pca"] if 0 < k < comparison.dimension]
    if not ks:
        raise ValueError(f"layer '{comparison.layer}': no k strictly between 0 and "
                         f"{comparison.dimension} on the ablation grid")
    return sign * sum(series["pca"][k] - series["neurons"][k] for k in ks) / len(ks)


def direction_ratio(comparison: LayerComparison) -> float:
    """PCs over neurons needed for the comparison's fraction of the variance."""
    return comparison.directions_needed["pca"] / comparison.directions_needed["neurons"]


PAPER = "Dey et al. 2011.03043 (TMLR 2025)"


def claims(runs: Sequence[SeedRun], measure: str = "accuracy", ratio: float = 0.5,
           note: str = "") -> list[Claim]:
    """The paper's completeness claims, one value per seed of ``runs``: for the first dense
    layer and over all layers, (a) PCs / neurons needed for the fraction of the variance is
    below ``ratio``; (b) removing the top-k PCs hurts ``measure`` more than removing the top-k
    neurons (``pc_advantage(..., "removed") > 0``); (c) keeping only the top-k PCs keeps more
    of it than keeping the top-k neurons (``"kept"``). ``note``: the deviations to record."""
    if not runs:
        raise ValueError("runs is empty: compare at least one seed")
    seeds = [run.seed for run in runs]
    fraction = next(iter(runs[0].comparisons.values())).fraction
    dense = first_dense_layer(runs[0].comparisons)
    made = []

    def claim(statement, quantity, values, threshold, above, source):
        made.append(Claim(statement, quantity, values, seeds, threshold, above, source, note))

    if dense is not None:
        claim(f"far fewer PCs than neurons explain {fraction:.0%} of the variance of the first "
              "dense layer", f"PCs / neurons needed, {dense}",
              [direction_ratio(run.comparisons[dense]) for run in runs], ratio, False,
              f"{PAPER}, explained variance (AlexNet fc1: 42 PCs, 2,782 neurons)")
    claim(f"far fewer PCs than neurons explain {fraction:.0%} of the variance in every layer",
          "largest PCs / neurons needed over the layers",
          [max(map(direction_ratio, run.comparisons.values())) for run in runs], ratio, False,
          f"{PAPER}, explained variance, all layers")
    for curves, statement, source in (
            ("removed", "removing the top-k PCs damages {measure} more than removing the top-k "
             "neurons", "cumulative ablation, highest variance first"),
            ("kept", "keeping only the top-k PCs keeps more {measure} than keeping the top-k "
             "neurons", "cumulative ablation, reverse (ascending variance) order")):
        ablated = [layer for layer, c in runs[0].comparisons.items() if c.ablation]
        text = statement.format(measure=measure)
        if dense in ablated:
            claim(f"{text} (first dense layer)",
                  f"mean over k of the {measure} gap, {dense}",
                  [pc_advantage(run.comparisons[dense], curves, measure) for run in runs],
                  0.0, True, f"{PAPER}, {source}")
        claim(f"{text}, in most layers", f"fraction of the {len(ablated)} ablated layers with a "
              "positive mean gap",
              [sum(pc_advantage(run.comparisons[layer], curves, measure) > 0
                   for layer in ablated) / len(ablated) for run in runs],
              0.5, True, f"{PAPER}, {source}")
    return made


def seed_table(runs: Sequence[SeedRun]) -> list[dict]:
    """One row per seed and layer: the net's accuracy, PCs and neurons for the fraction and
    their ratio, and the two mean gaps of ``pc_advantage`` (accuracy, where measured)."""
    rows = []
    for run in runs:
        for layer, c in run.comparisons.items():
            labelled = bool(c.ablation) and c.ablation["pca"].accuracy is not None
            gaps = {curves: round(pc_advantage(c, curves), 3) if labelled else None
                    for curves in ("removed", "kept")}
            rows.append({"seed": run.seed, "net accuracy": run.setting.accuracy,
                         "layer": layer, "dimension": c.dimension,
                         "PCs": c.directions_needed["pca"],
                         "neurons": c.directions_needed["neurons"],
                         "ratio": round(direction_ratio(c), 3),
                         "gap removed": gaps["removed"], "gap kept": gaps["kept"]})
    return rows


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


def applicable_kinds(run: SeedRun, layer: str, rows: int = 256) -> list[str]:
    """The bases that can be fitted to ``layer``: every kind, but NMF only where the layer's
    activations on the first ``rows`` training inputs are non-negative (a ReLU's output, not a
    transformer's residual stream or GELU)."""
    model = run.setting.model
    name, module = find_layer(model, layer)
    with torch.no_grad(), captured_outputs(module, name) as outputs:
        model(to_model_device(model, run.setting.fit_inputs[:rows]))
    negative = bool(single_output(outputs, name, module).min() < 0)
    return [kind for kind in bases.KINDS if not (negative and kind == "nmf")]


def kinds_over_seeds(runs: Sequence[SeedRun], layer: str, kinds: Sequence[str] = bases.KINDS,
                     options: dict[str, SampleOptions | SparseOptions] | None = None,
                     batch_size: int = 256, progress: bool = True) -> list[dict]:
    """Per seed of ``runs``, ``compare_kinds`` for ``layer``: its bases ``kinds`` fitted on the
    seed's training images (the sample-based kinds with ``options[kind]``, their seed set to
    the run's) and compared on its test images at k = the PCs needed for the fraction."""
    if runs and layer not in runs[0].comparisons:
        raise ValueError(f"layer '{layer}' was not compared; compared layers: "
                         f"{list(runs[0].comparisons)}")
    rows = []
    for run in runs:
        comparison = run.comparisons[layer]
        seeded = {kind: dataclasses.replace(
            (options or {}).get(kind) or (SparseOptions() if kind == "sparse"
                                          else SampleOptions()), seed=run.seed)
                  for kind in kinds if kind in bases.SAMPLE_KINDS}
        fitted = fit_bases(run.setting.model, run.setting.fit_inputs, layer, kinds, seeded,
                           comparison.bases["pca"].spatial or "positions", batch_size, progress)
        rows += [{"seed": run.seed, **row} for row in compare_kinds(
            run.setting.model, fitted, run.setting.test_inputs, run.setting.test_labels,
            comparison.directions_needed["pca"], batch_size, progress)]
    return rows


KIND_MEASURES = ("variance_explained", "accuracy", "agreement", "zero_codes", "dead_directions")


def kinds_summary(rows: Sequence[dict], confidence: float = 0.95) -> list[dict]:
    """One row per basis kind of ``kinds_over_seeds``'s ``rows``: for each measure, the mean
    over the seeds and its Student's t interval (``"mean [low, high]"``; one seed: the mean
    alone); ``k`` per seed where the seeds' PC counts differ. Measures a row leaves as None
    (accuracy without labels) stay None."""
    kinds = list(dict.fromkeys(row["kind"] for row in rows))
    summary = []
    for kind in kinds:
        chosen = [row for row in rows if row["kind"] == kind]
        ks = list(dict.fromkeys(row["k"] for row in chosen))
        line = {"kind": kind, "seeds": len(chosen),
                "k": ks[0] if len(ks) == 1 else ", ".join(str(row["k"]) for row in chosen)}
        for measure in KIND_MEASURES:
            values = [row[measure] for row in chosen]
            if any(value is None for value in values):
                line[measure] = None
                continue
            mean, low, high = t_interval(values, confidence)
            line[measure] = (f"{mean:.3f}" if math.isnan(low)
                             else f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        summary.append(line)
    return summary


# ----------------------------------------------------------------------------------------------
# What the notebook plots and writes


def variance_panels(comparisons: dict[str, LayerComparison]) -> dict[str, dict[str, tuple]]:
    """Per layer, the cumulative variance explained against k, one series per basis."""
    return {layer: {KIND_LABELS[kind]: (range(len(curve)), curve)
                    for kind, curve in c.cumulative.items()}
            for layer, c in comparisons.items()}


def ablation_panels(comparisons: dict[str, LayerComparison],
                    measure: str = "accuracy") -> dict[str, dict[str, tuple]]:
    """Per ablated layer, ``measure`` (``"accuracy"`` or ``"agreement"``) against k >= 1 (for a
    log axis): per basis the top-k kept and the top-k removed."""
    panels = {}
    for layer, c in comparisons.items():
        if not c.ablation:
            continue
        panels[layer] = {}
        for kind, curve in c.ablation.items():
            kept = [(k, v) for k, v in zip(curve.ks, _measure(curve, measure, layer),
                                           strict=True) if k > 0]
            panels[layer][f"top-k {KIND_LABELS[kind]} kept"] = ([k for k, _ in kept],
                                                                [v for _, v in kept])
        for kind in c.removal:
            removed, values = removal_series(c, kind, measure)
            panels[layer][f"top-k {KIND_LABELS[kind]} removed"] = (removed[1:], values[1:])
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
            "ablation": {kind: _curve_record(curve) for kind, curve in c.ablation.items()},
            "removal": {kind: {**_curve_record(curve),
                               "removed": [c.dimension - k for k in curve.ks]}
                        for kind, curve in c.removal.items()},
        }
        for kind, gallery in (galleries or {}).get(layer, {}).items():
            content["per_layer"][layer].setdefault("directions", {})[kind] = {
                "labels": gallery.labels, "top_indices": gallery.top.indices,
                "top_scores": gallery.top.scores,
                "visualisation_start_objective": gallery.visualisation.start_objective,
                "visualisation_objective": gallery.visualisation.objective,
            }
    return content


def _curve_record(curve: AblationCurve) -> dict:
    return {"ks": curve.ks, "keep": curve.keep, "fill": curve.fill, "accuracy": curve.accuracy,
            "agreement": curve.agreement, "original_accuracy": curve.original_accuracy}
