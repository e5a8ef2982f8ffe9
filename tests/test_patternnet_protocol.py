"""The protocol of notebook 01 (Kindermans et al. 2018, arXiv 1705.05598, section 6): the
degradation order against the closed form of a linear model, rho's distractor statistics against
sample moments, and the claim builders on inputs whose answers are known."""
from __future__ import annotations

import pytest
import torch
from conftest import cnn
from torch import nn

import workbench as wb
from workbench import data as datasets
from workbench import metrics
from workbench.experiments import patternnet
from workbench.patterns import _distractor_statistics, _SecondMomentSolver, gather_moments

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_exact_drop_per_patch_orders_the_linear_models_degradation_greedily():
    """A linear model's output drops by ``sum_patch w (x - mean_patch x)`` when a patch is
    replaced by its mean, independently of the other patches: ranked by that drop, the curve
    after k patches is f(x) minus the k largest drops, the lowest curve any order can give."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 2)).double().eval()
    images = torch.randn(4, 1, 6, 6, dtype=torch.float64)
    target = torch.tensor([0, 1, 1, 0])
    weight = model[1].weight.detach()[target].view(4, 1, 6, 6)
    means = torch.nn.functional.avg_pool2d(images, 2).repeat_interleave(2, 2).repeat_interleave(
        2, 3)
    exact_drop = weight * (images - means)
    curve = metrics.degradation(model, images, exact_drop, patch=2, target=target).curve
    drops = exact_drop.view(4, 3, 2, 3, 2).sum((2, 4)).flatten(1)
    largest_first = drops.sort(1, descending=True).values.cumsum(1)
    output = model(images).gather(1, target[:, None]).detach()
    torch.testing.assert_close(curve, torch.cat([output, output - largest_first], 1))
    for other in (weight * images, weight, torch.randn_like(images)):
        assert (metrics.degradation(model, images, other, patch=2, target=target).curve
                >= curve - 1e-12).all()


def test_distractor_statistics_equal_the_sample_moments_of_the_distractor():
    """``Cov(d)`` (second moment plus the low-rank part) and ``Cov(d, y)`` against the moments
    of ``d = x - a_+ y`` (active) / ``x - a_- y`` (inactive) computed from the samples."""
    torch.manual_seed(3)
    layer = nn.Linear(5, 3).double()
    x = torch.randn(400, 5, dtype=torch.float64) @ torch.randn(5, 5, dtype=torch.float64)
    model = nn.Sequential(layer)
    moments = gather_moments(model, x, second_moment=True, progress=False)[0]["0"]
    j, a_pos, a_neg = 1, torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    update, covariance_dy, variance_y = _distractor_statistics(moments, j, a_pos, a_neg)
    y = x @ layer.weight.detach()[j]
    active = (y + layer.bias.detach()[j] > 0)[:, None]
    d = x - torch.where(active, a_pos, a_neg) * y[:, None]
    centred = d - d.mean(0)
    covariance = centred.T @ centred / len(x)
    explicit = moments.sum_xx / moments.count + update.columns @ update.weights @ \
        update.columns.T
    torch.testing.assert_close(explicit, covariance)
    torch.testing.assert_close(covariance_dy, centred.T @ (y - y.mean()) / len(x))
    torch.testing.assert_close(variance_y, y.var(unbiased=False))
    # the solver: (second + ridge I + U_j M_j U_j^T) v_j = b_j, each as a dense solve gives it,
    # for several neurons at once
    second = moments.sum_xx / moments.count
    solver = _SecondMomentSolver(second)
    statistics = [_distractor_statistics(moments, neuron, a_pos, a_neg) for neuron in range(3)]
    solutions = solver.solve([u for u, _, _ in statistics],
                             torch.stack([b for _, b, _ in statistics], dim=1))
    for column, (neuron_update, b, _) in enumerate(statistics):
        dense = second + neuron_update.columns @ neuron_update.weights @ \
            neuron_update.columns.T + solver.ridge * torch.eye(5, dtype=torch.float64)
        torch.testing.assert_close(solutions[:, column], torch.linalg.solve(dense, b))


def test_the_linear_toys_filter_is_a_poor_estimator_and_its_pattern_a_perfect_one():
    """On the linear toy the distractor is known: ``S_a`` leaves none of the output in it
    (rho close to 1), ``S_w`` leaves it (rho well below)."""
    result = patternnet.toy_experiment(n=2000, signal=(1.0, 0.0), distractor=(1.0, 1.0),
                                       noise=0.05, seed=0)
    assert result.signal_quality["a"] > 0.95
    assert result.signal_quality["w"] < result.signal_quality["a"] - 0.3


def _rho(conv_values, dense_values):
    layers = ["c1", "c2", "d1"]
    return {e: dict(zip(layers, [*conv_values[e], dense_values[e]]))
            for e in ("w", "a", "a+-", "random")}


KINDS = {"c1": "conv", "c2": "conv", "d1": "dense"}


def test_estimator_margins_on_known_values():
    rho = _rho({"w": (0.1, float("nan")), "a": (0.5, 0.7), "a+-": (0.8, 0.6),
                "random": (0.0, 0.2)}, {"w": 0.2, "a": 0.9, "a+-": 0.7, "random": 0.3})
    margins = patternnet.estimator_margins(rho, KINDS)
    assert margins["conv"] == pytest.approx(0.7 - 0.6)      # S_a+- conv mean - S_a's
    assert margins["dense"] == pytest.approx(0.9 - 0.3)     # S_a - random (above S_w)
    # per layer S_w - min(S_a, S_a+-): 0.1 - 0.5, undefined (NaN, left out), 0.2 - 0.7
    assert margins["filter"] == pytest.approx((-0.4 - 0.5) / 2)
    with pytest.raises(ValueError, match="kinds"):
        patternnet.estimator_margins(rho, {"c1": "conv", "c2": "conv"})


def test_degradation_margins_compare_with_the_best_other_method_and_random():
    areas = {"gradient": 2.0, "lrp_epsilon": 1.5, "pattern_attribution": 1.2, "random": 3.0}
    assert patternnet.degradation_margins(areas) == pytest.approx(
        {"others": 1.2 - 1.5, "random": 1.2 - 3.0})
    with pytest.raises(ValueError, match="areas"):
        patternnet.degradation_margins({"gradient": 1.0, "random": 2.0})


def _measurement(seed, rho, areas):
    study = patternnet.DegradationStudy({k: torch.zeros(2) for k in areas}, areas)
    return patternnet.SeedMeasurement(seed, rho, KINDS, study, nn.Identity(), None)


def test_paper_claims_read_each_seeds_margins_with_the_papers_sides():
    good = _rho({"w": (0.1, 0.1), "a": (0.5, 0.5), "a+-": (0.8, 0.8), "random": (0.0, 0.0)},
                {"w": 0.1, "a": 0.9, "a+-": 0.9, "random": 0.0})
    bad = _rho({"w": (0.9, 0.9), "a": (0.5, 0.5), "a+-": (0.2, 0.2), "random": (0.0, 0.0)},
               {"w": 0.9, "a": 0.1, "a+-": 0.1, "random": 0.0})
    fast = {"gradient": 2.0, "pattern_attribution": 1.0, "random": 3.0}
    slow = {"gradient": 1.0, "pattern_attribution": 2.0, "random": 1.5}
    claims = patternnet.paper_claims([_measurement(s, good, fast) for s in (0, 1, 2)])
    assert [c.verdict for c in claims] == ["holds"] * 5
    assert claims[0].values == pytest.approx((-1.0,) * 3)
    assert claims[2].values == pytest.approx((0.3,) * 3)
    claims = patternnet.paper_claims([_measurement(s, bad, slow) for s in (4, 5)])
    assert [c.agreeing for c in claims] == [0] * 5
    assert all(c.seeds == (4, 5) for c in claims)
    with pytest.raises(ValueError, match="measurements"):
        patternnet.paper_claims([])


def test_measure_seed_runs_both_experiments_on_the_seeds_subsets():
    model = cnn(nn.ReLU)
    torch.manual_seed(0)
    images = torch.randn(40, 3, 8, 8)
    with torch.no_grad():
        labels = model(images).argmax(1)
    data = datasets.ImageData(images[:24], labels[:24], images[24:], labels[24:],
                              ["a", "b", "c", "d"], "random")
    settings = patternnet.StudySettings(n_fit=20, n_quality=16, max_neurons=4, n_degradation=3,
                                        patch=2, steps=5)
    result = patternnet.measure_seed(model, data, 7, settings)
    assert result.kinds == {"0": "conv", "3": "conv", "6": "dense", "8": "dense"}
    assert set(result.rho) == {"w", "a", "a+-", "random"}
    assert set(result.degradation.areas) == {*patternnet.DEGRADATION_METHODS, "random"}
    assert all(len(c) == 6 for c in result.degradation.curves.values())
    # the same seed draws the same subsets: the same numbers again
    again = patternnet.measure_seed(model, data, 7, settings)
    assert again.rho == result.rho and again.degradation.areas == result.degradation.areas
    with pytest.raises(ValueError, match="patch"):
        patternnet.StudySettings(patch=0)
    # rho of S_a+- is wb.signal_quality on the seed's held-out subset
    assert result.patterns.estimator == "a+-"
    assert isinstance(result.model, nn.Module)
    assert all(0 <= v <= 1 for per_layer in result.rho.values() for v in per_layer.values()
               if v == v)


def test_one_pass_for_several_estimators_equals_one_pass_each():
    """``fit_estimators`` and ``signal_quality_of_estimators`` share the moments between
    estimators; each estimator's result is what its own ``fit_patterns`` / ``signal_quality``
    call gives."""
    from workbench.patterns import fit_estimators, signal_quality_of_estimators

    model = cnn(nn.ReLU)
    torch.manual_seed(2)
    fit, held_out = torch.randn(30, 3, 8, 8), torch.randn(24, 3, 8, 8)
    together = fit_estimators(model, fit, ("x", "w", "a", "a+-", "random"), seed=5,
                              progress=False)
    quality = signal_quality_of_estimators(model, held_out, together, max_neurons=3, seed=4,
                                           progress=False)
    for estimator, patterns in together.items():
        alone = wb.fit_patterns(model, fit, estimator, seed=5, progress=False)
        assert alone.estimator == patterns.estimator == estimator
        for name, layer in alone.layers.items():
            torch.testing.assert_close(patterns.layers[name].positive, layer.positive)
            torch.testing.assert_close(patterns.layers[name].negative, layer.negative)
        expected = wb.signal_quality(model, held_out, alone, max_neurons=3, seed=4,
                                     progress=False)
        assert quality[estimator] == pytest.approx(expected, nan_ok=True)
    with pytest.raises(ValueError, match="estimator"):
        fit_estimators(model, fit, ("a", "b"))
