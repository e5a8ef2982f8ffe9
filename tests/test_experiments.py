"""The notebooks' computations (``workbench/experiments``), against closed forms on linear models
and the convergence rates of the quadratures they use."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import cnn, mlp
from torch import nn

import workbench as wb
from workbench import data as datasets
from workbench import basis as wb_bases
from workbench import models as wb_models
from workbench.claims import t_interval
from workbench.experiments import basis, patternnet, sanity, transformers, unified

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_images(classes: int = 3, seed: int = 0) -> nn.Module:
    """1x4x4 images -> ``classes`` logits, one linear layer, float64."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, classes)).double().eval()


def degradation_by_hand(weights: np.ndarray, image: np.ndarray, output: float,
                        attribution: np.ndarray) -> np.ndarray:
    """The most-relevant-first curve of one 4x4 image under a linear model, 2x2 patches replaced
    by their mean: the output drops by ``sum_i w_i (x_i - mean)`` over each patch, the patches
    taken in decreasing order of their summed attribution."""
    corners = [(r, c) for r in (0, 2) for c in (0, 2)]  # row-major patch order
    patches = [(slice(r, r + 2), slice(c, c + 2)) for r, c in corners]
    relevance = [attribution[p].sum() for p in patches]
    drops = [(weights[p] * (image[p] - image[p].mean())).sum() for p in patches]
    order = sorted(range(4), key=lambda k: -relevance[k])
    return output - np.concatenate([[0.0], np.cumsum([drops[k] for k in order])])


def test_degradation_study_matches_the_closed_form_of_a_linear_model():
    model = linear_images()
    torch.manual_seed(1)
    images = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1, 0])
    methods = {"Gradient * Input": ("gradient_x_input", {}), "Gradient": ("gradient", {})}
    study = patternnet.degradation_study(model, images, labels, methods, patch=2, steps=4,
                                         seed=3)
    assert set(study.curves) == {"Gradient * Input", "Gradient", "random"}
    weights = model[1].weight.detach().numpy()
    outputs = model(images).detach().numpy()
    for label, attribution_of in (("Gradient * Input", lambda w, x: w * x),
                                  ("Gradient", lambda w, x: w)):
        curves = []
        for n, t in enumerate(labels.tolist()):
            w, x = weights[t].reshape(4, 4), images[n, 0].numpy()
            curves.append(degradation_by_hand(w, x, outputs[n, t], attribution_of(w, x)))
        curves = np.array(curves)
        np.testing.assert_allclose(study.curves[label].numpy(), curves.mean(0), atol=1e-12)
        # area: the trapezoid rule over [0, 1], per image, averaged
        assert study.areas[label] == pytest.approx(np.trapezoid(curves, dx=0.25).mean(), abs=1e-12)
    # every order starts at f(x) and, once all patches are gone, ends at the same image
    for curve in study.curves.values():
        assert curve[0].item() == pytest.approx(study.curves["Gradient"][0].item(), abs=1e-12)
        assert curve[-1].item() == pytest.approx(study.curves["Gradient"][-1].item(), abs=1e-12)
    with pytest.raises(ValueError, match="'random'"):
        patternnet.degradation_study(model, images, labels, {"random": ("gradient", {})})


def test_heat_map_methods_get_the_patterns_only_where_they_use_them(relu_cnn, image_batch):
    patterns = wb.fit_patterns(relu_cnn, image_batch, "a+-", progress=False)
    methods = patternnet.with_patterns(patternnet.HEATMAP_METHODS, patterns)
    assert list(methods) == list(patternnet.HEATMAP_METHODS)
    for label, (name, options) in methods.items():
        assert name == label
        assert options == ({"patterns": patterns} if name.startswith("pattern_") else {})
    maps = patternnet.attributions(relu_cnn, image_batch, 1, methods)
    torch.testing.assert_close(maps["pattern_attribution"], wb.attribute(
        relu_cnn, image_batch, "pattern_attribution", target=1, patterns=patterns))
    # in batches, a target per input: the same maps as all at once
    targets = torch.arange(len(image_batch)) % 3
    whole = patternnet.attributions(relu_cnn, image_batch, targets, methods)
    batched = patternnet.attributions(relu_cnn, image_batch, targets, methods, batch_size=2)
    for label in methods:
        torch.testing.assert_close(batched[label], whole[label])


def test_photo_stand_in_labels_the_photos_with_the_models_predictions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 4)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = patternnet.photo_stand_in(model, size=16, classes=["a", "b", "c", "d"])
    photos = datasets.photos(16).images
    third = len(photos) // 3
    torch.testing.assert_close(data.x_test, photos[:third])
    torch.testing.assert_close(data.x_train, photos[third:])
    with torch.no_grad():
        predicted = model(photos).argmax(1)
    assert torch.equal(data.y_test, predicted[:third])
    assert torch.equal(data.y_train, predicted[third:])
    assert data.classes == ["a", "b", "c", "d"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="test_fraction"):
        patternnet.photo_stand_in(model, size=16, classes=["a"] * 4, test_fraction=1.0)
    # n crops of every shipped photo, labelled in batches the same way
    crops = patternnet.photo_stand_in(model, size=16, classes=list("abcd"), n=60, seed=3,
                                      batch_size=7)
    expected = datasets.photo_crops(60, 16, seed=3)
    images = torch.cat([expected.x_train, expected.x_test])
    torch.testing.assert_close(torch.cat([crops.x_test, crops.x_train]), images)
    with torch.no_grad():
        assert torch.equal(torch.cat([crops.y_test, crops.y_train]), model(images).argmax(1))
    assert len(crops.x_test) == 20


def test_toy_results_use_the_papers_names_of_the_estimators():
    toy = patternnet.toy_experiment(n=400, seed=0)
    content = patternnet.toy_results(toy)
    assert set(content["rho"]) == {"S_w", "S_a", "S_a+-", "S_x", "random"}
    assert content["rho"]["S_a"] == toy.signal_quality["a"]
    torch.testing.assert_close(content["patterns"]["S_a+-"], toy.patterns["a+-"])
    figure = patternnet.toy_figure(toy)
    arrows = {trace.name: (trace.x[1], trace.y[1]) for trace in figure.data[1:]}
    assert arrows["pattern S_a"] == pytest.approx(toy.patterns["a"].tolist())
    assert arrows["filter w = gradient"] == pytest.approx(toy.filter.tolist())


