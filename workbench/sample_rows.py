"""Which sample each row of a method's batch belongs to.

A method that evaluates the model on many rows per sample (path points, noisy copies) names
the samples of those rows while the model runs on them (``with rows_of(samples): ...``).
Model views (``workbench.model_views``) read it to give every row its own sample's inputs and
forward arguments, so that a layer, or a model with per-sample arguments, is explained for the
whole batch at once rather than one sample at a time.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

_samples: ContextVar[torch.Tensor | None] = ContextVar("workbench_sample_rows", default=None)


@contextlib.contextmanager
def rows_of(samples: torch.Tensor) -> Iterator[None]:
    """While the block runs, the model's batch rows are samples ``samples`` (one index per
    row, into the inputs the method was given)."""
    token = _samples.set(samples)
    try:
        yield
    finally:
        _samples.reset(token)


def current_rows() -> torch.Tensor | None:
    """The sample of each row of the batch now evaluated, if the method named them."""
    return _samples.get()
