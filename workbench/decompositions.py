"""Non-orthogonal bases of a layer's activations, fitted on a sample of its activation rows:
independent components (FastICA; Hyvärinen & Oja 2000), non-negative factors (NMF; Lee & Seung
1999) and sparse dictionaries (a sparse autoencoder, as in Bricken et al. 2023 and, with top-k
sparsity, Gao et al. 2024, arXiv 2406.04093), the bases now compared with neurons and principal
components (Dey et al., arXiv 2011.03043).

Each fit returns unit-norm ``directions`` (rows, m x d, in activation space) and a *coder* that
gives every activation row ``a`` its codes ``c(a)`` (m), so that ``c(a) @ directions`` is the
reconstruction of ``a`` (up to a constant offset, see ``workbench.basis``):

- ICA: ``c(a) = a @ E^T`` with ``E`` the unmixing matrix, each row scaled by the norm of its
  mixing column (so the codes go with unit directions); linear.
- NMF: ``c(a) = argmin_{c >= 0} ||a - c @ directions||`` (non-negative least squares, solved by
  FISTA with a fixed iteration cap; differentiable in ``a`` through its iterations).
- sparse: the autoencoder's encoder, ``s * f(W_enc ((a - mean) / s - b_dec) + b_enc)`` with
  ``f`` ReLU (L1 sparsity) or ReLU of the top-k pre-activations (top-k sparsity) and ``s`` the
  activations' scale; its decoder rows, kept at unit norm during training, are the directions.

The rows come from :class:`RowSample`: a seeded uniform sample of at most ``max_samples`` rows
kept while the data stream past (each row gets a random key; the rows with the smallest keys
are kept), so memory is bounded and two shards' samples merge into a sample of both.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np
import torch

SPARSITY = ("top_k", "l1")


# ----------------------------------------------------------------------------------------------
# Options


def _positive_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class SampleOptions:
    """Options of the sample-based kinds ``"ica"`` and ``"nmf"``.

    ``components``: the number of directions m (default: ICA the rank of the sampled
    activations, NMF the layer's width d, or the number of sampled rows when fewer);
    ``max_samples``: the most activation rows kept
    (a seeded uniform sample beyond); ``max_iter``: the solver's iteration cap (scikit-learn's
    ``FastICA``/``NMF``); ``seed``: the sample's and the solver's seed.
    """

    components: int | None = None
    max_samples: int = 50_000
    max_iter: int = 1000
    seed: int = 0

    def __post_init__(self):
        _positive_int("components", self.components, allow_none=True)
        _positive_int("max_samples", self.max_samples)
        _positive_int("max_iter", self.max_iter)


@dataclass(frozen=True)
class SparseOptions:
    """Options of ``kind="sparse"``, a sparse autoencoder trained with Adam in PyTorch.

    ``width``: the dictionary size m (default 4 d); ``sparsity``: ``"top_k"`` (keep the
    ``top_k`` largest ReLU pre-activations per row; default ``max(1, d // 8)``) or ``"l1"``
    (ReLU codes, loss plus ``l1`` times the codes' L1 norm over the row's norm); ``steps``
    Adam steps of ``batch_rows`` rows drawn from the kept sample at ``learning_rate``;
    ``max_samples``, ``seed``: as :class:`SampleOptions` (the seed also draws the initial
    weights and the batches: a seed gives the same dictionary on a given machine).
    The loss is the fraction of variance unexplained of the (centred, scaled) activations.
    """

    width: int | None = None
    sparsity: str = "top_k"
    top_k: int | None = None
    l1: float = 0.01
    steps: int = 2000
    batch_rows: int = 1024
    learning_rate: float = 1e-3
    max_samples: int = 50_000
    seed: int = 0

    def __post_init__(self):
        if self.sparsity not in SPARSITY:
            raise ValueError(f"sparsity must be one of {list(SPARSITY)}, got {self.sparsity!r}")
        for name in ("width", "top_k"):
            _positive_int(name, getattr(self, name), allow_none=True)
        if self.sparsity == "l1" and self.top_k is not None:
            raise ValueError("top_k applies to sparsity='top_k'; with sparsity='l1' leave it "
                             "None and set l1")
        for name in ("steps", "batch_rows", "max_samples"):
            _positive_int(name, getattr(self, name))
        if not (isinstance(self.l1, (int, float)) and self.l1 >= 0):
            raise ValueError(f"l1 must be a non-negative number, got {self.l1!r}")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")


# ----------------------------------------------------------------------------------------------
# A bounded, seeded, mergeable sample of activation rows


def batch_seed(seed: int, inputs: torch.Tensor) -> int:
    """A seed for one batch's row keys from ``seed`` and the batch's content (its shape and
    4096 values spread over it): batches with the same inputs draw the same keys wherever they
    are read, different batches (e.g. different shards) independent ones."""
    flat = inputs.detach().reshape(-1)
    spread = flat[::max(1, flat.numel() // 4096)][:4096].cpu().double().numpy()
    digest = hashlib.blake2b(digest_size=8)
    digest.update(np.int64(seed).tobytes())
    digest.update(np.asarray(inputs.shape, dtype=np.int64).tobytes())
    digest.update(spread.tobytes())
    return int.from_bytes(digest.digest(), "little") >> 1


@dataclass
class RowSample:
    """At most ``cap`` of a layer's activation rows: those with the smallest random keys, a
    uniform sample without replacement of the ``seen`` rows (a bottom-k sketch). Adding two
    samples keeps the ``cap`` smallest keys of both: a sample of the union."""

    layer: str
    spatial: str | None
    feature_shape: tuple[int, ...]
    cap: int
    seed: int
    seen: int = 0
    keys: torch.Tensor | None = field(default=None, repr=False)
    rows: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, cap: int, seed: int, layer: str, spatial: str | None,
              feature_shape: tuple[int, ...]) -> RowSample:
        return cls(layer, spatial, feature_shape, cap, seed)

    def add_rows(self, rows: torch.Tensor, inputs: torch.Tensor) -> None:
        """Offer the rows (n, d) of the batch ``inputs`` (which seed their keys)."""
        generator = torch.Generator().manual_seed(batch_seed(self.seed, inputs))
        keys = torch.rand(len(rows), generator=generator, dtype=torch.float64)
        self._keep(keys, rows.detach().cpu(), len(rows))

    def _keep(self, keys: torch.Tensor, rows: torch.Tensor, seen: int) -> None:
        if self.rows is not None:
            keys, rows = torch.cat([self.keys, keys]), torch.cat([self.rows, rows.to(self.rows)])
        order = keys.argsort(stable=True)[:self.cap]
        self.keys, self.rows = keys[order], rows[order]
        self.seen += seen

    def __add__(self, other: RowSample) -> RowSample:
        if (self.layer, self.feature_shape, self.cap) != (other.layer, other.feature_shape,
                                                          other.cap):
            raise ValueError(f"cannot add row samples of layer '{self.layer}' and "
                             f"'{other.layer}' of different shapes or caps")
        total = RowSample(self.layer, self.spatial, self.feature_shape, self.cap, self.seed)
        for part in (self, other):
            if part.rows is not None:
                total._keep(part.keys, part.rows, part.seen)
        return total

    @property
    def count(self) -> int:
        return 0 if self.rows is None else len(self.rows)


# ----------------------------------------------------------------------------------------------
# Coders: the codes of activation rows (..., d) -> (..., m), float64, differentiable


class Coder(Protocol):
    """What a basis asks of its coder: ``codes(rows)`` (..., d) -> (..., m); ``linear``
    (then ``codes(a) = a @ matrix^T``); the same coder with its directions reordered."""

    linear: ClassVar[bool]

    def codes(self, rows: torch.Tensor) -> torch.Tensor: ...

    def permuted(self, order: torch.Tensor) -> Coder: ...


@dataclass(frozen=True)
class LinearCoder:
    """``c(a) = a @ matrix^T``: PCA and neurons (matrix = the directions), ICA (the scaled
    unmixing matrix)."""

    matrix: torch.Tensor
    linear: ClassVar[bool] = True

    def codes(self, rows: torch.Tensor) -> torch.Tensor:
        return rows @ self.matrix.to(rows.device).T

    def permuted(self, order: torch.Tensor) -> LinearCoder:
        return LinearCoder(self.matrix[order])


def nnls(rows: torch.Tensor, dictionary: torch.Tensor, iterations: int = 1000,
         tolerance: float = 1e-10) -> torch.Tensor:
    """``argmin_{c >= 0} ||a - c @ dictionary||^2`` for every row ``a`` (n, d): FISTA (Beck &
    Teboulle 2009) from the clamped least-squares solution, at most ``iterations`` steps,
    stopping once no code moves by more than ``tolerance`` times the largest code."""
    gram = dictionary @ dictionary.T
    lipschitz = float(torch.linalg.eigvalsh(gram).max().clamp(min=1e-300))
    correlation = rows @ dictionary.T
    codes = (correlation @ torch.linalg.pinv(gram)).clamp(min=0)
    momentum, t = codes, 1.0
    for step in range(iterations):
        updated = (momentum - (momentum @ gram - correlation) / lipschitz).clamp(min=0)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        momentum = updated + (updated - codes) * ((t - 1) / t_next)
        change = (updated - codes).abs().max() if step % 20 == 19 else None
        codes, t = updated, t_next
        if change is not None and change <= tolerance * codes.abs().max().clamp(min=1e-300):
            break
    return codes


@dataclass(frozen=True)
class NonNegativeCoder:
    """``c(a)``: the non-negative least-squares codes of ``a`` on the (unit) NMF directions."""

    dictionary: torch.Tensor
    iterations: int = 1000
    linear: ClassVar[bool] = False

    def codes(self, rows: torch.Tensor) -> torch.Tensor:
        flat = rows.reshape(-1, rows.shape[-1])
        codes = nnls(flat, self.dictionary.to(rows.device), self.iterations)
        return codes.reshape(*rows.shape[:-1], -1)

    def permuted(self, order: torch.Tensor) -> NonNegativeCoder:
        return NonNegativeCoder(self.dictionary[order], self.iterations)


@dataclass(frozen=True)
class SparseCoder:
    """The encoder of a sparse autoencoder: ``s * f(W_enc ((a - mean) / s - b_dec) + b_enc)``,
    ``f`` ReLU, or ReLU of the ``top_k`` largest pre-activations when ``top_k`` is set."""

    mean: torch.Tensor
    scale: float
    decoder_bias: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    top_k: int | None
    linear: ClassVar[bool] = False

    def codes(self, rows: torch.Tensor) -> torch.Tensor:
        device = rows.device
        normalised = (rows - self.mean.to(device)) / self.scale - self.decoder_bias.to(device)
        return self.scale * sparse_activation(
            normalised @ self.weight.to(device).T + self.bias.to(device), self.top_k)

    def permuted(self, order: torch.Tensor) -> SparseCoder:
        return SparseCoder(self.mean, self.scale, self.decoder_bias, self.weight[order],
                           self.bias[order], self.top_k)


def sparse_activation(pre: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """ReLU, or ReLU of the ``top_k`` largest entries of each row (the others zero)."""
    if top_k is None or top_k >= pre.shape[-1]:
        return pre.relu()
    values, indices = pre.topk(top_k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values.relu())


# ----------------------------------------------------------------------------------------------
# Fits: (directions m x d with unit rows, coder), float64


def numerical_rank(rows: torch.Tensor) -> int:
    """The rank of the centred rows: covariance eigenvalues above 1e-9 of the largest."""
    centred = rows - rows.mean(0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred)
    return int((eigenvalues > 1e-9 * eigenvalues.max().clamp(min=1e-300)).sum())


def _components(layer: str, requested: int | None, default: int, most: int, what: str) -> int:
    components = default if requested is None else requested
    if components > most:
        raise ValueError(f"components must be at most {most} ({what} of layer '{layer}'), "
                         f"got {components}")
    return components


def fit_ica(rows: torch.Tensor, options: SampleOptions, layer: str
            ) -> tuple[torch.Tensor, LinearCoder]:
    """FastICA (scikit-learn, unit-variance whitening) of the rows: the mixing columns as unit
    directions (each signed so its largest component is positive), the scaled unmixing rows
    as the linear encoder."""
    from sklearn.decomposition import FastICA

    rank = numerical_rank(rows)
    if rank < 1:
        raise ValueError(f"layer '{layer}': the sampled activations do not vary; ICA needs "
                         "at least one direction of variance")
    components = _components(layer, options.components, rank, rank,
                             "the rank of the sampled activations")
    ica = FastICA(n_components=components, whiten="unit-variance", max_iter=options.max_iter,
                  random_state=options.seed)
    ica.fit(rows.numpy())
    mixing = torch.from_numpy(ica.mixing_).double()              # d x m
    unmixing = torch.from_numpy(ica.components_).double()        # m x d
    norms = mixing.norm(dim=0)
    directions = mixing.T / norms[:, None]
    largest = directions.abs().argmax(1, keepdim=True)
    signs = directions.gather(1, largest).sign()
    return directions * signs, LinearCoder(unmixing * (norms[:, None] * signs))


def check_non_negative(rows: torch.Tensor, layer: str) -> None:
    lowest = float(rows.min())
    if lowest < 0:
        raise ValueError(f"kind='nmf' needs non-negative activations; layer '{layer}' has "
                         f"activations down to {lowest:.4g} (take the output of a ReLU, or "
                         "another kind)")


def fit_nmf(rows: torch.Tensor, options: SampleOptions, layer: str
            ) -> tuple[torch.Tensor, NonNegativeCoder]:
    """NMF (scikit-learn, NNDSVDa start) of the non-negative rows: its factors, normalised, as
    directions (factors left at zero are dropped); codes by non-negative least squares."""
    from sklearn.decomposition import NMF

    check_non_negative(rows, layer)
    samples, width = rows.shape
    components = _components(layer, options.components, min(width, samples), width,
                             "the width")
    # NNDSVDa needs m <= min(n, d); beyond it (more factors than sampled rows) a random start
    init = "nndsvda" if components <= min(width, samples) else "random"
    nmf = NMF(n_components=components, init=init, max_iter=options.max_iter,
              random_state=options.seed)
    nmf.fit(rows.numpy())
    factors = torch.from_numpy(nmf.components_).double()
    norms = factors.norm(dim=1)
    used = norms > 1e-12 * norms.max().clamp(min=1e-300)
    if not used.any():
        raise ValueError(f"layer '{layer}': NMF found no non-zero factor (activations all zero?)")
    directions = factors[used] / norms[used, None]
    return directions, NonNegativeCoder(directions)


def fit_sparse(rows: torch.Tensor, options: SparseOptions, layer: str,
               device: torch.device | None = None) -> tuple[torch.Tensor, SparseCoder]:
    """Train the sparse autoencoder of ``options`` on the rows, in float32 on ``device``
    (default the CPU); the initial weights and the batches are drawn on the CPU."""
    d = rows.shape[1]
    width = options.width or 4 * d
    top_k = (options.top_k or max(1, d // 8)) if options.sparsity == "top_k" else None
    if top_k is not None and top_k > width:
        raise ValueError(f"top_k must be at most the width {width} (layer '{layer}'), got "
                         f"{top_k}")
    mean = rows.mean(0)
    scale = float(((rows - mean) ** 2).sum(1).mean().sqrt() / math.sqrt(d))
    if scale <= 0:
        raise ValueError(f"layer '{layer}': the sampled activations do not vary")
    device = device or torch.device("cpu")
    data = ((rows - mean) / scale).float().to(device)
    generator = torch.Generator().manual_seed(options.seed)
    decoder = torch.randn(width, d, generator=generator)
    decoder = (decoder / decoder.norm(dim=1, keepdim=True)).to(device)
    parameters = [decoder.clone().requires_grad_(), decoder.requires_grad_(),
                  torch.zeros(width, device=device, requires_grad=True),
                  torch.zeros(d, device=device, requires_grad=True)]
    _train(data, parameters, options, top_k, generator)
    encoder, decoder, bias, decoder_bias = (p.detach().cpu().double() for p in parameters)
    return decoder, SparseCoder(mean, scale, decoder_bias, encoder, bias, top_k)


def _train(data: torch.Tensor, parameters: list[torch.Tensor], options: SparseOptions,
           top_k: int | None, generator: torch.Generator) -> None:
    encoder, decoder, bias, decoder_bias = parameters
    optimiser = torch.optim.Adam(parameters, lr=options.learning_rate)
    d = data.shape[1]
    for _ in range(options.steps):
        chosen = torch.randint(len(data), (options.batch_rows,), generator=generator)
        batch = data[chosen.to(data.device)]
        codes = sparse_activation((batch - decoder_bias) @ encoder.T + bias, top_k)
        loss = ((codes @ decoder + decoder_bias - batch) ** 2).sum(1).mean() / d
        if top_k is None:
            loss = loss + options.l1 * codes.sum(1).mean() / math.sqrt(d)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            decoder /= decoder.norm(dim=1, keepdim=True).clamp(min=1e-12)
