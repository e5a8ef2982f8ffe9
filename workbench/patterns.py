"""PatternNet and PatternAttribution: signal estimators learned from data (Kindermans et al.,
"Learning how to explain neural networks: PatternNet and PatternAttribution", ICLR 2018,
arXiv 1705.05598).

For every weighted layer (Linear, Conv; BatchNorm merged in) and each output neuron with filter
``w`` and output ``y = w^T x``, an estimator gives the signal ``S(x)`` and the distractor
``x - S(x)``:

- ``"x"``: ``S_x(x) = x`` (what LRP and Gradient x Input assume; no pattern, no distractor);
- ``"w"``: ``S_w(x) = w y / (w^T w)`` (what DeConvNet and Guided BackProp assume);
- ``"a"``: ``S_a(x) = a y``, ``a = cov[x, y] / (w^T cov[x, y])``;
- ``"a+-"``: ``S_a+-(x) = a_+ y`` where the neuron is active (``w^T x + b > 0``), else ``a_- y``,
  ``a_+ = (E_+[x y] - E_+[x] E[y]) / (w^T E_+[x y] - w^T E_+[x] E[y])`` with ``E_+`` over the
  active samples (and ``a_-`` likewise over the others), so that the two parts add up to
  ``cov[x, y]`` (section 4.2 of the paper);
- ``"random"``: ``S(x) = r y / (w^T r)`` for a random direction ``r`` (a baseline for ``rho``).

Statistics are gathered in one streaming pass in float64 (conv layers over every position of the
unfolded input), so memory does not grow with the data.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from workbench.batching import batches
from workbench.engine import RuleMode
from workbench.forward import tracked_copy
from workbench.rules import AffineCall, AffineRule, Rules
from workbench.shards import add_by_key, sum_statistics

ESTIMATORS = ("x", "w", "a", "a+-", "random")


# ----------------------------------------------------------------------------------------------
# Reading the weighted layers of a forward pass


def as_rows(call: AffineCall) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's input as rows of features (conv: one row per output position) and its
    weight as a matrix ``(out, features)``, so that ``y = rows @ matrix.T``."""
    x, weight = call.inputs.detach(), call.weight.detach()
    if call.kind == "linear":
        return x.reshape(-1, x.shape[-1]), weight
    if call.kind in ("conv1d", "conv2d"):
        if call.options.get("groups", 1) != 1 or isinstance(call.options.get("padding"), str):
            raise NotImplementedError(
                f"layer '{call.layer}': patterns need an ungrouped convolution with numeric "
                "padding")
        if call.kind == "conv1d":
            x, weight = x.unsqueeze(2), weight.unsqueeze(2)
        kernel = weight.shape[2:]

        def pair(name, default):
            value = call.options.get(name, default)
            value = value if isinstance(value, (tuple, list)) else (value,)
            return tuple(value) * (2 // len(value)) if len(value) < 2 else tuple(value)

        stride, padding, dilation = pair("stride", 1), pair("padding", 0), pair("dilation", 1)
        if call.kind == "conv1d":
            stride, padding, dilation = ((1, stride[0]), (0, padding[0]), (1, dilation[0]))
        patches = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        return rows, weight.reshape(weight.shape[0], -1)
    raise NotImplementedError(f"layer '{call.layer}': no patterns for '{call.kind}' layers")


#: the most float64 values one chunk of rows holds in ``gather_moments`` (128 MiB): a conv layer
#: of a 224-pixel net unfolds to ~50,000 rows of hundreds of features per image
ROW_CHUNK_VALUES = 1 << 24


def row_chunks(call: AffineCall, max_values: int | None = None):
    """``as_rows(call)`` a few samples at a time, ``(rows, matrix)`` per chunk, each chunk's
    rows at most ``max_values`` values (default ``ROW_CHUNK_VALUES``; at least one sample):
    the moments are sums over rows, so they do not depend on the chunking, and memory stays
    bounded at any batch size."""
    max_values = ROW_CHUNK_VALUES if max_values is None else max_values
    rows, _ = as_rows(dataclasses.replace(call, inputs=call.inputs[:1]))
    per_sample = max(1, rows.numel())
    step = max(1, max_values // per_sample)
    if step >= len(call.inputs):
        yield as_rows(call)
        return
    for start in range(0, len(call.inputs), step):
        yield as_rows(dataclasses.replace(call, inputs=call.inputs[start:start + step]))


class _Recorder(AffineRule):
    """An affine 'rule' that only records each weighted layer's call (the last one per layer:
    a following batch norm replaces the plain layer by the merged one)."""

    name = "record"

    def __init__(self):
        self.calls: dict[str, AffineCall] = {}

    def apply(self, call: AffineCall) -> torch.Tensor:
        if call.kind != "channel" and call.layer is not None:
            self.calls[call.layer] = call
        return call()


def weighted_layer_calls(model: nn.Module, inputs: torch.Tensor) -> dict[str, AffineCall]:
    """The weighted layers (BatchNorm merged) that a forward pass on ``inputs`` runs."""
    recorder = _Recorder()
    # the engine routes only input-dependent operations, so the input must require grad
    with torch.enable_grad(), RuleMode(model, Rules(affine=recorder), "fit_patterns"):
        model(tracked_copy(inputs))
    return recorder.calls


# ----------------------------------------------------------------------------------------------
# Moments


@dataclass
class Moments:
    """Float64 sums over samples for one layer: ``x`` the input rows, ``y = W x`` the outputs
    without bias, the regime ``m = 1[W x + b > 0]``."""

    count: int = 0
    sum_x: torch.Tensor | None = None          # (d,)
    sum_xx: torch.Tensor | None = None         # (d, d), only when asked for
    sum_y: torch.Tensor | None = None          # (out,)
    sum_yy: torch.Tensor | None = None         # (out,)
    sum_xy: torch.Tensor | None = None         # (d, out)
    count_pos: torch.Tensor | None = None      # (out,)
    sum_x_pos: torch.Tensor | None = None      # (d, out)
    sum_y_pos: torch.Tensor | None = None      # (out,)
    sum_yy_pos: torch.Tensor | None = None     # (out,)
    sum_xy_pos: torch.Tensor | None = None     # (d, out)
    with_second_moment: bool = False
    #: the input features ``sum_xx`` covers (all when ``None``; see ``signal_quality``)
    features: torch.Tensor | None = None

    def update(self, rows: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor | None):
        """Add ``rows`` (samples x features) of a layer ``y = rows @ matrix.T + bias``. The
        (features x outputs) sums grow in place (``addmm_``): a wide layer's update holds no
        second copy of them."""
        x = rows.double()
        y = x @ matrix.double().T
        active = (y + (bias.double() if bias is not None else 0)) > 0
        positive = active.double()
        y_pos = y * positive
        kept = x if self.features is None else x[:, self.features.to(x.device)]
        if self.sum_x is None:
            features, outputs = x.shape[1], y.shape[1]
            zeros = functools.partial(torch.zeros, dtype=torch.float64, device=x.device)
            for name in ("sum_xy", "sum_x_pos", "sum_xy_pos"):
                setattr(self, name, zeros(features, outputs))
            for name in ("sum_y", "sum_yy", "count_pos", "sum_y_pos", "sum_yy_pos"):
                setattr(self, name, zeros(outputs))
            self.sum_x = zeros(features)
            if self.with_second_moment:
                self.sum_xx = zeros(kept.shape[1], kept.shape[1])
        self.sum_x += x.sum(0)
        self.sum_y += y.sum(0)
        self.sum_yy += (y * y).sum(0)
        self.sum_xy.addmm_(x.T, y)
        self.count_pos += positive.sum(0)
        self.sum_x_pos.addmm_(x.T, positive)
        self.sum_y_pos += y_pos.sum(0)
        self.sum_yy_pos += (y_pos * y).sum(0)
        self.sum_xy_pos.addmm_(x.T, y_pos)
        if self.with_second_moment:
            self.sum_xx.addmm_(kept.T, kept)
        self.count += len(x)

    def __add__(self, other: Moments) -> Moments:
        """The moments of two disjoint sets of samples together (sums add up)."""
        total = Moments(count=self.count + other.count,
                        with_second_moment=self.with_second_moment and other.with_second_moment,
                        features=self.features)
        for name in _SUMS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "sum_xx" and not total.with_second_moment:
                continue
            setattr(total, name, theirs if mine is None else mine if theirs is None
                    else mine + theirs)
        return total


_SUMS = ("sum_x", "sum_xx", "sum_y", "sum_yy", "sum_xy", "count_pos", "sum_x_pos", "sum_y_pos",
         "sum_yy_pos", "sum_xy_pos")


def gather_moments(model: nn.Module, data, batch_size: int = 256, second_moment: bool = False,
                   progress: bool = True, description: str = "moments",
                   folds: int = 1, max_features: int | None = None,
                   seed: int = 0, outputs: Mapping[str, torch.Tensor] | None = None
                   ) -> list[dict[str, Moments]]:
    """One streaming pass over ``data``: the moments of every weighted layer, for each of
    ``folds`` disjoint subsets of the samples (sample ``i`` of each batch goes to fold
    ``i % folds``). The (features x features) second moment covers every input feature of a
    layer with at most ``max_features`` of them, else ``max_features`` features drawn at random
    (under ``seed`` and the layer's name), the same in every fold. ``outputs[layer]``: the
    only output neurons (indices) whose moments a layer keeps, in that order (all when the
    layer is not in it): the (features x outputs) sums of a wide layer for a few neurons."""
    moments: list[dict[str, Moments]] = [{} for _ in range(folds)]
    subsets: dict[str, torch.Tensor | None] = {}
    for inputs, _ in tqdm(batches(data, batch_size), desc=description, disable=not progress,
                       leave=False):
        for fold in range(folds):
            part = inputs[fold::folds]
            if not len(part):
                continue
            for layer, call in weighted_layer_calls(model, part).items():
                kept = (outputs or {}).get(layer)
                bias = (call.bias if kept is None or call.bias is None
                        else call.bias[kept.to(call.bias.device)])
                for rows, matrix in row_chunks(call):
                    if kept is not None:
                        matrix = matrix[kept.to(matrix.device)]
                    if layer not in subsets:
                        subsets[layer] = _feature_subset(layer, rows.shape[1], max_features,
                                                         seed)
                    moments[fold].setdefault(layer, Moments(with_second_moment=second_moment,
                                                            features=subsets[layer]))
                    moments[fold][layer].update(rows, matrix, bias)
    if not all(moments):
        raise ValueError(f"too little data: need at least {folds} samples running through the "
                         "model's Linear or Conv layers")
    return moments


def _feature_subset(layer: str, features: int, max_features: int | None,
                    seed: int) -> torch.Tensor | None:
    """``max_features`` of a layer's ``features`` inputs, drawn under ``seed`` and the layer's
    name (sorted), or ``None`` (all of them) when there are not more."""
    if max_features is None or features <= max_features:
        return None
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(layer.encode()))
    return torch.randperm(features, generator=generator)[:max_features].sort().values


# ----------------------------------------------------------------------------------------------
# Patterns


def _regression_pattern(n, sum_x, sum_xy, mean_y, matrix):
    """``a = (E[x y] - E[x] E[y]) / (w^T (E[x y] - E[x] E[y]))`` per neuron (rows of the result),
    the expectations of ``x`` and ``x y`` taken over ``n`` samples (all, or one regime) and
    ``E[y]`` over all samples; zero where undefined (e.g. a regime with no sample)."""
    n = n.clamp(min=1) if isinstance(n, torch.Tensor) else max(n, 1)
    covariance = sum_xy / n - (sum_x / n) * mean_y                  # (d, out)
    variance = (matrix.double().T * covariance).sum(0)              # w^T cov[x, y], (out,)
    defined = variance.abs() > 1e-12 * covariance.abs().sum(0).clamp(min=1e-300)
    pattern = covariance / torch.where(defined, variance, torch.ones_like(variance))
    return torch.where(defined, pattern, torch.zeros_like(pattern)).T   # (out, d)


@dataclass
class LayerPattern:
    """Patterns of one layer, shaped like its weight: ``positive`` (``a`` or ``a_+``) and
    ``negative`` (``a_-``; the same as ``positive`` for linear estimators)."""

    positive: torch.Tensor
    negative: torch.Tensor


@dataclass
class Patterns:
    """Learned patterns of a model, by layer name, for one estimator."""

    estimator: str
    layers: dict[str, LayerPattern] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        content = {"estimator": self.estimator,
                   "layers": {k: (v.positive, v.negative) for k, v in self.layers.items()}}
        torch.save(content, Path(path))

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None) -> Patterns:
        """Load patterns; with ``model``, check its layer names and weight shapes match."""
        content = torch.load(Path(path), map_location="cpu", weights_only=True)
        patterns = cls(content["estimator"], {k: LayerPattern(*v)
                                              for k, v in content["layers"].items()})
        if model is not None:
            patterns.check(model)
        return patterns

    def check(self, model: nn.Module) -> None:
        """``ValueError`` naming the layers that ``model`` lacks or whose shape differs."""
        modules = dict(model.named_modules())
        missing = [name for name in self.layers if name not in modules]
        if missing:
            raise ValueError(f"the patterns are for layers {missing} that the model does not "
                             f"have; model layers: {[n for n in modules if n]}")
        for name, pattern in self.layers.items():
            weight = getattr(modules[name], "weight", None)
            if weight is None or tuple(weight.shape) != tuple(pattern.positive.shape):
                raise ValueError(f"pattern of layer '{name}' has shape "
                                 f"{tuple(pattern.positive.shape)} but the layer's weight is "
                                 f"{None if weight is None else tuple(weight.shape)}")

    def to(self, device) -> Patterns:
        return Patterns(self.estimator, {k: LayerPattern(v.positive.to(device),
                                                         v.negative.to(device))
                                         for k, v in self.layers.items()})


