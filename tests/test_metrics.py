"""Sensitivity-n, degradation curves and the Quantus explain function (workbench/metrics.py).

Oracles: exact answers on linear models (Ancona et al. 2018, arXiv 1711.06104, section 4,
Sensitivity-n), occlusion-1 for Sensitivity-1, and short per-sample loops written straight from
the definitions, fed the same random draws (the draw order is part of the documented contract).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp
from workbench.arguments import generator
from workbench.image_filters import gaussian_blur
from workbench.quantus_adapter import quantus_explain
from workbench.metrics import (
    DegradationCurve,
    SensitivityCurve,
    degradation,
    degradation_curves,
    sensitivity_n,
    sensitivity_n_curves,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def linear(features: int = 10, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(features, classes)).double().eval()


def batch(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Reference loops, straight from the definitions


def floyd(draws: list[float], total: int) -> list[int]:
    """Floyd's algorithm, step by step: ``m = len(draws)`` distinct items of ``0..total-1``."""
    base, taken = total - len(draws), []
    for j, u in enumerate(draws):
        candidate = int(u * (base + 1 + j))
        taken.append(base + j if candidate in taken else candidate)
    return taken


def reference_sensitivity_n(model, x, attributions, ns, target, baseline, n_subsets, seed,
                            feature_mask=None) -> np.ndarray:
    """One masked input per forward pass; subsets from the documented draws."""
    n_samples = len(x)
    flat_x, flat_a = x.flatten(1), attributions.flatten(1)
    flat_b = torch.broadcast_to(torch.as_tensor(baseline, dtype=x.dtype), x.shape).flatten(1)
    if feature_mask is None:
        labels = list(range(flat_x.shape[1]))
    else:
        labels = torch.broadcast_to(feature_mask, x.shape)[0].flatten().tolist()
    members = {label: [f for f, lab in enumerate(labels) if lab == label]
               for label in sorted(set(labels))}
    group_features = [members[label] for label in sorted(members)]
    rng = generator(seed)
    result = np.zeros((len(ns), n_samples))
    n_groups = len(group_features)
    for j, n in enumerate(ns):
        for i in range(n_samples):
            m = min(n, n_groups - n)
            draws = torch.rand(n_subsets, m, dtype=torch.float64, generator=rng)
            with torch.no_grad():
                fx = model(x[i:i + 1])[0, target[i]].item()
            sums, drops = [], []
            for s in range(n_subsets):
                drawn = floyd(draws[s].tolist(), n_groups)
                chosen = drawn if 2 * n <= n_groups else [
                    g for g in range(n_groups) if g not in drawn]
                masked, total = flat_x[i].clone(), 0.0
                for group in chosen:
                    for f in group_features[group]:
                        masked[f] = flat_b[i, f]
                        total += flat_a[i, f].item()
                with torch.no_grad():
                    out = model(masked.view(1, *x.shape[1:]))[0, target[i]].item()
                sums.append(total)
                drops.append(fx - out)
            result[j, i] = np.corrcoef(sums, drops)[0, 1]
    return result


def reference_degradation(model, x, attributions, order, patch, steps, replacement, target,
                          baseline=0.0, sigma=1.0, ranking=None) -> np.ndarray:
    """Patches ranked by a Python sort, replaced one by one, one forward pass per step."""
    ph, pw = patch
    n, c, height, width = x.shape
    blurred = None
    if replacement == "blur":
        from scipy.ndimage import gaussian_filter
        blurred = torch.from_numpy(gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma),
                                                   mode="mirror", truncate=3.0))
    curves = []
    for i in range(n):
        cells = [(r, q) for r in range(0, height, ph) for q in range(0, width, pw)]
        sums = [attributions[i, :, r:r + ph, q:q + pw].sum().item() for r, q in cells]
        if order == "most_relevant_first":
            rank = sorted(range(len(cells)), key=lambda p: -sums[p])
        elif order == "least_relevant_first":
            rank = sorted(range(len(cells)), key=lambda p: sums[p])
        else:
            rank = ranking[i].tolist()
        current = x[i:i + 1].clone()
        with torch.no_grad():
            curve = [model(current)[0, target[i]].item()]
        for p in rank[:steps]:
            r, q = cells[p]
            where = (0, slice(None), slice(r, r + ph), slice(q, q + pw))
            if replacement == "mean":
                current[where] = x[i, :, r:r + ph, q:q + pw].mean(dim=(1, 2))[:, None, None]
            elif replacement == "baseline":
                current[where] = baseline
            else:
                current[where] = blurred[i, :, r:r + ph, q:q + pw]
            with torch.no_grad():
                curve.append(model(current)[0, target[i]].item())
        curves.append(curve)
    return np.array(curves)


