"""Explanation bases of a layer: its neurons, the principal components of its activations
(Dey et al., "Neuron-based explanations of neural networks sacrifice completeness and
interpretability", arXiv 2011.03043, TMLR 2025), and the non-orthogonal bases compared with
them since: independent components, non-negative factors, sparse dictionaries
(``workbench.decompositions``).

A basis of a layer's activation space is a set of m unit-norm directions (rows in activation
space) with a code per direction for every activation vector ``a``, ordered by the variance of
the codes. PCA: the eigenvectors of the covariance, codes ``a . v``; neurons: the unit vectors,
codes the neurons' values; ICA: the mixing columns, codes by the (scaled) unmixing matrix; NMF:
the non-negative factors, codes by non-negative least squares; sparse: the decoder atoms of a
sparse autoencoder, codes by its encoder. Every basis reconstructs ``a`` from its top-k codes
as ``â_k = mean + sum_{i<k} (c_i(a) - code_mean_i) v_i``, the other codes at their mean; for
PCA the projection onto the top-k PCs around the mean, for neurons the top-k neurons kept and
the others at their mean. Two questions are asked of each:

- completeness: how much of the activations the top-k directions explain
  (``variance_explained``: the fraction of the variance for the orthonormal PCA and neuron
  bases, the reconstruction R² ``1 - E||a - â_k||² / E||a - mean||²`` for the others, which
  for PCA is the same number), and what the network still does when the layer's activations
  are replaced by ``â_k`` (``ablation_curve``);
- interpretability: per direction, the inputs whose centred code is largest
  (``top_activating``) and an input synthesised to raise it (``feature_visualisation``).

PCA and neurons need only the streamed mean and covariance; ICA, NMF and the sparse
autoencoder are fitted on a seeded sample of at most ``max_samples`` activation rows, and their
R² is measured on those rows.

Activations are read from the output of one module with a forward hook (removed before each
function returns, even one that raised). An output of shape (N, d) gives one d-vector per input.
An output of more dimensions is taken as convolutional, (N, C, *spatial), and ``spatial`` says
what a sample is: ``"positions"``, the C channels at every spatial position (one neuron per
channel, shared over positions, as the layer's weights are); ``"pooled"``, the channels averaged
over the positions (one C-vector per input). Either way the directions live in channel space, and
restricting a conv layer's output to them acts on every position.

In a transformer (a model with ``nn.MultiheadAttention``) a three-dimensional output is a token
sequence (N, T, D) with its D features last (the residual stream, an MLP's hidden layer), and
``"positions"`` and ``"pooled"`` become ``"tokens"`` (the D features of every token) and
``"tokens_pooled"`` (averaged over the tokens); those two may also be asked for by name.
"""
from __future__ import annotations

import dataclasses
import functools
import math

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from workbench import decompositions
from workbench.attention import has_attention_layers
from workbench.batching import progress_batches
from workbench.checks import model_device
from workbench.decompositions import (Coder, LinearCoder, RowSample, SampleOptions,
                                      SparseOptions)
from workbench.model_layers import Layer, find_layer
from workbench.shards import add_by_key, sum_statistics

ORTHOGONAL_KINDS = ("pca", "neurons")
SAMPLE_KINDS = ("ica", "nmf", "sparse")
KINDS = ORTHOGONAL_KINDS + SAMPLE_KINDS
SPATIAL = ("positions", "pooled", "tokens", "tokens_pooled")
#: layouts whose features are the last dimension (token sequences (N, T, D))
TOKEN_LAYOUTS = {"positions": "tokens", "pooled": "tokens_pooled"}
KEEP = ("top", "bottom")
FILL = ("mean", "zero")



def _choice(argument: str, value, accepted: Sequence[str]) -> None:
    if value not in accepted:
        raise ValueError(f"{argument} must be one of {list(accepted)}, got {value!r}")