def test_epsilon_effect_is_the_closed_form_share_of_a_linear_layer():
    torch.manual_seed(0)
    layer = nn.Linear(8, 3, bias=False).double().eval()
    inputs = torch.randn(6, 8, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    z = layer(inputs).detach()[torch.arange(6), target].abs()
    effect = unified.epsilon_effect(layer, inputs, target, [1e-6, 0.1, 1.0])
    for epsilon, share in effect.items():  # R sums to z |z| / (|z| + eps)
        assert share == pytest.approx(float((z / (z + epsilon)).mean()), rel=1e-12)


def test_epsilon_effect_conserves_on_a_bias_free_relu_net_and_shrinks_with_epsilon():
    model = mlp(nn.ReLU, bias=False).double()
    torch.manual_seed(1)
    inputs = torch.randn(6, 8, dtype=torch.float64)
    effect = unified.epsilon_effect(model, inputs, 2, [1e-9, 0.01, 0.1, 1.0])
    assert effect[1e-9] == pytest.approx(1.0, abs=1e-6)
    shares = list(effect.values())
    assert all(a > b for a, b in zip(shares, shares[1:]))


def test_completeness_error_is_zero_on_a_linear_model_and_halves_with_the_steps():
    torch.manual_seed(1)
    inputs = torch.randn(6, 8, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    linear = mlp(sizes=(8, 5)).double()
    assert max(unified.completeness_error(linear, inputs, target, [1, 3, 10]).values()) < 1e-12
    error = unified.completeness_error(mlp(nn.Tanh).double(), inputs, target,
                                       [8, 16, 32, 64, 128, 256])
    values = list(error.values())
    # a right Riemann sum's error is first order: doubling the steps halves it, towards 0
    for coarse, fine in zip(values, values[1:]):
        assert fine / coarse == pytest.approx(0.5, abs=0.02)
    assert values[-1] < 0.01 * unified.completeness_error(
        mlp(nn.Tanh).double(), inputs, target, [1])[1]


def test_target_outputs_and_pair_correlations_pick_by_class_and_by_label(tanh_mlp, vector_batch):
    target = torch.tensor([1, 0, 3, 2])
    outputs = unified.target_outputs(tanh_mlp, vector_batch, target)
    torch.testing.assert_close(outputs, tanh_mlp(vector_batch)[torch.arange(4), target].detach())
    labels = ["a", "b", "c"]
    matrix = torch.tensor([[1.0, 0.2, 0.3], [0.2, 1.0, 0.6], [0.3, 0.6, 1.0]])
    assert unified.pair_correlations(labels, matrix, [("c", "b"), ("a", "c")]) == {
        "c vs b": pytest.approx(0.6), "a vs c": pytest.approx(0.3)}
    with pytest.raises(ValueError, match=r"unknown methods \['z'\]"):
        unified.pair_correlations(labels, matrix, [("a", "z")])


def test_per_input_regroups_stage_maps_and_refuses_ragged_ones():
    maps = {"original": {"m": torch.arange(6.0).reshape(3, 2), "n": -torch.ones(3, 2)},
            "fc": {"m": torch.zeros(3, 2), "n": torch.arange(6.0).reshape(3, 2) * 2}}
    examples = sanity.per_input(maps)
    assert len(examples) == 3
    for i, example in enumerate(examples):
        for stage in maps:
            for method in maps[stage]:
                assert torch.equal(example[stage][method], maps[stage][method][i])
    with pytest.raises(ValueError, match="same number of inputs"):
        sanity.per_input({"original": {"m": torch.zeros(3, 2)}, "fc": {"m": torch.zeros(2, 2)}})


def test_randomization_examples_start_from_the_untouched_model(image_batch):
    model = cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    methods = {"Gradient": ("gradient", {})}
    target = torch.tensor([0, 1, 2])
    stages = sanity.randomization_examples(model, image_batch, methods, "cascading", target)
    assert list(stages)[0] == "original" and len(stages) == 5  # the original, then 4 layers
    torch.testing.assert_close(stages["original"]["Gradient"],
                               wb.attribute(model, image_batch, "gradient", target=target))
    last = list(stages.values())[-1]["Gradient"]
    assert not torch.allclose(last, stages["original"]["Gradient"])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    figures = sanity.example_figures(image_batch, stages, "cascading", count=2)
    assert [f.layout.title.text for f in figures] == ["cascading, input 0", "cascading, input 1"]
    assert all(len(f.data) == 2 + len(stages) for f in figures)  # input, edges, one per stage


def test_similarity_figure_draws_the_rows_of_one_reference():
    summary = pd.DataFrame({
        "stage_index": [1, 0, 1, 0], "stage": ["fc", "original", "fc", "original"],
        "method": ["Gradient"] * 4, "metric": ["ssim"] * 4,
        "reference": ["original", "original", "edges", "edges"],
        "mean": [0.2, 1.0, 0.5, 0.4], "std": [0.1, 0.0, 0.05, 0.05]})
    figure = sanity.similarity_figure(summary, reference="edges")
    line = [t for t in figure.data if t.mode == "lines+markers"][0]
    assert list(line.x) == ["original", "fc"] and list(line.y) == [0.4, 0.5]
    assert figure.layout.annotations[0].text == sanity.METRIC_TITLES["ssim"]
    with pytest.raises(ValueError, match="reference 'nope'"):
        sanity.similarity_figure(summary, reference="nope")


def test_gallery_figure_shows_each_direction_with_its_top_inputs(relu_cnn, image_batch):
    inputs = torch.cat([image_batch, image_batch.flip(0)])
    layer = basis.default_layers(relu_cnn)[0]
    stats = wb.basis.activations(relu_cnn, inputs, [layer], progress=False)[layer]
    galleries = [basis.direction_gallery(relu_cnn, inputs,
                                         wb.basis.basis_from_statistics(stats, kind),
                                         n_directions=2, n_images=3, steps=2, progress=False)
                 for kind in ("pca", "neurons")]
    figure = basis.gallery_figure(galleries)
    titles = [a.text for a in figure.layout.annotations]  # the empty cell has no title
    assert titles[:8] == [label for g in galleries for label in
                          [g.labels[0], *(f"{float(s):.3g}" for s in g.top.scores[0])]]
    assert titles[0] == "PC 1"
    assert len(figure.data) == 2 * 2 * (1 + 3)  # 2 ranks x 2 bases x (visualisation + 3 inputs)


def test_comparison_of_all_bases_counts_zero_codes_and_dead_directions_by_hand():
    model = mlp(nn.ReLU, sizes=(8, 16, 12, 5))
    with torch.no_grad():
        model[0].bias[3] = -100.0                          # neuron 3 of the ReLU "1" is dead
    generator = torch.Generator().manual_seed(0)
    fit_inputs, test_inputs = torch.randn(400, 8, generator=generator), torch.randn(
        100, 8, generator=generator)
    test_labels = torch.randint(0, 5, (100,), generator=generator)
    fitted = basis.fit_bases(model, fit_inputs, "1", options={
        "sparse": wb.SparseOptions(steps=100, width=32), "ica": wb.SampleOptions(max_iter=300),
        "nmf": wb.SampleOptions(max_iter=300)}, progress=False)
    table = {row["kind"]: row for row in basis.compare_kinds(model, fitted, test_inputs,
                                                             test_labels, 4, progress=False)}
    assert list(table) == list(wb.basis.KINDS)
    activations = model[:2](test_inputs).detach()
    neurons = table["neurons"]
    assert neurons["zero_codes"] == (activations == 0).double().mean().item()
    assert neurons["dead_directions"] == int((activations.max(0).values
                                              == activations.min(0).values).sum()) >= 1
    assert table["pca"]["zero_codes"] == 0.0 and table["pca"]["directions"] == 16
    rows = model[:2](fit_inputs).detach().double().numpy()
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(rows, rowvar=False)))[::-1]
    assert table["pca"]["variance_explained"] == pytest.approx(eigenvalues[:4].sum()
                                                               / eigenvalues.sum())
    for kind, row in table.items():
        curve = wb.ablation_curve(model, test_inputs, "1", fitted[kind], [row["k"]],
                                  labels=test_labels, progress=False)
        assert (row["accuracy"], row["agreement"]) == (curve.accuracy[0], curve.agreement[0])
        assert row["variance_explained"] == wb.variance_explained(fitted[kind], row["k"])
    assert table["ica"]["directions"] == 15                   # the rank: one neuron is dead


