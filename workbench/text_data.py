"""Generated text with known ground truth: sequences of token ids whose class is decided by a
few planted words.

Each sequence is ``length`` filler words drawn uniformly from a neutral vocabulary, with one or
two *signal* words of its class planted at random positions; nothing else differs between the
classes. A correct explanation of a classifier trained on it puts its relevance on the planted
positions (``mask_*``), the text counterpart of ``data.shapes``'s drawn shape.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from workbench.data import split_indices, train_test_loaders

#: token id 0: padding, the reference (baseline) token; its embedding is kept at zero
PAD = "<pad>"
#: the words that decide each class
SIGNAL_WORDS: dict[str, tuple[str, ...]] = {
    "negative": ("awful", "boring", "dull"),
    "positive": ("great", "superb", "lovely"),
}
#: words that carry no class information
FILLER_WORDS = (
    "the", "a", "film", "plot", "actor", "scene", "was", "is", "and", "very", "quite", "story",
    "music", "ending", "it", "this", "of", "with", "some", "rather", "cast", "script", "long",
    "seen",
)


@dataclass(frozen=True, eq=False, repr=False)
class TokenData:
    """Labelled token sequences split into train and test parts, with the planted positions.

    ``x_*``: int64 token ids ``(N, length)`` into ``vocabulary``; ``y_*``: int64 class indices
    into ``classes``; ``mask_*``: bool ``(N, length)``, True where a signal word was planted.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    name: str
    vocabulary: list[str]
    mask_train: torch.Tensor
    mask_test: torch.Tensor

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.dim() != 2 or x.dtype != torch.int64:
                raise ValueError(f"x_{part} must be int64 token ids of shape (N, length), got "
                                 f"{x.dtype} {tuple(x.shape)}")
            if y.dim() != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise ValueError(f"y_{part} must be int64 of shape ({len(x)},), got "
                                 f"{y.dtype} {tuple(y.shape)}")

    @property
    def input_shape(self) -> tuple[int]:
        """(length,) of one sequence."""
        return (self.x_train.shape[1] if len(self.x_train) else self.x_test.shape[1],)

    def loaders(self, batch_size: int = 64, seed: int = 0,
                shuffle: bool = True) -> tuple[DataLoader, DataLoader]:
        """Train and test ``DataLoader``s; the train one shuffles, seeded by ``seed``."""
        return train_test_loaders(self, batch_size, seed, shuffle)

    def words(self, ids: torch.Tensor) -> list[str]:
        """The words of one sequence of token ids."""
        return [self.vocabulary[int(i)] for i in ids]

    def __repr__(self) -> str:
        return (f"TokenData('{self.name}', train={len(self.x_train)}, test={len(self.x_test)}, "
                f"length={self.input_shape[0]}, vocabulary={len(self.vocabulary)}, "
                f"classes={len(self.classes)})")


def planted_tokens(n: int = 2000, length: int = 12, seed: int = 0,
                   test_fraction: float = 0.25,
                   classes: Sequence[str] = tuple(SIGNAL_WORDS)) -> TokenData:
    """Sequences of ``length`` filler words with one or two signal words of their class
    (``SIGNAL_WORDS``) planted at distinct random positions. Classes are balanced and the
    split is stratified; everything is deterministic under ``seed``. Token 0 is ``PAD``
    (never in a sequence: the reference for integrated gradients and DeepLIFT)."""
    classes = list(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes) or set(classes) - set(SIGNAL_WORDS):
        raise ValueError(f"classes must be at least two distinct names from "
                         f"{list(SIGNAL_WORDS)}, got {classes}")
    if length < 2:
        raise ValueError(f"length must be an integer >= 2 (room for two signal words), "
                         f"got {length}")
    if n < 2 * len(classes):
        raise ValueError(f"n must be at least 2 per class ({2 * len(classes)}), got {n}")
    vocabulary = [PAD, *FILLER_WORDS, *(w for c in classes for w in SIGNAL_WORDS[c])]
    index = {word: i for i, word in enumerate(vocabulary)}
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(classes))
    ids = rng.integers(1, 1 + len(FILLER_WORDS), size=(n, length))
    mask = np.zeros((n, length), dtype=bool)
    for i, label in enumerate(labels):
        count = int(rng.integers(1, 3))
        positions = rng.choice(length, size=count, replace=False)
        words = rng.choice(SIGNAL_WORDS[classes[label]], size=count)
        ids[i, positions] = [index[w] for w in words]
        mask[i, positions] = True
    train, test = split_indices(labels, test_fraction, seed)
    x = torch.as_tensor(ids, dtype=torch.int64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    planted = torch.as_tensor(mask)
    return TokenData(x[train], y[train], x[test], y[test], classes, "planted_tokens",
                     vocabulary, planted[train], planted[test])
