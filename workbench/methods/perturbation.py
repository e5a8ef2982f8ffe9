"""Perturbation methods: occlusion and Shapley value sampling. Forward passes only, batched."""
from __future__ import annotations

import itertools
import math

import torch

from workbench.arguments import expand_baseline, feature_groups, generator
from workbench.forward import predict, target_scores
from workbench.methods.gradients import BASELINE, BATCH_SIZE
from workbench.registry import Method, Option, register


def window_slices(shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]):
    """Every window position as a tuple of slices; the last window in a dimension may be cut off
    at the edge so that every feature is covered (as in Captum)."""
    per_dim = []
    for size, length, step in zip(shape, window, stride):
        count = math.ceil(max(size - length, 0) / step) + 1
        per_dim.append([slice(i * step, min(i * step + length, size)) for i in range(count)])
    return list(itertools.product(*per_dim))


def _check_window(name: str, value: tuple[int, ...] | None, shape: tuple[int, ...]):
    if len(value) != len(shape):
        raise ValueError(
            f"option '{name}' must have one entry per non-batch dimension of the inputs "
            f"{shape}, got {value}"
        )
    if any(v > s for v, s in zip(value, shape)):
        raise ValueError(f"option '{name}' {value} is larger than the inputs' shape {shape}")


def occlusion(model, inputs, target, window, stride, baseline, batch_size):
    """Mean over the windows covering a feature of ``f(x) - f(x with the window at baseline)``
    (Zeiler & Fergus 2014; Occlusion-1 in Ancona et al. 2018 with a one-feature window)."""
    sample_shape = tuple(inputs.shape[1:])
    window = window or (1,) * len(sample_shape)
    stride = stride or window
    _check_window("window", window, sample_shape)
    _check_window("stride", stride, sample_shape)
    baseline = expand_baseline(baseline, inputs)
    indices, scores = target_scores(model, inputs, target)
    positions = window_slices(sample_shape, window, stride)
    total = torch.zeros_like(inputs)
    counts = torch.zeros(sample_shape, dtype=inputs.dtype, device=inputs.device)
    n_samples = len(inputs)
    per_chunk = max(1, batch_size // n_samples)
    for start in range(0, len(positions), per_chunk):
        chunk = positions[start:start + per_chunk]
        occluded = inputs.repeat(len(chunk), *[1] * len(sample_shape))
        for k, where in enumerate(chunk):
            rows = slice(k * n_samples, (k + 1) * n_samples)
            occluded[(rows, *where)] = baseline[(slice(None), *where)]
        output = predict(model, occluded, batch_size)
        chosen = output.gather(1, indices.repeat(len(chunk))[:, None])[:, 0]
        drops = scores.repeat(len(chunk)) - chosen
        drops = drops.view(len(chunk), n_samples)
        for k, where in enumerate(chunk):
            total[(slice(None), *where)] += drops[k].view(-1, *[1] * len(sample_shape))
            counts[where] += 1
    return total / counts


def shapley_sampling(model, inputs, target, n_samples, baseline, seed, feature_mask, batch_size):
    """Shapley values estimated from random feature orderings (Castro et al. 2009).

    For each permutation, features (or groups of ``feature_mask``) are switched from the
    baseline to the input one at a time; a feature's value is its mean marginal change of the
    target score. Each permutation's values sum exactly to ``f(x) - f(baseline)`` over groups;
    every feature of a group receives the group's value.
    """
    baseline = expand_baseline(baseline, inputs)
    sample_shape = tuple(inputs.shape[1:])
    groups, n_groups = feature_groups(feature_mask, inputs)
    one_hot = torch.nn.functional.one_hot(groups, n_groups).T.view(n_groups, *sample_shape)
    one_hot = one_hot.to(torch.bool)
    indices, _ = target_scores(model, inputs, target)
    rng = generator(seed)
    n = len(inputs)
    values = torch.zeros(n, n_groups, dtype=inputs.dtype, device=inputs.device)
    for _ in range(n_samples):
        order = torch.randperm(n_groups, generator=rng).to(inputs.device)
        # switched-on masks after 0..n_groups steps: cumulative union along the order
        switched = one_hot[order].cumsum(0).clamp(max=1).to(torch.bool)
        switched = torch.cat([torch.zeros_like(switched[:1]), switched])  # (n_groups+1, ...)
        points = torch.where(switched[:, None], inputs[None], baseline[None])
        output = predict(model, points.reshape(-1, *sample_shape), batch_size)
        scores = output.gather(1, indices.repeat(n_groups + 1)[:, None]).view(n_groups + 1, n)
        values[:, order] += (scores[1:] - scores[:-1]).T
    values /= n_samples
    return values[:, groups].view(inputs.shape)


register(Method(
    "occlusion", occlusion,
    "Drop of the target score when a sliding window is set to the baseline.",
    options=(
        Option("window", "shape", None, "window over the non-batch dimensions (None: one feature)"),
        Option("stride", "shape", None,
               "step of the window (None: the window; Captum's default: 1 in every dimension)"),
        BASELINE,
        Option("batch_size", "int", 256, "occluded inputs per forward pass", minimum=1),
    ),
    reference="Zeiler & Fergus 2014",
))
register(Method(
    "shapley_sampling", shapley_sampling,
    "Shapley values of features (or groups) estimated from random orderings.",
    options=(
        Option("n_samples", "int", 25, "random permutations", minimum=1),
        BASELINE,
        Option("seed", "seed", None, "random seed (None: fresh permutations)"),
        Option("feature_mask", "mask", None, "integer labels grouping features (None: each alone)"),
        BATCH_SIZE,
    ),
    reference="Castro et al. 2009; Strumbelj & Kononenko 2010",
))
