"""PatternNet / PatternAttribution on the linear toy, where the right answer is known
(Kindermans et al. 2018), the two-component estimator on ReLU nets against the paper's
equations, and the pattern statistics against independent computations."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.patterns import gather_moments
from workbench.toy import fit_linear_model, make_linear_toy


def _cosine(a, b):
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


@pytest.fixture(scope="module")
def toy():
    return make_linear_toy(4000, 10, noise=0.05, seed=0)


@pytest.fixture(scope="module")
def held_out(toy):
    """New samples with the same signal and distractor directions."""
    return make_linear_toy(4000, 10, signal=toy.signal_direction,
                           distractor=toy.distractor_direction, noise=0.05, seed=1)


def test_gradient_deconvnet_and_guided_backprop_return_the_filter_not_the_signal(toy):
    model = fit_linear_model(toy)
    w = model.weight.detach()[0]
    assert abs(_cosine(w, toy.distractor_direction)) < 0.05  # the filter cancels the distractor
    assert _cosine(w, toy.signal_direction) < 0.99
    x = toy.x[:50]
    for method in ("gradient", "deconvnet", "guided_backprop"):
        attribution = wb.attribute(model, x, method, target=0)
        assert all(_cosine(row, w) > 0.999999 for row in attribution), method


def test_pattern_net_recovers_the_signal(toy, held_out):
    model = fit_linear_model(toy)
    patterns = wb.fit_patterns(model, toy.x, estimator="a", progress=False)
    x = held_out.x[:200]
    signal = wb.attribute(model, x, "pattern_net", target=0, patterns=patterns)
    assert _cosine(signal, held_out.signal[:200]) >= 0.99
    assert _cosine(patterns.layers[""].positive[0], toy.signal_direction) >= 0.99


def test_pattern_attribution_on_a_linear_model_is_weight_times_pattern_times_output(toy):
    model = fit_linear_model(toy)
    patterns = wb.fit_patterns(model, toy.x, estimator="a", progress=False)
    x = toy.x[:7]
    relevance = wb.attribute(model, x, "pattern_attribution", target=0, patterns=patterns)
    expected = model(x).detach() * model.weight.detach() * patterns.layers[""].positive
    torch.testing.assert_close(relevance, expected)


def test_signal_quality_ranks_the_estimators(toy, held_out):
    model = fit_linear_model(toy)
    rho = {estimator: wb.signal_quality(
        model, held_out.x, wb.fit_patterns(model, toy.x, estimator=estimator, progress=False),
        progress=False)[""] for estimator in ("x", "w", "a", "random")}
    assert rho["a"] > 0.97
    assert rho["w"] < rho["a"] - 0.2 and rho["random"] < rho["a"] - 0.2
    assert torch.isnan(torch.tensor(rho["x"]))  # S_x leaves no distractor: undefined


def test_the_filter_estimator_is_each_neurons_filter_over_its_squared_norm():
    """``S_w(x) = w y / (w^T w)``: each neuron's pattern is its own filter ``w / (w^T w)``, so
    ``w^T a = 1`` (section 4), in every layer, the first layer's 5 neurons included."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval()
    patterns = wb.fit_patterns(model, torch.randn(50, 4, dtype=torch.float64), "w",
                               progress=False)
    for name in ("0", "2"):
        weight = model.get_submodule(name).weight.detach()
        expected = weight / (weight * weight).sum(1, keepdim=True)
        torch.testing.assert_close(patterns.layers[name].positive, expected)
        torch.testing.assert_close(patterns.layers[name].negative, expected)
        torch.testing.assert_close((weight * expected).sum(1),
                                   torch.ones(len(weight), dtype=torch.float64))


def test_the_papers_two_dimensional_example():
    """a_s = (1, 0), a_d = (1, 1): the filter is w = (1, -1), the pattern a = a_s."""
    toy = make_linear_toy(5000, 2, signal=(1.0, 0.0), distractor=(1.0, 1.0), seed=3)
    model = fit_linear_model(toy)
    torch.testing.assert_close(model.weight.detach()[0], torch.tensor([1.0, -1.0]).double(),
                               atol=1e-8, rtol=0)
    patterns = wb.fit_patterns(model, toy.x, estimator="a", progress=False)
    torch.testing.assert_close(patterns.layers[""].positive[0], torch.tensor([1.0, 0.0]).double(),
                               atol=0.05, rtol=0)
    gradient = wb.attribute(model, toy.x[:3], "gradient", target=0)
    torch.testing.assert_close(gradient, torch.tensor([[1.0, -1.0]]).double().expand(3, 2))


