"""The computations behind notebook 03: Adebayo et al., "Sanity checks for saliency maps",
NeurIPS 2018, arXiv 1810.03292. The model parameter randomization tests (cascading and
independent, section 3) and the data randomization test (section 4), with an edge detector as
the model-free baseline.

Two settings:

- photos: scikit-image's shipped photographs explained by a VGG-style net. No ImageNet weights
  can be downloaded, so the net is trained here on a labelled task the photos provide
  themselves: which of the 20 shipped photos a random crop comes from
  (``workbench.data.photo_crops``). The photos' full views are crops of that task, so the net
  classifies them (in distribution) and its explanations can be tested against randomization.
  An untrained net would make the test meaningless: randomizing random weights changes nothing
  that was learned.
- digits: scikit-learn's 8x8 digits with the zoo's ReLU CNN (``digits_cnn_relu``), and the
  same architecture trained on permuted labels for the data randomization test.

The paper's verdicts per method (Gradient and Grad-CAM pass, Guided Backprop and Guided
Grad-CAM fail) are checked over seeds: ``seed_summaries`` runs what they read for one seed,
``claims`` turns the summaries of all seeds into ``workbench.claims.Claim``s.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import torch
from torch import nn

import workbench as wb
from workbench import data as datasets
from workbench import models, plots
from workbench.claims import Claim
from workbench.device import default_device
from workbench.randomization import Methods, map_similarity, stage_attributions, summarize
from workbench.similarity import edge_map

#: panel titles of the similarity figures, per metric
METRIC_TITLES = {"spearman_abs": "Spearman rank correlation (absolute values)",
                 "spearman": "Spearman rank correlation (signed)",
                 "ssim": "SSIM", "hog": "Pearson correlation of HOG features"}


def paper_methods(ig_steps: int = 32) -> dict[str, tuple[str, dict[str, Any]]]:
    """The paper's methods that the workbench has (label -> method and options); SmoothGrad and
    VarGrad are left out for time."""
    return {
        "Gradient": ("gradient", {}),
        "Gradient * Input": ("gradient_x_input", {}),
        "Integrated Gradients": ("integrated_gradients", {"steps": ig_steps}),
        "Guided Backprop": ("guided_backprop", {}),
        "Grad-CAM": ("grad_cam", {}),
        "Guided Grad-CAM": ("guided_grad_cam", {}),
    }


def photo_model(size: int = 64, n_crops: int = 2000, epochs: int = 6,
                widths: Sequence[int] = (16, 32, 64), seed: int = 0, progress: bool = True,
                ) -> tuple[nn.Module, dict[str, Any], datasets.Photos, torch.Tensor]:
    """The VGG-style net trained (and cached) on ``photo_crops``, the default shipped photos
    at ``size`` and their classes (the index of each photo among the net's classes)."""
    model, info = models.trained("vgg_style", "photo_crops", seed=seed, progress=progress,
                                 n=n_crops, size=size, epochs=epochs, widths=list(widths))
    photos = datasets.photos(size)
    device = next(model.parameters()).device
    target = torch.tensor([info["classes"].index(name) for name in photos.names], device=device)
    return model, info, photos, target


def digits_model(name: str = "digits_cnn_relu", n_images: int = 32, progress: bool = True,
                 seed: int = 0) -> tuple[nn.Module, dict[str, Any], datasets.ImageData,
                                         torch.Tensor, torch.Tensor]:
    """The zoo model ``name`` trained with ``seed``, its data, and its first ``n_images`` test
    digits and labels."""
    model, info = models.zoo(name, seed=seed, progress=progress)
    data = models.zoo_data(name)
    device = next(model.parameters()).device
    return (model, info, data, data.x_test[:n_images].to(device),
            data.y_test[:n_images].to(device))


def random_label_model(info: Mapping[str, Any], data: datasets.ImageData,
                       train_size: int | None = None, lr: float = 3e-3, max_epochs: int = 500,
                       seed: int = 0, progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """A fresh net of the architecture described by a zoo ``info`` (its settings and builder
    arguments), trained on ``data`` (its first ``train_size`` training images) with permuted
    labels until it memorises them (``wb.train_with_random_labels``). Cached beside the zoo's
    nets (``models.cache_dir()``) under these settings: training is deterministic under
    ``seed``, so a cached net is the one training would give."""
    build = models.ARCHITECTURES[info["settings"]["architecture"]]
    config = {"format": 1, "of": info["settings"], "data": data.name, "train_size": train_size,
              "lr": lr, "max_epochs": max_epochs, "seed": seed}
    path = models.cache_dir() / (f"random_labels-{info['settings']['architecture']}-"
                                 f"{models.cache_key(config)[:20]}.pt")
    device = default_device()
    if path.is_file():
        model, cached = models.load_model(path, build)
        return model.to(device).eval(), {**cached, "from_cache": True}
    fresh = build(**info["arguments"], seed=seed)
    if train_size is not None:
        data = datasets.ImageData(data.x_train[:train_size], data.y_train[:train_size],
                                  data.x_test, data.y_test, data.classes, data.name)
    model, trained_info = wb.train_with_random_labels(fresh, data, lr=lr, max_epochs=max_epochs,
                                                      seed=seed, device=device,
                                                      progress=progress)
    models.save_model(path, model, {**trained_info, "arguments": dict(info["arguments"])})
    return model, {**trained_info, "from_cache": False}


def explain(model: nn.Module, inputs: torch.Tensor, methods: Mapping[str, tuple[str, dict]],
            target) -> dict[str, torch.Tensor]:
    """Every method's attributions of ``inputs`` for ``target``."""
    return {label: wb.attribute(model, inputs, name, target=target, **options)
            for label, (name, options) in methods.items()}


def data_randomization(model: nn.Module, random_model: nn.Module, inputs: torch.Tensor,
                       methods: Methods, target,
                       metrics: Sequence[str] = ("spearman_abs", "spearman", "ssim", "hog"),
                       ) -> tuple[dict[str, dict[str, torch.Tensor]], Any]:
    """The data randomization test: each method's maps for the net trained on the true labels
    and for the one trained on permuted labels, explaining the same ``target`` (the true label),
    compared per sample; also each map against the edge detector.

    Returns the maps (``{"true labels": ..., "random labels": ...}``) and the summary
    (``summarize``) with ``reference`` ``"true labels"`` or ``"edges"`` and ``stage`` the
    model.
    """
    import pandas as pd

    methods = dict(methods) if isinstance(methods, Mapping) else {m: (m, {}) for m in methods}
    maps = {"true labels": explain(model, inputs, methods, target),
            "random labels": explain(random_model, inputs, methods, target)}
    edges = edge_map(inputs)
    tables = []
    for index, (stage, stage_maps) in enumerate(maps.items()):
        for reference, other in (("true labels", maps["true labels"]), ("edges", edges)):
            tables.append(map_similarity(stage_maps, other, metrics).assign(
                stage_index=index, stage=stage, reference=reference))
    return maps, summarize(pd.concat(tables, ignore_index=True))


def headline(summary, metric: str = "spearman", reference: str = "original") -> dict[str, dict]:
    """Per method of a *cascading* summary: the mean similarity to the original after the top
    layer alone is randomized (stage 1) and after every layer is (the last stage)."""
    rows = summary[(summary["metric"] == metric) & (summary["reference"] == reference)]
    last = int(rows["stage_index"].max())
    result = {}
    for method, part in rows.groupby("method", sort=False):
        by_stage = part.set_index("stage_index")["mean"]
        result[method] = {"top layer randomized": float(by_stage[1]),
                          "all layers randomized": float(by_stage[last])}
    return result


def per_input(stage_maps: Mapping[str, Mapping[str, torch.Tensor]],
              ) -> list[dict[str, dict[str, torch.Tensor]]]:
    """``{stage: {method: maps (N, ...)}}`` regrouped as one ``{stage: {method: map (...)}}``
    per input, ``N`` of them."""
    counts = {len(maps) for methods in stage_maps.values() for maps in methods.values()}
    if len(counts) != 1:
        raise ValueError(f"stage_maps must hold the same number of inputs everywhere, got "
                         f"{sorted(counts)}")
    return [{stage: {method: maps[i] for method, maps in methods.items()}
             for stage, methods in stage_maps.items()} for i in range(counts.pop())]


def example_figures(inputs: torch.Tensor, stage_maps: Mapping[str, Mapping[str, torch.Tensor]],
                    title: str, count: int | None = None) -> list[go.Figure]:
    """One randomization figure (``plots.randomization_grid``) for each of the first ``count``
    inputs (default all): the input, its edge map, then each method's map at each stage; titled
    ``"<title>, input <i>"``."""
    examples = per_input(stage_maps)[:count]
    edges = edge_map(inputs[:len(examples)])
    return [plots.randomization_grid(inputs[i], maps, edges[i], title=f"{title}, input {i}")
            for i, maps in enumerate(examples)]


def randomization_examples(model: nn.Module, inputs: torch.Tensor, methods: Methods, mode: str,
                           target, seed: int = 0, init: str = "default",
                           ) -> dict[str, dict[str, torch.Tensor]]:
    """Every method's maps of ``inputs`` for the original model and after each stage of
    ``mode`` (``"cascading"`` or ``"independent"``) randomization, ``{stage: {method: maps}}``;
    the model itself is left as it is."""
    return dict(stage_attributions(model, inputs, methods, mode=mode, target=target, seed=seed,
                                   init=init))


def randomization_figures(model: nn.Module, inputs: torch.Tensor, methods: Methods, mode: str,
                          target, title: str, seed: int = 0,
                          init: str = "default") -> list[go.Figure]:
    """``example_figures`` of ``randomization_examples``: per input, every method's map as the
    layers are randomized."""
    return example_figures(inputs, randomization_examples(model, inputs, methods, mode, target,
                                                          seed, init), title)


def similarity_figure(summary, reference: str = "original", title: str = "") -> go.Figure:
    """Similarity against the stage, a panel per metric, a line per method (mean and one
    standard deviation over the inputs), from the rows of ``summary``
    (``workbench.randomization.summarize``) compared with ``reference``: the original maps,
    ``"edges"`` or, in the data randomization test, ``"true labels"``."""
    rows = summary[summary["reference"] == reference].sort_values("stage_index", kind="stable")
    if rows.empty:
        raise ValueError(f"summary has no rows with reference '{reference}'")
    return plots.similarity_curves(rows, panel_titles=METRIC_TITLES, title=title)


# ----------------------------------------------------------------------------------------------
# Claims over seeds

#: the methods the claims are about: the paper finds that Gradient and Grad-CAM pass the
#: randomization tests and that Guided Backprop and Guided Grad-CAM fail them (sections 3-5)
CLAIM_METHODS = ("Gradient", "Grad-CAM", "Guided Backprop", "Guided Grad-CAM")
#: the similarity the claims read: Spearman rank correlation of the absolute maps, the paper's
#: first metric (the maps as its figures show them: sum of absolute values over the channels)
CLAIM_METRIC = "spearman_abs"
#: the line between "alike" and "changed": midway between independent maps (0) and the same map
#: (1); in the paper's Fig. 4 the failing methods stay well above it once the top blocks are
#: re-initialised and the passing ones fall well below it after the whole cascade
CLAIM_THRESHOLD = 0.5


def claim_methods() -> dict[str, tuple[str, dict[str, Any]]]:
    """``paper_methods`` restricted to ``CLAIM_METHODS``."""
    methods = paper_methods()
    return {label: methods[label] for label in CLAIM_METHODS}


@dataclass(frozen=True)
class Setup:
    """What one seed's run uses besides the seed: the photo net (``photo_model``), the digits
    CNN and its twin trained on permuted labels (``random_label_model``), and the
    re-initialisation (``workbench.randomize``'s ``init``)."""

    photo_size: int = 64
    photo_crops: int = 2000
    photo_epochs: int = 6
    photo_widths: tuple[int, ...] = (16, 32, 64)
    digits_model: str = "digits_cnn_relu"
    n_digits: int = 32
    random_label_size: int | None = None
    random_label_lr: float = 3e-3
    init: str = "default"


@dataclass(frozen=True)
class SeedSummaries:
    """The two tests the claims read, for one seed: ``cascading`` (``summarize`` of the
    cascading randomization of the photo net, reference ``"original"``), ``data`` (the
    ``data_randomization`` summary on the digits, reference ``"true labels"``) and the
    random-label net's training info."""

    cascading: Any
    data: Any
    random_labels: Mapping[str, Any]


def seed_summaries(setup: Setup, seed: int, methods: Methods | None = None,
                   progress: bool = False) -> SeedSummaries:
    """The claims' measurements at ``seed``: the photo net trained with ``seed``, its layers
    re-initialised from the logits down under ``seed``; the digits CNN trained with ``seed`` and
    its twin trained on labels permuted under ``seed``. Only ``CLAIM_METRIC`` is computed;
    ``methods`` defaults to ``claim_methods()``."""
    methods = claim_methods() if methods is None else methods
    net, _, photos, target = photo_model(setup.photo_size, setup.photo_crops, setup.photo_epochs,
                                         setup.photo_widths, seed=seed, progress=progress)
    table = wb.sanity_check(net, photos.images, methods, mode="cascading",
                            metrics=(CLAIM_METRIC,), target=target, seed=seed, init=setup.init,
                            edge_baseline=False, progress=progress)
    digit_net, info, data, images, labels = digits_model(setup.digits_model, setup.n_digits,
                                                         progress, seed=seed)
    random_net, random_info = random_label_model(info, data, setup.random_label_size,
                                                 lr=setup.random_label_lr, seed=seed,
                                                 progress=progress)
    _, data_summary = data_randomization(digit_net, random_net, images, methods, labels,
                                         metrics=(CLAIM_METRIC,))
    return SeedSummaries(summarize(table), data_summary, dict(random_info))


def stage_similarity(summary, method: str, stage_index: int = -1, metric: str = CLAIM_METRIC,
                     reference: str = "original") -> float:
    """The mean similarity (over the inputs) of ``method``'s maps at ``stage_index`` of a
    ``summarize`` table to ``reference``; a negative index counts from the last stage."""
    rows = summary[(summary["method"] == method) & (summary["metric"] == metric)
                   & (summary["reference"] == reference)]
    if rows.empty:
        raise ValueError(f"summary has no rows for method '{method}', metric '{metric}' and "
                         f"reference '{reference}'")
    stages = sorted(int(i) for i in rows["stage_index"].unique())
    if not -len(stages) <= stage_index < len(stages):
        raise ValueError(f"stage_index {stage_index} is out of range: the summary has stages "
                         f"{stages}")
    wanted = stages[stage_index]
    return float(rows.loc[rows["stage_index"] == wanted, "mean"].iloc[0])


_PARAMETER_NOTE = ("{n} photos, a VGG-style net of {layers} layers trained here (not Inception v3 "
                   "on ImageNet); each stage explains the true class, the paper's code the "
                   "randomized net's own prediction")
_DATA_NOTE = ("8x8 digits and the zoo CNN (the paper: MNIST and Fashion MNIST); {n} test digits, "
              "both nets explaining the true label")


def claims(per_seed: Mapping[int, SeedSummaries], top_layers: int = 2,
           threshold: float = CLAIM_THRESHOLD) -> list[Claim]:
    """The paper's verdicts as ``Claim``s over the seeds of ``per_seed`` (``seed_summaries``),
    each read in ``CLAIM_METRIC``:

    - Gradient and Grad-CAM pass the cascading randomization: after every layer is
      re-initialised their maps' similarity to the original is below ``threshold``;
    - Guided Backprop and Guided Grad-CAM fail it: after the top ``top_layers`` layers are
      re-initialised (stage ``top_layers`` of the cascade) it is still above ``threshold``;
    - Gradient and Grad-CAM pass the data randomization test: the maps of the net trained on
      permuted labels are below ``threshold`` similar to the true-label net's.
    """
    if not per_seed:
        raise ValueError("per_seed must hold at least one seed's summaries")
    if not isinstance(top_layers, int) or isinstance(top_layers, bool) or top_layers < 1:
        raise ValueError(f"top_layers must be a positive int, got {top_layers!r}")
    seeds = list(per_seed)
    first = next(iter(per_seed.values())).cascading
    layers = int(first["stage_index"].max())
    n_photos = int(first["count"].max())
    n_digits = int(next(iter(per_seed.values())).data["count"].max())
    parameter_note = _PARAMETER_NOTE.format(n=n_photos, layers=layers)

    def cascade(method: str, stage: int) -> list[float]:
        return [stage_similarity(s.cascading, method, stage) for s in per_seed.values()]

    def data(method: str) -> list[float]:
        return [stage_similarity(s.data, method, 1, reference="true labels")
                for s in per_seed.values()]

    metric = "Spearman (absolute values)"
    result = [Claim(f"{method} passes the cascading randomization test: its maps change once "
                    "every layer is re-initialised",
                    f"{metric} to the original maps, all {layers} layers re-initialised",
                    cascade(method, -1), seeds, threshold=threshold, above=False,
                    source="Adebayo et al. 2018, section 3.1, Fig. 2 and 4", note=parameter_note)
              for method in ("Gradient", "Grad-CAM")]
    result += [Claim(f"{method} fails the cascading randomization test: its maps stay alike "
                     f"when the top {top_layers} layers are re-initialised",
                     f"{metric} to the original maps, top {top_layers} layers re-initialised",
                     cascade(method, top_layers), seeds, threshold=threshold, above=True,
                     source="Adebayo et al. 2018, section 3.1, Fig. 2 and 4", note=parameter_note)
               for method in ("Guided Backprop", "Guided Grad-CAM")]
    result += [Claim(f"{method} passes the data randomization test: the random-label net's maps "
                     "differ from the true-label net's",
                     f"{metric} between the two nets' maps", data(method), seeds,
                     threshold=threshold, above=False, source="Adebayo et al. 2018, section 4, "
                     "Fig. 5", note=_DATA_NOTE.format(n=n_digits))
               for method in ("Gradient", "Grad-CAM")]
    return result
