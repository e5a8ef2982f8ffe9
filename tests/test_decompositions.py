"""Non-orthogonal bases of a layer (ICA, NMF, sparse dictionaries) on layers whose activations
are known mixtures: each recovers what was planted; the reconstruction R² against an explicit
reconstruction and, for PCA, against the eigenvalue fraction; the row sample; errors."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import nnls as scipy_nnls
from torch import nn

import workbench as wb
from conftest import cnn, mlp
from workbench import basis as bases
from workbench import decompositions
from workbench.decompositions import RowSample, SampleOptions, SparseOptions
from workbench.shards import Shards

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear_layer(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Module:
    """``x -> x @ weight^T + bias`` as layer "0" (an Identity after it keeps it a module)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return nn.Sequential(layer, nn.Identity()).eval()


def _best_permutation_cosines(found: torch.Tensor, planted: torch.Tensor) -> torch.Tensor:
    """|cosine| of each planted row with the found row of a one-to-one matching that
    maximises the smallest one (brute force over permutations; few rows)."""
    found = found / found.norm(dim=1, keepdim=True)
    planted = planted / planted.norm(dim=1, keepdim=True)
    cosines = (planted.double() @ found.double().T).abs()
    best = max(itertools.permutations(range(len(found)), len(planted)),
               key=lambda p: float(cosines[torch.arange(len(planted)), list(p)].min()))
    return cosines[torch.arange(len(planted)), list(best)]


@pytest.fixture(scope="module")
def mixed_sources():
    """Three independent non-Gaussian sources (uniform, Laplace, Bernoulli) and a layer that
    mixes them into 5 activations (rank 3) plus an offset."""
    generator = torch.Generator().manual_seed(0)
    n = 3000
    sources = torch.stack([torch.rand(n, generator=generator) * 2 - 1,
                           torch.distributions.Laplace(0.0, 1.0).sample((n,)),
                           (torch.rand(n, generator=generator) < 0.3).float() * 2], 1)
    mixing = torch.randn(5, 3, generator=generator)
    return _linear_layer(mixing, torch.randn(5, generator=generator)), sources, mixing


@pytest.fixture(scope="module")
def planted_dictionary():
    """A layer whose activations are sparse non-negative combinations (3 of 12 at a time) of
    12 unit atoms in 24 dimensions."""
    generator = torch.Generator().manual_seed(1)
    d, atoms_count, n = 24, 12, 8000
    atoms = torch.randn(atoms_count, d, generator=generator)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    active = torch.rand(n, atoms_count, generator=generator).argsort(1)[:, :3]
    codes = torch.zeros(n, atoms_count).scatter(1, active,
                                                torch.rand(n, 3, generator=generator) + 0.5)
    return _linear_layer(atoms.T), codes, atoms


# ----------------------------------------------------------------------------------------------
# Recovery of planted structure


def test_ica_recovers_the_mixing_directions_and_the_sources(mixed_sources):
    model, sources, mixing = mixed_sources
    basis = wb.fit_basis(model, sources, "0", kind="ica", progress=False)
    assert basis.dimension == 3 and basis.features == 5   # the rank, found from the sample
    assert (_best_permutation_cosines(basis.directions, mixing.T) >= 0.95).all()
    np.testing.assert_allclose(basis.directions.norm(dim=1).numpy(), 1.0, atol=1e-12)
    with torch.no_grad():
        codes = basis.centred_codes(model(sources).double())
    correlation = np.corrcoef(codes.T.numpy(), sources.T.numpy())[:3, 3:]
    assert (np.abs(correlation).max(1) >= 0.99).all()
    # three sources explain a rank-3 layer: the full reconstruction is exact
    assert wb.variance_explained(basis, 3) == pytest.approx(1.0, abs=1e-9)


def test_nmf_recovers_non_negative_factors(mixed_sources):
    generator = torch.Generator().manual_seed(2)
    factors = torch.rand(4, 10, generator=generator) * (torch.rand(4, 10, generator=generator)
                                                        < 0.5)
    codes = torch.rand(3000, 4, generator=generator) * (torch.rand(3000, 4,
                                                                   generator=generator) < 0.4)
    model = nn.Sequential(_linear_layer(factors.T)[0], nn.ReLU()).eval()
    basis = wb.fit_basis(model, codes, "1", kind="nmf", options=SampleOptions(components=4),
                         progress=False)
    assert (basis.directions >= 0).all()
    assert (_best_permutation_cosines(basis.directions, factors) >= 0.95).all()
    assert wb.variance_explained(basis, 4) == pytest.approx(1.0, abs=1e-6)