def relu_net_on_the_toy(held_out_samples: int):
    """A 2-layer ReLU net trained on the linear toy, the toy, and held-out toy data."""
    toy = make_linear_toy(6000, 8, noise=0.1, seed=4)
    held_out = make_linear_toy(held_out_samples, 8, signal=toy.signal_direction,
                               distractor=toy.distractor_direction, noise=0.1, seed=5)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        optimizer.zero_grad()
        loss = F.mse_loss(model(toy.x)[:, 0], toy.y)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    return model.eval(), toy, held_out


def test_regime_patterns_score_at_least_as_high_on_a_relu_layer():
    """A 2-layer ReLU net on toy data: S_a+- fits the ReLU layer at least as well as S_a."""
    model, toy, held_out = relu_net_on_the_toy(6000)
    rho = {estimator: wb.signal_quality(
        model, held_out.x, wb.fit_patterns(model, toy.x, estimator=estimator, progress=False),
        progress=False)["0"] for estimator in ("a", "a+-")}
    assert rho["a+-"] >= rho["a"] - 1e-6


def test_streaming_fit_equals_one_batch_and_any_batching():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 4)).double().eval()
    x = torch.randn(90, 2, 6, 6, dtype=torch.float64)
    whole = wb.fit_patterns(model, x, batch_size=1000, progress=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(90)),
                                         batch_size=7)
    streamed = wb.fit_patterns(model, loader, progress=False)
    for name in whole.layers:
        torch.testing.assert_close(streamed.layers[name].positive, whole.layers[name].positive,
                                   rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(streamed.layers[name].negative, whole.layers[name].negative,
                                   rtol=1e-10, atol=1e-12)


def test_moments_do_not_depend_on_how_the_rows_are_chunked(monkeypatch):
    """Chunks of a few samples' rows (the memory bound of a 224-pixel conv layer) sum to the
    moments of the whole batch in one piece, second moment and feature subset included."""
    from workbench import patterns

    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 4)).double().eval()
    x = torch.randn(20, 2, 6, 6, dtype=torch.float64)
    whole = gather_moments(model, x, second_moment=True, max_features=50, progress=False)[0]
    sizes = []
    real_update = patterns.Moments.update

    def counting_update(self, rows, matrix, bias):
        sizes.append(rows.numel())
        return real_update(self, rows, matrix, bias)

    monkeypatch.setattr(patterns, "ROW_CHUNK_VALUES", 18 * 36 * 3)  # 3 images of conv rows
    monkeypatch.setattr(patterns.Moments, "update", counting_update)
    chunked = gather_moments(model, x, second_moment=True, max_features=50, progress=False)[0]
    assert max(sizes) <= 18 * 36 * 3 and len(sizes) > 2
    for layer in whole:
        assert chunked[layer].count == whole[layer].count
        for name in patterns._SUMS:
            torch.testing.assert_close(getattr(chunked[layer], name),
                                       getattr(whole[layer], name), rtol=1e-12, atol=1e-10)


def test_conv_patterns_use_every_position_like_a_linear_layer_on_patches():
    """A conv whose kernel covers the whole input has one position: it is a Linear layer."""
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 4).double()
    linear = nn.Linear(2 * 4 * 4, 3).double()
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(3, -1))
        linear.bias.copy_(conv.bias)
    x = torch.randn(300, 2, 4, 4, dtype=torch.float64)
    for estimator in ("a", "a+-"):
        conv_patterns = wb.fit_patterns(nn.Sequential(conv, nn.Flatten()), x, estimator,
                                        progress=False).layers["0"]
        linear_patterns = wb.fit_patterns(nn.Sequential(nn.Flatten(), linear), x, estimator,
                                          progress=False).layers["1"]
        torch.testing.assert_close(conv_patterns.positive.reshape(3, -1),
                                   linear_patterns.positive)
        torch.testing.assert_close(conv_patterns.negative.reshape(3, -1),
                                   linear_patterns.negative)