def test_the_lrp_composite_columns_are_the_lrp_method_with_each_shipped_composite(
        relu_cnn, image_batch):
    from workbench.composites import COMPOSITES

    low, high = float(image_batch.min()), float(image_batch.max())
    columns = patternnet.lrp_composites(low, high)
    assert [options["composite"] for _, options in columns.values()] == list(COMPOSITES)
    maps = patternnet.attributions(relu_cnn, image_batch, 1, columns)
    expected = wb.attribute(relu_cnn, image_batch, "lrp", target=1,
                            composite="epsilon_gamma_box", low=low, high=high)
    torch.testing.assert_close(maps["lrp: epsilon_gamma_box"], expected)


# ----------------------------------------------------------------------------------------------
# Notebook 02 over seeds: equivalences (Ancona et al. 2018, section 3) and the claim builders


@pytest.mark.parametrize("make", [lambda bias: mlp(nn.ReLU, bias=bias).double(),
                                  lambda bias: cnn(nn.ReLU, bias=bias).double()])
def test_equivalence_gaps_vanish_on_bias_free_relu_nets_and_deeplift_parts_with_biases(make):
    torch.manual_seed(3)
    bias_free = make(False)
    inputs = torch.randn(5, 8, dtype=torch.float64) if isinstance(bias_free[0], nn.Linear) \
        else torch.randn(5, 3, 8, 8, dtype=torch.float64)
    gaps = unified.equivalence_gaps(bias_free, inputs, 1)
    assert set(gaps) == {"epsilon-LRP", "DeepLIFT (Rescale)"}
    assert max(gaps.values()) < 1e-9
    with torch.no_grad():  # the same net with biases: epsilon-LRP still equals, DeepLIFT parts
        biased = make(True)
        for mine, theirs in zip(biased.modules(), bias_free.modules()):
            if getattr(mine, "bias", None) is not None:
                mine.weight.copy_(theirs.weight)
                mine.bias.fill_(0.3)
    gaps = unified.equivalence_gaps(biased, inputs, 1)
    assert gaps["epsilon-LRP"] < 1e-9
    assert gaps["DeepLIFT (Rescale)"] > 1e-3


def test_equivalence_gaps_part_on_tanh_even_without_biases_for_gradient_x_input():
    torch.manual_seed(0)
    inputs = torch.randn(5, 8, dtype=torch.float64)
    gaps = unified.equivalence_gaps(mlp(nn.Tanh, bias=False), inputs, 2)
    assert min(gaps.values()) > 1e-3
    # without biases and with a zero baseline, DeepLIFT's f(z)/z is epsilon-LRP's: they agree
    both = unified.equivalence_gaps(mlp(nn.Tanh, bias=False), inputs, 2, {
        "epsilon-LRP": unified.EQUIVALENT_METHODS["epsilon-LRP"],
        "DeepLIFT (Rescale)": unified.EQUIVALENT_METHODS["DeepLIFT (Rescale)"]})
    assert both["DeepLIFT (Rescale)"] < 1e-6  # epsilon = 1e-12 against z of order 1e-4


