"""The measurements of an audit at one seed, each a call into the engine and its metrics:

- the model parameter randomization tests, cascading and independent (Adebayo et al. 2018,
  arXiv 1810.03292, section 3.1), with the paper's similarity metrics
  (``workbench.randomization.map_similarity``);
- Sensitivity-n (Ancona et al. 2018, arXiv 1711.06104, section 4) over patches of pixels;
- region perturbation (Samek et al. 2017, arXiv 1509.06321): the target output while patches
  are replaced by their mean, most relevant first (MoRF), least relevant first (LeRF) and in a
  random order, and the area between the LeRF and MoRF curves;
- the completeness gap (``workbench.completeness_gap``) against the zero baseline;
- the pairwise agreement of the methods' maps (signed Spearman rank correlation): Ancona et
  al. 2018 (section 3) show Gradient * Input, DeepLIFT-Rescale and epsilon-LRP coincide on ReLU
  nets without biases at the zero baseline.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from workbench import metrics, similarity
from workbench.attribution import attribute
from workbench.completeness import completeness_gap
from workbench.forward import predict
from workbench.randomization import (METRICS, map_similarity, parameterized_layers,
                                     randomized_stage)

#: label -> (method name, options), as ``workbench.sanity_check`` takes them
Methods = Mapping[str, tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Budget:
    """How much an audit measures: images per seed, Integrated Gradients' steps, how many
    stages of each randomization test are explained (None: every layer), the fractions of
    patches Sensitivity-n removes, its subsets per size and the patch side in pixels, and the
    patches per image side of region perturbation (every one of them is replaced)."""

    images: int
    ig_steps: int
    cascading_stages: int | None
    independent_stages: int | None
    sensitivity_fractions: tuple[float, ...]
    sensitivity_subsets: int
    patch: int
    degradation_grid: int = 4


BUDGETS = {
    "smoke": Budget(images=4, ig_steps=8, cascading_stages=2, independent_stages=2,
                    sensitivity_fractions=(0.1, 0.3), sensitivity_subsets=16, patch=8,
                    degradation_grid=4),
    "quick": Budget(images=8, ig_steps=16, cascading_stages=4, independent_stages=3,
                    sensitivity_fractions=(0.05, 0.2, 0.5), sensitivity_subsets=32, patch=8,
                    degradation_grid=4),
    "full": Budget(images=64, ig_steps=50, cascading_stages=None, independent_stages=None,
                   sensitivity_fractions=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9),
                   sensitivity_subsets=100, patch=8, degradation_grid=8),
}


def explain(model: nn.Module, inputs: torch.Tensor, methods: Methods,
            target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every method's attributions of ``inputs`` for ``target``."""
    return {label: attribute(model, inputs, name, target=target, **options)
            for label, (name, options) in methods.items()}


def chosen_stages(total: int, wanted: int | None) -> list[int]:
    """Stage numbers 1..``total`` to explain: all of them, or ``wanted`` spread evenly with the
    first (top layer) and the last always included."""
    if wanted is None or wanted >= total:
        return list(range(1, total + 1))
    return sorted({int(round(v)) for v in np.linspace(1, total, max(wanted, 2))})


def randomization_table(model: nn.Module, inputs: torch.Tensor, methods: Methods,
                        target: torch.Tensor, original: Mapping[str, torch.Tensor], mode: str,
                        stages: int | None, seed: int) -> pd.DataFrame:
    """The similarity of each method's maps to ``original`` at the chosen stages of ``mode``
    randomization (``workbench.randomization.randomized_stage``, the stages of
    ``workbench.randomize``). Columns as ``workbench.sanity_check``'s, reference
    ``"original"``; stage 0 (the original model) is left out."""
    total = len(parameterized_layers(model))
    tables = []
    for index in chosen_stages(total, stages):
        stage, randomized = randomized_stage(model, mode, index, seed=seed)
        maps = explain(randomized, inputs, methods, target)
        tables.append(map_similarity(maps, original, METRICS).assign(
            stage_index=index, stage=stage, reference="original"))
    return pd.concat(tables, ignore_index=True)


