"""Axioms each method must satisfy exactly (or with a known, shrinking error), in float64."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp


def _scores(model, x, target):
    with torch.no_grad():
        return model(x)[torch.arange(len(x)), target]


def _sum(a):
    return a.flatten(1).sum(1)


@pytest.mark.parametrize("quadrature", ["riemann_right", "riemann_middle", "riemann_trapezoid",
                                        "gausslegendre"])
def test_integrated_gradients_completeness_error_shrinks_with_steps(quadrature):
    model = mlp(nn.Tanh, seed=3).double()
    x = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    baseline = torch.full_like(x, 0.3)
    target = torch.tensor([1, 2, 3, 4])
    delta = _scores(model, x, target) - _scores(model, baseline, target)
    errors = []
    for steps in (4, 16, 64):
        attr = wb.attribute(model, x, "integrated_gradients", target=target, baseline=baseline,
                            steps=steps, quadrature=quadrature)
        errors.append((_sum(attr) - delta).abs().max().item())
    scale = delta.abs().max().item()
    # first-order rules lose a factor ~16 from 4 to 64 steps, the others far more
    assert errors[2] < errors[0] / 10 or errors[2] < 1e-10 * scale
    assert errors[1] <= errors[0] + 1e-12 and errors[2] <= errors[1] + 1e-12
    assert errors[2] < 0.02 * scale


def test_integrated_gradients_batching_does_not_change_the_result():
    model = cnn(nn.Tanh).double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    full = wb.attribute(model, x, "integrated_gradients", target=1, steps=20, batch_size=1000)
    chunked = wb.attribute(model, x, "integrated_gradients", target=1, steps=20, batch_size=7)
    torch.testing.assert_close(full, chunked, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("model", [
    mlp(nn.Tanh, seed=0), mlp(nn.ReLU, seed=1), mlp(nn.Sigmoid, seed=2), mlp(nn.Softplus, seed=3),
    mlp(nn.ELU, seed=4), mlp(nn.LeakyReLU, seed=5), cnn(nn.ReLU, nn.AvgPool2d),
    cnn(nn.Tanh, nn.AvgPool2d),
], ids=["tanh", "relu", "sigmoid", "softplus", "elu", "leaky_relu", "relu-cnn", "tanh-cnn"])
def test_deeplift_summation_to_delta_is_exact(model):
    """sum_i (x_i - x0_i) m_i = f(x) - f(x0) when only elementwise nonlinearities and affine
    maps are present (max pooling takes the ordinary gradient and breaks exactness)."""
    model = model.double()
    shape = (4, 8) if isinstance(model[0], nn.Linear) else (4, 3, 8, 8)
    rng = torch.Generator().manual_seed(7)
    x = torch.randn(shape, dtype=torch.float64, generator=rng)
    baseline = torch.randn(shape[1:], dtype=torch.float64, generator=rng)
    target = torch.tensor([0, 1, 2, 3])
    attr = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=baseline)
    delta = _scores(model, x, target) - _scores(model, baseline.expand_as(x), target)
    torch.testing.assert_close(_sum(attr), delta, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n_samples", [1, 3])
def test_shapley_efficiency_is_exact_per_permutation(n_samples):
    model = cnn(nn.ReLU).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    mask = (torch.arange(64).view(8, 8) // 16).expand(3, 8, 8)  # 4 row bands, all channels
    target = torch.tensor([2, 3])
    attr = wb.attribute(model, x, "shapley_sampling", target=target, n_samples=n_samples,
                        feature_mask=mask, baseline=0.5, seed=0)
    delta = _scores(model, x, target) - _scores(model, torch.full_like(x, 0.5), target)
    per_group = attr[:, 0, [0, 2, 4, 6], 0]  # one feature of each band
    torch.testing.assert_close(per_group.sum(1), delta, rtol=1e-10, atol=1e-10)
    # every feature of a group carries the group's value
    torch.testing.assert_close(attr[:, 1, 2:4, 5], attr[:, 0, 2:4, 0])


def test_shapley_sampling_equals_simple_loop_with_same_permutations():
    model = mlp(nn.Tanh, sizes=(4, 6, 3)).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    target = torch.tensor([0, 2])
    attr = wb.attribute(model, x, "shapley_sampling", target=target, n_samples=5, seed=11)
    rng = torch.Generator().manual_seed(11)
    expected = torch.zeros_like(x)
    for _ in range(5):
        order = torch.randperm(4, generator=rng)
        current = torch.zeros_like(x)
        previous = _scores(model, current, target)
        for feature in order:
            current[:, feature] = x[:, feature]
            now = _scores(model, current, target)
            expected[:, feature] += now - previous
            previous = now
    torch.testing.assert_close(attr, expected / 5, rtol=1e-12, atol=1e-12)


def test_shapley_sampling_converges_to_exact_shapley_values():
    """All 3! orderings enumerated give the exact values; sampling must approach them."""
    model = mlp(nn.Tanh, sizes=(3, 5, 2), seed=4).double()
    x = torch.randn(1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2
    exact = torch.zeros_like(x)
    orders = list(itertools.permutations(range(3)))
    for order in orders:
        current = torch.zeros_like(x)
        previous = _scores(model, current, [1])
        for feature in order:
            current[:, feature] = x[:, feature]
            now = _scores(model, current, [1])
            exact[:, feature] += (now - previous) / len(orders)
            previous = now
    estimate = wb.attribute(model, x, "shapley_sampling", target=1, n_samples=600, seed=0)
    torch.testing.assert_close(estimate, exact, atol=0.03 * exact.abs().max().item(), rtol=0)


BIAS_FREE = [
    mlp(nn.ReLU, bias=False, sizes=(32, 64, 64, 5)),
    mlp(nn.Tanh, bias=False, sizes=(32, 64, 64, 5)),
    cnn(nn.ReLU, nn.MaxPool2d, bias=False), cnn(nn.ReLU, nn.AvgPool2d, bias=False),
]
BIAS_FREE_IDS = ["relu-mlp", "tanh-mlp", "relu-cnn-maxpool", "relu-cnn-avgpool"]


def _positive_inputs(model):
    shape = (4, 32) if isinstance(model[0], nn.Linear) else (4, 3, 8, 8)
    generator = torch.Generator().manual_seed(5)
    return torch.randn(shape, dtype=torch.float64, generator=generator).abs() + 0.1


@pytest.mark.parametrize("model", BIAS_FREE, ids=BIAS_FREE_IDS)
def test_lrp_epsilon_conserves_relevance_on_bias_free_nets(model):
    model = model.double()
    x = _positive_inputs(model) - 0.6  # mixed signs
    target = torch.tensor([0, 1, 2, 3])
    attr = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=1e-12)
    torch.testing.assert_close(_sum(attr), _scores(model, x, target), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("model", BIAS_FREE[:2], ids=BIAS_FREE_IDS[:2])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (2.0, 1.0)])
def test_lrp_alpha_beta_conserves_relevance_on_bias_free_nets(model, alpha, beta):
    """Conservation holds when every relevant neuron has both positive and negative
    contributions (else its empty side drops out: a property of the rule); wide layers and
    positive inputs make that so (the narrow test CNNs have near-empty sides; the rule itself is
    checked there against Zennit). The 1e-6 stabiliser bounds the precision."""
    model = model.double()
    x = _positive_inputs(model)
    target = torch.tensor([0, 1, 2, 3])
    attr = wb.attribute(model, x, "lrp_alpha_beta", target=target, alpha=alpha, beta=beta)
    torch.testing.assert_close(_sum(attr), _scores(model, x, target), rtol=1e-4, atol=1e-9)


def test_lrp_epsilon_absorbs_relevance_as_epsilon_grows():
    """A larger epsilon lets the stabiliser absorb relevance: |sum R| shrinks."""
    model = mlp(nn.ReLU, bias=False).double()
    x = torch.randn(4, 8, dtype=torch.float64)
    totals = [wb.attribute(model, x, "lrp_epsilon", target=0, epsilon=e).sum(1).abs()
              for e in (1e-9, 0.1, 10.0)]
    assert (totals[0] >= totals[1]).all() and (totals[1] >= totals[2]).all()
    assert (totals[2] < totals[0]).all()


def test_occlusion_of_single_features_on_a_linear_model_is_weight_times_delta():
    model = nn.Linear(6, 3).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    attr = wb.attribute(model, x, "occlusion", target=2, baseline=0.25)
    torch.testing.assert_close(attr, (x - 0.25) * model.weight[2].detach())


def test_occlusion_window_averages_over_covering_windows():
    """f(x) = sum(x): each window's drop is the sum of its features; a feature's attribution is
    the mean drop over the windows covering it (here stride 1, window 2 in 1-D)."""
    model = nn.Linear(5, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(1.0)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=torch.float64)
    attr = wb.attribute(model, x, "occlusion", target=0, window=(2,), stride=(1,))
    drops = torch.tensor([3.0, 5.0, 7.0, 9.0], dtype=torch.float64)  # windows [0,1]..[3,4]
    expected = torch.tensor([[drops[0], drops[:2].mean(), drops[1:3].mean(), drops[2:].mean(),
                              drops[3]]], dtype=torch.float64)
    torch.testing.assert_close(attr, expected)


def test_smoothgrad_on_a_linear_model_is_the_weight():
    model = nn.Linear(6, 3).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    attr = wb.attribute(model, x, "smoothgrad", target=1, n_samples=7, noise=0.5, seed=0)
    torch.testing.assert_close(attr, model.weight[1].detach().expand_as(x))


def test_smoothgrad_estimates_the_expected_gradient_of_a_quadratic():
    """f(x) = x^T A x has E[grad f(x + e)] = (A + A^T) x exactly; the mean of 4000 draws must be
    within a few standard errors."""

    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.randn(3, 3, dtype=torch.float64))

        def forward(self, x):
            return torch.stack([(x @ self.a * x).sum(1), -(x @ self.a * x).sum(1)], 1)

    model = Quadratic()
    x = torch.randn(2, 3, dtype=torch.float64)
    attr = wb.attribute(model, x, "smoothgrad", target=0, n_samples=4000, noise=0.2, seed=1)
    expected = x @ (model.a + model.a.T).detach()
    torch.testing.assert_close(attr, expected, atol=0.1, rtol=0)
    same = wb.attribute(model, x, "smoothgrad", target=0, n_samples=4000, noise=0.2, seed=1)
    torch.testing.assert_close(attr, same, rtol=0, atol=0)  # seeded: reproducible


def test_smoothgrad_of_a_relu_is_the_normal_cdf_at_the_noise_scale_of_each_sample():
    """f(x) = sum_i relu(x_i): the gradient is ``1[x_i + e_i > 0]``, so SmoothGrad estimates
    ``Phi(x_i / sigma)`` with ``sigma = noise * (max(x) - min(x))`` of each sample (Smilkov et al.
    2017, section 3). The two samples' ranges differ (3 and 0.5), and both differ from their
    maxima; 4000 draws give a standard error below 0.008."""
    model = nn.Sequential(nn.ReLU(), nn.Linear(5, 2, bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0] * 5, [-1.0] * 5]))
    x = torch.tensor([[-2.0, -0.5, 0.1, 0.3, 1.0], [0.6, 0.7, 0.8, 0.9, 1.1]],
                     dtype=torch.float64)
    attr = wb.attribute(model, x, "smoothgrad", target=0, n_samples=4000, noise=0.2, seed=0)
    sigma = 0.2 * (x.max(1, keepdim=True).values - x.min(1, keepdim=True).values)
    expected = torch.special.ndtr(x / sigma)
    torch.testing.assert_close(attr, expected, atol=0.04, rtol=0)