def fit_patterns(model: nn.Module, data, estimator: str = "a+-", batch_size: int = 256,
                 seed: int = 0, progress: bool = True, scheduler="local",
                 workers: int = 2) -> Patterns:
    """Learn the patterns of every Linear/Conv layer of ``model`` from ``data``.

    ``data`` is a tensor of inputs, an iterable of input tensors or (inputs, labels) batches,
    or ``workbench.shards.Shards``: then each shard's moments are gathered by a Dask worker
    (``scheduler``, ``workers``: see ``workbench.cluster.connect``) and added up, which equals
    the one-process result to float64 round-off. One pass, float64 sums, memory independent
    of the data size.
    """
    return fit_estimators(model, data, [estimator], batch_size, seed, progress, scheduler,
                          workers)[estimator]


def fit_estimators(model: nn.Module, data, estimators: Sequence[str] = ESTIMATORS,
                   batch_size: int = 256, seed: int = 0, progress: bool = True,
                   scheduler="local", workers: int = 2) -> dict[str, Patterns]:
    """``fit_patterns`` for each of ``estimators`` from one pass over ``data`` (the moments
    are the same for all of them); ``estimator -> Patterns``."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {list(estimators)!r}")
    weights = {name: module.weight for name, module in model.named_modules()
               if isinstance(getattr(module, "weight", None), torch.Tensor)}
    fitted = {e: Patterns("x") for e in estimators if e == "x"}
    learned = [e for e in estimators if e != "x"]
    if not learned:
        return fitted
    description = f"fitting patterns ({', '.join(learned)})"
    moments, calls_matrix = sum_statistics(
        functools.partial(_pattern_statistics, model, batch_size, description), data,
        combine=_combine_statistics, scheduler=scheduler, workers=workers, progress=progress,
        description=description)
    for estimator in learned:
        # a stream of its own, so that seed 0 here is unrelated to seed 0 of the data generators
        rng = torch.Generator().manual_seed(1_000_003 * seed + 12_345)
        layers = {}
        for name, m in moments.items():
            weight = weights[name]
            positive, negative = _blockwise_pattern(estimator, m, calls_matrix[name], rng,
                                                    weight.dtype, weight.device)
            layers[name] = LayerPattern(positive.reshape(weight.shape),
                                        negative.reshape(weight.shape))
        fitted[estimator] = Patterns(estimator, layers)
    return {e: fitted[e] for e in estimators}


#: output neurons whose patterns are computed together: the float64 temporaries of a wide layer
#: (VGG-16's first dense layer: 25,088 x 4,096) stay a block's size
PATTERN_BLOCK = 512


def _output_columns(m: Moments, columns: slice) -> Moments:
    """The moments of the outputs ``columns`` alone (the input sums are shared)."""
    per_output = {"sum_y", "sum_yy", "count_pos", "sum_y_pos", "sum_yy_pos"}
    per_pair = {"sum_xy", "sum_x_pos", "sum_xy_pos"}
    return Moments(**{k: (v[columns] if k in per_output else v[:, columns] if k in per_pair
                          else v) for k, v in m.__dict__.items()})


def _blockwise_pattern(estimator: str, m: Moments, matrix: torch.Tensor, rng: torch.Generator,
                       dtype: torch.dtype, device: torch.device
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``_layer_pattern`` as ``(out, features)`` tensors of ``dtype`` on ``device``, computed
    ``PATTERN_BLOCK`` neurons at a time (each neuron's pattern depends on its own moments
    only, so the blocks give the same numbers); the random estimator draws its directions for
    the whole layer at once, as it always has. One tensor where the regimes share the pattern
    (a linear estimator)."""
    if estimator == "random":
        positive, _ = _layer_pattern(estimator, m, matrix.double().cpu(), rng)
        converted = positive.to(dtype=dtype, device=device)
        return converted, converted
    positive = torch.empty(matrix.shape, dtype=dtype, device=device)
    negative = positive if estimator in ("w", "a") else torch.empty_like(positive)
    for start in range(0, len(matrix), PATTERN_BLOCK):
        block = slice(start, start + PATTERN_BLOCK)
        part_positive, part_negative = _layer_pattern(estimator, _output_columns(m, block),
                                                      matrix[block].double().cpu(), rng)
        positive[block] = part_positive
        if negative is not positive:
            negative[block] = part_negative
    return positive, negative


