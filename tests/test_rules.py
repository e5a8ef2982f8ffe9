"""Each LRP rule against a reference written straight from its equation, in float64.

The references propagate relevance layer by layer in plain matrix form (Bach et al. 2015):
epsilon:     R_i = sum_j x_i w_ij R_j / (z_j + eps sign z_j)
alpha-beta:  R_i = sum_j (alpha z_ij^+ / z_j^+ - beta z_ij^- / z_j^-) R_j
and relevance passes unchanged through the elementwise nonlinearities.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import mlp


def _stabilize(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).double()


def _layers(model):
    """(W, b, activation after it) for an MLP built by conftest.mlp."""
    modules = list(model)
    out = []
    for i, module in enumerate(modules):
        if isinstance(module, nn.Linear):
            following = modules[i + 1] if i + 1 < len(modules) else None
            out.append((module.weight.detach(), module.bias, following))
    return out


def _forward_activations(model, x):
    """Input of every linear layer, and the final logits."""
    inputs = []
    a = x
    for weight, bias, activation in _layers(model):
        inputs.append(a)
        a = a @ weight.T + (bias.detach() if bias is not None else 0)
        if activation is not None:
            a = activation(a)
    return inputs, a


def reference_lrp(model, x, target, layer_rule):
    inputs, logits = _forward_activations(model, x)
    relevance = torch.zeros_like(logits)
    relevance[torch.arange(len(x)), target] = logits[torch.arange(len(x)), target]
    for (weight, bias, _), a in reversed(list(zip(_layers(model), inputs))):
        relevance = layer_rule(a, weight, None if bias is None else bias.detach(), relevance)
    return relevance


def epsilon_rule(eps):
    def rule(a, weight, bias, relevance):
        z = a @ weight.T + (bias if bias is not None else 0)
        s = relevance / _stabilize(z, eps)
        # R_i = sum_j a_i w_ji s_j
        return torch.einsum("ni,ji,nj->ni", a, weight, s)
    return rule


def alpha_beta_rule(alpha, beta, eps=1e-6):
    def rule(a, weight, bias, relevance):
        contributions = torch.einsum("ni,ji->nij", a, weight)  # z_ij, shape (n, i, j)
        positive = contributions.clamp(min=0)
        negative = contributions.clamp(max=0)
        b = bias if bias is not None else torch.zeros(weight.shape[0], dtype=a.dtype)
        z_pos = positive.sum(1) + b.clamp(min=0)
        z_neg = negative.sum(1) + b.clamp(max=0)
        shares = (alpha * positive / _stabilize(z_pos, eps)[:, None, :]
                  - beta * negative / _stabilize(z_neg, eps)[:, None, :])
        return torch.einsum("nij,nj->ni", shares, relevance)
    return rule


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh])
@pytest.mark.parametrize("eps", [1e-6, 0.1, 1.0])
def test_lrp_epsilon_matches_equation(seed, activation, eps):
    model = mlp(activation, seed=seed).double()
    x = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    target = torch.tensor([0, 1, 2, 3, 4])
    expected = reference_lrp(model, x, target, epsilon_rule(eps))
    actual = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=eps)
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (2.0, 1.0)])
@pytest.mark.parametrize("bias", [True, False])
def test_lrp_alpha_beta_matches_equation(seed, alpha, beta, bias):
    model = mlp(nn.ReLU, seed=seed, bias=bias).double()
    x = torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    target = torch.tensor([4, 3, 2, 1, 0])
    expected = reference_lrp(model, x, target, alpha_beta_rule(alpha, beta))
    actual = wb.attribute(model, x, "lrp_alpha_beta", target=target, alpha=alpha, beta=beta)
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)


def test_alpha_beta_requires_conserving_parameters():
    model = mlp(nn.ReLU).double()
    x = torch.randn(2, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="alpha - beta must equal 1"):
        wb.attribute(model, x, "lrp_alpha_beta", target=0, alpha=2.0, beta=0.0)


def test_guided_and_deconvnet_rules_on_one_relu():
    """Guided backprop: grad_in = relu(grad_out) * (z > 0); DeConvNet: relu(grad_out)."""
    weight = torch.tensor([[1.0, -2.0], [-1.0, 1.0]], dtype=torch.float64)
    first = nn.Linear(2, 2, bias=False).double()
    second = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        first.weight.copy_(weight)
    model = nn.Sequential(first, nn.ReLU(), second)
    x = torch.tensor([[2.0, 0.5]], dtype=torch.float64)  # z = (1, -1.5): only unit 0 active
    cases = {  # gradient arriving at the ReLU output -> (guided, deconvnet) at the ReLU input
        (1.0, 3.0): ((1.0, 0.0), (1.0, 3.0)),
        (-1.0, 3.0): ((0.0, 0.0), (0.0, 3.0)),
        (2.0, -3.0): ((2.0, 0.0), (2.0, 0.0)),
    }
    for upstream, (guided, deconv) in cases.items():
        with torch.no_grad():
            second.weight.copy_(torch.tensor([upstream], dtype=torch.float64))
        expected_guided = torch.tensor([guided], dtype=torch.float64) @ weight
        expected_deconv = torch.tensor([deconv], dtype=torch.float64) @ weight
        torch.testing.assert_close(wb.attribute(model, x, "guided_backprop", target=0),
                                   expected_guided)
        torch.testing.assert_close(wb.attribute(model, x, "deconvnet", target=0),
                                   expected_deconv)


def test_per_layer_rule_overrides_make_a_composite():
    """z+ (alpha=1, beta=0) on the first layer and epsilon above: the equation reference with the
    same per-layer rules must agree."""
    from workbench.lrp_rules import AlphaBetaRule

    model = mlp(nn.ReLU, seed=4).double()
    x = torch.randn(3, 8, dtype=torch.float64).abs()
    target = torch.tensor([0, 1, 2])
    first = "0"
    actual = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=0.01,
                          layer_rules={first: AlphaBetaRule(1.0, 0.0)})
    first_weight = model[0].weight

    def composite(a, weight, bias, relevance):
        is_first = weight.data_ptr() == first_weight.data_ptr()
        rule = alpha_beta_rule(1.0, 0.0) if is_first else epsilon_rule(0.01)
        return rule(a, weight, bias, relevance)

    expected = reference_lrp(model, x, target, composite)
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(TypeError, match="'layer_rules' must map layer names"):
        wb.attribute(model, x, "lrp_epsilon", target=0, layer_rules={first: "zplus"})


def test_epsilon_zero_is_lrp_zero_and_finite():
    """LRP-0 (epsilon = 0) on a bias-free ReLU net is Gradient x Input, with no NaN where a
    layer's output is exactly zero."""
    model = mlp(nn.ReLU, bias=False).double()
    x = torch.randn(4, 8, dtype=torch.float64)
    x[0] = 0.0  # every layer's output is exactly 0 for this sample
    lrp = wb.attribute(model, x, "lrp_epsilon", target=1, epsilon=0.0)
    assert torch.isfinite(lrp).all()
    torch.testing.assert_close(lrp, wb.attribute(model, x, "gradient_x_input", target=1))