def to_model_device(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``inputs`` on the device of ``model``'s parameters (as they are for a stateless model)."""
    device = model_device(model)
    return inputs if device is None else inputs.to(device)


# ----------------------------------------------------------------------------------------------
# Streaming activation statistics


def features_last(output: torch.Tensor, spatial: str | None) -> torch.Tensor:
    """``output`` with its features (channels) as the last dimension: conv (N, C, *spatial)
    moved to (N, *spatial, C); token sequences (``spatial`` ``"tokens"`` or
    ``"tokens_pooled"``) and (N, d) as they are."""
    if output.dim() == 2 or spatial in TOKEN_LAYOUTS.values():
        return output
    return output.movedim(1, -1)


def from_features_last(restricted: torch.Tensor, spatial: str | None) -> torch.Tensor:
    """The inverse of :func:`features_last` (a contiguous tensor)."""
    if restricted.dim() == 2 or spatial in TOKEN_LAYOUTS.values():
        return restricted
    return restricted.movedim(-1, 1).contiguous()


def layout_of(model: nn.Module, output: torch.Tensor, spatial: str) -> str | None:
    """The sampling of ``output`` for ``spatial``: None for (N, d); for a three-dimensional
    output of a transformer the token layout ``spatial`` names (module docstring)."""
    if output.dim() == 2:
        return None
    if spatial in TOKEN_LAYOUTS.values() and output.dim() != 3:
        raise ValueError(f"spatial={spatial!r} reads token sequences (N, T, D); this layer "
                         f"gives shape {tuple(output.shape)}")
    if spatial in TOKEN_LAYOUTS and output.dim() == 3 and has_attention_layers(model):
        return TOKEN_LAYOUTS[spatial]
    return spatial


def layer_rows(output: torch.Tensor, spatial: str | None) -> torch.Tensor:
    """The samples of a layer output as rows (n, d): (N, d) as it is; conv (N, C, *spatial)
    per position (N * positions, C) or pooled over positions (N, C); token sequences (N, T, D)
    per token (N * T, D) or pooled over the tokens (N, D)."""
    if output.dim() == 2:
        return output
    if spatial == "pooled":
        return output.flatten(2).double().mean(2)  # float64 before the sum, as the statistics
    if spatial == "tokens_pooled":
        return output.double().mean(1)
    last = features_last(output, spatial)
    return last.reshape(-1, last.shape[-1])


@dataclass
class ActivationStatistics:
    """Float64 running mean and scatter ``sum_i (a_i - mean)(a_i - mean)^T`` of one layer's
    activation rows, merged batch by batch (Chan et al. 1979), so memory is O(d^2)."""

    layer: str
    spatial: str | None          # None: the output is (N, d); else how conv samples are taken
    feature_shape: tuple[int, ...]  # one input's output shape, e.g. (C, H, W)
    count: int = 0               # rows seen (inputs, or inputs x positions)
    mean: torch.Tensor | None = None
    scatter: torch.Tensor | None = None

    @classmethod
    def empty(cls, layer: str, spatial: str | None, feature_shape: tuple[int, ...]
              ) -> ActivationStatistics:
        return cls(layer, spatial, feature_shape)

    def add_rows(self, rows: torch.Tensor, inputs: torch.Tensor) -> None:
        """Merge in the rows of one batch (``inputs`` is not needed: the sums are exact)."""
        self.update(rows)

    def update(self, rows: torch.Tensor, chunk: int = 1 << 16) -> None:
        """Merge in ``rows`` (n, d), ``chunk`` rows at a time (bounds the float64 copies)."""
        for part in rows.detach().split(chunk):
            self._merge(part.double())

    def _merge(self, rows: torch.Tensor) -> None:
        batch_mean = rows.mean(0)
        centred = rows - batch_mean
        self._absorb(len(rows), batch_mean, centred.T @ centred)

    def _absorb(self, n: int, mean: torch.Tensor, scatter: torch.Tensor) -> None:
        """Merge in the statistics of ``n`` other rows (their mean and scatter)."""
        if n == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.scatter = n, mean, scatter
            return
        total = self.count + n
        delta = mean - self.mean
        self.scatter = self.scatter + scatter + torch.outer(delta, delta) * (
            self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.count = total

    def __add__(self, other: ActivationStatistics) -> ActivationStatistics:
        """The statistics of two disjoint sets of rows together (e.g. two data shards)."""
        if (self.layer, self.spatial, self.feature_shape) != (
                other.layer, other.spatial, other.feature_shape):
            raise ValueError(f"cannot add statistics of layer '{self.layer}' "
                             f"{self.feature_shape} and '{other.layer}' {other.feature_shape}")
        total = ActivationStatistics(self.layer, self.spatial, self.feature_shape)
        for part in (self, other):
            if part.count:
                total._absorb(part.count, part.mean, part.scatter)
        return total

    @property
    def dimension(self) -> int:
        return len(self.mean)

    @property
    def covariance(self) -> torch.Tensor:
        """The sample covariance (divided by ``count - 1``, as ``np.cov``)."""
        return self.scatter / (self.count - 1)


def activations(model: nn.Module, data, layers: Layer | Sequence[Layer],
                spatial: str = "positions", batch_size: int = 256,
                progress: bool = True, scheduler="local",
                workers: int = 2) -> dict[str, ActivationStatistics]:
    """Mean and covariance of the output of each of ``layers`` over ``data``, in one pass.

    ``data``: a tensor of inputs, or an iterable of input tensors or (inputs, labels) batches
    (e.g. a ``DataLoader``); it is read once, batch by batch, and each batch is moved to the
    model's device. Nothing is stacked: the statistics are float64 sums of size d x d per layer.
    ``spatial`` (``SPATIAL``) applies to conv outputs and token sequences, see the module doc.
    Each layer must run exactly once per forward pass. The model is used as it is (train/eval
    mode included), without gradients. ``data`` may also be ``workbench.shards.Shards``: each
    shard's statistics are then computed by a Dask worker (``scheduler``, ``workers``: see
    ``workbench.cluster.connect``) and merged, equal to one pass to float64 round-off.
    """
    _choice("spatial", spatial, SPATIAL)
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    names = list(dict.fromkeys(find_layer(model, layer)[0] for layer in layers))
    if not names:
        raise ValueError("layers is empty; name at least one layer")
    statistics = sum_statistics(
        functools.partial(_activation_statistics, model, names, spatial, batch_size,
                          ActivationStatistics.empty), data,
        combine=add_by_key, scheduler=scheduler, workers=workers, progress=progress,
        description="activations")
    for name, stats in statistics.items():
        if stats.count < 2:
            raise ValueError(f"layer '{name}': {stats.count} sample(s); a covariance needs two")
    return statistics


def _activation_statistics(model: nn.Module, names: list[str], spatial: str, batch_size: int,
                           empty, data, progress: bool) -> dict:
    """The statistics of the layers ``names`` over ``data`` in this process, read by forward
    hooks that are removed on return or error: ``empty(layer, spatial, feature_shape)`` makes
    a layer's accumulator (``ActivationStatistics``, ``RowSample``), ``add_rows(rows, inputs)``
    feeds it a batch's rows."""
    modules = dict(model.named_modules())
    statistics: dict = {}
    calls: dict[str, int] = {}
    batch: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() < 2:
                raise ValueError(f"layer '{name}' does not return a tensor of shape (N, d) or "
                                 "(N, C, ...); choose a layer that does")
            calls[name] += 1
            if name not in statistics:
                statistics[name] = empty(name, layout_of(model, output, spatial),
                                         tuple(output.shape[1:]))
            statistics[name].add_rows(layer_rows(output, statistics[name].spatial),
                                      batch["inputs"])
        return hook

    handles = [modules[name].register_forward_hook(recorder(name)) for name in names]
    try:
        with torch.no_grad():
            for inputs, _ in progress_batches(data, batch_size, progress, "activations"):
                calls.update({name: 0 for name in names})
                batch["inputs"] = inputs
                model(to_model_device(model, inputs))
                _check_ran_once(calls)
    finally:
        for handle in handles:
            handle.remove()
    if not statistics:
        raise ValueError("data is empty: no batch reached the model")
    return {name: statistics[name] for name in names}


def _check_ran_once(calls: dict[str, int]) -> None:
    for name, count in calls.items():
        if count != 1:
            raise ValueError(f"layer '{name}' ran {count} times in one forward pass; "
                             "choose a module that runs once (e.g. its parent)")


# ----------------------------------------------------------------------------------------------
# Bases


@dataclass(frozen=True, eq=False)
class Basis:
    """m unit-norm ``directions`` (rows, m x d, float64) of a layer's activation space, most
    variance first, with the ``coder`` that gives an activation row its codes (one per
    direction) and the reconstruction ``mean + (codes - code_mean) @ directions``.

    ``kind``: ``"pca"`` (eigenvectors of the covariance, each signed so that its largest
    component is positive), ``"neurons"`` (unit vectors; ``neurons[i]`` is the neuron of
    direction i), ``"ica"``, ``"nmf"`` or ``"sparse"`` (``workbench.decompositions``; not
    orthogonal, m may differ from d). ``variances[i]``: the variance of code i (for PCA and
    neurons the variance of the activations along direction i). ``mean``: the activations'
    mean, ``code_mean`` the codes' mean, ``total_variance`` the covariance's trace.
    ``r_squared``: for the non-orthogonal kinds, the reconstruction R² of the top-k directions
    for k = 0..m on the fitted rows (see ``variance_explained``). ``count``: the rows seen;
    ``samples``: the rows fitted (all of them for PCA and neurons).
    """

    layer: str
    kind: str
    directions: torch.Tensor
    variances: torch.Tensor
    mean: torch.Tensor
    total_variance: float
    spatial: str | None
    feature_shape: tuple[int, ...]
    count: int
    neurons: torch.Tensor | None = None
    coder: Coder | None = None
    code_mean: torch.Tensor | None = None
    r_squared: torch.Tensor | None = None
    samples: int | None = None

    @property
    def dimension(self) -> int:
        """The number of directions m."""
        return len(self.variances)

    @property
    def features(self) -> int:
        """The width d of the activation vectors."""
        return self.directions.shape[1]

    def centred_codes(self, rows: torch.Tensor, indices=None, fill: str = "mean"
                      ) -> torch.Tensor:
        """The codes of ``rows`` (..., d), float64, minus their mean (``fill="mean"``) or not
        (``"zero"``), for the directions ``indices`` (default all): for a linear coder
        ``(a - c) @ E^T`` with ``c`` the mean or zero, so for PCA the projection of the centred
        activation. Differentiable in ``rows``."""
        indices = slice(None) if indices is None else indices
        if self.coder.linear:
            centre = self.mean.to(rows.device) if fill == "mean" else 0
            matrix = self.coder.matrix.to(rows.device)[indices]
            return (rows - centre) @ matrix.T
        codes = self.coder.codes(rows)[..., indices]
        return codes - self.code_mean.to(rows.device)[indices] if fill == "mean" else codes

    def __repr__(self) -> str:
        return (f"Basis(layer='{self.layer}', kind='{self.kind}', dimension={self.dimension}, "
                f"features={self.features}, spatial={self.spatial!r}, samples={self.count})")


def basis_from_statistics(statistics: ActivationStatistics, kind: str = "pca") -> Basis:
    """The PCA or neuron basis of the activations summarised by ``statistics``."""
    _choice("kind", kind, ORTHOGONAL_KINDS)
    covariance = statistics.covariance
    variances = covariance.diagonal().clamp(min=0)
    neurons = None
    if kind == "pca":
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        order = eigenvalues.argsort(descending=True, stable=True)
        variances, directions = eigenvalues[order].clamp(min=0), eigenvectors[:, order].T
        largest = directions.abs().argmax(1, keepdim=True)
        directions = directions * directions.gather(1, largest).sign()
    else:
        neurons = variances.argsort(descending=True, stable=True)
        variances = variances[neurons]
        directions = torch.eye(len(variances), dtype=torch.float64,
                               device=covariance.device)[neurons]
    directions = directions.contiguous()
    return Basis(statistics.layer, kind, directions, variances, statistics.mean,
                 float(covariance.diagonal().sum()), statistics.spatial,
                 statistics.feature_shape, statistics.count, neurons,
                 LinearCoder(directions), statistics.mean @ directions.T, None,
                 statistics.count)


def _checked_options(kind: str, options):
    expected = {"ica": SampleOptions, "nmf": SampleOptions, "sparse": SparseOptions}.get(kind)
    if expected is None:
        if options is not None:
            raise ValueError(f"options apply to the kinds {list(SAMPLE_KINDS)}, not to "
                             f"kind={kind!r}; leave options=None")
        return None
    if options is None:
        return expected()
    if not isinstance(options, expected):
        raise ValueError(f"options for kind={kind!r} must be a {expected.__name__}, got "
                         f"{type(options).__name__}")
    return options


def sample_rows(model: nn.Module, data, layer: Layer, options: SampleOptions | SparseOptions,
                spatial: str = "positions", batch_size: int = 256, progress: bool = True,
                scheduler="local", workers: int = 2) -> RowSample:
    """A seeded uniform sample of at most ``options.max_samples`` of the activation rows of
    ``layer`` over ``data`` (``decompositions.RowSample``), in one streaming pass; for
    ``Shards``, a sample per shard on Dask, merged (a sample of all rows)."""
    _choice("spatial", spatial, SPATIAL)
    name = find_layer(model, layer)[0]
    empty = functools.partial(RowSample.empty, options.max_samples, options.seed)
    (sample,) = sum_statistics(
        functools.partial(_activation_statistics, model, [name], spatial, batch_size, empty),
        data, combine=add_by_key, scheduler=scheduler, workers=workers, progress=progress,
        description="activation rows").values()
    if sample.count < 2:
        raise ValueError(f"layer '{name}': {sample.count} sample(s); a fit needs two")
    return sample


def basis_from_sample(sample: RowSample, kind: str, options: SampleOptions | SparseOptions,
                      device: torch.device | None = None) -> Basis:
    """The ICA, NMF or sparse basis fitted on the rows of ``sample``: directions ordered by
    their codes' variance, and the reconstruction R² of the top k for every k."""
    _choice("kind", kind, SAMPLE_KINDS)
    rows = sample.rows.double()
    if kind == "ica":
        directions, coder = decompositions.fit_ica(rows, options, sample.layer)
    elif kind == "nmf":
        directions, coder = decompositions.fit_nmf(rows, options, sample.layer)
    else:
        directions, coder = decompositions.fit_sparse(rows, options, sample.layer, device)
    with torch.no_grad():   # the codes (NMF: least squares) on the model's device
        codes = coder.codes(rows.to(device or rows.device)).cpu()
    order = codes.var(0).argsort(descending=True, stable=True)
    directions, coder, codes = (directions[order].contiguous(), coder.permuted(order),
                                codes[:, order])
    mean = rows.mean(0)
    basis = Basis(sample.layer, kind, directions, codes.var(0), mean,
                  float(((rows - mean) ** 2).sum() / (len(rows) - 1)), sample.spatial,
                  sample.feature_shape, sample.seen, None, coder, codes.mean(0), None,
                  len(rows))
    r_squared = reconstruction_r_squared(basis, rows.to(device or rows.device))
    return dataclasses.replace(basis, r_squared=r_squared)


def fit_basis(model: nn.Module, data, layer: Layer, kind: str = "pca",
              spatial: str = "positions", batch_size: int = 256, progress: bool = True,
              scheduler="local", workers: int = 2,
              options: SampleOptions | SparseOptions | None = None) -> Basis:
    """The basis of ``kind`` of the output of ``layer`` (a module or its dotted name, e.g.
    ``"features.3"``), from one streaming pass over ``data``.

    ``"pca"``: the eigendecomposition (``torch.linalg.eigh``) of the float64 covariance.
    ``"neurons"``: the unit vectors, ranked by variance. ``"ica"``, ``"nmf"``, ``"sparse"``:
    fitted on a seeded sample of at most ``options.max_samples`` activation rows
    (``SampleOptions`` for ICA and NMF, ``SparseOptions`` for the sparse autoencoder, which
    trains on the model's device; see ``workbench.decompositions``). See ``activations`` for
    ``data`` (shards included), ``spatial``, ``scheduler`` and ``workers``.
    """
    _choice("kind", kind, KINDS)
    options = _checked_options(kind, options)
    if kind in ORTHOGONAL_KINDS:
        (statistics,) = activations(model, data, [layer], spatial, batch_size, progress,
                                    scheduler, workers).values()
        return basis_from_statistics(statistics, kind)
    sample = sample_rows(model, data, layer, options, spatial, batch_size, progress,
                         scheduler, workers)
    return basis_from_sample(sample, kind, options, model_device(model))


def _check_k(basis: Basis, k) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= basis.dimension:
        raise ValueError(f"k must be an integer in [0, {basis.dimension}] (the directions of "
                         f"layer '{basis.layer}'), got {k!r}")
    return k


def reconstruction_r_squared(basis: Basis, rows: torch.Tensor, chunk: int = 1 << 14
                             ) -> torch.Tensor:
    """``1 - E||a - â_k||² / E||a - mean||²`` over ``rows`` (n, d) for k = 0..m (entry k),
    ``â_k = mean + sum_{i<k} (c_i(a) - code_mean_i) directions_i`` the reconstruction from
    the top-k codes. From second moments of the codes: with ``x = a - mean`` and ``z`` the
    centred codes, ``E||x - z_k D_k||² = E||x||² - 2 sum_{i<k} E[z_i x.d_i]
    + sum_{i,j<k} E[z_i z_j] d_i.d_j``. For PCA it equals ``variance_explained``."""
    m = basis.dimension
    cross = rows.new_zeros(m, dtype=torch.float64)
    second = rows.new_zeros(m, m, dtype=torch.float64)
    total = 0.0
    directions = basis.directions.to(rows.device)
    with torch.no_grad():
        for part in rows.double().split(chunk):
            centred = part - basis.mean.to(rows.device)
            codes = basis.centred_codes(part)
            cross += (codes * (centred @ directions.T)).sum(0)
            second += codes.T @ codes
            total += float((centred ** 2).sum())
    if total <= 0:
        return torch.full((m + 1,), float("nan"), dtype=torch.float64)
    quadratic = second * (directions @ directions.T)
    leading = (2 * quadratic.tril(-1).sum(1) + quadratic.diagonal()).cumsum(0)
    residual = total - 2 * cross.cumsum(0) + leading
    return torch.cat([rows.new_zeros(1, dtype=torch.float64), 1 - residual / total]).cpu()


def variance_explained(basis: Basis, k: int) -> float:
    """How much of the activations the top-k directions of ``basis`` explain.

    PCA and neurons: the fraction of the total variance, ``sum_{i<k} variances[i] /
    trace(Cov)`` (for PCA the top-k eigenvalues; for neurons the variances of the k
    highest-variance neurons; PCA's is never smaller, Ky Fan). ICA, NMF, sparse (directions
    not orthogonal, so variances do not add up): the reconstruction R² of the top-k codes on
    the fitted rows, ``1 - E||a - â_k||² / E||a - mean||²`` (``reconstruction_r_squared``),
    which for PCA is the same number. NaN when the layer's activations do not vary."""
    k = _check_k(basis, k)
    if basis.r_squared is not None:
        return float(basis.r_squared[k])
    if basis.total_variance <= 0:
        return float("nan")
    return float(basis.variances[:k].sum() / basis.total_variance)


def cumulative_variance_explained(basis: Basis) -> torch.Tensor:
    """``variance_explained(basis, k)`` for k = 0, 1, ..., m (entry k)."""
    if basis.r_squared is not None:
        return basis.r_squared.clone()
    if basis.total_variance <= 0:
        return torch.full((basis.dimension + 1,), float("nan"), dtype=torch.float64)
    zero = basis.variances.new_zeros(1)
    return (torch.cat([zero, basis.variances.cumsum(0)]) / basis.total_variance).cpu()


def directions_for_variance(basis: Basis, fraction: float = 0.8) -> int:
    """The smallest k whose top-k directions explain at least ``fraction`` of the variance
    (R² for the non-orthogonal kinds); m if none does."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    curve = cumulative_variance_explained(basis)
    reached = (curve >= fraction - 1e-12).nonzero()
    return int(reached[0]) if len(reached) else basis.dimension


# ----------------------------------------------------------------------------------------------
# The function test: restrict the layer to k directions and run the rest of the net


def restrict(output: torch.Tensor, basis: Basis, kept: torch.Tensor, fill: str = "mean",
             codes: torch.Tensor | None = None) -> torch.Tensor:
    """``c + (codes_K(a) - code_c_K) @ directions_K`` for every activation vector ``a`` of
    ``output`` (conv: at every position), ``K`` the ``kept`` direction indices and ``c`` the
    mean (``fill="mean"``; ``code_c`` the codes' mean) or zero (``"zero"``; ``code_c = 0``).
    For PCA the projection ``c + (a - c) V_K^T V_K``; for neurons the kept neurons, the others
    at their mean or zero. ``codes``: the centred codes of all directions, if already known.
    Same shape and dtype out."""
    channels_last = features_last(output, basis.spatial)
    if channels_last.shape[-1] != basis.features:
        raise ValueError(f"layer '{basis.layer}' gives {channels_last.shape[-1]} features per "
                         f"sample here, the basis has {basis.features}")
    kept = torch.as_tensor(kept, dtype=torch.long, device=output.device)
    if codes is None:
        codes = basis.centred_codes(channels_last.double(), kept, fill)
    else:
        codes = codes[..., kept]
    directions = basis.directions.to(output.device)[kept]
    centre = basis.mean.to(output.device) if fill == "mean" else 0
    restricted = (centre + codes @ directions).to(output.dtype)
    return from_features_last(restricted, basis.spatial)


@dataclass(frozen=True)
class AblationCurve:
    """Accuracy and agreement with the unmodified model's predictions, per k."""

    layer: str
    kind: str
    keep: str
    fill: str
    ks: list[int]
    agreement: list[float]
    accuracy: list[float] | None        # None without labels
    original_accuracy: float | None
    samples: int


def _checked_ks(basis: Basis, ks: Sequence[int]) -> list[int]:
    if isinstance(ks, int) or not isinstance(ks, Sequence) or not ks:
        raise ValueError(f"ks must be a non-empty sequence of integers, got {ks!r}")
    return [_check_k(basis, k) for k in ks]


def _checked_labels(data, labels) -> torch.Tensor | None:
    if labels is None:
        return None
    if not isinstance(data, torch.Tensor) or len(labels) != len(data):
        raise ValueError("labels go with a tensor data of as many inputs; an iterable data "
                         "carries its labels as (inputs, labels) batches")
    return torch.as_tensor(labels)


@dataclass(frozen=True)
class Restriction:
    """One ablation curve to measure: ``basis``, the numbers of directions ``ks`` kept from the
    top (``keep="top"``) or from the bottom (``"bottom"``: removing the top m - k, as Dey et al.
    ablate the highest-variance directions cumulatively), the others at their mean or zero."""

    basis: Basis
    ks: Sequence[int]
    keep: str = "top"
    fill: str = "mean"


def ablation_curve(model: nn.Module, data, layer: Layer, basis: Basis, ks: Sequence[int],
                   keep: str = "top", fill: str = "mean", labels: torch.Tensor | None = None,
                   batch_size: int = 256, progress: bool = True) -> AblationCurve:
    """Run the net with the output of ``layer`` restricted to k directions of ``basis``.

    Each activation vector ``a`` (conv: at every position) becomes its reconstruction from the
    top-k (``keep="top"``) or bottom-k (``"bottom"``) codes, the others at their mean
    (``fill="mean"``) or zero (``"zero"``), see ``restrict``: for PCA the projection onto the
    top-k PCs around the mean, for neurons the top-k neurons kept and the others set to their
    mean; for ICA, NMF and sparse bases the sum of the kept codes' directions (so at k = m the
    reconstruction, which is the activation itself only for an exact basis). Labels come from
    ``labels`` (with a tensor ``data``) or from (inputs, labels) batches; without them only
    the agreement is measured. The model is used as it is and is left as it was: the hook
    that replaces the layer's output is removed on return or error. See ``ablation_curves``.
    """
    (curve,) = ablation_curves(model, data, layer, [Restriction(basis, ks, keep, fill)],
                               labels, batch_size, progress)
    return curve


def ablation_curves(model: nn.Module, data, layer: Layer, restrictions: Sequence[Restriction],
                    labels: torch.Tensor | None = None, batch_size: int = 256,
                    progress: bool = True, budget: int = 1 << 24) -> list[AblationCurve]:
    """``ablation_curve`` for each of ``restrictions`` (bases of one ``layer``), in one pass.

    Per batch the net runs once: the layer's output is replaced by the original and every
    restricted version stacked along the batch axis, so the layers before ``layer`` run once
    for all curves and k (at most ``budget`` activation values stacked at a time). A net whose
    later layers cannot take the stacked batch (a skip connection from before ``layer``) is
    run once per restriction and k instead, with the same results.
    """
    name, module = find_layer(model, layer)
    labels = _checked_labels(data, labels)
    variants = _variants(name, restrictions)          # (curve index, basis, kept, fill)
    features = max(math.prod(r.basis.feature_shape) for r in restrictions)
    chunk = max(1, budget // (features * (len(variants) + 1)))
    counts = _AblationCounts(len(variants))
    state = {"stacked": True, "variant": None}
    handle = module.register_forward_hook(
        lambda _module, _inputs, output: _replaced(output, variants, state))
    try:
        for index, (inputs, batch_labels) in enumerate(
                progress_batches(data, batch_size, progress, "ablation")):
            if labels is not None:
                batch_labels = labels[index * batch_size:index * batch_size + len(inputs)]
            inputs = to_model_device(model, inputs)
            parts = inputs.split(chunk)
            for part, part_labels in zip(parts, _split(batch_labels, chunk, len(parts)),
                                         strict=True):
                counts.add(_predictions(model, part, variants, state), part_labels)
    finally:
        handle.remove()
    return counts.curves(name, restrictions)


def _variants(name: str, restrictions: Sequence[Restriction]) -> list[tuple]:
    if isinstance(restrictions, Restriction) or not restrictions:
        raise ValueError("restrictions must be a non-empty sequence of Restriction")
    variants = []
    for index, r in enumerate(restrictions):
        _choice("keep", r.keep, KEEP)
        _choice("fill", r.fill, FILL)
        if name != r.basis.layer:
            raise ValueError(f"the basis is of layer '{r.basis.layer}', not of layer '{name}'")
        m = r.basis.dimension
        for k in _checked_ks(r.basis, r.ks):
            kept = torch.arange(k) if r.keep == "top" else torch.arange(m - k, m)
            variants.append((index, r.basis, kept, r.fill))
    return variants


def _split(labels: torch.Tensor | None, chunk: int, parts: int) -> Sequence:
    return [None] * parts if labels is None else labels.split(chunk)


def _replaced(output: torch.Tensor, variants: list[tuple], state: dict) -> torch.Tensor:
    """The hook's output: the original and every variant stacked (``state["stacked"]``), one
    variant (``state["variant"]``), or the original (neither)."""
    if state["stacked"]:
        codes: dict = {}
        return torch.cat([output] + [_restricted(output, basis, kept, fill, codes)
                                     for _, basis, kept, fill in variants])
    if state["variant"] is None:
        return output
    _, basis, kept, fill = variants[state["variant"]]
    return _restricted(output, basis, kept, fill, {})


def _restricted(output: torch.Tensor, basis: Basis, kept: torch.Tensor, fill: str,
                codes: dict) -> torch.Tensor:
    """``restrict`` with the centred codes of ``output`` computed once per (basis, fill)."""
    key = (id(basis), fill)
    if key not in codes:
        codes[key] = basis.centred_codes(features_last(output, basis.spatial).double(), None,
                                         fill)
    return restrict(output, basis, kept, fill, codes[key])


def _predictions(model: nn.Module, inputs: torch.Tensor, variants: list[tuple],
                 state: dict) -> torch.Tensor:
    """(1 + variants, n) predicted classes: the original's, then each variant's."""
    n = len(inputs)
    with torch.no_grad():
        if state["stacked"]:
            try:
                outputs = model(inputs)
            except RuntimeError:
                outputs = None
            if outputs is not None and len(outputs) == n * (len(variants) + 1):
                return outputs.argmax(-1).view(len(variants) + 1, n).cpu()
            state["stacked"] = False   # the net cannot take the stacked batch: one at a time
        rows = []
        for variant in [None, *range(len(variants))]:
            state["variant"] = variant
            rows.append(model(inputs).argmax(-1).cpu())
        state["variant"] = None
        return torch.stack(rows)


class _AblationCounts:
    """Running counts of agreement and correct predictions per variant."""

    def __init__(self, variants: int) -> None:
        self.agree = torch.zeros(variants, dtype=torch.float64)
        self.correct = torch.zeros(variants, dtype=torch.float64)
        self.original_correct, self.samples, self.labelled = 0, 0, True

    def add(self, predictions: torch.Tensor, labels: torch.Tensor | None) -> None:
        original, restricted = predictions[0], predictions[1:]
        self.agree += (restricted == original).sum(1)
        self.labelled = self.labelled and labels is not None
        if self.labelled:
            labels = labels.cpu()
            self.original_correct += int((original == labels).sum())
            self.correct += (restricted == labels).sum(1)
        self.samples += len(original)

    def curves(self, name: str, restrictions: Sequence[Restriction]) -> list[AblationCurve]:
        if self.samples == 0:
            raise ValueError("data is empty: no batch reached the model")
        agreement = (self.agree / self.samples).tolist()
        accuracy = (self.correct / self.samples).tolist() if self.labelled else None
        original = self.original_correct / self.samples if self.labelled else None
        curves, start = [], 0
        for r in restrictions:
            end = start + len(r.ks)
            curves.append(AblationCurve(name, r.basis.kind, r.keep, r.fill, list(r.ks),
                                        agreement[start:end],
                                        accuracy[start:end] if accuracy else None,
                                        original, self.samples))
            start = end
        return curves
