"""Batches of a data set as every streaming pass of the workbench reads them.

``data`` is a tensor of inputs (split into chunks of ``batch_size``) or an iterable of batches:
input tensors, or ``(inputs, labels, ...)`` tuples such as a ``DataLoader`` yields.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from tqdm.auto import tqdm

Batch = tuple[torch.Tensor, torch.Tensor | None]


def batches(data, batch_size: int) -> Iterator[Batch]:
    """``(inputs, labels or None)`` for each batch of ``data``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(data, torch.Tensor):
        for inputs in data.split(batch_size):
            yield inputs, None
        return
    if not isinstance(data, Iterable):
        raise TypeError(f"data must be a tensor of inputs or an iterable of batches, got "
                        f"{type(data).__name__}")
    for batch in data:
        if isinstance(batch, (tuple, list)):
            yield batch[0], (batch[1] if len(batch) > 1 else None)
        elif isinstance(batch, torch.Tensor):
            yield batch, None
        else:
            raise TypeError(f"each batch of data must be a tensor or an (inputs, labels) tuple, "
                            f"got {type(batch).__name__}")


def progress_batches(data, batch_size: int, progress: bool, description: str) -> Iterator[Batch]:
    """:func:`batches` under a tqdm progress bar (off when ``progress`` is False)."""
    total = -(-len(data) // batch_size) if isinstance(data, torch.Tensor) else None
    return tqdm(batches(data, batch_size), total=total, desc=description, disable=not progress,
                leave=False)