def test_an_activation_rule_declares_what_it_keeps_with_the_enum():
    from workbench.rules import ActivationRule, Keeps

    class KeepsOutput(ActivationRule):
        keeps = Keeps.OUTPUT

    assert KeepsOutput.keeps is Keeps.OUTPUT
    with pytest.raises(TypeError, match=r"Misdeclared.keeps must be a workbench.rules.Keeps"):
        class Misdeclared(ActivationRule):
            keeps = "pre"


def test_lrp_keeps_the_derivative_of_leaky_relu_at_small_pre_activations():
    """For ReLU and LeakyReLU ``f(z) / z`` is ``f'(z)``, so LRP keeps the ordinary derivative
    (no stabiliser there): LRP-0 on a bias-free LeakyReLU net is Gradient x Input to float32
    round-off, also where a pre-activation is close to zero (here ``z = 2^-17``, where the
    stabilised ratio ``f(z) / (z + 10 eps)`` would pass only 87 % of the relevance)."""
    first = nn.Linear(2, 2, bias=False)
    second = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, -1.0], [1.0, 1.0]]))
        second.weight.fill_(1.0)
    small = nn.Sequential(first, nn.LeakyReLU(0.1), second).eval()
    x = torch.tensor([[1.0, 1.0 - 2.0 ** -17], [-0.5, 0.25]])
    assert (first(x)[0, 0] == 2.0 ** -17).item()
    random = mlp(nn.LeakyReLU, bias=False, seed=3)
    for model, inputs in ((small, x), (random, torch.randn(5, 8))):
        lrp = wb.attribute(model, inputs, "lrp_epsilon", target=0, epsilon=0.0)
        expected = wb.attribute(model, inputs, "gradient_x_input", target=0)
        torch.testing.assert_close(lrp, expected, rtol=1e-6, atol=1e-7)