def _layer_pattern(estimator: str, m: Moments, matrix: torch.Tensor, rng: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a_+, a_-)`` of one layer for ``estimator`` from its moments and weight matrix."""
    mean_y = m.sum_y / m.count
    if estimator == "w":
        positive = negative = matrix / (matrix * matrix).sum(1, keepdim=True)
    elif estimator == "random":
        direction = torch.randn(matrix.shape, generator=rng, dtype=torch.float64)
        positive = negative = direction / (direction * matrix).sum(1, keepdim=True)
    elif estimator == "a":
        positive = negative = _regression_pattern(m.count, m.sum_x[:, None], m.sum_xy, mean_y,
                                                  matrix)
    else:  # the covariance splits into the two regimes' parts: cov = c_+ + c_-
        positive = _regression_pattern(m.count_pos, m.sum_x_pos, m.sum_xy_pos, mean_y, matrix)
        negative = _regression_pattern(m.count - m.count_pos, m.sum_x[:, None] - m.sum_x_pos,
                                       m.sum_xy - m.sum_xy_pos, mean_y, matrix)
    return positive, negative


def _pattern_statistics(model: nn.Module, batch_size: int, description: str, data,
                        progress: bool):
    """The moments of every weighted layer over ``data``, and the layer matrices."""
    (moments,) = gather_moments(model, data, batch_size, progress=progress,
                                description=description)
    return moments, _layer_matrices(model, data, batch_size)


def _combine_statistics(first, second):
    """Two shards' moments added layer by layer; the layer matrices are the same in both."""
    (moments, matrices), (more, _) = first, second
    return add_by_key(moments, more, "weighted layers"), matrices