# ----------------------------------------------------------------------------------------------
# Sensitivity-n: exact cases


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients",
                                    "deeplift_rescale"])
def test_linear_model_satisfies_sensitivity_n_for_every_n_zero_baseline(method):
    model, x = linear(), batch(4, 10)
    options = {"steps": 4} if method == "integrated_gradients" else {}
    attributions = wb.attribute(model, x, method, target=2, **options)
    curve = sensitivity_n(model, x, attributions, [1, 2, 5, 9], target=2, n_subsets=20, seed=0)
    assert isinstance(curve, SensitivityCurve) and curve.ns == (1, 2, 5, 9)
    assert curve.correlations.shape == (4, 4) and curve.correlations.dtype == torch.float64
    torch.testing.assert_close(curve.correlations, torch.ones(4, 4, dtype=torch.float64),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["integrated_gradients", "deeplift_rescale"])
def test_linear_model_satisfies_sensitivity_n_with_a_nonzero_baseline(method):
    model, x = linear(), batch(4, 10)
    baseline = batch(10, seed=7)
    options = {"steps": 4} if method == "integrated_gradients" else {}
    attributions = wb.attribute(model, x, method, target=[0, 1, 2, 0], baseline=baseline,
                                **options)
    torch.testing.assert_close(attributions, (x - baseline) * model[1].weight[[0, 1, 2, 0]])
    curve = sensitivity_n(model, x, attributions, [1, 3, 7], target=[0, 1, 2, 0],
                          baseline=baseline, n_subsets=20, seed=3)
    torch.testing.assert_close(curve.correlations, torch.ones(3, 4, dtype=torch.float64),
                               rtol=0, atol=1e-12)
    # x * w is not the exact answer when features are removed to a non-zero baseline: the metric
    # must really put the baseline in (an implementation that zeroes features would give 1 here)
    plain = wb.attribute(model, x, "gradient_x_input", target=[0, 1, 2, 0])
    wrong = sensitivity_n(model, x, plain, [1, 3, 7], target=[0, 1, 2, 0], baseline=baseline,
                          n_subsets=20, seed=3)
    assert (wrong.correlations < 0.99).any()