def patch_mask(inputs: torch.Tensor, patch: int) -> torch.Tensor:
    """Integer labels ``(1, 1, H, W)``: square patches of ``patch`` pixels (all channels
    together), the features Sensitivity-n removes; smaller patches on images under
    ``4 * patch`` pixels, so that there are at least 4 x 4 of them."""
    height, width = inputs.shape[-2:]
    side = max(1, min(patch, min(height, width) // 4))
    rows = torch.arange(height) // side
    columns = torch.arange(width) // side
    labels = rows[:, None] * ((width + side - 1) // side) + columns[None, :]
    return labels[None, None].to(inputs.device)


def sensitivity(model: nn.Module, inputs: torch.Tensor, maps: Mapping[str, torch.Tensor],
                target: torch.Tensor, budget: Budget, seed: int) -> dict[str, Any]:
    """Sensitivity-n of every method on the same random subsets of patches:
    ``{"ns": [...], "curves": {label: mean correlation per n}}`` (NaN entries ignored)."""
    mask = patch_mask(inputs, budget.patch)
    groups = int(mask.max()) + 1
    ns = sorted({min(groups - 1, max(1, round(f * groups)))
                 for f in budget.sensitivity_fractions})
    curves = metrics.sensitivity_n_curves(model, inputs, maps, ns, target=target,
                                          n_subsets=budget.sensitivity_subsets, seed=seed,
                                          feature_mask=mask)
    return {"ns": ns, "features": groups,
            "curves": {label: curve.mean().tolist() for label, curve in curves.items()}}


def degradation_patch(height: int, width: int, grid: int) -> tuple[int, int]:
    """Region perturbation's patch ``(h, w)``: the image cut into ``grid`` x ``grid`` patches,
    or the largest smaller grid that divides both sides."""
    for cells in range(min(grid, height, width), 0, -1):
        if height % cells == 0 and width % cells == 0:
            return height // cells, width // cells
    return height, width


def region_perturbation(model: nn.Module, inputs: torch.Tensor,
                        maps: Mapping[str, torch.Tensor], target: torch.Tensor, budget: Budget,
                        seed: int) -> dict[str, Any]:
    r"""Region perturbation of every method, all patches replaced by their mean in turn:
    ``{"curves": {label: {order: mean curve}}, "random": mean curve, "gap": {label: value}}``.

    ``gap`` is the area between the LeRF and the MoRF curve, :math:`A_{LeRF} - A_{MoRF}`
    (``DegradationCurve.area``), relative to the mean over the inputs of
    :math:`|f(x) - f(\bar x)|`, the change once every patch is replaced: 0 for a ranking no
    better than chance, up to 1 when the output falls at the first patch MoRF removes and
    stays until the last patch LeRF removes. The random order (from ``seed``) is shared."""
    patch = degradation_patch(*inputs.shape[-2:], budget.degradation_grid)
    options = dict(patch=patch, replacement="mean", target=target)
    random = metrics.degradation(model, inputs, next(iter(maps.values())), order="random",
                                 seed=seed, **options)
    scale = float((random.curve[:, 0] - random.curve[:, -1]).abs().mean())
    scale = max(scale, torch.finfo(random.curve.dtype).tiny)
    curves, gap = {}, {}
    for label, values in maps.items():
        found = {order: metrics.degradation(model, inputs, values, order=order, **options)
                 for order in ("most_relevant_first", "least_relevant_first")}
        curves[label] = {order: r.curve.mean(0).tolist() for order, r in found.items()}
        gap[label] = float((found["least_relevant_first"].area
                            - found["most_relevant_first"].area).mean()) / scale
    return {"patch": list(patch), "curves": curves, "random": random.curve.mean(0).tolist(),
            "gap": gap}


def relative_completeness_gap(model: nn.Module, inputs: torch.Tensor,
                              maps: Mapping[str, torch.Tensor],
                              target: torch.Tensor) -> dict[str, float]:
    r"""Per method, the mean over the inputs of
    :math:`|\sum_i a_i - (f_t(x) - f_t(0))| / |f_t(x) - f_t(0)|`: how far the attributions are
    from summing to the output change from the zero baseline, relative to that change."""
    output = predict(model, inputs.detach().clone()).gather(1, target[:, None])[:, 0]
    start = predict(model, torch.zeros_like(inputs)).gather(1, target[:, None])[:, 0]
    change = (output - start).abs().clamp_min(torch.finfo(output.dtype).tiny)
    return {label: float((completeness_gap(model, inputs, values, 0.0, target).abs()
                          / change).mean())
            for label, values in maps.items()}


def agreement(maps: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    r"""How alike each pair of methods' maps is, as two matrices over ``labels``:
    ``spearman``, the mean over the inputs of the signed Spearman rank correlation (maps summed
    over channels), and ``relative_difference``, the largest over the inputs of
    :math:`\lVert a - b \rVert / \max(\lVert a \rVert, \lVert b \rVert)` (0 for maps
    that are equal: an equivalence holds exactly)."""
    labels = list(maps)
    rank = np.eye(len(labels))
    difference = np.zeros((len(labels), len(labels)))
    flat = {label: values.detach().double().flatten(1) for label, values in maps.items()}
    for i, first in enumerate(labels):
        for j in range(i + 1, len(labels)):
            second = labels[j]
            value = similarity.spearman(maps[first], maps[second], absolute=False)
            rank[i, j] = rank[j, i] = float(torch.nanmean(value.double()))
            norms = torch.maximum(flat[first].norm(dim=1), flat[second].norm(dim=1))
            gap = (flat[first] - flat[second]).norm(dim=1) / norms.clamp_min(1e-300)
            difference[i, j] = difference[j, i] = float(gap.max())
    return {"labels": labels, "spearman": rank.tolist(),
            "relative_difference": difference.tolist()}
