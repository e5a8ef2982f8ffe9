"""The text example: the zoo's token classifier explained at its embedding, on sentences whose
class is decided by planted words (``workbench.text_data``), so each method's relevance can be
checked against where the decision really is."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

import workbench as wb
from workbench.text_data import TokenData
from workbench.text_view import token_relevance

METHODS = ("integrated_gradients", "deeplift_rescale")


@dataclass
class ExplainedSentence:
    words: list[str]
    label: str
    planted: torch.Tensor                 # bool (length,): where the signal words are
    relevance: dict[str, torch.Tensor]    # method -> (length,)


def explain_sentences(model: nn.Module, data: TokenData, n: int,
                      methods: Sequence[str] = METHODS) -> list[ExplainedSentence]:
    """The first ``n`` test sentences, each method's relevance per token for the true class
    (at the embedding, reference: the padding token)."""
    ids, labels = data.x_test[:n], data.y_test[:n]
    relevance = {method: token_relevance(wb.attribute(model, ids, method, target=labels,
                                                      layer="embedding",
                                                      **reference_options(method)))
                 for method in methods}
    return [ExplainedSentence(data.words(ids[i]), data.classes[int(labels[i])],
                              data.mask_test[i], {m: r[i] for m, r in relevance.items()})
            for i in range(len(ids))]


def reference_options(method: str) -> dict[str, int]:
    """The padding token (id 0) as the reference of a method that takes a ``baseline``
    (given in input space: its embedding is the reference at the layer); none otherwise."""
    takes = {option.name for option in wb.method_info(method).options}
    return {"baseline": 0} if "baseline" in takes else {}


def planted_share(sentences: Sequence[ExplainedSentence]) -> dict[str, float]:
    """Per method, the mean over sentences of the share of positive relevance that falls on
    the planted words (1: all of it; the planted words' share of the tokens if uninformed)."""
    methods = sentences[0].relevance if sentences else {}
    return {method: planted_share_of([s.relevance[method] for s in sentences],
                                     [s.planted for s in sentences])
            for method in methods}


def planted_share_of(relevance: Iterable[torch.Tensor], planted: Iterable[torch.Tensor]
                     ) -> float:
    """The mean over sentences (rows, or a ``(N, length)`` tensor) of the share of each
    sentence's positive relevance on its planted words (``planted``: bool, same shapes)."""
    return float(torch.stack([
        row.clamp_min(0)[mask].sum() / row.clamp_min(0).sum().clamp_min(1e-12)
        for row, mask in zip(relevance, planted, strict=True)]).mean())