def test_without_biases_drops_every_bias_and_keeps_the_weights():
    model = cnn(nn.ReLU)
    copied = unified.without_biases(model)
    assert all(m.bias is None for m in copied.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    assert model[0].bias is not None  # the original is untouched
    torch.testing.assert_close(copied[0].weight, model[0].weight)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.bias.zero_()
        torch.testing.assert_close(copied(x), model(x))


def test_bias_free_twin_trains_the_architecture_without_biases():
    data = datasets.digits()
    info = {"settings": {"architecture": "mlp", "training": {"epochs": 2, "lr": 1e-2,
                                                             "batch_size": 128}},
            "arguments": {"in_features": 64, "classes": 10, "hidden": [16],
                          "activation": "relu"}}
    model, accuracy = unified.bias_free_twin(info, data, seed=0)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))
    assert accuracy > 0.5  # trained, well above chance (0.1)
    again, _ = unified.bias_free_twin(info, data, seed=0)
    torch.testing.assert_close(again.linear1.weight, model.linear1.weight)


def seed_result(seed: int, occlusion=(1.0, 0.7), integrated=(0.9, 0.8), deeplift=(0.9, 0.75),
                gradient=(0.9, 0.6), gaps=(1e-10, 0.0), tanh_gaps=(0.5, 0.2),
                errors=(0.4, 0.04)) -> unified.SeedResult:
    """A SeedResult with chosen numbers: curves at n = 1 and n = 51 (the same on both nets)."""
    curves = {"Occlusion-1": list(occlusion), "Integrated Gradients": list(integrated),
              "DeepLIFT (Rescale)": list(deeplift), "Gradient * Input": list(gradient)}
    labels = ("epsilon-LRP", "DeepLIFT (Rescale)")
    return unified.SeedResult(
        seed, {"ReLU": 0.9, "Tanh": 0.9, "ReLU, no biases": 0.9},
        {"ReLU, no biases": dict(zip(labels, gaps)), "ReLU": dict(zip(labels, (1e-10, 0.2))),
         "Tanh": dict(zip(labels, tanh_gaps))},
        [1, 51], {"ReLU": curves, "Tanh": {k: list(v) for k, v in curves.items()}},
        {"ReLU": {1e-6: 1.0}, "Tanh": {1e-6: 1.0}},
        {"ReLU": {2: errors[0], 64: errors[1]}, "Tanh": {2: 1.0, 64: 0.05}})


def test_claims_measure_the_stated_quantities_of_synthetic_results():
    results = [seed_result(0), seed_result(1, gaps=(2e-10, 1e-12)), seed_result(2)]
    claims = {claim.statement: claim for claim in unified.claims(results)}
    assert len(claims) == 7
    relu_lrp, relu_deeplift, tanh, at_one, at_large, satisfied, steps = claims.values()
    assert relu_lrp.values == (1e-10, 2e-10, 1e-10) and relu_lrp.verdict == "holds"
    assert relu_deeplift.values == (0.0, 1e-12, 0.0)
    assert tanh.values == (0.2, 0.2, 0.2) and tanh.verdict == "holds"
    assert at_one.values == pytest.approx((0.1,) * 3)       # 1.0 - max(0.9, 0.9, 0.9)
    assert at_large.values == pytest.approx((0.05,) * 3)    # min(0.8, 0.75) - 0.7
    assert satisfied.values == pytest.approx((0.8,) * 3)    # IG: the best method's worst n
    assert steps.values == pytest.approx((0.1,) * 3)        # max(0.04 / 0.4, 0.05 / 1.0)
    assert all(claim.verdict == "holds" for claim in claims.values())
    assert all(claim.seeds == (0, 1, 2) for claim in claims.values())


def test_claims_fail_where_the_synthetic_results_contradict_the_paper():
    results = [seed_result(s, occlusion=(1.0, 0.9), gaps=(1e-3, 0.0), tanh_gaps=(1e-6, 1e-7),
                           errors=(0.1, 0.2)) for s in (0, 1, 2)]
    verdicts = {claim.statement: claim.verdict for claim in unified.claims(results)}
    for statement, verdict in verdicts.items():
        expected = "holds" if ("DeepLIFT (Rescale) equals" in statement
                               or "at n = 1" in statement or "No method" in statement) \
            else "does not hold"
        assert verdict == expected, statement
    # an exact method on every n (a linear model's Gradient * Input) does not satisfy the claim
    exact = [seed_result(s, occlusion=(1.0, 1.0), integrated=(1.0, 1.0), deeplift=(1.0, 1.0),
                         gradient=(1.0, 1.0)) for s in (0, 1)]
    assert unified.sensitivity_claims(exact)[2].verdict == "does not hold"
    with pytest.raises(ValueError, match="at least one seed"):
        unified.claims([])


def test_mean_over_seeds_and_the_gaps_table():
    assert unified.mean_over_seeds([{"a": [1.0, 2.0], "b": 3.0}, {"a": [3.0, 4.0], "b": 5.0}]) \
        == {"a": [2.0, 3.0], "b": 4.0}
    table = unified.gaps_table([seed_result(0), seed_result(4)])
    assert list(table["net"]) == ["ReLU, no biases", "ReLU", "Tanh"] * 2
    assert list(table["seed"]) == [0, 0, 0, 4, 4, 4]
    assert table.loc[2, "epsilon-LRP"] == "5.0e-01"
    assert table.loc[0, "epsilon-LRP"] == "1.0e-10" and table.loc[0, "test accuracy"] == "0.900"


def _cascade_summary(values: dict[str, list[float]], count: int = 7) -> pd.DataFrame:
    """A ``summarize``-shaped cascading summary: ``values[method][k]`` is the mean at stage k."""
    return pd.DataFrame([
        {"method": method, "stage_index": k, "stage": f"s{k}", "metric": sanity.CLAIM_METRIC,
         "reference": "original", "mean": v, "std": 0.0, "count": count, "q25": v, "q75": v}
        for method, means in values.items() for k, v in enumerate(means)])