def test_nmf_on_fewer_rows_than_neurons_defaults_to_one_factor_per_row():
    """A wide layer seen on few inputs (AlexNet's fc layers on a small sample): by default as
    many factors as rows, which reconstruct the rows exactly (rank n); more factors than rows
    start from a random point instead of NNDSVDa, which cannot build them."""
    generator = torch.Generator().manual_seed(5)
    rows = torch.rand(12, 40, generator=generator)
    model = nn.Sequential(_linear_layer(torch.eye(40))[0], nn.ReLU()).eval()
    basis = wb.fit_basis(model, rows, "1", kind="nmf", progress=False)
    assert basis.dimension == 12
    assert wb.variance_explained(basis, 12) == pytest.approx(1.0, abs=1e-3)
    wider = wb.fit_basis(model, rows, "1", kind="nmf", options=SampleOptions(components=16),
                         progress=False)
    assert wider.dimension <= 16 and (wider.directions >= 0).all()


def test_sparse_autoencoder_recovers_every_planted_atom(planted_dictionary):
    model, codes, atoms = planted_dictionary
    options = SparseOptions(width=24, top_k=3, steps=3000)
    basis = wb.fit_basis(model, codes, "0", kind="sparse", options=options, progress=False)
    assert basis.dimension == 24
    cosines = atoms.double() @ basis.directions.T
    assert (cosines.max(1).values >= 0.95).all()
    assert wb.variance_explained(basis, 24) >= 0.95
    again = wb.fit_basis(model, codes, "0", kind="sparse", options=options, progress=False)
    assert torch.equal(again.directions, basis.directions)     # deterministic under the seed


def test_l1_sparse_autoencoder_finds_the_planted_atoms_less_exactly(planted_dictionary):
    """L1 sparsity shrinks the codes and trades exactness of the atoms for sparsity: on this
    dictionary its worst atom reaches about 0.93 (top-k: above 0.99), its typical one 0.97."""
    model, codes, atoms = planted_dictionary
    options = SparseOptions(width=24, sparsity="l1", l1=0.01, steps=3000)
    basis = wb.fit_basis(model, codes, "0", kind="sparse", options=options, progress=False)
    best = (atoms.double() @ basis.directions.T).max(1).values
    assert best.min() >= 0.9 and best.mean() >= 0.95
    assert wb.variance_explained(basis, 24) >= 0.99
    dense = wb.fit_basis(model, codes, "0", kind="sparse", progress=False,
                         options=dataclasses.replace(options, l1=0.0))
    with torch.no_grad():
        rows = model(codes).double()
        active, dense_active = ((b.coder.codes(rows) > 0).double().sum(1).mean()
                                for b in (basis, dense))
    assert active <= dense_active / 2      # the penalty halves the active codes (24 -> ~10)


