"""Arguments that several methods and metrics share, checked and expanded: baselines, feature
masks and seeded random generators. Each error names the argument and what would be accepted."""
from __future__ import annotations

import math
import numbers

import torch

from workbench.checks import all_finite


def broadcast_to_inputs(tensor: torch.Tensor, shape: torch.Size, name: str,
                        named_shape: torch.Size | None = None) -> torch.Tensor:
    """``tensor`` broadcast to ``shape``; a ``ValueError`` naming the argument ``name`` and the
    inputs' shape (``named_shape``, default ``shape``) if it does not broadcast."""
    try:
        return torch.broadcast_to(tensor, shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(tensor.shape)} does not broadcast to the inputs' shape "
            f"{tuple(shape if named_shape is None else named_shape)}"
        ) from None


def expand_baseline(baseline: float | torch.Tensor, inputs: torch.Tensor,
                    name: str = "baseline", shape: torch.Size | None = None) -> torch.Tensor:
    """``baseline`` as a tensor of the inputs' shape, dtype and device.

    Accepts a number, a tensor of one sample's shape, or anything broadcastable to the inputs.
    ``shape`` is the inputs' shape named in errors (default ``inputs.shape``).
    """
    if isinstance(baseline, numbers.Real):
        return torch.full_like(inputs, float(baseline))
    if not isinstance(baseline, torch.Tensor):
        raise TypeError(f"{name} must be a number or a tensor, got {type(baseline).__name__}")
    if baseline.device != inputs.device:
        raise ValueError(f"{name} is on {baseline.device} but inputs are on {inputs.device}")
    expanded = broadcast_to_inputs(baseline, inputs.shape, name,
                                   inputs.shape if shape is None else shape)
    if not all_finite(expanded):
        raise ValueError(f"{name} contains NaN or infinite values")
    return expanded.to(inputs.dtype).clone()


def compact_baseline(baseline: float | torch.Tensor, inputs: torch.Tensor,
                     name: str = "baseline") -> torch.Tensor:
    """``baseline`` as one sample of shape ``(1, *inputs.shape[1:])`` when it is the same for
    every input (a number, or a tensor without a batch dimension or with batch size 1), else
    as ``expand_baseline`` gives it; broadcasts against the inputs either way."""
    shared = isinstance(baseline, numbers.Real) or (
        isinstance(baseline, torch.Tensor)
        and (baseline.dim() < inputs.dim() or baseline.shape[0] == 1))
    if not shared:
        return expand_baseline(baseline, inputs, name)
    # a shared baseline broadcasts to one sample exactly when it broadcasts to all of them
    return expand_baseline(baseline, inputs[:1], name, shape=inputs.shape)


def feature_groups(feature_mask: torch.Tensor | None,
                    inputs: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Group index ``0..G-1`` of every feature of one sample (flattened), and ``G``."""
    n_features = math.prod(inputs.shape[1:])
    if feature_mask is None:
        return torch.arange(n_features, device=inputs.device), n_features
    if not isinstance(feature_mask, torch.Tensor) or feature_mask.is_floating_point():
        raise TypeError("feature_mask must be an integer tensor broadcastable to the inputs")
    mask = broadcast_to_inputs(feature_mask.to(inputs.device), inputs.shape, "feature_mask")
    if not (mask == mask[:1]).all():
        raise ValueError("feature_mask must group features the same way for every sample")
    _, groups = torch.unique(mask[0].flatten(), return_inverse=True)
    return groups, int(groups.max()) + 1


def generator(seed: int | None) -> torch.Generator:
    """A CPU generator, seeded if ``seed`` is given (results then match on any device)."""
    rng = torch.Generator()
    if seed is None:
        rng.seed()
    else:
        rng.manual_seed(seed)
    return rng


def baseline_samples(baselines: float | torch.Tensor, inputs: torch.Tensor,
                     name: str = "baselines") -> torch.Tensor:
    """A distribution of baselines as ``K`` samples, shape ``(K, *inputs.shape[1:])``, in the
    inputs' dtype and on their device: a number or a tensor of one sample's shape is ``K = 1``;
    a tensor with a leading dimension ``K`` (the inputs' number of dimensions) is ``K`` samples,
    each broadcast to one sample's shape."""
    sample_shape = inputs.shape[1:]
    if isinstance(baselines, torch.Tensor) and baselines.dim() == inputs.dim():
        if len(baselines) == 0:
            raise ValueError(f"{name} must hold at least one sample, got shape "
                             f"{tuple(baselines.shape)}")
        shape = torch.Size((len(baselines), *sample_shape))
        return expand_baseline(baselines, torch.empty(shape, dtype=inputs.dtype,
                                                      device=inputs.device), name)
    return expand_baseline(baselines, inputs[:1], name, shape=inputs.shape)