def _data_summary(values: dict[str, float], count: int = 32) -> pd.DataFrame:
    rows = []
    for method, v in values.items():
        for k, (stage, mean) in enumerate((("true labels", 1.0), ("random labels", v))):
            rows.append({"method": method, "stage_index": k, "stage": stage,
                         "metric": sanity.CLAIM_METRIC, "reference": "true labels",
                         "mean": mean, "std": 0.0, "count": count, "q25": mean, "q75": mean})
    return pd.DataFrame(rows)


def _seed(shift: float) -> sanity.SeedSummaries:
    """The paper's pattern on a 4-layer cascade, every value moved by ``shift``."""
    cascade = {"Gradient": [1.0, 0.6, 0.4, 0.3, 0.1 + shift],
               "Grad-CAM": [1.0, 0.3, 0.2, 0.2, 0.05 + shift],
               "Guided Backprop": [1.0, 0.95, 0.9 + shift, 0.4, 0.2],
               "Guided Grad-CAM": [1.0, 0.9, 0.2 + shift, 0.1, 0.1]}
    data = {"Gradient": 0.2 + shift, "Grad-CAM": 0.1 + shift}
    return sanity.SeedSummaries(_cascade_summary(cascade), _data_summary(data), {})


def test_claims_read_the_stages_the_paper_names_at_every_seed():
    per_seed = {0: _seed(0.0), 5: _seed(0.02), 9: _seed(-0.02)}
    claims = sanity.claims(per_seed, top_layers=2)
    by_method = {(c.statement.split(" passes")[0].split(" fails")[0], "data" in c.statement): c
                 for c in claims}
    assert len(claims) == 6 and all(c.seeds == (0, 5, 9) for c in claims)
    assert all(c.threshold == sanity.CLAIM_THRESHOLD for c in claims)
    # passing methods: the last stage (all 4 layers), claimed below the threshold
    assert by_method["Gradient", False].values == pytest.approx((0.1, 0.12, 0.08))
    assert not by_method["Gradient", False].above
    assert by_method["Grad-CAM", False].verdict == "holds"
    # failing methods: stage 2 (the top two layers), claimed above
    gbp = by_method["Guided Backprop", False]
    assert gbp.values == pytest.approx((0.9, 0.92, 0.88)) and gbp.above
    assert gbp.verdict == "holds"
    guided_cam = by_method["Guided Grad-CAM", False]
    assert guided_cam.values == pytest.approx((0.2, 0.22, 0.18))
    assert guided_cam.verdict == "does not hold"
    # data randomization: the random-label net's stage against the true-label net's maps
    assert by_method["Gradient", True].values == pytest.approx((0.2, 0.22, 0.18))
    assert by_method["Grad-CAM", True].verdict == "holds"
    assert "4 layers" in by_method["Gradient", False].quantity
    assert "7 photos" in gbp.note and "32 test digits" in by_method["Grad-CAM", True].note
    # top_layers moves the failing methods' stage only
    moved = sanity.claims(per_seed, top_layers=1)
    assert [c.values for c in moved][2] == pytest.approx((0.95, 0.95, 0.95))
    assert [c.values for c in moved][0] == by_method["Gradient", False].values


def test_claims_and_stage_similarity_name_bad_arguments():
    summary = _seed(0.0).cascading
    assert sanity.stage_similarity(summary, "Gradient", -1) == pytest.approx(0.1)
    assert sanity.stage_similarity(summary, "Gradient", 0) == 1.0
    with pytest.raises(ValueError, match="stage_index 5 is out of range"):
        sanity.stage_similarity(summary, "Gradient", 5)
    with pytest.raises(ValueError, match="method 'Nope'"):
        sanity.stage_similarity(summary, "Nope")
    with pytest.raises(ValueError, match="per_seed must hold"):
        sanity.claims({})
    with pytest.raises(ValueError, match="top_layers must be a positive int"):
        sanity.claims({0: _seed(0.0)}, top_layers=0)
    with pytest.raises(ValueError, match="out of range"):
        sanity.claims({0: _seed(0.0)}, top_layers=7)


def test_the_random_label_net_is_cached_under_its_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    torch.manual_seed(0)
    x = torch.rand(40, 1, 4, 4)
    y = torch.arange(40) % 4
    data = datasets.ImageData(x[:32], y[:32], x[32:], y[32:], ["a", "b", "c", "d"], "toy")
    info = {"settings": {"architecture": "mlp", "dataset": "toy"},
            "arguments": {"in_features": 16, "classes": 4, "hidden": [32]}}
    trained, first = sanity.random_label_model(info, data, lr=1e-2, max_epochs=30, seed=3,
                                               progress=False)
    cached, again = sanity.random_label_model(info, data, lr=1e-2, max_epochs=30, seed=3,
                                              progress=False)
    assert not first["from_cache"] and again["from_cache"]
    assert again["epochs"] == first["epochs"] and not cached.training
    for key, value in trained.state_dict().items():
        assert torch.equal(value.cpu(), cached.state_dict()[key].cpu())
    _, other = sanity.random_label_model(info, data, lr=1e-2, max_epochs=30, seed=4,
                                         progress=False)
    assert not other["from_cache"] and len(list(tmp_path.glob("random_labels-mlp-*.pt"))) == 2


# Neurons vs PCs (Dey et al.): a planted low-rank layer, the ablations' end points, the claims


