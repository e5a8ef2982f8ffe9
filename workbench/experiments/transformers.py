"""The computations behind notebook 06: the faithfulness evaluation of AttnLRP (Achtibat et al.
2024, "AttnLRP: attention-aware layer-wise relevance propagation for transformers", ICML, arXiv
2402.05602, section 4.1) at the workbench's scale, on the zoo's vision transformer.

Region perturbation (Samek et al. 2017, arXiv 1509.06321; ``workbench.metrics.degradation``)
replaces the image's patches in the order an attribution ranks them, most relevant first (MoRF)
and least relevant first (LeRF). As in the AttnLRP paper, a method's faithfulness is the area
between the two curves, ``A_LeRF - A_MoRF`` (in the target logit's units; larger: the ranking
tells more about what the model uses). The paper reports, on ViT-B/16, AttnLRP above CP-LRP
(Ali et al. 2022, arXiv 2202.07304), CP-LRP above the gradient methods (gradient x input,
integrated gradients) and attention rollout (Abnar & Zuidema 2020, arXiv 2005.00928). Each seed
trains the vision transformer from another initialisation and draws other test images; the
ordering is checked as ``workbench.claims.Claim`` over the seeds.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import workbench as wb
from workbench import metrics, models
from workbench.claims import Claim

#: the methods compared: label -> (method, options)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "AttnLRP": ("attn_lrp", {}),
    "CP-LRP": ("cp_lrp", {}),
    "Gradient x input": ("gradient_x_input", {}),
    "Integrated gradients": ("integrated_gradients", {"steps": 32}),
    "Attention rollout": ("attention_rollout", {}),
}
ORDERS = ("most_relevant_first", "least_relevant_first")
SOURCE = "Achtibat et al. 2024, section 4.1, Table 1 (faithfulness)"


@dataclass(frozen=True)
class Protocol:
    """Per seed: ``images`` test images (a seeded draw; the target is the predicted class),
    regions of ``patch`` pixels (the transformer's own patches), replaced by their ``"mean"``
    (or a ``"blur"``) in every step, integrated gradients with ``ig_steps`` steps."""

    model: str = "photos_vit"
    images: int = 32
    patch: int = 4
    replacement: str = "mean"
    ig_steps: int = 32


@dataclass
class SeedResult:
    """One seed: the model's test ``accuracy``, the explained ``images`` and ``targets``, each
    method's attributions (``maps``), its mean MoRF and LeRF curves (``curves[label][order]``)
    and its per-image faithfulness ``A_LeRF - A_MoRF`` (``faithfulness[label]``), and a random
    order's curve for reference."""

    seed: int
    accuracy: float
    images: torch.Tensor
    targets: torch.Tensor
    maps: dict[str, torch.Tensor]
    curves: dict[str, dict[str, list[float]]]
    faithfulness: dict[str, list[float]]
    random_curve: list[float]

    def record(self) -> dict[str, Any]:
        """Plain values for ``results.json``."""
        return {"seed": self.seed, "accuracy": self.accuracy, "curves": self.curves,
                "faithfulness": self.faithfulness, "random_curve": self.random_curve}


def method_options(method: str, options: Mapping[str, Any], protocol: Any) -> dict:
    """``options`` with the ``protocol``'s ``ig_steps`` for integrated gradients."""
    if method == "integrated_gradients":
        return {**options, "steps": protocol.ig_steps}
    return dict(options)


def drawn_test_indices(data, count: int, seed: int, argument: str = "images") -> torch.Tensor:
    """Indices of ``count`` test samples of ``data`` drawn without replacement under ``seed``;
    ``argument`` names the count in the error for a count out of range."""
    if not 1 <= count <= len(data.x_test):
        raise ValueError(f"{argument} must be in 1..{len(data.x_test)}, got {count}")
    order = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(seed))
    return order[:count]


def explained_images(data, count: int, seed: int) -> torch.Tensor:
    """``count`` test images drawn without replacement under ``seed``."""
    return data.x_test[drawn_test_indices(data, count, seed)]


def run_seed(seed: int, protocol: Protocol = Protocol(),
             methods: Mapping[str, tuple[str, dict[str, Any]]] = METHODS,
             progress: bool = True) -> SeedResult:
    """The zoo model ``protocol.model`` trained under ``seed`` (cached), its attributions of
    the drawn images and their region-perturbation curves."""
    model, info = models.zoo(protocol.model, seed=seed, device="cpu", progress=progress)
    data = models.zoo_data(protocol.model)
    images = explained_images(data, protocol.images, seed)
    with torch.no_grad():
        targets = model(images).argmax(1)
    maps, curves, faithfulness = {}, {}, {}
    for label, (method, options) in methods.items():
        maps[label] = wb.attribute(model, images, method, target=targets,
                                   **method_options(method, options, protocol))
        found = {order: metrics.degradation(model, images, maps[label], order=order,
                                            patch=protocol.patch, target=targets,
                                            replacement=protocol.replacement)
                 for order in ORDERS}
        curves[label] = {order: curve.curve.mean(0).tolist() for order, curve in found.items()}
        gap = found["least_relevant_first"].area - found["most_relevant_first"].area
        faithfulness[label] = gap.tolist()
    random = metrics.degradation(model, images, maps[next(iter(maps))], order="random",
                                 patch=protocol.patch, target=targets,
                                 replacement=protocol.replacement, seed=seed)
    return SeedResult(seed, float(info["accuracy"]), images, targets, maps, curves,
                      faithfulness, random.curve.mean(0).tolist())


def faithfulness_table(results: Sequence[SeedResult]):
    """A pandas DataFrame: per method, the mean faithfulness ``A_LeRF - A_MoRF`` of each seed
    and their mean, best first."""
    import pandas as pd

    rows = []
    for label in results[0].faithfulness:
        per_seed = [float(np.mean(r.faithfulness[label])) for r in results]
        rows.append({"method": label,
                     **{f"seed {r.seed}": f"{v:.3f}" for r, v in zip(results, per_seed)},
                     "mean": float(np.mean(per_seed))})
    table = pd.DataFrame(rows).sort_values("mean", ascending=False)
    table["mean"] = table["mean"].map(lambda v: f"{v:.3f}")
    return table.reset_index(drop=True)


def _lead(results: Sequence[SeedResult], better: str, worse: str) -> list[float]:
    """Per seed: ``better``'s mean faithfulness minus ``worse``'s."""
    return [float(np.mean(r.faithfulness[better]) - np.mean(r.faithfulness[worse]))
            for r in results]


#: the ordering the paper reports: (better, worse)
ORDERING = (
    ("AttnLRP", "CP-LRP"),
    ("AttnLRP", "Gradient x input"),
    ("AttnLRP", "Integrated gradients"),
    ("AttnLRP", "Attention rollout"),
    ("CP-LRP", "Gradient x input"),
    ("CP-LRP", "Attention rollout"),
)


def claims(results: Sequence[SeedResult]) -> list[Claim]:
    """The paper's ordering of faithfulness as claims over the seeds: each says the first
    method's mean ``A_LeRF - A_MoRF`` exceeds the second's (threshold 0)."""
    seeds = [r.seed for r in results]
    note = ("a small ViT on 32-pixel photo crops, not ViT-B/16 on ImageNet; regions are the "
            "model's 4-pixel patches replaced by their mean")
    return [Claim(f"{better} is more faithful than {worse}",
                  f"A_LeRF - A_MoRF of {better} minus that of {worse} (logit units)",
                  _lead(results, better, worse), seeds, threshold=0.0, above=True,
                  source=SOURCE, note=note)
            for better, worse in ORDERING]
