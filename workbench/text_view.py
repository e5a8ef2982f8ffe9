"""Text explanations as highlighted tokens: one relevance per token, shown as the token's
background (red: for the explained class, blue: against it; opacity: magnitude relative to the
sequence's largest), the way attributions of text classifiers are usually shown (e.g. Arras et
al. 2017, "What is relevant in a text document?", PLOS ONE, figure 2).
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import torch

POSITIVE_RGB = (220, 38, 38)
NEGATIVE_RGB = (37, 99, 235)


def token_relevance(attributions: torch.Tensor) -> torch.Tensor:
    """Relevance per token from attributions at an embedding ``(N, length, embedding_dim)``:
    the sum over the embedding dimension (the token's share of the explained score, for
    methods that sum to the score's change)."""
    if not isinstance(attributions, torch.Tensor) or attributions.dim() < 2:
        raise ValueError("attributions must be a tensor (N, length, embedding_dim) or "
                         f"(length, embedding_dim), got {getattr(attributions, 'shape', None)}")
    return attributions.detach().sum(-1)


def highlighted_tokens(words: Sequence[str], relevance: torch.Tensor | Sequence[float],
                       scale: float | None = None) -> str:
    """HTML of ``words`` with backgrounds by ``relevance`` (one value per word), opacity
    ``|r| / scale`` (``scale`` default: the largest ``|r|``). Each word's value is its
    tooltip."""
    values = torch.as_tensor(relevance, dtype=torch.float64).reshape(-1)
    if len(values) != len(words):
        raise ValueError(f"relevance must hold one relevance per token ({len(words)}), got "
                         f"{len(values)}")
    largest = float(values.abs().max()) if scale is None else float(scale)
    spans = []
    for word, value in zip(words, values.tolist()):
        red, green, blue = POSITIVE_RGB if value >= 0 else NEGATIVE_RGB
        opacity = min(abs(value) / largest, 1.0) if largest > 0 else 0.0
        spans.append(
            f'<span title="{value:.4g}" style="background: rgba({red}, {green}, {blue}, '
            f'{opacity:.3f}); padding: 1px 3px; margin: 1px; border-radius: 3px">'
            f"{html.escape(word)}</span>")
    return " ".join(spans)


def token_table(words: Sequence[str], relevance_by_row: Mapping[str, torch.Tensor]) -> str:
    """HTML table: one row per entry of ``relevance_by_row`` (e.g. per method), its label and
    ``words`` highlighted by that row's relevance (each row scaled to its own largest)."""
    rows = "".join(
        f'<tr><td style="padding-right: 1em; white-space: nowrap">{html.escape(label)}</td>'
        f'<td style="line-height: 1.9">{highlighted_tokens(words, relevance)}</td></tr>'
        for label, relevance in relevance_by_row.items())
    return f'<table class="workbench-tokens">{rows}</table>'
