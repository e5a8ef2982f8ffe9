"""SHAP-family methods and LIME (workbench.methods.shap, workbench.methods.surrogate): closed
forms on linear models, exact Shapley values by enumeration, and agreement with Captum 0.9.

Where Captum draws its random numbers from sources we cannot share (NumPy's global generator
for GradientShap's baselines and path points), both are compared with the exact expectation
within a statistical tolerance; where it draws them as we do (LIME's coalitions: Bernoulli(1/2)
from the global torch generator, the same stream as ``torch.rand(...) < 0.5`` on a generator
with the same seed) the results agree to Captum's float32 regression.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp

captum_attr = pytest.importorskip("captum.attr")
from captum._utils.models.linear_model import SkLearnLinearRegression  # noqa: E402
from captum.attr import DeepLiftShap, GradientShap, KernelShap, Lime  # noqa: E402
from captum.attr._core import deep_lift as captum_deep_lift  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("one_thread")]

NETS = {
    "tanh_mlp": lambda seed: mlp(nn.Tanh, seed=seed),
    "relu_avgpool_cnn": lambda seed: cnn(nn.ReLU, nn.AvgPool2d, seed=seed),
    "relu_maxpool_cnn": lambda seed: cnn(nn.ReLU, nn.MaxPool2d, seed=seed),
}


def case(name: str, seed: int, n_baselines: int = 5):
    """Net (float64, eval), inputs, a distribution of baselines and explicit targets."""
    model = NETS[name](seed).double()
    rng = torch.Generator().manual_seed(1000 + seed)
    shape = (4, 8) if name == "tanh_mlp" else (3, 3, 8, 8)
    x = torch.randn(shape, generator=rng, dtype=torch.float64)
    baselines = 0.5 * torch.randn((n_baselines, *shape[1:]), generator=rng, dtype=torch.float64)
    target = torch.tensor([4, 0, 2, 1]) if name == "tanh_mlp" else torch.tensor([3, 0, 1])
    return model, x, baselines, target


def scores(model, points, target):
    with torch.no_grad():
        return model(points).gather(1, target[:, None])[:, 0]


def linear_case(seed=0, features=8):
    torch.manual_seed(seed)
    model = nn.Linear(features, 3).double()
    x = torch.randn(4, features, dtype=torch.float64)
    baseline = torch.randn(4, features, dtype=torch.float64)
    return model, x, baseline, torch.tensor([0, 1, 2, 1])


# -- DeepLIFT SHAP -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tanh_mlp", "relu_avgpool_cnn"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("multiply_by_inputs", [True, False])
def test_deeplift_shap_matches_captum(name, seed, multiply_by_inputs):
    model, x, baselines, target = case(name, seed)
    ours = wb.attribute(model, x, "deeplift_shap", target=target, baselines=baselines,
                        multiply_by_inputs=multiply_by_inputs)
    theirs = DeepLiftShap(copy.deepcopy(model), multiply_by_inputs=multiply_by_inputs).attribute(
        x, baselines=baselines, target=target)
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)


def test_deeplift_shap_matches_captum_without_its_maxpool_rule(monkeypatch):
    # the one difference of our DeepLIFT (the ordinary gradient at max pooling; see
    # test_agreement_captum.py), removed from Captum's table here
    monkeypatch.delitem(captum_deep_lift.SUPPORTED_NON_LINEAR, nn.MaxPool2d)
    model, x, baselines, target = case("relu_maxpool_cnn", 0)
    ours = wb.attribute(model, x, "deeplift_shap", target=target, baselines=baselines)
    theirs = DeepLiftShap(copy.deepcopy(model)).attribute(x, baselines=baselines, target=target)
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["tanh_mlp", "relu_avgpool_cnn"])
def test_deeplift_shap_sums_to_the_score_minus_the_mean_baseline_score(name):
    # summation to delta for each baseline, averaged: sum_i a_i = f(x) - mean_k f(b_k)
    model, x, baselines, target = case(name, 0)
    ours = wb.attribute(model, x, "deeplift_shap", target=target, baselines=baselines)
    mean_start = torch.stack([scores(model, b.expand_as(x), target) for b in baselines]).mean(0)
    torch.testing.assert_close(ours.flatten(1).sum(1), scores(model, x, target) - mean_start,
                               rtol=1e-9, atol=1e-12)


def test_deeplift_shap_with_one_baseline_is_deeplift():
    model, x, baselines, target = case("relu_avgpool_cnn", 1)
    ours = wb.attribute(model, x, "deeplift_shap", target=target, baselines=baselines[:1])
    torch.testing.assert_close(ours, wb.attribute(model, x, "deeplift_rescale", target=target,
                                                  baseline=baselines[0]), rtol=0, atol=0)


# -- GradientSHAP ------------------------------------------------------------------------------


def expected_gradients(model, x, baselines, target, grid=400):
    """Mean and standard deviation over ``k`` uniform and ``alpha`` uniform of
    ``(x - b_k) * grad f_t(b_k + alpha (x - b_k))``, on a midpoint grid of ``alpha``: the
    expectation GradientSHAP estimates without input noise (written here with autograd)."""
    alphas = (torch.arange(grid, dtype=x.dtype) + 0.5) / grid
    terms = []
    for b in baselines:
        points = b + alphas.view(-1, 1, *[1] * (x.dim() - 1)) * (x - b)  # (grid, N, ...)
        points = points.flatten(0, 1).requires_grad_()
        chosen = model(points).gather(1, target.repeat(grid)[:, None]).sum()
        (grads,) = torch.autograd.grad(chosen, points)
        terms.append(grads.view(grid, *x.shape) * (x - b))
    terms = torch.cat(terms)
    return terms.mean(0), terms.std(0)


def test_gradient_shap_on_a_linear_model_is_input_minus_mean_baseline_times_weights():
    model, x, _, target = linear_case()
    baselines = torch.randn(6, 8, dtype=torch.float64)
    n = 4000
    ours = wb.attribute(model, x, "gradient_shap", target=target, baselines=baselines,
                        n_samples=n, noise=0.1, seed=0)
    weights = model.weight.detach()[target]
    expected = (x - baselines.mean(0)) * weights
    # the draws only pick the baseline and the noise: standard error from their spread
    spread = (baselines.std(0) + 0.1 * (x.max(1).values - x.min(1).values)[:, None]) * weights
    assert ((ours - expected).abs() <= 5 * spread.abs() / math.sqrt(n) + 1e-12).all()
    # without multiplying by the inputs: the gradient, exactly, whatever was drawn
    gradient = wb.attribute(model, x, "gradient_shap", target=target, baselines=baselines,
                            n_samples=7, noise=0.1, seed=0, multiply_by_inputs=False)
    torch.testing.assert_close(gradient, weights.expand_as(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["tanh_mlp", "relu_maxpool_cnn"])
def test_gradient_shap_and_captum_estimate_the_expected_gradients(name):
    model, x, baselines, target = case(name, 0)
    n = 2000 if name == "tanh_mlp" else 400
    mean, std = expected_gradients(model, x, baselines, target)
    bound = 5 * std / math.sqrt(n) + 1e-9
    ours = wb.attribute(model, x, "gradient_shap", target=target, baselines=baselines,
                        n_samples=n, seed=0)
    assert ((ours - mean).abs() <= bound).all()
    torch.manual_seed(0)
    np.random.seed(0)
    theirs = GradientShap(model).attribute(x, baselines=baselines, target=target, n_samples=n)
    assert ((theirs - mean).abs() <= bound).all()


def test_gradient_shap_is_seeded_and_independent_of_batch_size_without_noise():
    model, x, baselines, target = case("tanh_mlp", 1)
    first = wb.attribute(model, x, "gradient_shap", target=target, baselines=baselines,
                         n_samples=9, seed=3)
    again = wb.attribute(model, x, "gradient_shap", target=target, baselines=baselines,
                         n_samples=9, seed=3, batch_size=5)
    torch.testing.assert_close(first, again, rtol=1e-12, atol=1e-14)
    other = wb.attribute(model, x, "gradient_shap", target=target, baselines=baselines,
                         n_samples=9, seed=4)
    assert not torch.allclose(first, other)


# -- Kernel SHAP -------------------------------------------------------------------------------


def exact_shapley(model, x, baseline, target, groups):
    """Shapley values of the groups (labels ``0..G-1`` per feature) by enumerating every
    coalition: ``phi_j = sum_S |S|! (G-|S|-1)! / G! (f(S + j) - f(S))``."""
    n_groups = int(groups.max()) + 1
    phi = torch.zeros(len(x), n_groups, dtype=x.dtype)
    for code in range(2 ** n_groups):
        on = torch.tensor([(code >> j) & 1 == 1 for j in range(n_groups)])
        size = int(on.sum())
        value = scores(model, torch.where(on[groups].view(x.shape[1:]), x, baseline), target)
        for j in range(n_groups):
            if on[j]:  # f(S) with S = T + j, T = S - j of size - 1
                phi[:, j] += math.factorial(size - 1) * math.factorial(n_groups - size) * value
            else:
                phi[:, j] -= math.factorial(size) * math.factorial(n_groups - size - 1) * value
    return (phi / math.factorial(n_groups))[:, groups].view(x.shape)


@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_shap_with_every_coalition_gives_the_exact_shapley_values(seed):
    # Lundberg & Lee 2017, Theorem 2: the Shapley kernel regression over all coalitions
    model, x, baselines, target = case("tanh_mlp", seed)
    groups = torch.arange(8)
    ours = wb.attribute(model, x, "kernel_shap", target=target, baseline=baselines[0],
                        n_samples=2 ** 8 - 2)
    torch.testing.assert_close(ours, exact_shapley(model, x, baselines[0], target, groups),
                               rtol=1e-9, atol=1e-12)


def test_kernel_shap_of_groups_on_a_cnn_gives_the_exact_shapley_values():
    model, x, _, target = case("relu_maxpool_cnn", 0)
    mask = torch.zeros(1, 8, 8, dtype=torch.long)  # six regions, shared by the channels
    mask[:, :4, 4:], mask[:, 4:, :4], mask[:, 4:, 4:6], mask[:, 4:, 6:] = 1, 2, 3, 4
    mask[:, :2, :2] = 5
    baseline = torch.full_like(x[:1], 0.3)
    ours = wb.attribute(model, x, "kernel_shap", target=target, baseline=baseline,
                        feature_mask=mask, n_samples=100)
    groups = mask.expand(3, 8, 8).flatten()
    torch.testing.assert_close(ours, exact_shapley(model, x, baseline, target, groups),
                               rtol=1e-9, atol=1e-12)


#: products of these feature sets, summed: with baseline 0 a product's Shapley values split it
#: equally among its features (it is nonzero only when all of them are present)
TERMS = [(0, 1), (2, 3, 4), (5, 6, 7, 8, 9), (0, 3, 6, 9), tuple(range(10))]


class Interactions(nn.Module):
    def forward(self, x):
        products = [x[:, list(term)].prod(1) for term in TERMS]
        return torch.stack([sum(products), products[0] - products[4]], 1)


def test_kernel_shap_with_every_coalition_splits_interactions_equally():
    x = 1 + torch.rand(3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.zeros_like(x)
    for term in TERMS:
        expected[:, list(term)] += (x[:, list(term)].prod(1) / len(term))[:, None]
    ours = wb.attribute(Interactions(), x, "kernel_shap", target=0, n_samples=2 ** 10 - 2)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-9)


def test_kernel_shap_enumerates_the_outer_sizes_and_samples_the_rest_from_the_kernel():
    # the kernel gives size s the total weight (G-1) / (s (G-s)); with G = 20 and 40000
    # coalitions the sizes 1-4 and 16-19 (12390 coalitions) are enumerated, sizes 5-15 sampled
    from workbench.methods.surrogate import shapley_kernel_coalitions

    n_groups, n = 20, 40_000
    coalitions, weights = shapley_kernel_coalitions(n_groups, n, torch.Generator().manual_seed(0))
    assert coalitions.shape == (n, n_groups) and weights.shape == (n,)
    kernel = {s: (n_groups - 1) / (s * (n_groups - s)) for s in range(1, n_groups)}
    torch.testing.assert_close(weights.sum(), torch.tensor(sum(kernel.values()),
                                                           dtype=torch.float64))
    sizes = coalitions.sum(1)
    outer = (sizes <= 4) | (sizes >= 16)
    for size in (1, 2, 3, 4, 16, 17, 18, 19):  # each coalition once, at its kernel weight
        of_size = coalitions[sizes == size]
        assert len(of_size) == math.comb(n_groups, size) == len(of_size.unique(dim=0))
        torch.testing.assert_close(weights[sizes == size], torch.full(
            (len(of_size),), kernel[size] / math.comb(n_groups, size), dtype=torch.float64))
    sampled, sampled_sizes = coalitions[~outer], sizes[~outer]
    assert len(sampled) == n - 12390 and (weights[~outer] == weights[~outer][0]).all()
    half = len(sampled) // 2
    assert torch.equal(sampled[half:], ~sampled[:half])  # complementary pairs
    inner = torch.arange(5, 16)
    expected = torch.tensor([kernel[int(s)] for s in inner], dtype=torch.float64)
    expected /= expected.sum()
    observed = torch.bincount(sampled_sizes[:half], minlength=16)[5:] / half
    assert ((observed - expected).abs() <= 5 * (expected / half).sqrt()).all()
    # within a size, every group equally often present
    of_size_7 = sampled[sampled_sizes == 7].double().mean(0)
    torch.testing.assert_close(of_size_7, torch.full((n_groups,), 0.35, dtype=torch.float64),
                               rtol=0, atol=0.04)


def test_sampled_kernel_shap_converges_on_strong_interactions():
    x = 1 + torch.rand(3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = wb.attribute(Interactions(), x, "kernel_shap", target=0, n_samples=2 ** 10 - 2)
    errors = [max((wb.attribute(Interactions(), x, "kernel_shap", target=0, n_samples=n,
                                seed=seed) - exact).abs().max() for seed in range(3))
              / exact.abs().max() for n in (100, 600)]
    assert errors[1] < 0.15 and errors[1] < errors[0] / 3


def test_sampled_kernel_shap_on_a_linear_model_is_exact():
    # f linear: f(z) = f(b) + sum_i z_i w_i (x_i - b_i) fits exactly on any coalitions
    model, x, baseline, target = linear_case(features=12)
    ours = wb.attribute(model, x, "kernel_shap", target=target, baseline=baseline,
                        n_samples=60, seed=0)
    expected = model.weight.detach()[target] * (x - baseline)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-12)


def test_sampled_kernel_shap_and_captum_approach_the_shapley_values():
    model, x, baselines, target = case("tanh_mlp", 0)
    exact = exact_shapley(model, x, baselines[0], target, torch.arange(8))
    tolerance = 0.02 * exact.abs().max()
    ours = wb.attribute(model, x, "kernel_shap", target=target, baseline=baselines[0],
                        n_samples=200, seed=0)  # fewer than the 254 coalitions
    assert (ours - exact).abs().max() < tolerance
    assert (ours - exact).abs().max() > 1e-9  # sampled, not enumerated
    # efficiency holds exactly for every sample of coalitions
    torch.testing.assert_close(wb.completeness_gap(model, x, ours, baselines[0], target),
                               torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.manual_seed(0)
    theirs = KernelShap(model).attribute(x, baselines=baselines[0], target=target, n_samples=300)
    assert (theirs - exact).abs().max() < tolerance


# -- LIME --------------------------------------------------------------------------------------


def lime_kernel(z, width=0.25):
    distance = 1 - (z.double().sum(-1) / z.shape[-1]).sqrt()
    return torch.exp(-distance ** 2 / width ** 2)


def test_lime_on_a_linear_model_recovers_the_weights():
    model, x, baseline, target = linear_case()
    expected = model.weight.detach()[target] * (x - baseline)
    for width in (0.25, 1e6):  # LIME's kernel, and one that weights every coalition alike
        ours = wb.attribute(model, x, "lime", target=target, baseline=baseline, n_samples=64,
                            seed=0, kernel_width=width)
        torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-12)
    mask = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])  # a group's coefficient: its features' sum
    grouped = wb.attribute(model, x, "lime", target=target, baseline=baseline, n_samples=64,
                           seed=0, feature_mask=mask)
    sums = torch.zeros(4, 4, dtype=torch.float64).index_add_(1, mask, expected)
    torch.testing.assert_close(grouped, sums[:, mask], rtol=1e-9, atol=1e-12)


def test_lime_converges_to_the_weighted_fit_over_every_coalition():
    model, x, baselines, target = case("tanh_mlp", 1)
    codes = torch.arange(2 ** 8)
    z = ((codes[:, None] >> torch.arange(8)) & 1).double()  # every coalition, probability 2^-8
    y = torch.stack([scores(model, torch.where(c.bool(), x, baselines[0]), target) for c in z])
    design = torch.cat([torch.ones(len(z), 1, dtype=torch.float64), z], 1)
    weights = lime_kernel(z)[:, None]
    population = torch.linalg.solve(design.T @ (weights * design), design.T @ (weights * y))
    population = population[1:].T
    errors = [(wb.attribute(model, x, "lime", target=target, baseline=baselines[0],
                            n_samples=n, seed=0) - population).abs().max() for n in (250, 4000)]
    assert errors[1] < 0.01 * population.abs().max() and errors[1] < errors[0]


def test_lime_matches_captum_with_the_same_kernel_and_coalitions():
    model, x, baselines, target = case("tanh_mlp", 0)
    n = 500
    ours = wb.attribute(model, x, "lime", target=target, baseline=baselines[0], n_samples=n,
                        seed=0)

    def similarity(original, perturbed, interpretable, **kwargs):
        return lime_kernel(interpretable).item()

    theirs = []
    for row in range(len(x)):  # Captum draws one input's coalitions after the other's
        torch.manual_seed(0)
        theirs.append(Lime(model, interpretable_model=SkLearnLinearRegression(),
                           similarity_func=similarity).attribute(
            x[row:row + 1], baselines=baselines[:1], target=target[row:row + 1], n_samples=n))
    # Captum fits in float32
    torch.testing.assert_close(ours, torch.cat(theirs).double(), rtol=1e-4, atol=1e-6)


def test_surrogates_are_seeded():
    model, x, baselines, target = case("tanh_mlp", 0)
    for method in ("lime", "kernel_shap"):
        first, again, other = (wb.attribute(model, x, method, target=target, n_samples=40,
                                            seed=seed) for seed in (0, 0, 1))
        torch.testing.assert_close(first, again, rtol=0, atol=0)
        assert not torch.allclose(first, other)


@pytest.mark.parametrize("method, options, error, message", [
    ("gradient_shap", {"baselines": torch.zeros(0, 8)}, ValueError, "baselines.*at least one"),
    ("gradient_shap", {"baselines": torch.zeros(5, 3)}, ValueError,
     "baselines.*does not broadcast"),
    ("deeplift_shap", {"baselines": "zeros"}, TypeError, "'baselines' of deeplift_shap"),
    ("kernel_shap", {"feature_mask": torch.zeros(8)}, TypeError, "'feature_mask'"),
    ("lime", {"kernel_width": 0.0}, ValueError, "'kernel_width' of lime must be >="),
    ("lime", {"n_samples": 0}, ValueError, "'n_samples' of lime must be >= 1"),
])
def test_bad_options_name_the_option(method, options, error, message):
    with pytest.raises(error, match=message):
        wb.attribute(mlp(nn.ReLU), torch.randn(2, 8), method, target=0, **options)
