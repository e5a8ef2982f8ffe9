"""The equivalences of the unified view (Ancona et al. 2018) and the linear-model claims of
Kindermans et al. 2018, as exact checks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp


@pytest.mark.parametrize("model", [
    mlp(nn.ReLU, bias=False, seed=0), mlp(nn.ReLU, bias=False, seed=1),
    cnn(nn.ReLU, nn.MaxPool2d, bias=False), cnn(nn.ReLU, nn.AvgPool2d, bias=False, seed=2),
], ids=["mlp0", "mlp1", "cnn-maxpool", "cnn-avgpool"])
def test_relu_nets_without_bias_lrp_deeplift_and_gradient_x_input_coincide(model):
    """Ancona et al., Prop. 1-2: with ReLUs, no biases and a zero baseline, epsilon-LRP
    (epsilon -> 0), DeepLIFT (Rescale) and Gradient x Input are the same map."""
    model = model.double()
    shape = (5, 8) if isinstance(model[0], nn.Linear) else (5, 3, 8, 8)
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    target = torch.tensor([0, 1, 2, 3, 0])
    gxi = wb.attribute(model, x, "gradient_x_input", target=target)
    lrp = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=1e-12)
    deeplift = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=0.0)
    torch.testing.assert_close(lrp, gxi, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(deeplift, gxi, rtol=1e-10, atol=1e-12)


def test_with_biases_the_equivalence_breaks():
    model = mlp(nn.ReLU, bias=True).double()
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.bias.add_(0.5)
    x = torch.randn(5, 8, dtype=torch.float64)
    gxi = wb.attribute(model, x, "gradient_x_input", target=0)
    deeplift = wb.attribute(model, x, "deeplift_rescale", target=0)
    assert not torch.allclose(gxi, deeplift, rtol=1e-3)


def test_tanh_nets_break_the_equivalence():
    model = mlp(nn.Tanh, bias=False).double()
    x = torch.randn(5, 8, dtype=torch.float64) * 2
    gxi = wb.attribute(model, x, "gradient_x_input", target=0)
    lrp = wb.attribute(model, x, "lrp_epsilon", target=0, epsilon=1e-12)
    deeplift = wb.attribute(model, x, "deeplift_rescale", target=0)
    assert not torch.allclose(gxi, lrp, rtol=1e-3)
    # tanh(0) = 0, so with a zero baseline LRP's f(z)/z equals DeepLIFT's Rescale multiplier
    torch.testing.assert_close(lrp, deeplift, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("baseline", [0.0, 0.7])
def test_linear_model_integrated_gradients_deeplift_occlusion_agree(baseline):
    """On a linear model IG = DeepLIFT = Occlusion-1 = (x - x0) * w (Ancona, Prop. 3)."""
    model = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3)).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0, 1])
    w = (model[1].weight @ model[0].weight).detach()
    expected = (x - baseline) * w[target]
    for method in ("integrated_gradients", "deeplift_rescale", "occlusion"):
        actual = wb.attribute(model, x, method, target=target, baseline=baseline)
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12, msg=method)


def test_linear_model_gradient_guided_backprop_deconvnet_return_the_filter():
    """Kindermans et al. 2018: on a linear model these methods all return the weights w."""
    model = nn.Linear(6, 2).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    for method in ("gradient", "guided_backprop", "deconvnet", "smoothgrad"):
        actual = wb.attribute(model, x, method, target=1)
        torch.testing.assert_close(actual, model.weight[1].detach().expand_as(x), msg=method)