def test_conv_patterns_match_a_regression_on_unfolded_patches():
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 3, 3, padding=1, stride=2).double()
    x = torch.randn(40, 2, 7, 7, dtype=torch.float64)
    patterns = wb.fit_patterns(nn.Sequential(conv, nn.Flatten()), x, "a", progress=False)
    patches = F.unfold(x, 3, padding=1, stride=2).transpose(1, 2).reshape(-1, 18)
    y = patches @ conv.weight.detach().reshape(3, -1).T
    covariance = ((patches - patches.mean(0)).T @ (y - y.mean(0))) / len(y)
    expected = (covariance / (conv.weight.detach().reshape(3, -1).T * covariance).sum(0)).T
    torch.testing.assert_close(patterns.layers["0"].positive.reshape(3, -1), expected)


def test_batch_norm_is_merged_before_fitting():
    torch.manual_seed(3)
    conv, bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)
    bn.weight.data.uniform_(0.5, 2)
    bn.running_var.uniform_(0.5, 2)
    bn.running_mean.normal_()
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten()).double().eval()
    fused = copy.deepcopy(conv).double()
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
    fused.weight.data = fused.weight.data * scale.view(-1, 1, 1, 1)
    fused.bias.data = (fused.bias.data - bn.running_mean.double()) * scale + bn.bias.data.double()
    x = torch.randn(50, 2, 5, 5, dtype=torch.float64)
    merged = wb.fit_patterns(model, x, "a+-", progress=False).layers["0"]
    reference = wb.fit_patterns(nn.Sequential(fused, nn.ReLU(), nn.Flatten()), x, "a+-",
                                progress=False).layers["0"]
    torch.testing.assert_close(merged.positive, reference.positive)
    torch.testing.assert_close(merged.negative, reference.negative)


def test_save_and_load_check_the_model(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    patterns = wb.fit_patterns(model, torch.randn(64, 4), progress=False)
    patterns.save(tmp_path / "patterns.pt")
    loaded = wb.Patterns.load(tmp_path / "patterns.pt", model)
    assert loaded.estimator == "a+-" and set(loaded.layers) == {"0", "2"}
    torch.testing.assert_close(loaded.layers["2"].positive, patterns.layers["2"].positive)
    other = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    with pytest.raises(ValueError, match="layer '2' has shape"):
        wb.Patterns.load(tmp_path / "patterns.pt", other)
    with pytest.raises(ValueError, match=r"layers \['2'\] that the model does not have"):
        wb.Patterns.load(tmp_path / "patterns.pt", nn.Sequential(nn.Flatten()))


def test_pattern_methods_need_patterns():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="needs option patterns=wb.fit_patterns"):
        wb.attribute(model, torch.randn(2, 4), "pattern_net", target=0)
    with pytest.raises(ValueError, match="estimator 'x'"):
        wb.attribute(model, torch.randn(2, 4), "pattern_attribution", target=0,
                     patterns=wb.fit_patterns(model, torch.randn(8, 4), "x", progress=False))
    with pytest.raises(ValueError, match="estimator must be one of"):
        wb.fit_patterns(model, torch.randn(8, 4), "s_a")