def _layer_matrices(model: nn.Module, data, batch_size: int) -> dict[str, torch.Tensor]:
    """The (merged) weight matrix of each weighted layer, read from one small forward pass."""
    first = next(iter(batches(data, batch_size)))[0][:1]
    return {name: as_rows(call)[1] for name, call in weighted_layer_calls(model, first).items()}


# ----------------------------------------------------------------------------------------------
# Quality of an estimator


def _distractor_statistics(m: Moments, j: int, a_pos: torch.Tensor, a_neg: torch.Tensor):
    """``Cov(d) = E[x x^T] + U M U^T`` (``U`` has five columns), ``Cov(d, y)`` and ``var(y)``
    of neuron ``j`` for the distractor ``d = x - S(x)``, ``S(x) = a_+ y`` on active samples and
    ``a_- y`` elsewhere (a linear estimator has ``a_+ = a_-``); every term comes from the
    moments. ``Cov(d)`` is the second moment of the inputs, shared by all neurons, plus a
    low-rank part: ``U = [E[x y_+], E[x y_-], a_+, a_-, E[d]]``."""
    n = m.count
    mean_y, mean_yy = m.sum_y[j] / n, m.sum_yy[j] / n
    mean_y_pos, mean_yy_pos = m.sum_y_pos[j] / n, m.sum_yy_pos[j] / n
    xy, xy_pos = m.sum_xy[:, j] / n, m.sum_xy_pos[:, j] / n
    xy_neg = xy - xy_pos
    mean_d = m.sum_x / n - mean_y_pos * a_pos - (mean_y - mean_y_pos) * a_neg
    columns = torch.stack([xy_pos, xy_neg, a_pos, a_neg, mean_d], dim=1)
    weights = torch.zeros(5, 5, dtype=torch.float64)
    weights[0, 2] = weights[2, 0] = weights[1, 3] = weights[3, 1] = weights[4, 4] = -1.0
    weights[2, 2], weights[3, 3] = mean_yy_pos, mean_yy - mean_yy_pos
    covariance_dy = xy - mean_yy_pos * a_pos - (mean_yy - mean_yy_pos) * a_neg - mean_d * mean_y
    return _LowRankUpdate(columns, weights), covariance_dy, mean_yy - mean_y ** 2


