"""Agreement with Captum (0.9) on seeded random networks, in float64.

Every comparison uses an explicit target. Where the two definitions coincide the tolerance is
tight (``rtol=1e-7, atol=1e-9``: float64 round-off only). Where they differ, a test states the
known difference and asserts it exactly:

- Saliency: Captum's default is ``abs=True``; ours is the signed gradient (Captum ``abs=False``).
- Integrated Gradients: Captum rounds the quadrature weights to float32 (``.float()`` on the
  step sizes) and builds Riemann points with ``torch.linspace`` in the default dtype; with
  ``steps=16`` (weights and points exact in float32) and a float64 default dtype the Riemann
  rules agree to round-off, Gauss-Legendre agrees within the float32 rounding of its weights,
  and Captum's ``riemann_trapezoid`` weights sum to ``(n-1)/n`` instead of 1.
- DeepLIFT: Captum has a special multiplier for max pooling, which keeps summation to delta
  exact; ours uses the ordinary gradient there by default (see
  ``test_deeplift_maxpool_rule_is_where_captum_differs``) and Captum's multiplier with
  ``max_pool="delta"`` (``test_deeplift_delta_max_pool_matches_captum``). On nets with max
  pooling the default is compared with Captum with its max-pooling rule switched off.
- Occlusion: Captum divides by the window counts in float32, so its result is float32.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp, seeded_case

captum_attr = pytest.importorskip("captum.attr")
from captum.attr import (  # noqa: E402
    Deconvolution, DeepLift, GuidedBackprop, GuidedGradCam, InputXGradient, IntegratedGradients,
    LayerAttribution, LayerGradCam, Occlusion, Saliency,
)
from captum.attr._core import deep_lift as captum_deep_lift  # noqa: E402

# Captum warns on every call that it sets requires_grad and hooks; that is expected here.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:captum"),
              pytest.mark.usefixtures("one_thread")]  # tiny tensors: one thread is faster

RTOL, ATOL = 1e-7, 1e-9


NETS = {
    "tanh_mlp": lambda seed: mlp(nn.Tanh, seed=seed),
    "relu_maxpool_cnn": lambda seed: cnn(nn.ReLU, nn.MaxPool2d, seed=seed),
    "relu_avgpool_cnn": lambda seed: cnn(nn.ReLU, nn.AvgPool2d, seed=seed),
}
SEEDS = (0, 1)
CNNS = ("relu_maxpool_cnn", "relu_avgpool_cnn")
# nets on which our DeepLIFT and Captum's use the same rules (no max pooling)
NO_MAXPOOL = ("tanh_mlp", "relu_avgpool_cnn")


def case(name: str, seed: int):
    """The net (float64, eval), inputs, a random baseline and explicit targets."""
    return seeded_case(NETS[name](seed), seed, vector=name == "tanh_mlp")


def all_cases(names=tuple(NETS)):
    return pytest.mark.parametrize(
        "name, seed", [(n, s) for n in names for s in SEEDS],
        ids=[f"{n}-seed{s}" for n in names for s in SEEDS])


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=rtol, atol=atol)


@contextlib.contextmanager
def float64_default():
    """Captum builds its Riemann path points with ``torch.linspace`` in the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def target_delta(model, x, baseline, target):
    with torch.no_grad():
        return (model(x) - model(baseline)).gather(1, target[:, None])[:, 0]


# -- gradients ---------------------------------------------------------------------------------


@all_cases()
def test_gradient_matches_saliency(name, seed):
    model, x, _, target = case(name, seed)
    ours = wb.attribute(model, x, "gradient", target=target)
    close(ours, Saliency(model).attribute(x, target=target, abs=False))
    # Captum's default takes the absolute value; ours keeps the sign
    close(ours.abs(), Saliency(model).attribute(x, target=target))
    assert (ours < 0).any()


@all_cases()
def test_gradient_x_input_matches_input_x_gradient(name, seed):
    model, x, _, target = case(name, seed)
    ours = wb.attribute(model, x, "gradient_x_input", target=target)
    close(ours, InputXGradient(model).attribute(x, target=target))


# -- integrated gradients ----------------------------------------------------------------------


@all_cases()
@pytest.mark.parametrize("quadrature", ["riemann_left", "riemann_right", "riemann_middle"])
def test_integrated_gradients_riemann(name, seed, quadrature):
    # 16 steps: Captum's float32 step sizes (1/16) and linspace points (k/16, (k+1/2)/16) are
    # exact, so both compute the same sum
    model, x, baseline, target = case(name, seed)
    ours = wb.attribute(model, x, "integrated_gradients", target=target, baseline=baseline,
                        steps=16, quadrature=quadrature)
    with float64_default():
        theirs = IntegratedGradients(model).attribute(
            x, baselines=baseline, target=target, n_steps=16, method=quadrature)
    close(ours, theirs)