def test_nnls_codes_match_scipy():
    generator = torch.Generator().manual_seed(3)
    dictionary = torch.rand(6, 9, generator=generator, dtype=torch.float64)
    dictionary = dictionary / dictionary.norm(dim=1, keepdim=True)
    rows = torch.randn(20, 9, generator=generator, dtype=torch.float64).abs()
    codes = decompositions.nnls(rows, dictionary, iterations=20000, tolerance=1e-14)
    expected = np.stack([scipy_nnls(dictionary.T.numpy(), row.numpy())[0] for row in rows])
    np.testing.assert_allclose(codes.numpy(), expected, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Reconstruction R²


def test_reconstruction_r_squared_of_pca_and_neurons_is_the_variance_fraction():
    model = mlp(nn.Tanh, sizes=(8, 16, 12, 5))
    inputs = torch.randn(300, 8, generator=torch.Generator().manual_seed(4))
    rows = model[:2](inputs).detach().double()
    for kind in ("pca", "neurons"):
        basis = wb.fit_basis(model, inputs, "1", kind=kind, progress=False)
        np.testing.assert_allclose(bases.reconstruction_r_squared(basis, rows).numpy(),
                                   bases.cumulative_variance_explained(basis).numpy(),
                                   atol=1e-10)


@pytest.mark.parametrize("kind", ["ica", "nmf", "sparse"])
def test_r_squared_is_one_minus_the_explicit_reconstruction_error(kind):
    model = cnn(nn.ReLU)
    images = torch.randn(48, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    options = SparseOptions(steps=200) if kind == "sparse" else None
    basis = wb.fit_basis(model, images, "7", kind=kind, options=options, progress=False)
    rows = model[:8](images).detach().double()
    centred = rows - rows.mean(0)
    for k in (0, 1, basis.dimension // 2, basis.dimension):
        with torch.no_grad():
            reconstruction = bases.restrict(rows, basis, torch.arange(k))
        error = ((rows - reconstruction) ** 2).sum() / (centred ** 2).sum()
        assert wb.variance_explained(basis, k) == pytest.approx(1 - float(error), abs=1e-9)
    # directions are ordered by their codes' variance
    assert (basis.variances[:-1] >= basis.variances[1:]).all()


# ----------------------------------------------------------------------------------------------
# The row sample


def test_row_sample_is_the_rows_with_the_smallest_keys_and_merges():
    rows = torch.arange(200.0)[:, None].expand(-1, 2)
    whole = RowSample.empty(30, 7, "layer", None, (2,))
    for part in rows.split(40):
        whole.add_rows(part, part)
    assert whole.seen == 200 and whole.count == 30
    assert len(set(whole.rows[:, 0].tolist())) == 30
    # the same batches in two halves, merged: the same sample
    first, second = (RowSample.empty(30, 7, "layer", None, (2,)) for _ in range(2))
    for index, part in enumerate(rows.split(40)):
        (first if index < 2 else second).add_rows(part, part)
    merged = first + second
    assert merged.seen == 200 and torch.equal(merged.rows, whole.rows)
    # below the cap every row is kept
    everything = RowSample.empty(500, 7, "layer", None, (2,))
    everything.add_rows(rows, rows)
    assert sorted(everything.rows[:, 0].tolist()) == rows[:, 0].tolist()


def test_row_sample_keeps_every_row_equally_often_over_seeds():
    rows = torch.arange(200.0)[:, None]
    kept = torch.zeros(200)
    for seed in range(400):
        sample = RowSample.empty(50, seed, "layer", None, (1,))
        for part in rows.split(40):
            sample.add_rows(part, part)
        kept[sample.rows[:, 0].long()] += 1
    # each row in 400 x 50/200 = 100 samples on average, binomial sd 8.7: within 5 sd
    assert kept.sum() == 400 * 50
    assert (kept - 100).abs().max() <= 5 * 8.7


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ica", "nmf", "sparse"])
def test_sharded_fit_equals_the_one_process_fit(dask_client, kind):
    model = cnn(nn.ReLU)
    images = torch.randn(90, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    options = (SparseOptions(steps=100, max_samples=1000) if kind == "sparse"
               else SampleOptions(max_samples=1000))
    # 90 x 64 positions: a sample of 1000 rows; the shards' batches are the one pass's batches
    single = wb.fit_basis(model, images, "1", kind=kind, batch_size=30, options=options,
                          progress=False)
    sharded = wb.fit_basis(model, Shards.split(images, 3), "1", kind=kind, batch_size=30,
                           options=options, progress=False, scheduler=dask_client)
    assert sharded.count == single.count == 90 * 64 and sharded.samples == 1000
    torch.testing.assert_close(sharded.directions, single.directions, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sharded.r_squared, single.r_squared, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Errors that name the option


def test_errors_name_the_option(mixed_sources):
    model, sources, _ = mixed_sources
    with pytest.raises(ValueError, match=r"kind='nmf' needs non-negative activations; layer "
                                         r"'0' has activations down to -"):
        wb.fit_basis(model, sources, "0", kind="nmf", progress=False)
    with pytest.raises(ValueError, match=r"components must be at most 3 \(the rank"):
        wb.fit_basis(model, sources, "0", kind="ica", options=SampleOptions(components=4),
                     progress=False)
    with pytest.raises(ValueError, match="options for kind='sparse' must be a SparseOptions"):
        wb.fit_basis(model, sources, "0", kind="sparse", options=SampleOptions(),
                     progress=False)
    with pytest.raises(ValueError, match=r"options apply to the kinds \['ica', 'nmf', "
                                         r"'sparse'\], not to kind='pca'"):
        wb.fit_basis(model, sources, "0", kind="pca", options=SampleOptions(), progress=False)
    with pytest.raises(ValueError, match="top_k must be at most the width 4"):
        wb.fit_basis(model, sources, "0", kind="sparse", options=SparseOptions(width=4, top_k=5),
                     progress=False)
    for bad, message in (({"width": 0}, "width must be a positive integer"),
                         ({"sparsity": "l0"}, r"sparsity must be one of \['top_k', 'l1'\]"),
                         ({"l1": -1.0}, "l1 must be a non-negative number"),
                         ({"sparsity": "l1", "top_k": 3}, "top_k applies to sparsity='top_k'"),
                         ({"steps": 2.5}, "steps must be a positive integer"),
                         ({"learning_rate": 0}, "learning_rate must be positive")):
        with pytest.raises(ValueError, match=message):
            SparseOptions(**bad)
    with pytest.raises(ValueError, match="max_samples must be a positive integer"):
        SampleOptions(max_samples=0)


# ----------------------------------------------------------------------------------------------
# Every kind with the completeness and interpretability tools


def _options(kind: str):
    return {"sparse": SparseOptions(steps=300, width=12), "nmf": SampleOptions(max_iter=300),
            "ica": SampleOptions(max_iter=300)}.get(kind)


@pytest.mark.parametrize("kind", bases.KINDS)
@pytest.mark.parametrize("layer", ["1", "7"])   # a conv ReLU (per position), a dense ReLU
def test_every_kind_works_with_ablation_top_activating_and_visualisation(kind, layer):
    model = cnn(nn.ReLU)
    images = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    labels = torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    basis = wb.fit_basis(model, images, layer, kind=kind, options=_options(kind),
                         progress=False)
    m, split = basis.dimension, int(layer) + 1
    curve = wb.ablation_curve(model, images, layer, basis, [0, 1, m], labels=labels,
                              batch_size=25, progress=False)
    # the reconstruction at k = m, computed here from the coder: the same predictions
    with torch.no_grad():
        output = model[:split](images)
        channels_last = output.movedim(1, -1) if output.dim() > 2 else output
        codes = basis.coder.codes(channels_last.double()) - basis.code_mean
        rebuilt = (basis.mean + codes @ basis.directions).float()
        rebuilt = rebuilt.movedim(-1, 1) if output.dim() > 2 else rebuilt
        original = model(images).argmax(1)
        full = model[split:](rebuilt).argmax(1)
        constant = basis.mean.float().view(1, -1, *[1] * (output.dim() - 2))
        of_mean = model[split:](constant.expand(1, *basis.feature_shape)).argmax(1)
    assert curve.agreement[-1] == pytest.approx((full == original).double().mean().item())
    assert curve.agreement[0] == pytest.approx((original == of_mean).double().mean().item())
    if kind in ("pca", "neurons", "ica"):                     # exact bases: the identity
        assert curve.agreement[-1] == 1.0
    # top-activating inputs: the brute-force answer, from the direction's centred code
    with torch.no_grad():
        scores = wb.direction_activation(model, images, basis, [0, 1])
        expected = codes[..., :2].reshape(64, -1, 2).mean(1)
    torch.testing.assert_close(scores, expected)
    top = wb.top_activating(model, images, basis, [0, 1], n=4, batch_size=9, progress=False)
    assert torch.equal(top.indices, scores.T.topk(4, dim=1).indices)
    # feature visualisation from the top input of direction 0 raises its objective
    result = wb.feature_visualisation(model, basis, [0], top.inputs[0, 0], steps=15,
                                      learning_rate=0.02, jitter=0, blur_every=0, seed=0)
    assert result.objective[0] > result.start_objective[0]
    assert sum(len(mod._forward_hooks) for mod in model.modules()) == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