def planted_low_rank(rank: int = 3, width: int = 48, classes: int = 4, seed: int = 0):
    """``rank`` independent sources of variances 9, 4, 1 (and so on) mixed by a random matrix
    into ``width`` neurons (the layer "0"), then a linear read-out: the layer's covariance is
    ``W diag(variances) W^T``, of rank ``rank``, its variance spread over every neuron."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(rank, width, bias=True), nn.Linear(width, classes)).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    scales = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.25][:rank])
    fit = torch.randn(2000, rank, generator=generator) * scales
    test = torch.randn(300, rank, generator=generator) * scales
    return model, fit, test, torch.randint(0, classes, (300,), generator=generator)


def test_a_planted_low_rank_layer_needs_its_rank_in_pcs_and_many_neurons():
    model, fit, test, labels = planted_low_rank()
    options = basis.ComparisonOptions(fraction=0.8, points=6, progress=False)
    (c,) = basis.compare_bases(model, fit, test, labels, ["0"], options).values()
    weights = model[0].weight.detach().double().numpy()
    covariance = np.cov(fit.double().numpy() @ weights.T, rowvar=False)   # rank 3
    eigenvalues = np.sort(np.linalg.eigvalsh(covariance))[::-1]
    needed = int(np.searchsorted(np.cumsum(eigenvalues) / eigenvalues.sum(), 0.8) + 1)
    variances = np.sort(covariance.diagonal())[::-1]
    neurons = int(np.searchsorted(np.cumsum(variances) / variances.sum(), 0.8) + 1)
    assert c.directions_needed == {"pca": needed, "neurons": neurons}
    assert needed <= 3 < 12 <= neurons            # the rank-ish number, against many neurons
    assert basis.direction_ratio(c) == needed / neurons < 0.5
    # the top 3 PCs span the layer's activations: keeping them is the original net
    curve = wb.ablation_curve(model, test, "0", c.bases["pca"], [3], progress=False)
    assert curve.agreement == [1.0]


def test_the_ablation_curves_end_at_the_original_net_and_at_the_mean():
    model, fit, test, labels = planted_low_rank()
    options = basis.ComparisonOptions(points=5, progress=False)
    (c,) = basis.compare_bases(model, fit, test, labels, ["0"], options).values()
    with torch.no_grad():
        original = model(test).argmax(1)
        class_of_mean = model[1](c.bases["pca"].mean.float()[None]).argmax(1)
    at_mean = (original == class_of_mean).double().mean().item()
    accuracy = (original == labels).double().mean().item()
    for kind in ("pca", "neurons"):
        kept = c.ablation[kind]
        assert (kept.ks[0], kept.ks[-1]) == (0, c.dimension)
        assert kept.accuracy[-1] == accuracy and kept.agreement[-1] == 1.0   # all kept
        assert kept.agreement[0] == at_mean                                  # none kept
        removed, values = basis.removal_series(c, kind)
        assert (removed[0], removed[-1]) == (0, c.dimension)
        assert values[0] == accuracy                                         # none removed
        agreement = basis.removal_series(c, kind, "agreement")[1]
        assert agreement[0] == 1.0 and agreement[-1] == at_mean              # all removed


def test_ablation_layers_must_be_among_the_layers_compared():
    model, fit, test, labels = planted_low_rank()
    options = basis.ComparisonOptions(ablation_layers=["1"], progress=False)
    with pytest.raises(ValueError, match=r"ablation_layers \['1'\] are not among"):
        basis.compare_bases(model, fit, test, labels, ["0"], options)
    (c,) = basis.compare_bases(model, fit, test, labels, ["0"], basis.ComparisonOptions(
        ablation_layers=[], progress=False)).values()
    assert c.ablation == {} and c.removal == {}


def _comparison(layer: str, needed: dict, kept: dict, kept_from_bottom: dict,
                dimension: int = 8, spatial=None) -> basis.LayerComparison:
    """A comparison with given counts and accuracy curves (ks 0, 1, 4, 8)."""
    ks = [0, 1, 4, 8]
    pca = wb.basis.Basis(layer, "pca", torch.eye(dimension, dtype=torch.float64),
                         torch.ones(dimension), torch.zeros(dimension), float(dimension),
                         spatial, (dimension,), 10)

    def curves(values: dict, keep: str, order: list[int]) -> dict:
        return {kind: wb.basis.AblationCurve(layer, kind, keep, "mean", order, v, v, 0.9, 10)
                for kind, v in values.items()}

    return basis.LayerComparison(layer, dimension, 10, 0.8, {"pca": pca, "neurons": pca},
                                 needed, {}, curves(kept, "top", ks),
                                 curves(kept_from_bottom, "bottom", [8, 7, 4, 0]))


def test_pc_advantage_is_the_mean_gap_over_the_inner_ks():
    c = _comparison("dense", {"pca": 2, "neurons": 6},
                    kept={"pca": [0.1, 0.6, 0.8, 0.9], "neurons": [0.1, 0.2, 0.5, 0.9]},
                    kept_from_bottom={"pca": [0.9, 0.3, 0.2, 0.1],
                                      "neurons": [0.9, 0.8, 0.6, 0.1]})
    assert basis.pc_advantage(c, "kept") == pytest.approx(((0.6 - 0.2) + (0.8 - 0.5)) / 2)
    # removed k = 1 and 4 are kept-from-bottom 7 and 4: neurons 0.8, 0.6 against PCs 0.3, 0.2
    assert basis.pc_advantage(c, "removed") == pytest.approx(((0.8 - 0.3) + (0.6 - 0.2)) / 2)
    assert basis.removal_series(c, "pca") == ([0, 1, 4, 8], [0.9, 0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="curves must be 'kept' or 'removed'"):
        basis.pc_advantage(c, "both")


def test_the_claims_read_each_seed_and_say_where_they_fail():
    def run(seed, dense_ratio_neurons, conv_gap):
        conv = _comparison("conv", {"pca": 2, "neurons": 3}, spatial="positions",
                           kept={"pca": [0.1, 0.5 + conv_gap, 0.7, 0.9],
                                 "neurons": [0.1, 0.5, 0.7, 0.9]},
                           kept_from_bottom={"pca": [0.9, 0.5, 0.4, 0.1],
                                             "neurons": [0.9, 0.5 + conv_gap, 0.4, 0.1]})
        dense = _comparison("dense", {"pca": 2, "neurons": dense_ratio_neurons},
                            kept={"pca": [0.1, 0.6, 0.8, 0.9], "neurons": [0.1, 0.2, 0.5, 0.9]},
                            kept_from_bottom={"pca": [0.9, 0.3, 0.2, 0.1],
                                              "neurons": [0.9, 0.8, 0.6, 0.1]})
        setting = basis.Setting(nn.Identity(), 0.9, torch.zeros(1), torch.zeros(1), None)
        return basis.SeedRun(seed, setting, {"conv": conv, "dense": dense})

    runs = [run(0, 20, -0.1), run(1, 22, -0.2), run(2, 25, -0.15)]
    made = {c.statement: c for c in basis.claims(runs, note="synthetic")}
    dense = made["far fewer PCs than neurons explain 80% of the variance of the first dense layer"]
    assert dense.values == (0.1, 2 / 22, 0.08) and dense.verdict == "holds"
    assert dense.quantity.endswith("dense") and dense.note == "synthetic"
    every = made["far fewer PCs than neurons explain 80% of the variance in every layer"]
    assert every.values == (2 / 3,) * 3 and every.verdict == "does not hold"  # the conv layer
    removed = "removing the top-k PCs damages accuracy more than removing the top-k neurons"
    assert made[f"{removed} (first dense layer)"].verdict == "holds"
    most = made[f"{removed}, in most layers"]     # the conv layer's gap is negative: 1 of 2
    assert most.values == (0.5, 0.5, 0.5) and most.agreeing == 0
    assert most.verdict == "inconclusive"         # at the threshold, not beyond it
    assert len(made) == 6


def test_seeded_subsets_differ_by_seed_and_keep_their_labels():
    inputs, labels = torch.arange(50.0)[:, None], torch.arange(50)
    first, first_labels = basis.seeded_subset(inputs, labels, 10, 0)
    again, _ = basis.seeded_subset(inputs, labels, 10, 0)
    other, _ = basis.seeded_subset(inputs, labels, 10, 1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(first[:, 0].long(), first_labels) and len(first.unique()) == 10
    assert len(basis.seeded_subset(inputs, None, 80, 0)[0]) == 50
    with pytest.raises(ValueError, match="n must be a positive integer"):
        basis.seeded_subset(inputs, labels, 0, 0)


def test_five_bases_over_seeds_compare_each_seed_at_its_pc_count():
    model = mlp(nn.ReLU, sizes=(8, 16, 12, 5))

    def setting(seed):
        generator = torch.Generator().manual_seed(seed)
        return basis.Setting(model, None, torch.randn(300, 8, generator=generator),
                             torch.randn(60, 8, generator=generator),
                             torch.randint(0, 5, (60,), generator=generator))

    runs = basis.compare_over_seeds(setting, [0, 1], ["1"], basis.ComparisonOptions(
        points=4, progress=False))
    rows = basis.kinds_over_seeds(runs, "1", ("pca", "neurons", "nmf"),
                                  {"nmf": wb.SampleOptions(max_iter=200)}, progress=False)
    assert [(row["seed"], row["kind"]) for row in rows] == [
        (s, kind) for s in (0, 1) for kind in ("pca", "neurons", "nmf")]
    for run in runs:
        k = run.comparisons["1"].directions_needed["pca"]
        fitted = {kind: run.comparisons["1"].bases[kind] for kind in ("pca", "neurons")}
        direct = basis.compare_kinds(model, fitted, run.setting.test_inputs,
                                     run.setting.test_labels, k, progress=False)
        mine = [row for row in rows if row["seed"] == run.seed and row["kind"] != "nmf"]
        assert [{**row, "seed": run.seed} for row in direct] == mine
    # the per-kind summary: the mean and Student's t interval over the seeds, per measure
    summary = {line["kind"]: line for line in basis.kinds_summary(rows)}
    assert list(summary) == ["pca", "neurons", "nmf"]
    values = [row["agreement"] for row in rows if row["kind"] == "pca"]
    mean, low, high = t_interval(values)
    assert summary["pca"]["agreement"] == f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    assert summary["pca"]["seeds"] == 2
    ks = [row["k"] for row in rows if row["kind"] == "pca"]
    assert summary["pca"]["k"] == (ks[0] if ks[0] == ks[1] else f"{ks[0]}, {ks[1]}")
    single = basis.kinds_summary([row for row in rows if row["seed"] == 0])
    assert single[0]["variance_explained"] == f"{rows[0]['variance_explained']:.3f}"
    with pytest.raises(ValueError, match="layer '0' was not compared; compared layers: \\['1'\\]"):
        basis.kinds_over_seeds(runs, "0", ("pca",), progress=False)


def test_nmf_is_offered_only_for_layers_without_negative_activations():
    model = mlp(nn.ReLU, sizes=(8, 16, 12, 5))  # "0": a linear layer, "1": its ReLU
    setting = basis.Setting(model, None, torch.randn(100, 8), torch.randn(20, 8), None)
    run = basis.SeedRun(0, setting, {})
    assert basis.applicable_kinds(run, "1") == list(wb_bases.KINDS)
    assert "nmf" not in basis.applicable_kinds(run, "0")


def test_the_focus_layers_name_the_zoo_models_and_default_to_every_layer():
    chosen = ["a", "b", "c"]
    assert basis.focus_layers("auto", "photos_vgg", chosen, "ablation") == [
        "features.relu2_2", "features.relu3_2", "classifier.relu1"]
    assert basis.focus_layers("auto", "photos_vit", chosen, "gallery") == [
        "encoder.layers.encoder_layer_3.mlp.1", "encoder.layers.encoder_layer_3"]
    assert basis.focus_layers("auto", "digits_cnn_relu", chosen, "ablation") == chosen
    assert basis.focus_layers("b, c", "photos_vgg", chosen, "gallery") == ["b", "c"]
    assert basis.focus_layers("", "photos_vgg", chosen, "gallery") == chosen
    with pytest.raises(ValueError, match="purpose"):
        basis.focus_layers("auto", "photos_vgg", chosen, "kinds")


def test_the_zoo_vision_transformer_is_compared_on_its_residual_stream_and_mlp():
    """Notebook 04's ViT choice: every block's output and MLP hidden layer, sampled per token
    with the features last; the five-basis layer is the last block's output (no dense layer)."""
    model, _ = wb_models.zoo("photos_vit", progress=False)
    data = wb_models.zoo_data("photos_vit")
    setting = basis.Setting(model, None, data.x_train[:200], data.x_test[:40], data.y_test[:40])
    layers = basis.default_layers(model)
    runs = basis.compare_over_seeds(lambda seed: setting, [0], layers, basis.ComparisonOptions(
        points=3, ablation_layers=layers[-1:], progress=False))
    comparisons = runs[0].comparisons
    assert {c.bases["pca"].spatial for c in comparisons.values()} == {"tokens"}
    assert comparisons[layers[-1]].dimension == 64 and comparisons[layers[-2]].dimension == 128
    assert basis.first_dense_layer(comparisons) is None
    assert basis.kinds_default_layer(comparisons) == layers[-1]
    for comparison in comparisons.values():  # Ky Fan: PCs never need more directions
        assert comparison.directions_needed["pca"] <= comparison.directions_needed["neurons"]