def _correlated_inputs(samples: int, features: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(features, features, generator=generator, dtype=torch.float64)
    return torch.randn(samples, features, generator=generator, dtype=torch.float64) @ mixing


@pytest.mark.parametrize("estimator", ["w", "random"])  # distractors that carry the output
def test_rho_of_a_layer_too_wide_for_its_second_moment_is_an_optimistic_bound(estimator):
    """Over ``max_features`` inputs ``rho`` maximises the distractor's correlation over a random
    subset of the input features: on a layer where the exact value is computable it is never
    lower than the exact one (beyond sampling noise), and equal to it with every feature."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    x = _correlated_inputs(40_000, 24)
    patterns = wb.fit_patterns(model, x, estimator, progress=False)
    exact = wb.signal_quality(model, x, patterns, progress=False, per_neuron=True)["0"]
    subset = wb.signal_quality(model, x, patterns, progress=False, per_neuron=True,
                               max_features=12)["0"]
    assert torch.isfinite(subset).all() and ((subset >= 0) & (subset <= 1)).all()
    assert (subset >= exact - 0.01).all(), (subset, exact)
    assert (subset - exact).max() > 0.01  # half the features: the bound is not the exact value
    again = wb.signal_quality(model, x, patterns, progress=False, per_neuron=True,
                              max_features=12)["0"]
    torch.testing.assert_close(again, subset, rtol=0, atol=0)  # seeded subset
    other = wb.signal_quality(model, x, patterns, progress=False, per_neuron=True,
                              max_features=12, seed=1)["0"]
    assert not torch.equal(other, subset)


def test_the_feature_subset_of_a_wide_layer_is_the_same_in_both_halves():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 3)).double()
    x = torch.randn(64, 10, dtype=torch.float64)
    first, second = gather_moments(model, x, folds=2, second_moment=True, max_features=4,
                                   progress=False)
    assert torch.equal(first["0"].features, second["0"].features)
    assert first["0"].sum_xx.shape == (4, 4)
    kept = x[0::2][:, first["0"].features]
    torch.testing.assert_close(first["0"].sum_xx, kept.T @ kept)


# ----------------------------------------------------------------------------------------------
# The two-component estimator S_a+- on ReLU networks, against computations from the paper's
# equations (Kindermans et al. 2018, arXiv 1705.05598, sections 4.2-5), written out in float64


def _linear_layers(model: nn.Sequential) -> list[tuple[str, nn.Linear]]:
    return [(name, module) for name, module in model.named_children()
            if isinstance(module, nn.Linear)]


def _layer_inputs(model: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input of every Linear layer of a Sequential, by layer name."""
    inputs, h = {}, x
    with torch.no_grad():
        for name, module in model.named_children():
            if isinstance(module, nn.Linear):
                inputs[name] = h
            h = module(h)
    return inputs


def _regime_patterns(x: torch.Tensor, layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """``a_+`` and ``a_-`` of every neuron (rows): with ``y = w^T x`` and the regime
    ``w^T x + b > 0``, ``a_+- = (E_+-[x y] - E_+-[x] E[y]) / (w^T E_+-[x y] - w^T E_+-[x] E[y])``
    (section 4.2), ``E_+-`` over the samples of the regime; zero for a regime with no sample."""
    w, b = layer.weight.detach(), layer.bias.detach()
    y = x @ w.T
    mean_y = y.mean(0)
    patterns = []
    for regime in ((y + b) > 0, (y + b) <= 0):
        mask = regime.double()
        count = mask.sum(0)
        mean_x = (x.T @ mask) / count.clamp(min=1)                 # (d, out)
        mean_xy = (x.T @ (mask * y)) / count.clamp(min=1)          # (d, out)
        covariance = mean_xy - mean_x * mean_y
        pattern = covariance / (w.T * covariance).sum(0)
        patterns.append(torch.where(count > 0, pattern, torch.zeros_like(pattern)).T)
    return patterns[0], patterns[1]


def _pattern_backward(model: nn.Sequential, x: torch.Tensor, target: torch.Tensor,
                      backward_weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """PatternNet's and PatternAttribution's backward pass (section 5), layer by layer: the
    output ``y_t`` at the target, through each weighted layer ``r_in = B^T r_out`` with ``B``
    the layer's backward weight (the patterns, or the weights times the patterns), through each
    ReLU ``r_z = 1[z > 0] r_out`` as in the gradient."""
    with torch.no_grad():
        pre_activations, h = [], x
        for module in model:
            if isinstance(module, nn.ReLU):
                pre_activations.append(h)
            h = module(h)
        signal = torch.zeros_like(h)
        signal[torch.arange(len(x)), target] = h[torch.arange(len(x)), target]
        for name, module in reversed(list(model.named_children())):
            if isinstance(module, nn.Linear):
                signal = signal @ backward_weights[name]
            else:
                signal = signal * (pre_activations.pop() > 0)
    return signal


@pytest.fixture(scope="module")
def relu_mlp():
    """A seeded ReLU MLP whose neurons (the target outputs 1 and 2 included) are active on some
    samples of the data and inactive on others, so that ``a_+`` and ``a_-`` differ."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(),
                          nn.Linear(5, 3)).double().eval()
    x = torch.randn(2000, 6, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64) + 0.5
    return model, x


def test_two_component_patterns_match_the_regime_regressions(relu_mlp):
    model, x = relu_mlp
    patterns = wb.fit_patterns(model, x, "a+-", progress=False)
    inputs = _layer_inputs(model, x)
    for name, layer in _linear_layers(model):
        positive, negative = _regime_patterns(inputs[name], layer)
        torch.testing.assert_close(patterns.layers[name].positive, positive)
        torch.testing.assert_close(patterns.layers[name].negative, negative)
        assert (positive - negative).abs().max() > 0.5 * positive.abs().max()


@pytest.mark.parametrize("method", ["pattern_net", "pattern_attribution"])
def test_two_component_pattern_methods_backpropagate_with_the_positive_pattern(relu_mlp, method):
    """On a ReLU net only the active regime passes the ReLU, so both methods use ``a_+``
    (section 5); the same pass with ``a_-`` gives another answer on this net."""
    model, x = relu_mlp
    patterns = wb.fit_patterns(model, x, "a+-", progress=False)
    inputs = _layer_inputs(model, x)
    samples = x[:12]
    target = torch.tensor([1, 2] * 6)
    passes = {}
    for regime in (0, 1):
        weights = {}
        for name, layer in _linear_layers(model):
            pattern = _regime_patterns(inputs[name], layer)[regime]
            weights[name] = (pattern if method == "pattern_net"
                             else layer.weight.detach() * pattern)
        passes[regime] = _pattern_backward(model, samples, target, weights)
    result = wb.attribute(model, samples, method, target=target, patterns=patterns)
    torch.testing.assert_close(result, passes[0])
    assert (passes[1] - passes[0]).abs().max() > 0.5 * passes[0].abs().max()


@pytest.fixture(scope="module")
def trained_relu_net():
    """A 2-layer ReLU net trained on the linear toy, its fitting data and noisy held-out data."""
    model, toy, held_out = relu_net_on_the_toy(400)
    return model, toy.x, held_out.x


def _cross_fitted_correlations(x: torch.Tensor, layer: nn.Linear, positive: torch.Tensor,
                               negative: torch.Tensor) -> torch.Tensor:
    """``corr(y, v^T d)`` per neuron (rows) and direction (columns: fit on the even samples and
    measure on the odd ones, then the reverse), from the samples: ``d = x - a_+- y``, ``v`` the
    least-squares regression (with intercept) of ``y`` on ``d``; not clamped."""
    w, b = layer.weight.detach(), layer.bias.detach()
    y = x @ w.T
    active = (y + b) > 0
    folds = (slice(0, None, 2), slice(1, None, 2))
    correlations = torch.empty(len(w), 2, dtype=torch.float64)
    for j in range(len(w)):
        signal = torch.where(active[:, j:j + 1], y[:, j:j + 1] * positive[j],
                             y[:, j:j + 1] * negative[j])
        distractor = x - signal
        for k, (fit, evaluate) in enumerate((folds, folds[::-1])):
            d, target = distractor[fit], y[fit, j]
            v = torch.linalg.lstsq(d - d.mean(0), (target - target.mean())[:, None],
                                   driver="gelsd").solution[:, 0]
            correlations[j, k] = torch.corrcoef(torch.stack([distractor[evaluate] @ v,
                                                             y[evaluate, j]]))[0, 1]
    return correlations


@pytest.mark.parametrize("estimator", ["a", "a+-"])
def test_signal_quality_per_neuron_is_one_minus_the_clamped_cross_fitted_correlation(
        trained_relu_net, estimator):
    """``rho = 1 - corr`` with the correlation clamped to [0, 1] (a negative held-out
    correlation means no information left in the distractor): ``rho`` lies in [0, 1]. On this
    held-out data some neurons' cross-fitted correlations are negative, so the lower clamp
    matters."""
    model, fitting_data, held_out = trained_relu_net
    patterns = wb.fit_patterns(model, fitting_data, estimator, progress=False)
    rho = wb.signal_quality(model, held_out, patterns, progress=False, per_neuron=True,
                            batch_size=len(held_out))
    inputs = _layer_inputs(model, held_out)
    negative_seen = False
    for name, layer in _linear_layers(model):
        pattern = patterns.layers[name]
        correlations = _cross_fitted_correlations(inputs[name], layer, pattern.positive,
                                                  pattern.negative)
        negative_seen = negative_seen or bool((correlations < 0).any())
        expected = 1 - correlations.clamp(0, 1).mean(1)
        assert ((rho[name] >= 0) & (rho[name] <= 1)).all(), name
        torch.testing.assert_close(rho[name], expected, atol=1e-6, rtol=0)
    assert negative_seen
