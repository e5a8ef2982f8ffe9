"""``workbench.audit`` on models whose answers are known in closed form: a linear model (every
attribution of the form gradient times input coincides, Sensitivity-n is 1 for every n), a
ReLU net without biases (Ancona et al. 2018, arXiv 1711.06104, section 3: Gradient * Input,
DeepLIFT-Rescale, epsilon-LRP and, the net being homogeneous, Integrated Gradients are equal at
the zero baseline), and a model with an operation
the engine has no rule for (the rule-based methods are reported as not applicable)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.auditing import specs, verdicts
from workbench.auditing.measure import Budget, chosen_stages

TINY = Budget(images=4, ig_steps=8, cascading_stages=2, independent_stages=1,
              sensitivity_fractions=(0.1, 0.3, 0.6), sensitivity_subsets=16, patch=2)
#: on a linear model w.x + b, each of these is w * x at the zero baseline (LRP with eps -> 0)
EQUIVALENT = {"G*I": ("gradient_x_input", {}), "IG": ("integrated_gradients", {}),
              "DeepLIFT": ("deeplift_rescale", {}), "LRP-eps": ("lrp_epsilon", {"epsilon": 1e-12})}


def _images(n: int = 6, channels: int = 1, side: int = 8) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).double().eval()


def _rows(result, test: str) -> dict[str, dict]:
    return {row["method"]: row for row in result.results["verdicts"] if row["test"] == test}


def test_on_a_linear_model_the_gradient_times_input_methods_coincide_and_are_exact():
    result = wb.audit(_linear(), _images(), {"gradient": ("gradient", {}), **EQUIVALENT},
                      seeds=(0, 1),
                      budget=TINY, progress=False)
    agreement = result.results["agreement"]
    index = {label: i for i, label in enumerate(agreement["labels"])}
    difference = np.array(agreement["relative_difference"])
    for first in EQUIVALENT:
        for second in EQUIVALENT:
            assert difference[index[first], index[second]] < 1e-9, (first, second)
        assert difference[index[first], index["gradient"]] > 0.1  # w, not w * x
    sensitivity = _rows(result, "Sensitivity-n")
    for label in EQUIVALENT:  # sum over a subset of w_i x_i is exactly the output drop
        curves = [s["curves"][label] for s in result.results["sensitivity_n"].values()]
        assert np.allclose(curves, 1.0, atol=1e-9), label
        assert sensitivity[label]["status"] == "pass"
    completeness = _rows(result, "completeness")
    assert completeness["IG"]["status"] == "pass" and completeness["IG"]["mean"] < 1e-9
    assert completeness["gradient"]["status"] == verdicts.NOT_APPLICABLE


def test_on_a_relu_net_without_biases_ancona_equivalences_hold_exactly():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(256, 16, bias=False), nn.ReLU(),
                          nn.Linear(16, 3, bias=False)).double().eval()
    methods = {"G*I": ("gradient_x_input", {}), "DeepLIFT": ("deeplift_rescale", {}),
               "LRP-eps": ("lrp_epsilon", {"epsilon": 1e-12}),
               "IG": ("integrated_gradients", {}), "Gradient": ("gradient", {})}
    result = wb.audit(model, _images(), methods, seeds=(0,), budget=TINY, progress=False)
    agreement = result.results["agreement"]
    index = {label: i for i, label in enumerate(agreement["labels"])}
    difference = np.array(agreement["relative_difference"])
    # the net is positively homogeneous: the ReLUs keep their pattern along the path a * x,
    # so Integrated Gradients from 0 joins them too
    for first, second in (("G*I", "DeepLIFT"), ("G*I", "IG")):
        assert difference[index[first], index[second]] < 1e-12, (first, second)
    for other in ("G*I", "DeepLIFT"):  # eps = 1e-12 beside pre-activations of ~1e-4 or more
        assert difference[index[other], index["LRP-eps"]] < 1e-6, other
    assert difference[index["G*I"], index["Gradient"]] > 0.1
    # DeepLIFT sums to f(x) - f(0) (summation to delta)
    assert _rows(result, "completeness")["DeepLIFT"]["mean"] < 1e-9


class Square(nn.Module):
    def forward(self, x):
        return x * x


def test_methods_the_engine_cannot_run_are_not_applicable_with_the_reason():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), Square(), nn.Linear(8, 3)).double()
    result = wb.audit(model.eval(), _images(), ["gradient", "lrp_epsilon"], seeds=(0, 1),
                      budget=TINY, progress=False)
    reason = result.results["skipped"]["lrp_epsilon"]
    assert "no rule for the operation" in reason and "mul" in reason
    assert set(result.results["skipped"]) == {"lrp_epsilon"}
    rows = [r for r in result.results["verdicts"] if r["method"] == "lrp_epsilon"]
    assert {r["test"] for r in rows} == set(verdicts.TESTS)
    assert all(r["status"] == verdicts.NOT_APPLICABLE and reason in r["note"] for r in rows)
    assert _rows(result, "cascading randomization")["gradient"]["status"] != \
        verdicts.NOT_APPLICABLE


def test_the_audit_leaves_the_model_and_data_unchanged_and_writes_its_report(tmp_path):
    model, images = _linear(), _images()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    copy = images.clone()
    result = wb.audit(model, images, ["gradient", "integrated_gradients"], seeds=(0, 1),
                      budget=TINY, out=tmp_path, progress=False)
    assert torch.equal(images, copy)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["verdicts"]) == 2 * len(verdicts.TESTS)
    page = (tmp_path / "report.html").read_text()
    assert page.count('class="figure"') == len(result.figures) == len(saved["report_figures"])
    assert 'src="https://cdn.plot.ly' not in page
    header = (tmp_path / "verdicts.csv").read_text().splitlines()[0]
    assert "threshold" in header and "why this threshold" in header


def test_bad_arguments_are_refused_naming_them():
    with pytest.raises(ValueError, match="budget"):
        wb.audit(_linear(), _images(), ["gradient"], budget="slow", progress=False)
    with pytest.raises(ValueError, match="unknown method 'gradiant'"):
        wb.audit(_linear(), _images(), ["gradiant"], progress=False)
    with pytest.raises(ValueError, match="seeds must not repeat"):
        wb.audit(_linear(), _images(), ["gradient"], seeds=(1, 1), progress=False)


def test_chosen_stages_keep_the_top_layer_and_the_whole_cascade():
    assert chosen_stages(10, 4) == [1, 4, 7, 10]
    assert chosen_stages(3, None) == [1, 2, 3]
    assert chosen_stages(3, 5) == [1, 2, 3]


def test_specs_that_do_not_resolve_name_what_was_tried(tmp_path):
    with pytest.raises(ValueError, match="tried: a zoo name .*torchvision:NAME.*TorchScript"):
        specs.load_model("no_such_model")
    with pytest.raises(ValueError, match="need a state dict"):
        specs.load_model("torchvision:resnet18")
    with pytest.raises(ValueError, match="cannot import module"):
        specs.load_model("no_such_package.models:build")
    with pytest.raises(ValueError, match="image folder"):
        specs.load_data(str(tmp_path / "missing"))


@pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:FutureWarning")
def test_tensor_files_and_factories_load(tmp_path):
    images = torch.rand(5, 1, 8, 8)
    torch.save({"inputs": images, "labels": torch.arange(5)}, tmp_path / "data.pt")
    np.savez(tmp_path / "data.npz", x=images.numpy())
    for name in ("data.pt", "data.npz"):
        data = specs.load_data(str(tmp_path / name))
        assert torch.equal(data.inputs, images)
    assert torch.equal(specs.load_data(str(tmp_path / "data.pt")).labels, torch.arange(5))
    torch.save(_linear().state_dict(), tmp_path / "weights.pt")
    model, line = specs.load_model("tests.test_audit:_linear", tmp_path / "weights.pt")
    assert torch.equal(model[1].weight, _linear()[1].weight) and "weights.pt" in line
    scripted = torch.jit.script(_linear())
    scripted.save(str(tmp_path / "model.pt"))
    loaded, line = specs.load_model(str(tmp_path / "model.pt"))
    assert line.startswith("TorchScript")
    assert torch.allclose(loaded(_images()), _linear()(_images()))


def test_region_perturbation_gap_is_the_closed_form_on_a_linear_model():
    """On ``w . x`` replacing a patch by its mean changes the output by the patch's
    ``sum w (x - mean)``, whatever else was replaced: the MoRF and LeRF curves are cumulative
    sums of these effects sorted, and a map that holds them exactly ranks best; its negative
    swaps the two orders (the gap changes sign)."""
    from workbench.auditing.measure import region_perturbation

    model, x = _linear(), _images(n=3)
    target = torch.zeros(3, dtype=torch.long)
    weight = model[1].weight[0].detach().view(1, 1, 8, 8)
    means = x.view(3, 1, 4, 2, 4, 2).mean((3, 5), keepdim=True).expand(
        3, 1, 4, 2, 4, 2).reshape(3, 1, 8, 8)
    oracle = weight * (x - means)  # each pixel's share of its patch's effect
    effects = oracle.view(3, 4, 2, 4, 2).sum((2, 4)).flatten(1).numpy()
    start = model(x)[:, 0].detach().numpy()

    def area(curve):
        return (curve[:, 1:-1].sum(1) + (curve[:, 0] + curve[:, -1]) / 2) / (curve.shape[1] - 1)

    def curve(order):
        drops = np.sort(effects, axis=1)[:, ::order].cumsum(1)
        return np.concatenate([start[:, None], start[:, None] - drops], axis=1)

    scale = np.abs(effects.sum(1)).mean()
    expected = (area(curve(1)) - area(curve(-1))).mean() / scale
    budget = Budget(**{**vars(TINY), "degradation_grid": 4})
    found = region_perturbation(model, x, {"oracle": oracle, "negated": -oracle}, target,
                                budget, seed=0)
    assert found["patch"] == [2, 2] and expected > 0
    assert found["gap"]["oracle"] == pytest.approx(expected, rel=1e-9)
    assert found["gap"]["negated"] == pytest.approx(-expected, rel=1e-9)
    np.testing.assert_allclose(found["curves"]["oracle"]["most_relevant_first"],
                               curve(-1).mean(0), rtol=1e-9)
    assert found["random"][0] == pytest.approx(start.mean()) and \
        found["random"][-1] == pytest.approx((start - effects.sum(1)).mean())
