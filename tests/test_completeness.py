"""Completeness (workbench.completeness.completeness_gap) and the "global" attributions
(``multiply_by_inputs=False``): agreement with Captum 0.9's convergence delta and options."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp

captum_attr = pytest.importorskip("captum.attr")
from captum.attr import DeepLift, IntegratedGradients  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("one_thread")]

NETS = {
    "tanh_mlp": lambda: mlp(nn.Tanh, seed=0),
    "relu_avgpool_cnn": lambda: cnn(nn.ReLU, nn.AvgPool2d, seed=0),
    "relu_maxpool_cnn": lambda: cnn(nn.ReLU, nn.MaxPool2d, seed=0),
}


def case(name: str):
    model = NETS[name]().double()
    rng = torch.Generator().manual_seed(7)
    shape = (4, 8) if name == "tanh_mlp" else (3, 3, 8, 8)
    x = torch.randn(shape, generator=rng, dtype=torch.float64)
    baseline = 0.5 * torch.randn(shape, generator=rng, dtype=torch.float64)
    target = torch.tensor([4, 0, 2, 1]) if name == "tanh_mlp" else torch.tensor([3, 0, 1])
    return model, x, baseline, target


@pytest.mark.parametrize("name", list(NETS))
def test_integrated_gradients_with_many_steps_is_complete(name):
    model, x, baseline, target = case(name)
    # the gap is the quadrature's error: it shrinks with the steps (slowly at ReLU kinks)
    gaps = {}
    for steps in (4, 1024):
        ig = wb.attribute(model, x, "integrated_gradients", target=target, baseline=baseline,
                          steps=steps, quadrature="riemann_middle")
        gaps[steps] = wb.completeness_gap(model, x, ig, baseline, target).abs().max()
    assert gaps[1024] < gaps[4] / 100 and gaps[1024] < 1e-4


@pytest.mark.parametrize("name", ["tanh_mlp", "relu_avgpool_cnn"])
def test_deeplift_without_max_pooling_is_complete(name):
    model, x, baseline, target = case(name)
    for base in (0.0, baseline):
        dl = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=base)
        gap = wb.completeness_gap(model, x, dl, base, target)
        torch.testing.assert_close(gap, torch.zeros(len(x), dtype=torch.float64), rtol=0,
                                   atol=1e-12)


def test_gradient_x_input_is_not_complete_on_a_nonlinear_net():
    model, x, _, target = case("tanh_mlp")
    attr = wb.attribute(model, x, "gradient_x_input", target=target)
    assert wb.completeness_gap(model, x, attr, 0.0, target).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(NETS))
def test_the_gap_is_captums_convergence_delta(name):
    # Captum's own attributions and delta, so that only the definition of the gap is compared
    model, x, baseline, target = case(name)
    for attribution in (IntegratedGradients(model), DeepLift(copy.deepcopy(model))):
        kwargs = {"n_steps": 5} if isinstance(attribution, IntegratedGradients) else {}
        attr, delta = attribution.attribute(x, baselines=baseline, target=target,
                                            return_convergence_delta=True, **kwargs)
        gap = wb.completeness_gap(model, x, attr, baseline, target)
        torch.testing.assert_close(gap, delta.to(gap.dtype), rtol=1e-6, atol=1e-9)
    assert gap.dtype == torch.float64


def test_the_gap_with_the_predicted_class_and_a_shared_baseline():
    model, x, _, _ = case("tanh_mlp")
    attributions = torch.randn_like(x)
    predicted = model(x).argmax(1)
    with torch.no_grad():
        change = (model(x) - model(torch.full_like(x, 0.25))).gather(1, predicted[:, None])[:, 0]
    torch.testing.assert_close(wb.completeness_gap(model, x, attributions, 0.25),
                               attributions.sum(1) - change)


@pytest.mark.parametrize("arguments, error, message", [
    ({"attributions": torch.zeros(3, 8)}, ValueError, "attributions.*does not broadcast"),
    ({"attributions": [0.0] * 8}, TypeError, "attributions must be a torch.Tensor"),
    ({"baseline": torch.zeros(5)}, ValueError, "baseline.*does not broadcast"),
    ({"target": 9}, ValueError, "out of range"),
])
def test_bad_arguments_are_named(arguments, error, message):
    model = mlp(nn.ReLU)
    given = {"attributions": torch.zeros(2, 8), **arguments}
    with pytest.raises(error, match=message):
        wb.completeness_gap(model, torch.randn(2, 8), **given)


# -- multiply_by_inputs=False --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(NETS))
def test_integrated_gradients_global_matches_captum(name):
    model, x, baseline, target = case(name)
    ours = wb.attribute(model, x, "integrated_gradients", target=target, baseline=baseline,
                        steps=16, quadrature="riemann_right", multiply_by_inputs=False)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # Captum's Riemann points in the default dtype
    try:
        theirs = IntegratedGradients(model, multiply_by_inputs=False).attribute(
            x, baselines=baseline, target=target, n_steps=16, method="riemann_right")
    finally:
        torch.set_default_dtype(previous)
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)
    local = wb.attribute(model, x, "integrated_gradients", target=target, baseline=baseline,
                         steps=16, quadrature="riemann_right")
    torch.testing.assert_close(local, (x - baseline) * ours, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["tanh_mlp", "relu_avgpool_cnn"])
def test_deeplift_multipliers_match_captum(name):
    model, x, baseline, target = case(name)
    ours = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=baseline,
                        multiply_by_inputs=False)
    theirs = DeepLift(copy.deepcopy(model), multiply_by_inputs=False).attribute(
        x, baselines=baseline, target=target)
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)
    local = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=baseline)
    torch.testing.assert_close(local, (x - baseline) * ours, rtol=1e-12, atol=1e-14)