def test_linear_image_model_with_grouped_features():
    model, x = linear(3 * 4 * 4), batch(2, 3, 4, 4)
    baseline = 0.5
    attributions = wb.attribute(model, x, "integrated_gradients", target=1, baseline=baseline,
                                steps=2)
    pixels = torch.arange(16).view(1, 1, 4, 4)     # the 3 channels of a pixel form one group
    result = sensitivity_n(model, x, attributions, 3, target=1, baseline=baseline,
                           feature_mask=pixels, n_subsets=15, seed=0)
    assert result.shape == (2,)
    torch.testing.assert_close(result, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("model", [mlp(nn.Tanh).double(), cnn(nn.ReLU).double()],
                         ids=["tanh_mlp", "relu_cnn"])
def test_occlusion_with_single_feature_windows_satisfies_sensitivity_1(model):
    shape = (3, 8) if isinstance(model[0], nn.Linear) else (3, 3, 8, 8)
    x = batch(*shape)
    attributions = wb.attribute(model, x, "occlusion", target=1)
    result = sensitivity_n(model, x, attributions, 1, target=1, n_subsets=30, seed=0)
    torch.testing.assert_close(result, torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-9)


def test_nonlinear_model_falls_below_one_for_some_n():
    model, x = mlp(nn.Tanh).double(), batch(4, 8)
    attributions = wb.attribute(model, x, "gradient_x_input", target=0)
    curve = sensitivity_n(model, x, attributions, [1, 2, 4, 6], target=0, n_subsets=40, seed=0)
    assert torch.isfinite(curve.correlations).all()
    assert (curve.correlations < 0.99).any()
    assert curve.mean().shape == (4,)


def test_all_features_gives_nan_because_every_subset_is_the_same():
    model, x = linear(), batch(3, 10)
    attributions = wb.attribute(model, x, "gradient_x_input", target=0)
    result = sensitivity_n(model, x, attributions, 10, target=0, n_subsets=5, seed=0)
    assert torch.isnan(result).all()


# ----------------------------------------------------------------------------------------------
# Sensitivity-n against the reference loop


@pytest.mark.parametrize("grouped", [False, True])
def test_sensitivity_n_matches_the_reference_loop(grouped):
    model, x = mlp(nn.Tanh).double(), batch(3, 8)
    attributions = wb.attribute(model, x, "gradient", target=[1, 0, 4])
    baseline = batch(8, seed=5)
    mask = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4]) if grouped else None
    ns = [1, 2, 4] if grouped else [1, 3, 7]
    curve = sensitivity_n(model, x, attributions, ns, target=[1, 0, 4], baseline=baseline,
                          n_subsets=12, seed=11, feature_mask=mask, batch_size=7)
    expected = reference_sensitivity_n(model, x, attributions, ns, [1, 0, 4], baseline, 12, 11,
                                       feature_mask=mask)
    np.testing.assert_allclose(curve.correlations.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_sensitivity_n_in_a_channels_last_batch_matches_the_reference_loop():
    # a float32 CNN runs its batches channels-last: the removed features are written through
    # each feature's place in that memory layout
    model, x = cnn(nn.ReLU), batch(2, 3, 8, 8).float()
    attributions = wb.attribute(model, x, "gradient_x_input", target=[1, 2])
    baseline = batch(3, 8, 8, seed=4).float()
    curve = sensitivity_n(model, x, attributions, [5, 150], target=[1, 2], baseline=baseline,
                          n_subsets=6, seed=3, batch_size=8)
    expected = reference_sensitivity_n(model, x, attributions, [5, 150], [1, 2], baseline, 6, 3)
    np.testing.assert_allclose(curve.correlations.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_sensitivity_n_curves_score_every_method_on_the_same_subsets_as_the_reference_loop():
    model, x, target = mlp(nn.Tanh).double(), batch(3, 8), [1, 0, 4]
    maps = {name: wb.attribute(model, x, name, target=target)
            for name in ("gradient", "gradient_x_input", "integrated_gradients")}
    ns = [1, 3, 7]
    curves = sensitivity_n_curves(model, x, maps, ns, target=target, n_subsets=12, seed=11,
                                  batch_size=7)
    assert list(curves) == list(maps)
    for name, attributions in maps.items():  # each its own run of the loop, the same draws
        expected = reference_sensitivity_n(model, x, attributions, ns, target, 0.0, 12, 11)
        np.testing.assert_allclose(curves[name].correlations.numpy(), expected, rtol=1e-10,
                                   atol=1e-12)
        assert curves[name].ns == tuple(ns)
    with pytest.raises(ValueError, match="attributions must be a non-empty mapping"):
        sensitivity_n_curves(model, x, {}, ns, target=target)


def test_sensitivity_n_curves_give_one_for_gradient_x_input_on_a_linear_model_only():
    model, x = linear(), batch(4, 10)
    maps = {"gradient_x_input": wb.attribute(model, x, "gradient_x_input", target=2),
            "gradient": wb.attribute(model, x, "gradient", target=2)}
    curves = sensitivity_n_curves(model, x, maps, [1, 4, 9], target=2, n_subsets=30, seed=0)
    # (x - 0) * w sums to the output drop on every subset: correlation 1 for every n
    torch.testing.assert_close(curves["gradient_x_input"].correlations,
                               torch.ones(3, 4, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (curves["gradient"].mean() < 0.99).all()


def test_sensitivity_n_does_not_depend_on_batch_size_and_is_reproducible():
    model, x = cnn(nn.ReLU).double(), batch(2, 3, 8, 8)
    attributions = wb.attribute(model, x, "gradient_x_input")
    runs = [sensitivity_n(model, x, attributions, [4, 32], n_subsets=10, seed=2, batch_size=size)
            for size in (3, 10_000)]
    torch.testing.assert_close(runs[0].correlations, runs[1].correlations, rtol=1e-10, atol=0)
    other = sensitivity_n(model, x, attributions, [4, 32], n_subsets=10, seed=3)
    assert not torch.equal(other.correlations, runs[0].correlations)


def test_sensitivity_n_rejects_bad_arguments():
    model, x = linear(), batch(2, 10)
    a = torch.zeros_like(x)
    with pytest.raises(ValueError, match="n=11 exceeds the number of features"):
        sensitivity_n(model, x, a, 11)
    with pytest.raises(ValueError, match="n must contain positive ints"):
        sensitivity_n(model, x, a, [0, 2])
    with pytest.raises(ValueError, match="n must not be an empty"):
        sensitivity_n(model, x, a, [])
    with pytest.raises(ValueError, match="n_subsets"):
        sensitivity_n(model, x, a, 2, n_subsets=1)
    with pytest.raises(ValueError, match="attributions must have shape"):
        sensitivity_n(model, x, a[:, :5], 2)
    with pytest.raises(ValueError, match="feature_mask"):
        sensitivity_n(model, x, a, 2, feature_mask=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="groups in feature_mask"):
        sensitivity_n(model, x, a, 3, feature_mask=torch.tensor([0, 1] * 5))


# ----------------------------------------------------------------------------------------------
# Degradation


def sum_model() -> nn.Module:
    """Class 0 scores the sum of all pixels plus 0.5; class 1 something else."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 6, 2)).double().eval()
    with torch.no_grad():
        model[1].weight[0] = 1.0
        model[1].bias[0] = 0.5
    return model


def test_morf_and_lerf_on_a_sum_model_drop_by_the_patch_sums_in_order():
    model, x = sum_model(), batch(3, 2, 4, 6)
    attributions = wb.attribute(model, x, "gradient_x_input", target=0)
    torch.testing.assert_close(attributions, x)
    patch_sums = x.view(3, 2, 2, 2, 3, 2).sum((1, 3, 5)).flatten(1)   # 2x3 grid of 2x2 patches
    fx = x.flatten(1).sum(1) + 0.5
    for order, descending in (("most_relevant_first", True), ("least_relevant_first", False)):
        result = degradation(model, x, attributions, order=order, patch=2,
                             replacement="baseline", target=0)
        assert isinstance(result, DegradationCurve) and result.curve.shape == (3, 7)
        ordered = patch_sums.sort(dim=1, descending=descending).values
        expected = torch.cat([fx[:, None], fx[:, None] - ordered.cumsum(1)], dim=1)
        torch.testing.assert_close(result.curve, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(result.aopc, (fx[:, None] - expected).mean(1))
        trapezoid = torch.from_numpy(np.trapezoid(expected.numpy(), dx=1 / 6, axis=1))
        torch.testing.assert_close(result.area, trapezoid)
    # the patch mean keeps the sum: a flat curve
    flat = degradation(model, x, attributions, patch=(2, 3), replacement="mean", target=0)
    torch.testing.assert_close(flat.curve, fx[:, None].expand(3, 5))


@pytest.mark.parametrize("replacement", ["mean", "baseline", "blur"])
@pytest.mark.parametrize("order", ["most_relevant_first", "least_relevant_first", "random"])
def test_degradation_matches_the_reference_loop(order, replacement):
    model, x = cnn(nn.ReLU).double(), batch(2, 3, 8, 8)
    attributions = wb.attribute(model, x, "gradient_x_input", target=[3, 1])
    result = degradation(model, x, attributions, order=order, patch=(2, 4), steps=5,
                         replacement=replacement, baseline=-0.3, blur_sigma=1.0,
                         target=[3, 1], seed=4, batch_size=3)
    assert result.curve.shape == (2, 6) and result.ranking.shape == (2, 8)
    expected = reference_degradation(model, x, attributions, order, (2, 4), 5, replacement,
                                     [3, 1], baseline=-0.3, sigma=1.0, ranking=result.ranking)
    np.testing.assert_allclose(result.curve.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_degradation_passes_cut_across_samples_give_the_reference_loop(channels):
    """Passes of any size, cutting a sample's steps at any row, and the zero baseline (kept
    features multiplied in, in the channels-last batch of a float32 conv net) give the curve
    of one forward pass per step."""
    torch.manual_seed(0)
    model = cnn(nn.ReLU) if channels == 3 else nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 4)).eval()
    x = batch(3, channels, 8, 8).float()
    attributions = wb.attribute(model, x, "gradient_x_input", target=[3, 1, 0])
    expected = reference_degradation(model, x, attributions, "most_relevant_first", (2, 2), 7,
                                     "baseline", [3, 1, 0], baseline=0.0)
    curves = [degradation(model, x, attributions, patch=2, steps=7, replacement="baseline",
                          target=[3, 1, 0], batch_size=size).curve for size in (1, 3, 5, 8, 64)]
    for curve in curves:
        np.testing.assert_allclose(curve.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_first_point_is_the_output_and_channel_summed_attributions_are_accepted():
    model, x = cnn(nn.ReLU), batch(3, 3, 8, 8).float()
    attributions = wb.attribute(model, x, "gradient")
    with torch.no_grad():
        scores = model(x).max(dim=1).values
    full = degradation(model, x, attributions, patch=4)
    summed = degradation(model, x, attributions.sum(1, keepdim=True), patch=4)
    torch.testing.assert_close(full.curve[:, 0], scores)
    torch.testing.assert_close(full.curve, summed.curve)
    assert full.curve.shape == (3, 5) and full.curve.dtype == torch.float32


def test_random_order_is_reproducible_under_a_seed():
    model, x = cnn(nn.ReLU).double(), batch(2, 3, 8, 8)
    attributions = wb.attribute(model, x, "gradient")
    first, second, other = (degradation(model, x, attributions, order="random", patch=2, seed=s)
                            for s in (5, 5, 6))
    torch.testing.assert_close(first.curve, second.curve, rtol=0, atol=0)
    assert torch.equal(first.ranking, second.ranking)
    assert not torch.equal(first.ranking, other.ranking)
    assert torch.equal(first.ranking.sort(dim=1).values, torch.arange(16).expand(2, 16))


def test_degradation_curves_gives_the_three_orders():
    model, x = cnn(nn.ReLU).double(), batch(2, 3, 8, 8)
    attributions = wb.attribute(model, x, "gradient_x_input")
    curves = degradation_curves(model, x, attributions, patch=4, seed=0)
    assert list(curves) == ["most_relevant_first", "least_relevant_first", "random"]
    assert all(c.order == name for name, c in curves.items())
    with pytest.raises(TypeError, match="order"):
        degradation_curves(model, x, attributions, order="random")


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    x = batch(2, 3, 9, 7)
    for sigma in (0.7, 1.5):
        expected = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror",
                                   truncate=3.0)
        np.testing.assert_allclose(gaussian_blur(x, sigma).numpy(), expected, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    ({"patch": 3}, "patch \\(3, 3\\) does not divide the image size \\(8, 8\\)"),
    ({"patch": (2,)}, "patch must be"),
    ({"patch": 0}, "patch must be"),
    ({"order": "morf"}, "order must be one of"),
    ({"replacement": "noise"}, "replacement must be one of"),
    ({"steps": 0}, "steps must be an int between 1 and 16"),
    ({"steps": 17}, "steps must be an int between 1 and 16"),
    ({"replacement": "blur", "blur_sigma": 4.0}, "blur_sigma"),
    ({"replacement": "blur", "blur_sigma": -1.0}, "blur_sigma"),
])
def test_degradation_rejects_bad_arguments(kwargs, match):
    model, x = cnn(nn.ReLU), batch(2, 3, 8, 8).float()
    options = {"patch": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        degradation(model, x, torch.zeros_like(x), **options)


def test_degradation_rejects_non_images_and_mismatched_attributions():
    model, x = cnn(nn.ReLU), batch(2, 3, 8, 8).float()
    with pytest.raises(ValueError, match="inputs must be images of shape"):
        degradation(mlp(), batch(2, 8).float(), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="attributions must have shape"):
        degradation(model, x, torch.zeros(2, 2, 8, 8), patch=2)


@pytest.mark.parametrize("device", DEVICES)
def test_metrics_keep_the_inputs_device_and_match_the_cpu(device):
    model, x = cnn(nn.ReLU).double(), batch(2, 3, 8, 8)
    attributions = wb.attribute(model, x, "gradient_x_input")
    expected_s = sensitivity_n(model, x, attributions, [2, 8], n_subsets=8, seed=0)
    expected_d = degradation(model, x, attributions, order="random", patch=2, seed=0)
    model, x, attributions = model.to(device), x.to(device), attributions.to(device)
    actual_s = sensitivity_n(model, x, attributions, [2, 8], n_subsets=8, seed=0)
    actual_d = degradation(model, x, attributions, order="random", patch=2, seed=0)
    assert actual_s.correlations.device.type == device and actual_d.curve.device.type == device
    torch.testing.assert_close(actual_s.correlations.cpu(), expected_s.correlations)
    torch.testing.assert_close(actual_d.curve.cpu(), expected_d.curve)


# ----------------------------------------------------------------------------------------------
# Quantus


def test_quantus_explain_inside_real_quantus_metrics():
    quantus = pytest.importorskip("quantus")
    model = cnn(nn.ReLU)
    x = batch(4, 3, 8, 8).float().numpy()
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    direct = quantus_explain(model, x, y, method="gradient_x_input")
    assert isinstance(direct, np.ndarray) and direct.shape == x.shape
    np.testing.assert_allclose(direct, wb.attribute(model, torch.from_numpy(x),
                                                    "gradient_x_input", target=y.tolist()))

    settings = dict(patch_size=2, order="morf", regions_evaluation=6, normalise=False, abs=False,
                    perturb_baseline=0.0, disable_warnings=True, display_progressbar=False)
    call = dict(model=model, x_batch=x, y_batch=y, softmax=False, device="cpu")
    via_explain = quantus.RegionPerturbation(**settings)(
        **call, a_batch=None, explain_func=quantus_explain,
        explain_func_kwargs={"method": "gradient_x_input"})
    via_a_batch = quantus.RegionPerturbation(**settings)(**call, a_batch=direct)
    np.testing.assert_allclose(np.array(via_explain), np.array(via_a_batch))
    # and Quantus's numbers are f(x) - our MoRF curve with the same settings
    ours = degradation(model, torch.from_numpy(x), torch.from_numpy(direct), patch=2, steps=6,
                       replacement="baseline", target=torch.from_numpy(y))
    np.testing.assert_allclose(np.array(via_explain),
                               (ours.curve[:, :1] - ours.curve[:, 1:]).numpy(), rtol=1e-5,
                               atol=1e-6)

    faithfulness = quantus.FaithfulnessCorrelation(nr_runs=5, subset_size=8, normalise=False,
                                                   return_aggregate=False, disable_warnings=True)
    np.random.seed(0)
    scores = faithfulness(**call, a_batch=None, explain_func=quantus_explain,
                          explain_func_kwargs={"method": "integrated_gradients", "steps": 4})
    assert len(scores) == 4 and np.isfinite(scores).all()