def test_a_transformer_is_re_initialised_layer_by_layer_and_its_claims_read_the_cascade():
    """Notebook 03's transformer part: ``transformer_init`` re-draws attention projections
    (``_reset_parameters``) and a class token (no reset method); rollout ignores the head."""
    from workbench.experiments import sanity_transformer
    from workbench.randomization import summarize

    vit = wb_models.vit(3, 4, 16, patch=8, depth=1, width=16, heads=2, mlp_width=16,
                        seed=0).eval()
    torch.nn.init.normal_(vit.heads.head.weight)  # torchvision starts it at zero (no gradient)
    attention = vit.encoder.layers[0].self_attention
    before = attention.in_proj_weight.detach().clone()
    torch.manual_seed(1)
    sanity_transformer.transformer_init(attention)
    assert not torch.equal(before, attention.in_proj_weight)
    sanity_transformer.transformer_init(vit)  # the root: its class token, drawn at std 0.02
    token = vit.class_token.detach()
    assert token.abs().max() > 0 and token.abs().max() <= 0.04
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    methods = {label: spec for label, spec in sanity_transformer.transformer_methods(4).items()
               if label in ("Gradient", "Attention rollout")}
    table = wb.sanity_check(vit, images, methods, mode="cascading",
                            metrics=(sanity.CLAIM_METRIC,), target=torch.tensor([0, 1, 2]),
                            seed=0, init=sanity_transformer.transformer_init,
                            edge_baseline=False, progress=False)
    made = sanity_transformer.claims({0: summarize(table)})
    assert [c.statement.split(" ")[0] for c in made] == ["Gradient", "Attention", "Attention"]
    assert made[-1].values[0] == pytest.approx(1.0, abs=1e-12)  # head re-drawn: rollout unchanged
    with pytest.raises(ValueError, match="at least one seed"):
        sanity_transformer.claims({})


