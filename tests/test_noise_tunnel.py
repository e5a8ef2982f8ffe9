"""NoiseTunnel around any method (workbench.methods.noise_tunnel): agreement with Captum 0.9's
NoiseTunnel on the same noise, SmoothGrad as a special case, and the three combinations."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp, seeded_case
from workbench.methods.gradients import noise_scale

captum_attr = pytest.importorskip("captum.attr")
from captum.attr import DeepLift, IntegratedGradients, NoiseTunnel, Saliency  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("one_thread")]

KINDS = ["smoothgrad", "smoothgrad_sq", "vargrad"]


def case(name: str, seed: int = 0):
    vector = name == "tanh_mlp"
    model = mlp(nn.Tanh, seed=seed) if vector else cnn(nn.ReLU, nn.AvgPool2d, seed=seed)
    return seeded_case(model, seed, vector=vector)


def our_noise(x, n_samples, noise, seed):
    """The draws noise_tunnel adds: one (N, ...) standard normal tensor per copy from a
    generator seeded with ``seed``, times SmoothGrad's per-input scale."""
    rng = torch.Generator().manual_seed(seed)
    sigma = noise_scale(x, noise).view(-1, *[1] * (x.dim() - 1))
    return [torch.randn(x.shape, generator=rng, dtype=x.dtype) * sigma for _ in range(n_samples)]


CAPTUM = {  # inner method -> (Captum attribution, its keyword arguments, our inner options)
    "gradient": (lambda m: Saliency(m), lambda b: {"abs": False}, {}),
    "integrated_gradients": (lambda m: IntegratedGradients(m),
                             lambda b: {"baselines": b, "n_steps": 16,
                                        "method": "riemann_middle"},
                             {"steps": 16, "quadrature": "riemann_middle"}),
    "deeplift_rescale": (lambda m: DeepLift(m), lambda b: {"baselines": b}, {}),
}


@pytest.mark.parametrize("name", ["tanh_mlp", "relu_avgpool_cnn"])
@pytest.mark.parametrize("inner", list(CAPTUM))
@pytest.mark.parametrize("kind", KINDS)
def test_noise_tunnel_matches_captum_on_the_same_noise(name, inner, kind, monkeypatch):
    # Captum draws its noise with torch.normal(0, stdev) for each batch of copies; with one copy
    # per batch, handing it our draws in order makes both run the inner method on the same
    # noisy inputs
    model, x, baseline, target = case(name)
    n_samples, noise, seed = 5, 0.2, 3
    make, captum_kwargs, options = CAPTUM[inner]
    if inner != "gradient":
        options = {**options, "baseline": baseline}
    ours = wb.attribute(model, x, "noise_tunnel", target=target, inner_method=inner, kind=kind,
                        n_samples=n_samples, noise=noise, seed=seed, inner_options=options)
    draws = iter(our_noise(x, n_samples, noise, seed))
    monkeypatch.setattr(torch, "normal", lambda mean, std: next(draws))
    theirs = NoiseTunnel(make(model)).attribute(
        x, nt_type=kind, nt_samples=n_samples, nt_samples_batch_size=1, target=target,
        **captum_kwargs(baseline))
    assert next(draws, None) is None  # every draw used
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-12)


def test_noise_tunnel_around_the_gradient_is_smoothgrad():
    model, x, _, target = case("relu_avgpool_cnn")
    ours = wb.attribute(model, x, "noise_tunnel", target=target, n_samples=6, noise=0.1, seed=2)
    # smoothgrad draws (batch_size, ...) at a time: one copy of the batch per draw
    smoothgrad = wb.attribute(model, x, "smoothgrad", target=target, n_samples=6, noise=0.1,
                              seed=2, batch_size=len(x))
    torch.testing.assert_close(ours, smoothgrad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("inner", ["gradient_x_input", "occlusion"])
def test_without_noise_the_kinds_are_the_attribution_its_square_and_zero(inner):
    model, x, _, target = case("tanh_mlp")
    plain = wb.attribute(model, x, inner, target=target)
    results = {kind: wb.attribute(model, x, "noise_tunnel", target=target, inner_method=inner,
                                  kind=kind, n_samples=3, noise=0.0) for kind in KINDS}
    torch.testing.assert_close(results["smoothgrad"], plain, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(results["smoothgrad_sq"], plain ** 2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(results["vargrad"], torch.zeros_like(x), rtol=0, atol=1e-14)


def test_vargrad_is_the_variance_of_the_copies():
    model, x, _, target = case("tanh_mlp")
    common = dict(target=target, inner_method="gradient", n_samples=4, noise=0.3, seed=1)
    mean, mean_sq, variance = (wb.attribute(model, x, "noise_tunnel", kind=kind, **common)
                               for kind in KINDS)
    copies = torch.stack([wb.attribute(model, x + draw, "gradient", target=target)
                          for draw in our_noise(x, 4, 0.3, 1)])
    torch.testing.assert_close(mean, copies.mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(mean_sq, (copies ** 2).mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(variance, copies.var(0, unbiased=False), rtol=1e-9, atol=1e-14)
    assert (variance >= -1e-15).all() and (variance > 0).any()


def test_predicted_class_is_taken_from_the_noise_free_inputs():
    model, x, _, _ = case("tanh_mlp")
    predicted = model(x).argmax(1)
    common = dict(n_samples=3, noise=0.5, seed=0)
    torch.testing.assert_close(wb.attribute(model, x, "noise_tunnel", **common),
                               wb.attribute(model, x, "noise_tunnel", target=predicted, **common))


@pytest.mark.parametrize("options, error, message", [
    ({"inner_method": "lrp_epsilom"}, ValueError, "'inner_method' of noise_tunnel must be one of"),
    ({"inner_options": {"steps": 3}}, TypeError, "gradient got unknown option.*'steps'"),
    ({"inner_method": "integrated_gradients", "inner_options": {"steps": 0}}, ValueError,
     "'steps' of integrated_gradients must be >= 1"),
    ({"inner_options": [("steps", 3)]}, TypeError,
     "'inner_options' of noise_tunnel must be a dict"),
    ({"kind": "smoothgrad_squared"}, ValueError, "'kind' of noise_tunnel must be one of"),
    ({"noise": -0.1}, ValueError, "'noise' of noise_tunnel must be >= 0"),
])
def test_bad_options_name_the_option(options, error, message):
    with pytest.raises(error, match=message):
        wb.attribute(mlp(nn.ReLU), torch.randn(2, 8), "noise_tunnel", target=0, **options)


def test_every_registered_method_but_itself_can_be_tunnelled():
    choices = {o.name: o for o in wb.method_info("noise_tunnel").options}["inner_method"].choices
    assert set(choices) == set(wb.methods()) - {"noise_tunnel"}