@all_cases()
def test_integrated_gradients_trapezoid_differs_by_captum_weight_sum(name, seed):
    # Captum's riemann_trapezoid uses step sizes 1/n (halved at both ends) on n points of
    # [0, 1], which sum to (n-1)/n, not 1; ours uses the trapezoid rule with spacing 1/(n-1)
    # (weights summing to 1, so that completeness holds for a linear model). Same points,
    # so Captum's result is ours times (n-1)/n.
    steps = 16
    model, x, baseline, target = case(name, seed)
    ours = wb.attribute(model, x, "integrated_gradients", target=target, baseline=baseline,
                        steps=steps, quadrature="riemann_trapezoid")
    with float64_default():  # points k/15 computed in float64 as ours
        theirs = IntegratedGradients(model).attribute(
            x, baselines=baseline, target=target, n_steps=steps, method="riemann_trapezoid")
    close(ours * (steps - 1) / steps, theirs)
    assert not torch.allclose(ours, theirs, rtol=1e-3, atol=0)


@all_cases()
def test_integrated_gradients_gausslegendre_two_points_exact(name, seed):
    # with 2 nodes the weights are 1/2, exact in float32, so Captum's rounding does not show
    model, x, baseline, target = case(name, seed)
    ours = wb.attribute(model, x, "integrated_gradients", target=target, baseline=baseline,
                        steps=2, quadrature="gausslegendre")
    theirs = IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=2, method="gausslegendre")
    close(ours, theirs)


@all_cases()
def test_integrated_gradients_gausslegendre_within_captum_float32_weights(name, seed):
    # Captum multiplies the gradients by ``torch.tensor(step_sizes).float()``: the Gauss-Legendre
    # weights w_k rounded to float32. The difference must be within the effect of that
    # rounding, |x - x0| * sum_k |w_k - fl32(w_k)| |grad f(p_k)|, computed here exactly.
    steps = 16
    model, x, baseline, target = case(name, seed)
    ours = wb.attribute(model, x, "integrated_gradients", target=target, baseline=baseline,
                        steps=steps, quadrature="gausslegendre")
    theirs = IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=steps, method="gausslegendre")
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1) / 2, weights / 2
    rounding = np.abs(weights - weights.astype(np.float32).astype(np.float64))
    shape = (steps, *[1] * x.dim())
    points = baseline + torch.as_tensor(alphas).view(shape) * (x - baseline)  # (steps, N, ...)
    grads = wb.attribute(model, points.flatten(0, 1), "gradient", target=target.repeat(steps))
    grads = grads.view(steps, *x.shape)
    bound = (x - baseline).abs() * (torch.as_tensor(rounding).view(shape) * grads.abs()).sum(0)
    assert ((ours - theirs).abs() <= bound + 1e-12).all()
    close(ours, theirs, rtol=1e-6, atol=1e-9)


# -- DeepLIFT ----------------------------------------------------------------------------------


@all_cases(NO_MAXPOOL)
@pytest.mark.parametrize("baseline_kind", ["zero", "random"])
def test_deeplift_rescale_matches(name, seed, baseline_kind):
    model, x, baseline, target = case(name, seed)
    if baseline_kind == "zero":
        baseline = torch.zeros_like(x)
    ours = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=baseline)
    theirs, delta = DeepLift(copy.deepcopy(model)).attribute(
        x, baselines=baseline, target=target, return_convergence_delta=True)
    close(ours, theirs)
    # both sum to f(x) - f(x0) (summation to delta holds without max pooling)
    expected = target_delta(model, x, baseline, target)
    torch.testing.assert_close(ours.flatten(1).sum(1), expected, rtol=1e-9, atol=1e-12)
    assert delta.abs().max() < 1e-12


@all_cases(("relu_maxpool_cnn",))
def test_deeplift_matches_captum_without_its_maxpool_rule(name, seed, monkeypatch):
    # Our DeepLIFT takes the ordinary gradient at max pooling (winner takes all). Removing
    # MaxPool2d from Captum's table of DeepLIFT nonlinearities makes Captum do the same; the
    # results then coincide, ReLU Rescale multipliers included.
    # (Captum 0.9 on this net, ReLU directly followed by MaxPool, effectively drops its maxpool
    # multipliers anyway: the ReLU hook reads the output gradient before the MaxPool hook
    # rewrites it, captum issue #1104; so we do not rely on its default here.)
    monkeypatch.delitem(captum_deep_lift.SUPPORTED_NON_LINEAR, nn.MaxPool2d)
    model, x, baseline, target = case(name, seed)
    for base in (torch.zeros_like(x), baseline):
        ours = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=base)
        theirs = DeepLift(copy.deepcopy(model)).attribute(x, baselines=base, target=target)
        close(ours, theirs)


