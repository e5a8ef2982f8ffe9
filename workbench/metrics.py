"""Faithfulness metrics: do attributions predict what the model does when the attributed
features are removed? Sensitivity-n and degradation (region perturbation) curves.

- ``sensitivity_n``: Ancona et al. 2018 ("Towards better understanding of gradient-based
  attribution methods for deep neural networks", ICLR 2018, arXiv 1711.06104, section 4):
  Pearson correlation, over random subsets of ``n`` features, between the sum of their
  attributions and the output drop when they are set to the baseline.
- ``degradation`` / ``degradation_curves``: region perturbation (Samek et al. 2017, arXiv
  1509.06321): patches are replaced in the order of their summed attribution (most relevant
  first, least relevant first, or random) while the target output is tracked.

How alike two explanations are (the sanity checks' metrics) is ``workbench.similarity``; the
explain function for Quantus metrics is ``workbench.quantus_adapter.quantus_explain``.

Everything runs on the inputs' device; random numbers come from a seeded CPU generator, so a
seed gives the same subsets and orders on every device and for every ``batch_size``.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from workbench.arguments import compact_baseline, expand_baseline, feature_groups, generator
from workbench.checks import Target, all_finite, check_model_and_inputs
from workbench.forward import predict, target_scores
from workbench.image_filters import gaussian_blur
from workbench.layout import fast_format
from workbench.subsets import draw_count, random_subsets

ORDERS = ("most_relevant_first", "least_relevant_first", "random")
REPLACEMENTS = ("mean", "baseline", "blur")


# ----------------------------------------------------------------------------------------------
# Sensitivity-n


@dataclass(frozen=True)
class SensitivityCurve:
    """Sensitivity-n for several ``n``: ``correlations[j, i]`` is the correlation of sample ``i``
    for ``ns[j]`` (NaN where it is undefined, see ``sensitivity_n``)."""

    ns: tuple[int, ...]
    correlations: torch.Tensor  # (len(ns), N)

    def mean(self) -> torch.Tensor:
        """Mean over the samples for each ``n`` (NaN entries ignored), shape ``(len(ns),)``."""
        return self.correlations.nanmean(dim=1)


def sensitivity_n(model: nn.Module, inputs: torch.Tensor, attributions: torch.Tensor,
                  n: int | Sequence[int], *, target: Target = None,
                  baseline: float | torch.Tensor = 0.0, n_subsets: int = 100,
                  seed: int | None = None, feature_mask: torch.Tensor | None = None,
                  batch_size: int = 256) -> torch.Tensor | SensitivityCurve:
    r"""Sensitivity-n (Ancona et al. 2018, section 4): for each sample, the Pearson correlation
    over ``n_subsets`` random subsets :math:`S` of ``n`` features between

    .. math:: \sum_{i \in S} R_i(x) \quad\text{and}\quad f_t(x) - f_t(x_{[x_S = \bar x_S]}).

    A method satisfies Sensitivity-n when the two are equal for every subset (correlation 1);
    on a linear model :math:`(x - \bar x) \odot w` does for every ``n``.

    Parameters
    ----------
    model, inputs, target:
        As for ``workbench.attribute``; ``inputs`` of shape ``(N, ...)``.
    attributions:
        Tensor of the inputs' shape.
    n:
        Subset size, or a sequence of sizes for a curve. Counts features, or groups of
        ``feature_mask``; from 1 to the number of features (groups).
    baseline:
        The value removed features take: a number or a tensor broadcastable to the inputs.
    n_subsets:
        Random subsets per sample and ``n`` (at least 2). Subsets are drawn independently
        (uniformly among all subsets of size ``n``), each sample its own.
    seed:
        Seed of the CPU generator. Draw order, a contract the tests rely on: for each ``n`` in
        the order given, for each sample, ``n_subsets`` rows of
        ``workbench.subsets.random_subsets(n_subsets, n, G, generator)`` (``G`` features or
        groups): ``u = torch.rand(n_subsets, m, dtype=torch.float64)`` with ``m = min(n, G -
        n)``, turned into ``m`` distinct items by Floyd's algorithm; they are the subset for
        ``n <= G / 2`` and the features left out of it otherwise. The cost grows with ``m``,
        not with ``G``.
    feature_mask:
        Integer labels broadcastable to the inputs, the same for every sample: features with
        one label are removed together and their attributions summed.
    batch_size:
        Masked inputs per forward pass. A pass takes the subsets of ``batch_size // n_subsets``
        samples (of one sample, in chunks, when ``n_subsets > batch_size``).

    Returns
    -------
    For an int ``n``: tensor ``(N,)``; for a sequence: ``SensitivityCurve`` with a
    ``(len(ns), N)`` tensor. Inputs' dtype and device.

    The correlation is NaN where it is undefined: where the attribution sums or the target
    outputs do not vary across the subsets (standard deviation at most ``16 * eps`` of the
    inputs' dtype times their magnitude). This always happens for ``n`` equal to the number of
    features (one possible subset; check completeness, ``sum R = f(x) - f(baseline)``,
    instead), and for constant attributions or a model insensitive to the features.
    """
    ns, single = _subset_sizes(n)
    correlations = _sensitivity(model, inputs, [attributions], ns, target, baseline, n_subsets,
                                seed, feature_mask, batch_size)[0]
    if single:
        return correlations[0]
    return SensitivityCurve(tuple(ns), correlations)


def sensitivity_n_curves(model: nn.Module, inputs: torch.Tensor,
                         attributions: Mapping[str, torch.Tensor], n: Sequence[int], *,
                         target: Target = None, baseline: float | torch.Tensor = 0.0,
                         n_subsets: int = 100, seed: int | None = None,
                         feature_mask: torch.Tensor | None = None,
                         batch_size: int = 256) -> dict[str, SensitivityCurve]:
    """``sensitivity_n`` of several methods' attributions (``{label: attributions}``) on the
    same random subsets: the masked inputs go through the model once for all of them, and each
    curve equals ``sensitivity_n(model, inputs, attributions[label], n, ...)`` with the same
    ``seed``."""
    if not isinstance(attributions, Mapping) or not attributions:
        raise ValueError("attributions must be a non-empty mapping {label: attributions}")
    ns, _ = _subset_sizes(n)
    labels = list(attributions)
    correlations = _sensitivity(model, inputs, [attributions[k] for k in labels], ns, target,
                                baseline, n_subsets, seed, feature_mask, batch_size)
    return {label: SensitivityCurve(tuple(ns), correlations[m]) for m, label in enumerate(labels)}


def _sensitivity(model, inputs, attributions: Sequence[torch.Tensor], ns: list[int], target,
                 baseline, n_subsets: int, seed, feature_mask, batch_size: int) -> torch.Tensor:
    """Correlations ``(len(attributions), len(ns), N)`` of ``sensitivity_n``, the subsets and
    outputs shared by every attribution."""
    check_model_and_inputs(model, inputs)
    _check_positive_int("n_subsets", n_subsets, minimum=2)
    _check_positive_int("batch_size", batch_size)
    attributions = [_check_attributions(a, inputs, allow_channel_sum=False) for a in attributions]
    groups, n_groups = feature_groups(feature_mask, inputs)
    for size in ns:
        if size > n_groups:
            what = "groups in feature_mask" if feature_mask is not None else "features"
            raise ValueError(f"n={size} exceeds the number of {what} ({n_groups})")
    baseline = expand_baseline(baseline, inputs)
    indices, scores = target_scores(model, inputs, target, batch_size)

    n_samples, device = len(inputs), inputs.device
    group_attributions = torch.zeros(len(attributions), n_samples, n_groups,
                                     dtype=torch.float64, device=device)
    for m, attribution in enumerate(attributions):
        group_attributions[m].index_add_(1, groups, attribution.flatten(1).to(torch.float64))
    group_totals = group_attributions.sum(-1, keepdim=True)

    rng = generator(seed)
    # the masked inputs of all samples, sample after sample and subset after subset, are cut
    # into passes of batch_size rows (a pass may end inside a sample's subsets)
    rows_per_pass = min(n_samples * n_subsets, batch_size)
    batch = _batch_buffer(model, inputs, rows_per_pass)
    write = _subset_writer(inputs, baseline, batch, groups if feature_mask is not None else None)
    correlations = torch.empty(len(attributions), len(ns), n_samples, dtype=inputs.dtype,
                               device=device)
    outputs = torch.empty(n_samples, n_subsets, dtype=scores.dtype, device=device)
    row_targets = indices.repeat_interleave(n_subsets)
    for j, size in enumerate(ns):
        # subsets are drawn for as many samples at once as memory allows (the draws do not
        # depend on the chunks); memory of a draw: its items (int64), 16-bit integers per group
        per_sample = n_subsets * (draw_count(size, n_groups) + n_groups // 4 + 1)
        samples_per_draw = max(1, _DRAW_ELEMENTS // per_sample)
        for first in range(0, n_samples, samples_per_draw):
            drawn = slice(first, min(first + samples_per_draw, n_samples))
            count = drawn.stop - drawn.start
            items, complement = random_subsets(count * n_subsets, size, n_groups, rng)
            items = items.to(device).view(count, n_subsets, items.shape[1])
            drawn_outputs = outputs[drawn].view(-1)
            for start in range(0, count * n_subsets, rows_per_pass):
                stop = min(start + rows_per_pass, count * n_subsets)
                for samples, subsets, rows in _pass_segments(start, stop, n_subsets):
                    write(slice(first + samples.start, first + samples.stop),
                          items[samples, subsets], complement, rows)
                output = predict(model, batch[:stop - start])
                targets = row_targets[first * n_subsets + start:first * n_subsets + stop]
                drawn_outputs[start:stop] = output.gather(1, targets[:, None])[:, 0]
            # attribution sums over the subsets (the total minus the left-out features' sum)
            sums = group_attributions[:, drawn, None, :].expand(-1, -1, n_subsets, -1).gather(
                3, items.expand(len(attributions), -1, -1, -1)).sum(-1)
            if complement:
                sums = group_totals[:, drawn] - sums
            drops = scores[drawn, None].to(torch.float64) - outputs[drawn].to(torch.float64)
            correlations[:, j, drawn] = _pearson(sums, drops, outputs[drawn], inputs.dtype)
    return correlations


def _subset_writer(inputs: torch.Tensor, baseline: torch.Tensor, batch: torch.Tensor,
                   groups: torch.Tensor | None):
    """``write(samples, items, complement, rows)``: the masked inputs of ``samples``, one per
    subset of ``items`` ``(k, subsets, m)``, into the ``rows`` of ``batch``: the items of
    ``random_subsets`` (the features or ``groups`` removed, or for a complement the ones kept)
    take the baseline.

    Without groups, one copy of the kept values into the batch, then the removed ones written
    over it (``scatter_``: a cost in the subset's size); with groups, 0/1 weights per group,
    spread over the features and blended as ``_blend`` does."""
    sample_shape = inputs.shape[1:]
    if groups is not None:
        weights = torch.empty(len(batch), int(groups.max()) + 1, dtype=inputs.dtype,
                              device=inputs.device)
        blend = _blend(inputs, baseline)

        def write_groups(samples: slice, items: torch.Tensor, complement: bool,
                         rows: slice) -> None:
            removal = weights[rows].view(*items.shape[:2], -1)
            removal.fill_(float(complement)).scatter_(2, items, float(not complement))
            blend(inputs[samples, None], baseline[samples, None],
                  removal[..., groups].view(*items.shape[:2], *sample_shape),
                  out=batch[rows].view(*items.shape[:2], *sample_shape))
        return write_groups

    features = sample_shape.numel()
    # the batch's memory as (rows, features), and each feature's place in a row of it
    flat_batch = batch.as_strided((len(batch), features), (features, 1))
    places = None if batch.is_contiguous() else _memory_places(batch).to(inputs.device)
    flat_inputs, flat_baseline = inputs.flatten(1), baseline.flatten(1)

    def write_features(samples: slice, items: torch.Tensor, complement: bool,
                       rows: slice) -> None:
        kept, removed = (flat_baseline, flat_inputs) if complement else (
            flat_inputs, flat_baseline)
        k, subsets = items.shape[:2]
        # the kept values, copied in the logical layout (each element to its place in memory)
        batch[rows].view(k, subsets, *sample_shape).copy_(
            kept[samples, None].view(-1, 1, *sample_shape).expand(-1, subsets, *sample_shape))
        flat_batch[rows].view(k, subsets, features).scatter_(
            2, items if places is None else places[items],
            removed[samples, None].expand(-1, subsets, -1).gather(2, items))
    return write_features


_DRAW_ELEMENTS = 1 << 21  # random subsets drawn at once: at most this many items, or one pass


def _memory_places(batch: torch.Tensor) -> torch.Tensor:
    """Where each element of one sample (in row-major order) lies in the memory of a sample of
    ``batch`` (its offset from the sample's start): the identity for a contiguous batch."""
    places = torch.zeros((), dtype=torch.int64)
    for size, stride in zip(batch.shape[1:], batch.stride()[1:]):
        places = places[..., None] + torch.arange(size) * stride
    return places.flatten()


def _blend(inputs: torch.Tensor, replacement: torch.Tensor):
    """``blend(kept, replaced, removed, out=...)``: ``replaced`` where the 0/1 weights ``removed``
    are 1, ``kept`` elsewhere (broadcast). ``torch.lerp``, a vectorised kernel, when it gives
    both operands bit for bit for these inputs (finite differences, no negative zeros: with
    weights 0 and 1, ``a + 0 (b - a) = a`` and ``b - (b - a) 0 = b``); ``torch.where``
    otherwise."""
    if (all_finite(replacement - inputs) and not _has_negative_zero(inputs)
            and not _has_negative_zero(replacement)):
        return torch.lerp
    return lambda kept, replaced, removed, out: torch.where(removed > 0, replaced, kept, out=out)


_SAME_SIZE_INT = {8: torch.int64, 4: torch.int32, 2: torch.int16}


def _has_negative_zero(tensor: torch.Tensor) -> bool:
    """Whether a floating-point tensor holds -0.0: seen as integers of its size, -0.0 (the sign
    bit alone) is the smallest integer there is."""
    as_int = _SAME_SIZE_INT[tensor.element_size()]
    return bool(tensor.view(as_int).amin() == torch.iinfo(as_int).min)


def _batch_buffer(model: nn.Module, inputs: torch.Tensor, rows: int) -> torch.Tensor:
    """Room for the perturbed inputs of one forward pass, ``(rows, *inputs.shape[1:])``, in the
    memory layout the model runs fastest in (no copy before the pass); allocated once and
    reused by every pass (a fresh batch per pass costs page faults as large as the blend)."""
    shape = (rows, *inputs.shape[1:])
    batch = torch.empty(shape, dtype=inputs.dtype, device=inputs.device)
    layout = fast_format(model, inputs)
    if layout is None or batch.is_contiguous(memory_format=layout):
        return batch  # (one channel: already in both layouts, as the conversion leaves it)
    return torch.empty(shape, dtype=inputs.dtype, device=inputs.device, memory_format=layout)


def _pearson(sums: torch.Tensor, drops: torch.Tensor, outputs: torch.Tensor,
             dtype: torch.dtype) -> torch.Tensor:
    """Pearson correlation along the last dimension; NaN where either series is constant at the
    precision of ``dtype`` (the drops judged on the raw outputs, whose magnitude sets it)."""
    eps = 16 * torch.finfo(dtype).eps
    a = sums - sums.mean(-1, keepdim=True)
    b = drops - drops.mean(-1, keepdim=True)
    std_a, std_b = a.pow(2).mean(-1).sqrt(), b.pow(2).mean(-1).sqrt()
    correlation = (a * b).mean(-1) / (std_a * std_b)
    constant = (std_a <= eps * sums.abs().amax(-1)) | (
        std_b <= eps * outputs.abs().amax(-1).to(torch.float64))
    correlation = correlation.clamp(-1.0, 1.0).masked_fill(constant, float("nan"))
    return correlation.to(dtype)


def _subset_sizes(n) -> tuple[list[int], bool]:
    single = isinstance(n, numbers.Integral) and not isinstance(n, bool)
    sizes = [n] if single else n
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"n must be an int or a sequence of ints, got {type(n).__name__}")
    sizes = list(sizes)
    if not sizes:
        raise ValueError("n must not be an empty sequence")
    for size in sizes:
        if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
            raise ValueError(f"n must contain positive ints (subset sizes), got {size!r}")
    return [int(size) for size in sizes], single


# ----------------------------------------------------------------------------------------------
# Degradation (region perturbation)


@dataclass(frozen=True)
class DegradationCurve:
    """Target output while patches are replaced.

    ``curve[i, k]`` is the target output of sample ``i`` after ``k`` patches were replaced
    (``curve[:, 0]`` is ``f(x)``); ``ranking[i]`` lists the patch indices (row-major over the
    patch grid) in the order they are replaced.
    """

    curve: torch.Tensor    # (N, steps + 1)
    ranking: torch.Tensor  # (N, patches)
    order: str

    @property
    def aopc(self) -> torch.Tensor:
        r"""Area over the perturbation curve (Samek et al. 2017, eq. 12), per sample:
        :math:`\frac{1}{L+1} \sum_{k=0}^{L} f(x^{(0)}) - f(x^{(k)})`. Higher is better for the
        most-relevant-first order, lower for least-relevant-first."""
        return (self.curve[:, :1] - self.curve).mean(dim=1)

    @property
    def area(self) -> torch.Tensor:
        """Area under the curve by the trapezoid rule with the steps spread over [0, 1]: the mean
        target output along the curve, in the output's units, per sample."""
        curve = self.curve
        steps = curve.shape[1] - 1
        if steps == 0:
            return curve[:, 0].clone()
        return (curve[:, 1:-1].sum(1) + (curve[:, 0] + curve[:, -1]) / 2) / steps


# More than ten parameters: the region-perturbation protocol's choices (order, patch, steps,
# replacement and its baseline or blur) are keyword-only, each with the paper's default; an
# options object would add a layer to every call that changes one of them.
def degradation(  # noqa: PLR0913 (see above)
        model: nn.Module, inputs: torch.Tensor, attributions: torch.Tensor, *,
        order: str = "most_relevant_first", patch: int | tuple[int, int] = 1,
        steps: int | None = None, replacement: str = "mean",
        baseline: float | torch.Tensor = 0.0, blur_sigma: float = 2.0, target: Target = None,
        seed: int | None = None, batch_size: int = 256) -> DegradationCurve:
    r"""Degradation curve of region perturbation (Samek et al. 2017, arXiv 1509.06321).

    The image is cut into non-overlapping ``patch`` regions, ranked by their attribution summed
    over the region and the channels. Following ``order`` the regions are replaced one after
    another (cumulatively) and the target output :math:`f_t(x^{(k)})` after ``k`` replacements
    is recorded, ``k = 0..steps``.

    Parameters
    ----------
    model, inputs, target:
        As for ``workbench.attribute``; ``inputs`` of shape ``(N, C, H, W)``.
    attributions:
        Shape ``(N, C, H, W)`` or ``(N, 1, H, W)``.
    order:
        ``"most_relevant_first"`` (MoRF), ``"least_relevant_first"`` (LeRF) or ``"random"``
        (a random permutation per sample from ``seed``). Ties keep the row-major patch order.
    patch:
        Region size ``(h, w)`` or an int for squares; must divide ``(H, W)``.
    steps:
        Regions replaced; ``None`` for all of them.
    replacement:
        What a region is replaced with: ``"mean"``, the region's mean per channel in the
        original image; ``"baseline"``, the ``baseline`` (a number or a tensor broadcastable to
        the inputs); ``"blur"``, the same region of a Gaussian-blurred copy of the image
        (standard deviation ``blur_sigma`` pixels, kernel radius ``round(3 blur_sigma)``,
        reflected edges).
    seed:
        Seed of the CPU generator for ``order="random"``.
    batch_size:
        Perturbed images per forward pass (at most): the ``N * steps`` images, sample after
        sample, are cut into passes of ``batch_size`` (a pass may span parts of two samples).

    Returns
    -------
    ``DegradationCurve``: ``curve`` ``(N, steps + 1)`` starting with ``f(x)``, the ``ranking``
    and the summaries ``aopc`` and ``area``.
    """
    check_model_and_inputs(model, inputs)
    if inputs.dim() != 4:
        raise ValueError(
            f"inputs must be images of shape (N, C, H, W) for degradation, got shape "
            f"{tuple(inputs.shape)}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if replacement not in REPLACEMENTS:
        raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}")
    _check_positive_int("batch_size", batch_size)
    attributions = _check_attributions(attributions, inputs, allow_channel_sum=True)
    n_samples, _, height, width = inputs.shape
    patch_h, patch_w = _patch_size(patch, (height, width))
    grid_h, grid_w = height // patch_h, width // patch_w
    n_patches = grid_h * grid_w
    if steps is None:
        steps = n_patches
    _check_positive_int("steps", steps, maximum=n_patches)
    replaced = _replacement_image(inputs, replacement, baseline, blur_sigma, (patch_h, patch_w))

    ranking = _ranking(attributions, order, seed, (grid_h, grid_w))
    # position of every patch in the ranking, spread over its pixels: (N, 1, H, W), in the inputs'
    # dtype (exact: positions are small integers), compared into the blend's 0/1 weights
    position = torch.empty(ranking.shape, dtype=inputs.dtype, device=inputs.device)
    position.scatter_(1, ranking, torch.arange(n_patches, dtype=inputs.dtype,
                                               device=inputs.device).expand_as(ranking))
    position = position.view(n_samples, 1, grid_h, 1, grid_w, 1)
    position = position.expand(-1, -1, -1, patch_h, -1, patch_w).reshape(n_samples, 1, height,
                                                                          width)
    write = _region_writer(inputs, replaced, position, zero=replacement == "baseline")

    indices, scores = target_scores(model, inputs, target, batch_size)
    # the perturbed images of all samples, sample after sample and step after step, are cut
    # into passes of batch_size rows (a pass may end inside a sample's curve)
    total = n_samples * steps
    rows_per_pass = min(total, batch_size)
    batch = _batch_buffer(model, inputs, rows_per_pass)
    # one channel: the weights are built in the batch buffer and blended in place
    weights = batch if inputs.shape[1] == 1 else torch.empty(
        rows_per_pass, 1, height, width, dtype=inputs.dtype, device=inputs.device)
    done = torch.arange(1, steps + 1, dtype=inputs.dtype, device=inputs.device)
    row_targets = indices.repeat_interleave(steps)
    outputs = torch.empty(total, dtype=scores.dtype, device=inputs.device)
    for first in range(0, total, rows_per_pass):
        last = min(first + rows_per_pass, total)
        for samples, replaced_steps, rows in _pass_segments(first, last, steps):
            shape = (samples.stop - samples.start, replaced_steps.stop - replaced_steps.start)
            write(samples, done[replaced_steps], weights[rows].view(*shape, 1, height, width),
                  batch[rows].view(*shape, *inputs.shape[1:]))
        output = predict(model, batch[:last - first])
        outputs[first:last] = output.gather(1, row_targets[first:last, None])[:, 0]
    outputs = outputs.view(n_samples, steps)
    curve = torch.cat([scores[:, None], outputs], dim=1)
    return DegradationCurve(curve, ranking, order)


def _pass_segments(first: int, last: int, steps: int):
    """The rows ``first..last-1`` of the sample-major list of perturbed images (``steps`` per
    sample) as blocks of whole samples or runs of one sample's steps: ``(samples, steps,
    rows)`` slices, ``rows`` counted from ``first``."""
    row = first
    while row < last:
        sample, step = divmod(row, steps)
        if step == 0 and last - row >= steps:
            count = (last - row) // steps
            end = row + count * steps
            yield slice(sample, sample + count), slice(0, steps), slice(row - first, end - first)
        else:
            end = min(last, (sample + 1) * steps)
            yield (slice(sample, sample + 1), slice(step, step + end - row),
                   slice(row - first, end - first))
        row = end


def _region_writer(inputs: torch.Tensor, replaced: torch.Tensor, position: torch.Tensor,
                   zero: bool):
    """``write(samples, done, weights, out)``: the images of ``samples`` with every patch whose
    ``position`` in the ranking is below ``done`` (one count per step) replaced, into ``out``
    ``(k, steps, C, H, W)``; ``weights`` ``(k, steps, 1, H, W)`` is room for the 0/1 weights
    (it may be ``out`` itself for one channel).

    A replacement by zeros (``zero`` and ``replaced`` all +0.0, ``inputs`` without -0.0)
    multiplies by the weights kept (``0 + x * keep``: +0.0 where replaced, ``x`` where kept), one
    operand fewer than the blend of ``_blend``."""
    if (zero and not _has_negative_zero(inputs) and not _has_negative_zero(replaced)
            and not bool(replaced.any())):
        nothing = torch.zeros((), dtype=inputs.dtype, device=inputs.device)

        def write_zeros(samples: slice, done: torch.Tensor, weights: torch.Tensor,
                        out: torch.Tensor) -> None:
            kept = torch.le(done.view(1, -1, 1, 1, 1), position[samples, None], out=weights)
            torch.addcmul(nothing, inputs[samples, None], kept, out=out)
        return write_zeros
    blend = _blend(inputs, replaced)

    def write_blend(samples: slice, done: torch.Tensor, weights: torch.Tensor,
                    out: torch.Tensor) -> None:
        # 1 where the patch's position is below the number of patches replaced, else 0
        removed = torch.gt(done.view(1, -1, 1, 1, 1), position[samples, None], out=weights)
        blend(inputs[samples, None], replaced[samples, None], removed, out=out)
    return write_blend


def _ranking(attributions: torch.Tensor, order: str, seed: int | None,
             grid: tuple[int, int]) -> torch.Tensor:
    """Patch indices (row-major over the ``grid``) in the order they are replaced, per sample:
    by summed attribution (stable: ties keep the row-major order) or, for ``"random"``, a
    permutation from the seeded CPU generator."""
    n_samples, _, height, width = attributions.shape
    grid_h, grid_w = grid
    if order == "random":
        keys = torch.rand(n_samples, grid_h * grid_w, generator=generator(seed))
        return keys.argsort(dim=1).to(attributions.device)
    patch_sums = attributions.sum(1).reshape(n_samples, grid_h, height // grid_h, grid_w,
                                             width // grid_w)
    return torch.sort(patch_sums.sum((2, 4)).flatten(1), dim=1,
                      descending=order == "most_relevant_first", stable=True).indices


def degradation_curves(model: nn.Module, inputs: torch.Tensor, attributions: torch.Tensor,
                       **options) -> dict[str, DegradationCurve]:
    """The three curves of ``degradation`` (same options, ``order`` excluded): keys
    ``"most_relevant_first"``, ``"least_relevant_first"`` and ``"random"``. A faithful
    attribution drops fastest for MoRF, slowest for LeRF, with random in between."""
    if "order" in options:
        raise TypeError("degradation_curves computes every order; do not pass 'order'")
    return {order: degradation(model, inputs, attributions, order=order, **options)
            for order in ORDERS}


def _replacement_image(inputs, replacement, baseline, blur_sigma, patch) -> torch.Tensor:
    if replacement == "baseline":  # (a baseline shared by every sample is not copied N times)
        return compact_baseline(baseline, inputs).expand_as(inputs)
    if replacement == "blur":
        return gaussian_blur(inputs, blur_sigma)
    n, c, height, width = inputs.shape
    patch_h, patch_w = patch
    blocks = inputs.reshape(n, c, height // patch_h, patch_h, width // patch_w, patch_w)
    means = blocks.mean(dim=(3, 5), keepdim=True).expand_as(blocks)
    return means.reshape(inputs.shape)


def _patch_size(patch, image: tuple[int, int]) -> tuple[int, int]:
    if isinstance(patch, numbers.Integral) and not isinstance(patch, bool):
        patch = (int(patch), int(patch))
    if (not isinstance(patch, (tuple, list)) or len(patch) != 2
            or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) and p > 0
                       for p in patch)):
        raise ValueError(f"patch must be a positive int or a pair (h, w) of them, got {patch!r}")
    patch = (int(patch[0]), int(patch[1]))
    if image[0] % patch[0] or image[1] % patch[1]:
        raise ValueError(
            f"patch {patch} does not divide the image size {image}; choose a patch whose "
            "height and width divide the image's")
    return patch


# ----------------------------------------------------------------------------------------------
# Checks


def _check_attributions(attributions, inputs: torch.Tensor,
                        allow_channel_sum: bool) -> torch.Tensor:
    if not isinstance(attributions, torch.Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    shape, expected = tuple(attributions.shape), tuple(inputs.shape)
    summed = (expected[0], 1, *expected[2:]) if len(expected) > 2 else None
    if shape != expected and not (allow_channel_sum and shape == summed):
        accepted = f"{expected}" + (f" or {summed}" if allow_channel_sum else "")
        raise ValueError(f"attributions must have shape {accepted}, got {shape}")
    if attributions.device != inputs.device:
        raise ValueError(
            f"attributions are on {attributions.device} but inputs are on {inputs.device}")
    if not all_finite(attributions):
        raise ValueError("attributions contain NaN or infinite values")
    return attributions.detach()


def _check_positive_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum or (
            maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