@dataclass(frozen=True)
class _LowRankUpdate:
    """``U M U^T``: what ``Cov(d)`` adds to the inputs' second moment."""

    columns: torch.Tensor  # U, (d, k)
    weights: torch.Tensor  # M, (k, k)

    def trace(self) -> torch.Tensor:
        return (self.weights * (self.columns.T @ self.columns)).sum()

    def quadratic(self, second: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``v^T (second + U M U^T) v``."""
        projected = self.columns.T @ v
        return v @ second @ v + projected @ self.weights @ projected


class _SecondMomentSolver:
    """Solves ``(E[x x^T] + lambda I + U_j M_j U_j^T) v_j = b_j`` for many low-rank
    ``U_j M_j U_j^T``: one Cholesky factor of the shared part, the Woodbury identity
    ``(K + U M U^T)^-1 = K^-1 - K^-1 U (I + M U^T K^-1 U)^-1 M U^T K^-1`` per right-hand side,
    and two steps of iterative refinement against the explicit matrix. ``lambda`` is ``1e-8``
    of the mean diagonal (the ridge that keeps a singular ``Cov(d)`` solvable: ``d`` has no
    part along ``w``)."""

    def __init__(self, second: torch.Tensor):
        self.second = second
        scale = second.diagonal().sum().clamp(min=1e-300) / len(second)
        eye = torch.eye(len(second), dtype=second.dtype)
        for ridge in scale * 10.0 ** torch.arange(-8, 1):  # more ridge only if K is not PD
            factor, info = torch.linalg.cholesky_ex(second + ridge * eye)
            if info == 0:
                break
        self.factor, self.ridge = factor, float(ridge)

    def solve(self, updates: list[_LowRankUpdate], rhs: torch.Tensor) -> torch.Tensor:
        """``v_j`` for every update ``j`` and right-hand side ``rhs[:, j]``, all at once: the
        triangular solves take every column together (one call per step, not per neuron)."""
        columns = torch.stack([u.columns for u in updates])        # (m, d, k)
        weights = torch.stack([u.weights for u in updates])        # (m, k, k)
        m, d, k = columns.shape
        inverse_columns = torch.cholesky_solve(
            columns.transpose(0, 1).reshape(d, m * k), self.factor).reshape(d, m, k)
        inverse_columns = inverse_columns.transpose(0, 1)           # (m, d, k)
        small = torch.eye(k, dtype=rhs.dtype) + weights @ (columns.transpose(1, 2)
                                                             @ inverse_columns)

        def apply(b: torch.Tensor) -> torch.Tensor:                 # b: (d, m)
            inverse_b = torch.cholesky_solve(b, self.factor)
            projected = weights @ (columns.transpose(1, 2) @ inverse_b.T[:, :, None])
            correction = inverse_columns @ torch.linalg.lstsq(small, projected).solution
            return inverse_b - correction[:, :, 0].T

        v = apply(rhs)
        for _ in range(2):  # iterative refinement against the explicit matrices
            low_rank = columns @ (weights @ (columns.transpose(1, 2) @ v.T[:, :, None]))
            residual = rhs - (self.second @ v + self.ridge * v + low_rank[:, :, 0].T)
            v = v + apply(residual)
        return v


def _distractor_correlation(fit: Moments, evaluate: Moments, neurons: torch.Tensor,
                            positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """``corr(y, v^T d)`` per neuron on ``evaluate``, with ``v`` the least-squares regression of
    ``y`` on the distractor ``d`` fitted on ``fit`` (cross-fitting keeps the in-sample
    overfitting of ``v`` out of the correlation)."""
    second, held_second = fit.sum_xx / fit.count, evaluate.sum_xx / evaluate.count
    results = torch.full((len(neurons),), float("nan"), dtype=torch.float64)
    kept, updates, rhs, held = [], [], [], []
    for i, (j, a_pos, a_neg) in enumerate(zip(neurons.tolist(), positive, negative)):
        update, covariance_dy, variance_y = _distractor_statistics(fit, j, a_pos, a_neg)
        held_update, held_dy, held_variance_y = _distractor_statistics(evaluate, j, a_pos, a_neg)
        scale = (second.diagonal().sum() + update.trace()).clamp(min=1e-300) / len(second)
        if variance_y <= 1e-12 * scale or held_variance_y <= 0:
            continue
        kept.append(i)
        updates.append(update)
        rhs.append(covariance_dy)
        held.append((held_update, held_dy, held_variance_y))
    if not kept:
        return results
    solutions = _SecondMomentSolver(second).solve(updates, torch.stack(rhs, dim=1))
    for column, (i, (held_update, held_dy, held_variance_y)) in enumerate(zip(kept, held)):
        v = solutions[:, column]
        spread = held_update.quadratic(held_second, v).clamp(min=1e-300) * held_variance_y
        results[i] = ((v @ held_dy) / spread.sqrt()).clamp(0, 1)
    return results


def signal_quality(model: nn.Module, data, patterns: Patterns, batch_size: int = 256,
                   max_neurons: int = 64, seed: int = 0, progress: bool = True,
                   per_neuron: bool = False, max_features: int = 8192
                   ) -> dict[str, float] | dict[str, torch.Tensor]:
    """``rho(S) = 1 - max_v corr(w^T x, v^T (x - S(x)))`` per layer (mean over neurons).

    Kindermans et al. 2018, section 4: a perfect estimator leaves no information about the
    output in the distractor (``rho = 1``). Use ``data`` held out from the fitting data. ``v``
    is the least-squares fit on half of it and the correlation is measured on the other half,
    both ways, averaged (so a layer with many inputs is not flattered by overfitting ``v``).
    ``S_x`` leaves no distractor, so its ``rho`` is undefined: NaN. At most ``max_neurons``
    neurons per layer (chosen with ``seed``) are evaluated.

    A layer with more than ``max_features`` inputs (VGG-16's first dense layer has 25088) would
    need a features x features matrix too large to keep. There ``v`` is restricted to
    ``max_features`` input features drawn at random (under ``seed``; the same for both halves):
    the correlation is maximised over fewer directions, so this ``rho`` can only be higher than
    the exact one (up to sampling noise): an optimistic bound on the estimator's quality, and a
    loose one where the distractor spreads over many features (on a 24-input layer with
    correlated inputs, S_w's exact rho of 0.01 reads 0.13 with 18 features kept, 0.30 with 12,
    0.40 with 6). Compare estimators on such a layer with each other, not with other layers.
    """
    return signal_quality_of_estimators(model, data, {patterns.estimator: patterns}, batch_size,
                                        max_neurons, seed, progress, per_neuron,
                                        max_features)[patterns.estimator]


def signal_quality_of_estimators(model: nn.Module, data, patterns: Mapping[str, Patterns],
                                 batch_size: int = 256, max_neurons: int = 64, seed: int = 0,
                                 progress: bool = True, per_neuron: bool = False,
                                 max_features: int = 8192) -> dict[str, dict[str, Any]]:
    """``signal_quality`` of several estimators' patterns (``label -> Patterns``) from one pass
    over ``data``: the moments do not depend on the estimator, nor do the neurons scored."""
    names = [n for n, mod in model.named_modules() if isinstance(mod, PATTERN_LAYERS)]
    quality: dict[str, dict[str, Any]] = {label: {} for label in patterns}
    learned = {label: p for label, p in patterns.items() if p.estimator != "x"}
    for label in patterns:
        if label not in learned:  # S_x(x) = x: no distractor, its correlation undefined
            quality[label] = {name: float("nan") for name in names}
    if not learned:
        return quality
    for fitted in learned.values():
        fitted.check(model)
    # the neurons scored, drawn first (layer by layer, in forward order), so that the moments
    # of a wide layer are gathered for them alone
    rng = torch.Generator().manual_seed(seed)
    counts = {name: len(matrix)
              for name, matrix in _layer_matrices(model, data, batch_size).items()}
    chosen = {name: torch.randperm(count, generator=rng)[:max_neurons].sort().values
              for name, count in counts.items()}
    folds = gather_moments(model, data, batch_size, second_moment=True, progress=progress,
                           description="signal quality", folds=2, max_features=max_features,
                           seed=seed, outputs=chosen)
    folds = [{name: _to_cpu(m) for name, m in fold.items()} for fold in folds]
    for name in folds[0]:
        count, neurons = counts[name], chosen[name]
        halves = [folds[0][name], folds[1][name]]
        features = halves[0].features
        if features is not None:  # a random subset of the inputs (see above)
            halves = [_on_features(m, features) for m in halves]
        for label, fitted in learned.items():
            pattern = fitted.layers[name]
            # the chosen neurons' patterns alone, in float64 (a wide layer's are large)
            positive, negative = (
                part.detach().reshape(count, -1)[neurons.to(part.device)].double().cpu()
                for part in (pattern.positive, pattern.negative))
            if features is not None:
                positive, negative = positive[:, features], negative[:, features]
            # the moments hold the chosen neurons alone, in order: column k is neurons[k]
            correlation = [_distractor_correlation(halves[i], halves[1 - i],
                                                   torch.arange(len(neurons)),
                                                   positive, negative)
                           for i in (0, 1)]
            rho = 1 - (correlation[0] + correlation[1]) / 2
            quality[label][name] = rho if per_neuron else float(torch.nanmean(rho))
    return quality


#: the layers patterns are learned for (``as_rows`` reads linear layers and 1-D/2-D convolutions)
PATTERN_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _on_features(m: Moments, features: torch.Tensor) -> Moments:
    """The moments of the inputs ``features`` alone (``sum_xx`` already covers just them)."""
    rows = {"sum_x", "sum_xy", "sum_x_pos", "sum_xy_pos"}
    return Moments(**{k: (v[features] if k in rows else v) for k, v in m.__dict__.items()
                      if k != "features"})


def _to_cpu(m: Moments) -> Moments:
    return Moments(**{k: (v.cpu() if isinstance(v, torch.Tensor) else v)
                      for k, v in m.__dict__.items()})


# ----------------------------------------------------------------------------------------------
# PatternNet and PatternAttribution as rules of the engine


class _PatternBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, weight, bias, backward_weight, forward):
        ctx.save_for_backward(inputs, backward_weight)
        ctx.layer_forward = forward
        return forward(inputs, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        inputs, backward_weight = ctx.saved_tensors
        with torch.enable_grad():
            point = inputs.detach().requires_grad_()
            output = ctx.layer_forward(point, backward_weight, None)
        (grad_inputs,) = torch.autograd.grad(output, point, grad)
        return grad_inputs, None, None, None, None


class PatternRule(AffineRule):
    """The backward pass of a weighted layer with the pattern in place of the weight.

    ``mode="net"``: PatternNet, back-projects the signal with ``a_+``;
    ``mode="attribution"``: PatternAttribution, backpropagates with ``w * a_+``.
    """

    def __init__(self, pattern: torch.Tensor, mode: str):
        if mode not in ("net", "attribution"):
            raise ValueError(f"mode must be 'net' or 'attribution', got {mode!r}")
        self.pattern, self.mode = pattern, mode
        self.name = f"pattern_{mode}"

    def apply(self, call: AffineCall) -> torch.Tensor:
        pattern = self.pattern.to(call.weight)
        if pattern.shape != call.weight.shape:
            raise ValueError(f"pattern of layer '{call.layer}' has shape {tuple(pattern.shape)}, "
                             f"the layer's weight {tuple(call.weight.shape)}")
        backward_weight = pattern if self.mode == "net" else call.weight * pattern
        return _PatternBackward.apply(call.inputs, call.weight, call.bias, backward_weight,
                                      call.forward)

    def __repr__(self) -> str:
        return f"PatternRule(mode={self.mode!r})"


def pattern_rules(patterns: Patterns | None, mode: str, method: str) -> Rules:
    if not isinstance(patterns, Patterns):
        raise ValueError(f"{method} needs option patterns=wb.fit_patterns(model, data)")
    if patterns.estimator == "x":
        raise ValueError(f"{method}: the estimator 'x' (S_x) has no pattern; it is what LRP and "
                         "Gradient x Input assume. Fit 'a' or 'a+-'.")
    return Rules(layer_affine={name: PatternRule(p.positive, mode)
                               for name, p in patterns.layers.items()})