@pytest.mark.parametrize("seed", SEEDS)
def test_deeplift_maxpool_rule_is_where_captum_differs(seed):
    # Known difference in definition. Captum's DeepLIFT gives max pooling its own multiplier
    # (max(x) - max(x0) split between the argmax of x and of x0), which keeps summation to
    # delta exact; ours uses the gradient at max pooling (routing to the argmax of x only), so
    # with a baseline whose argmax differs the attributions no longer sum to f(x) - f(x0).
    # The max pool sits between two convolutions so that Captum's maxpool hook is not
    # adjacent to another hooked module (captum issue #1104) and really takes effect.
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4),
    ).double().eval()
    rng = torch.Generator().manual_seed(2000 + seed)
    x = torch.randn(3, 3, 8, 8, generator=rng, dtype=torch.float64)
    baseline = 0.5 * torch.randn(3, 3, 8, 8, generator=rng, dtype=torch.float64)
    target = torch.tensor([0, 1, 2])
    expected = target_delta(model, x, baseline, target)

    ours = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=baseline)
    theirs, delta = DeepLift(copy.deepcopy(model)).attribute(
        x, baselines=baseline, target=target, return_convergence_delta=True)
    assert delta.abs().max() < 1e-12  # Captum: exact summation to delta
    torch.testing.assert_close(theirs.flatten(1).sum(1), expected, rtol=1e-9, atol=1e-12)
    ours_gap = (ours.flatten(1).sum(1) - expected).abs()
    assert ours_gap.max() > 1e-3  # ours: not exact with max pooling
    assert not torch.allclose(ours, theirs, rtol=1e-3, atol=1e-6)


# -- guided backprop, deconvnet -----------------------------------------------------------------


@all_cases()
def test_guided_backprop_matches(name, seed):
    model, x, _, target = case(name, seed)
    ours = wb.attribute(model, x, "guided_backprop", target=target)
    close(ours, GuidedBackprop(model).attribute(x, target=target))
    if name == "tanh_mlp":  # no ReLU: both keep the ordinary gradient at Tanh
        close(ours, wb.attribute(model, x, "gradient", target=target))


@all_cases()
def test_deconvnet_matches_deconvolution(name, seed):
    model, x, _, target = case(name, seed)
    ours = wb.attribute(model, x, "deconvnet", target=target)
    close(ours, Deconvolution(model).attribute(x, target=target))
    if name == "tanh_mlp":
        close(ours, wb.attribute(model, x, "gradient", target=target))
    else:  # ReLU nets: a genuinely modified backward pass
        assert not torch.allclose(ours, wb.attribute(model, x, "gradient", target=target))


# -- occlusion ---------------------------------------------------------------------------------

OCCLUSIONS = {
    # overlapping windows; the last one is cut at the edge (starts 0, 2, 4, 6 over 8)
    "tanh_mlp": [((3,), (2,)), ((1,), (1,))],
    "relu_maxpool_cnn": [((1, 3, 3), (1, 2, 2)), ((3, 2, 2), (3, 2, 2))],
    "relu_avgpool_cnn": [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (3, 3, 3))],
}


@all_cases()
@pytest.mark.parametrize("baseline_kind", ["number", "tensor"])
def test_occlusion_matches(name, seed, baseline_kind):
    # Captum returns float32 (it divides ``total.float() / counts``), so agreement is to
    # float32 precision: ours rounded to float32 within 2 ulps.
    model, x, baseline, target = case(name, seed)
    base = 0.3 if baseline_kind == "number" else baseline
    for window, stride in OCCLUSIONS[name]:
        ours = wb.attribute(model, x, "occlusion", target=target, window=window,
                            stride=stride, baseline=base)
        theirs = Occlusion(model).attribute(
            x, sliding_window_shapes=window, strides=stride, baselines=base, target=target,
            perturbations_per_eval=64)
        assert ours.dtype == torch.float64
        torch.testing.assert_close(ours.to(theirs.dtype), theirs, rtol=2.5e-7, atol=1e-12)


# -- Grad-CAM ----------------------------------------------------------------------------------


@all_cases(CNNS)
@pytest.mark.parametrize("layer", ["3", "4", "0", None])
def test_grad_cam_matches_layer_grad_cam(name, seed, layer):
    # layer 3: last conv (4x4 output, bilinear upsampling), 4: its ReLU, 0: first conv (8x8)
    model, x, _, target = case(name, seed)
    ours = wb.attribute(model, x, "grad_cam", target=target, layer=layer)
    module = model[3] if layer is None else model[int(layer)]  # None: the last conv layer
    cam = LayerGradCam(model, module).attribute(x, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), "bilinear")
    close(ours, cam.expand_as(x))
    assert (ours >= 0).all() and ours.amax() > 0