# -- transformers (notebook 06) ----------------------------------------------------------------


def _transformer_result(seed: int, faithfulness: dict[str, list[float]]):
    return transformers.SeedResult(seed, 0.9, torch.zeros(1), torch.zeros(1), {}, {},
                                   faithfulness, [])


def test_transformer_claims_are_the_papers_ordering_of_mean_faithfulness():
    labels = list(transformers.METHODS)
    results = [_transformer_result(seed, {label: [10.0 - i + seed, 10.0 - i - seed]
                                          for i, label in enumerate(labels)})
               for seed in (0, 1, 2)]
    claims = transformers.claims(results)
    assert [c.statement for c in claims] == [f"{a} is more faithful than {b}"
                                             for a, b in transformers.ORDERING]
    expected = {(a, b): labels.index(b) - labels.index(a) for a, b in transformers.ORDERING}
    for claim, pair in zip(claims, transformers.ORDERING):
        assert claim.values == (expected[pair],) * 3 and claim.verdict == "holds"
    results[1].faithfulness["CP-LRP"] = [20.0, 20.0]  # CP-LRP ahead on one seed
    assert transformers.claims(results)[0].verdict == "inconclusive"
    table = transformers.faithfulness_table(results)
    assert table["method"].iloc[0] == "CP-LRP" and list(table.columns)[-1] == "mean"


def test_transformer_seed_measures_region_perturbation_of_each_method():
    protocol = transformers.Protocol(images=2, ig_steps=2)
    methods = {k: transformers.METHODS[k] for k in ("AttnLRP", "Attention rollout")}
    result = transformers.run_seed(0, protocol, methods, progress=False)
    model, _ = wb_models.zoo("photos_vit", progress=False)
    with torch.no_grad():
        logits = model(result.images)
    assert torch.equal(result.targets, logits.argmax(1))
    start = float(logits.max(1).values.mean())
    for label in methods:
        assert result.maps[label].shape == result.images.shape
        curves = result.curves[label]
        assert len(curves["most_relevant_first"]) == 8 * 8 + 1  # every 4-pixel patch
        assert curves["most_relevant_first"][0] == pytest.approx(start)
        assert curves["least_relevant_first"][0] == pytest.approx(start)
        # the last step replaced every patch in either order: the same image
        assert curves["most_relevant_first"][-1] == pytest.approx(
            curves["least_relevant_first"][-1])
        assert len(result.faithfulness[label]) == 2
        # A_LeRF - A_MoRF per image; areas are linear in the curve: their mean is the mean
        # curves' difference
        assert np.mean(result.faithfulness[label]) == pytest.approx(
            _area(curves["least_relevant_first"]) - _area(curves["most_relevant_first"]))


def _area(curve):
    return (sum(curve[1:-1]) + (curve[0] + curve[-1]) / 2) / (len(curve) - 1)


def test_transformer_images_are_a_seeded_draw_of_test_images():
    from types import SimpleNamespace

    data = SimpleNamespace(x_test=torch.arange(10.0)[:, None])
    first = transformers.explained_images(data, 4, 1)
    assert torch.equal(first, transformers.explained_images(data, 4, 1))
    assert len(set(first[:, 0].tolist())) == 4
    assert not torch.equal(first, transformers.explained_images(data, 4, 2))
    with pytest.raises(ValueError, match="images must be in"):
        transformers.explained_images(data, 0, 0)
