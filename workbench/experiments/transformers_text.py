"""Notebook 06's text part: the comparison of ``workbench.experiments.transformers`` on the
zoo's text transformer (``tokens_transformer``), explained at its embedding on the generated
sentences whose class is decided by planted words (``workbench.text_data``).

Two measures per method, each seed training the transformer from another initialisation and
drawing other test sentences:

- **planted share**: the share of a sentence's positive relevance on the planted words (the
  ground truth of this task; ``workbench.experiments.text.planted_share``);
- **token deletion**: region perturbation (Samek et al. 2017, arXiv 1509.06321) with a token as
  the region and the padding token as the replacement: the target logit after the ``k`` most
  (MoRF) or least (LeRF) relevant tokens are replaced, ``k = 0..length``; faithfulness is the
  area between the curves, ``A_LeRF - A_MoRF``, as in the AttnLRP paper's evaluation
  (Achtibat et al. 2024, arXiv 2402.05602, section 4.1), which deletes tokens of real text.

The orderings checked are the paper's (``transformers.ORDERING``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import workbench as wb
from workbench import models
from workbench.claims import Claim
from workbench.experiments.text import planted_share_of, reference_options
from workbench.experiments.transformers import (METHODS, ORDERING, ORDERS, SOURCE,
                                                drawn_test_indices, method_options)
from workbench.text_view import token_relevance


@dataclass(frozen=True)
class TextProtocol:
    """Per seed: ``sentences`` test sentences (a seeded draw; the target is the true class),
    integrated gradients with ``ig_steps`` steps from the padding token."""

    model: str = "tokens_transformer"
    sentences: int = 64
    ig_steps: int = 32


@dataclass
class TextSeedResult:
    """One seed: the model's test ``accuracy``, the explained ``ids`` and ``targets``, each
    method's relevance per token (``relevance[label]``, ``(N, length)``), its planted share,
    its mean MoRF and LeRF token-deletion curves and its per-sentence faithfulness."""

    seed: int
    accuracy: float
    ids: torch.Tensor
    targets: torch.Tensor
    relevance: dict[str, torch.Tensor]
    planted: dict[str, float]
    curves: dict[str, dict[str, list[float]]]
    faithfulness: dict[str, list[float]]

    def record(self) -> dict[str, Any]:
        """Plain values for ``results.json``."""
        return {"seed": self.seed, "accuracy": self.accuracy, "planted_share": self.planted,
                "curves": self.curves, "faithfulness": self.faithfulness}


@torch.no_grad()
def token_deletion(model: nn.Module, ids: torch.Tensor, relevance: torch.Tensor,
                   target: torch.Tensor, order: str, pad: int = 0) -> torch.Tensor:
    """``(N, length + 1)``: the target logit after the first ``k`` tokens of ``order``
    (``"most_relevant_first"`` or ``"least_relevant_first"`` by ``relevance``; ties keep the
    sentence order) are replaced by ``pad``, ``k = 0..length``."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if relevance.shape != ids.shape:
        raise ValueError(f"relevance must have the shape of ids {tuple(ids.shape)} (one value "
                         f"per token), got {tuple(relevance.shape)}")
    n, length = ids.shape
    ranking = torch.sort(relevance, dim=1, descending=order == "most_relevant_first",
                         stable=True).indices
    position = torch.empty_like(ranking).scatter_(1, ranking,
                                                  torch.arange(length).expand(n, -1))
    steps = torch.arange(length + 1)
    removed = position[:, None, :] < steps[None, :, None]  # (N, length + 1, length)
    perturbed = torch.where(removed, torch.full_like(ids, pad)[:, None, :], ids[:, None, :])
    logits = model(perturbed.reshape(-1, length)).reshape(n, length + 1, -1)
    return logits.gather(2, target[:, None, None].expand(n, length + 1, 1))[..., 0]


def run_text_seed(seed: int, protocol: TextProtocol = TextProtocol(),
                  methods: Mapping[str, tuple[str, dict[str, Any]]] = METHODS,
                  progress: bool = True) -> TextSeedResult:
    """The zoo model ``protocol.model`` trained under ``seed`` (cached), each method's relevance
    per token of the drawn sentences at the embedding, its planted share and its
    token-deletion curves."""
    model, info = models.zoo(protocol.model, seed=seed, device="cpu", progress=progress)
    data = models.zoo_data(protocol.model)
    drawn = drawn_test_indices(data, protocol.sentences, seed, "sentences")
    ids, targets, planted = data.x_test[drawn], data.y_test[drawn], data.mask_test[drawn]
    relevance, shares, curves, faithfulness = {}, {}, {}, {}
    for label, (method, options) in methods.items():
        relevance[label] = token_relevance(wb.attribute(
            model, ids, method, target=targets, layer="embedding", **reference_options(method),
            **method_options(method, options, protocol))).float()
        shares[label] = planted_share_of(relevance[label], planted)
        found = {order: token_deletion(model, ids, relevance[label], targets, order)
                 for order in ORDERS}
        curves[label] = {order: curve.mean(0).tolist() for order, curve in found.items()}
        faithfulness[label] = (found["least_relevant_first"].mean(1)
                               - found["most_relevant_first"].mean(1)).tolist()
    return TextSeedResult(seed, float(info["accuracy"]), ids, targets, relevance, shares,
                          curves, faithfulness)


def text_table(results: Sequence[TextSeedResult]):
    """A pandas DataFrame: per method, the planted share and the faithfulness
    ``A_LeRF - A_MoRF`` (means over the seeds), best planted share first."""
    import pandas as pd

    rows = [{"method": label,
             "planted share": float(np.mean([r.planted[label] for r in results])),
             "A_LeRF - A_MoRF": float(np.mean([np.mean(r.faithfulness[label])
                                               for r in results]))}
            for label in results[0].planted]
    return (pd.DataFrame(rows).sort_values("planted share", ascending=False)
            .reset_index(drop=True).round(3))


def text_claims(results: Sequence[TextSeedResult]) -> list[Claim]:
    """The paper's ordering as claims over the seeds, for both measures: the first method's
    planted share, and its mean ``A_LeRF - A_MoRF``, exceed the second's (threshold 0)."""
    seeds = [r.seed for r in results]
    note = ("a two-block transformer on generated sentences whose class is decided by planted "
            "words, explained at its embedding; tokens deleted by replacing them with padding")
    out = []
    for better, worse in ORDERING:
        out.append(Claim(
            f"{better} puts more relevance on the planted words than {worse} (text)",
            f"planted share of {better} minus that of {worse}",
            [r.planted[better] - r.planted[worse] for r in results], seeds, threshold=0.0,
            above=True, source=SOURCE, note=note))
        out.append(Claim(
            f"{better} is more faithful than {worse} (text, token deletion)",
            f"A_LeRF - A_MoRF of {better} minus that of {worse} (logit units)",
            [float(np.mean(r.faithfulness[better]) - np.mean(r.faithfulness[worse]))
             for r in results], seeds, threshold=0.0, above=True, source=SOURCE, note=note))
    return out