@all_cases(CNNS)
@pytest.mark.parametrize("relu", [True, False])
def test_grad_cams_layer_sized_map_matches_layer_grad_cam(name, seed, relu):
    """``upsample=False``: the layer-sized map; ``relu_attributions`` as Captum's."""
    model, x, _, target = case(name, seed)
    ours = wb.attribute(model, x, "grad_cam", target=target, layer="3", upsample=False,
                        relu_attributions=relu)
    theirs = LayerGradCam(model, model[3]).attribute(x, target=target, relu_attributions=relu)
    assert ours.shape == theirs.shape == (len(x), 1, 4, 4)
    close(ours, theirs)
    assert relu == bool((ours >= 0).all())  # without the ReLU some cells are negative


@all_cases(CNNS)
@pytest.mark.parametrize("mode", ["nearest", "bicubic", "area"])
def test_grad_cams_interpolate_mode_matches_captums(name, seed, mode):
    model, x, _, target = case(name, seed)
    ours = wb.attribute(model, x, "grad_cam", target=target, interpolate_mode=mode)
    cam = LayerGradCam(model, model[3]).attribute(x, target=target, relu_attributions=True)
    close(ours, LayerAttribution.interpolate(cam, tuple(x.shape[2:]), mode).expand_as(x))
    guided = wb.attribute(model, x, "guided_grad_cam", target=target, interpolate_mode=mode)
    close(guided, GuidedGradCam(model, model[3]).attribute(x, target=target,
                                                           interpolate_mode=mode))


@all_cases(CNNS)
@pytest.mark.parametrize("layer", ["3", "0"])
def test_guided_grad_cam_matches(name, seed, layer):
    # Captum's GuidedGradCam: its guided backprop times its Grad-CAM upsampled to the input
    model, x, _, target = case(name, seed)
    ours = wb.attribute(model, x, "guided_grad_cam", target=target, layer=layer)
    theirs = GuidedGradCam(model, model[int(layer)]).attribute(
        x, target=target, interpolate_mode="bilinear")
    close(ours, theirs)
    assert ours.abs().amax() > 0


def _conv_pool_conv(seed: int, pool: nn.Module) -> nn.Module:
    """A max pool between two convolutions, so that Captum's max-pooling hook is not adjacent
    to another hooked module (captum issue #1104) and really takes effect."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), pool, nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(), nn.Flatten(), nn.LazyLinear(4),
    ).double().eval()


@pytest.mark.parametrize("seed", SEEDS)
def test_deeplift_delta_max_pool_matches_captum(seed):
    # max_pool="delta" is Captum's max-pooling multiplier: same values, exact summation to delta
    model = _conv_pool_conv(seed, nn.MaxPool2d(2))
    rng = torch.Generator().manual_seed(2000 + seed)
    x = torch.randn(3, 3, 8, 8, generator=rng, dtype=torch.float64)
    baseline = 0.5 * torch.randn(3, 3, 8, 8, generator=rng, dtype=torch.float64)
    target = torch.tensor([0, 1, 2])
    model(x)  # sizes the lazy layer
    ours = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=baseline,
                        max_pool="delta")
    theirs = DeepLift(copy.deepcopy(model)).attribute(x, baselines=baseline, target=target)
    close(ours, theirs)
    torch.testing.assert_close(ours.flatten(1).sum(1), target_delta(model, x, baseline, target),
                               rtol=1e-9, atol=1e-12)
    distribution = baseline[:2]
    ours = wb.attribute(model, x, "deeplift_shap", target=target, baselines=distribution,
                        max_pool="delta")
    theirs = captum_attr.DeepLiftShap(copy.deepcopy(model)).attribute(
        x, baselines=distribution, target=target)
    close(ours, theirs)


def test_deeplift_delta_max_pool_sums_to_delta_with_overlapping_windows():
    # windows overlap (stride 1): an input that is the maximum of several windows collects
    # its share from each, and the attributions still sum to f(x) - f(x0) (Captum's unpooling
    # writes one window's share per position, so it is not compared here)
    model = _conv_pool_conv(0, nn.MaxPool2d(3, stride=1, padding=1))
    rng = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 8, 8, generator=rng, dtype=torch.float64)
    baseline = torch.randn(1, 3, 8, 8, generator=rng, dtype=torch.float64)
    target = torch.tensor([1, 3])
    model(x)
    expected = target_delta(model, x, baseline.expand_as(x), target)
    delta = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=baseline,
                         max_pool="delta")
    torch.testing.assert_close(delta.flatten(1).sum(1), expected, rtol=1e-9, atol=1e-12)
    gradient = wb.attribute(model, x, "deeplift_rescale", target=target, baseline=baseline)
    assert (gradient.flatten(1).sum(1) - expected).abs().max() > 1e-3
