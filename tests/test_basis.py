"""Neuron and PCA bases of a layer (Dey et al.): the statistics against numpy, the completeness
measures, the function test, and the model left as it was."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import workbench as wb
from conftest import cnn, mlp
from workbench import basis as bases

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tanh_net():
    return mlp(nn.Tanh, sizes=(8, 16, 12, 5))


@pytest.fixture(scope="module")
def vectors():
    return torch.randn(300, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def conv_net():
    return cnn(nn.ReLU)


@pytest.fixture(scope="module")
def images():
    return torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# Statistics and PCA against numpy


def test_pca_matches_numpys_eigendecomposition(tanh_net, vectors):
    rows = tanh_net[:2](vectors).detach().double().numpy()            # the Tanh's output
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(rows, rowvar=False))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    basis = wb.fit_basis(tanh_net, vectors, "1", kind="pca", progress=False)
    np.testing.assert_allclose(basis.variances.numpy(), eigenvalues, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(basis.mean.numpy(), rows.mean(0), rtol=1e-12, atol=1e-14)
    # the same directions up to sign, orthonormal
    alignment = np.abs(basis.directions.numpy() @ eigenvectors)
    np.testing.assert_allclose(np.diag(alignment), 1.0, atol=1e-8)
    np.testing.assert_allclose(basis.directions @ basis.directions.T, np.eye(16), atol=1e-12)
    # sign convention: each direction's largest component is positive
    largest = basis.directions.abs().argmax(1)
    assert (basis.directions[torch.arange(16), largest] > 0).all()
    assert basis.total_variance == pytest.approx(np.trace(np.cov(rows, rowvar=False)), rel=1e-12)


def test_streaming_over_batches_equals_one_pass(tanh_net, vectors):
    one_pass = wb.activations(tanh_net, vectors, ["1"], batch_size=10_000, progress=False)["1"]
    labels = torch.zeros(len(vectors), dtype=torch.int64)
    streams = {
        "tensor in batches of 37": vectors,
        "DataLoader of (inputs, labels)": DataLoader(TensorDataset(vectors, labels),
                                                     batch_size=64),
        "list of tensors": list(vectors.split(50)),
    }
    for name, data in streams.items():
        streamed = wb.activations(tanh_net, data, ["1"], batch_size=37, progress=False)["1"]
        assert streamed.count == one_pass.count == len(vectors), name
        torch.testing.assert_close(streamed.mean, one_pass.mean, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(streamed.covariance, one_pass.covariance, rtol=1e-10,
                                   atol=1e-14)


def test_merging_in_small_chunks_equals_numpys_covariance():
    rows = torch.randn(500, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    rows = rows * 3 + 100                       # a mean far from zero: no cancellation allowed
    statistics = bases.ActivationStatistics("layer", None, (5,))
    statistics.update(rows[:123], chunk=7)
    statistics.update(rows[123:], chunk=1000)
    np.testing.assert_allclose(statistics.covariance.numpy(), np.cov(rows.numpy(), rowvar=False),
                               rtol=1e-12, atol=1e-12)


def test_several_layers_in_one_pass_and_layer_given_as_module(tanh_net, vectors):
    statistics = wb.activations(tanh_net, vectors, ["1", tanh_net[3], "3"], progress=False)
    assert list(statistics) == ["1", "3"]
    rows = tanh_net[:4](vectors).detach().double().numpy()
    np.testing.assert_allclose(statistics["3"].covariance.numpy(), np.cov(rows, rowvar=False),
                               rtol=1e-10, atol=1e-14)


def test_conv_positions_and_pooled_covariances_are_the_hand_computed_ones(conv_net, images):
    output = conv_net[:2](images).detach().double()                     # (64, 6, 8, 8)
    by_position = output.permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    pooled = output.mean((2, 3)).numpy()
    # one batch: the same float32 forward pass as the reference (batching is tested above)
    statistics = {spatial: wb.activations(conv_net, images, "1", spatial=spatial,
                                          progress=False)["1"]
                  for spatial in ("positions", "pooled")}
    assert statistics["positions"].count == 64 * 8 * 8 and statistics["pooled"].count == 64
    assert statistics["positions"].feature_shape == (6, 8, 8)
    for spatial, rows in (("positions", by_position), ("pooled", pooled)):
        np.testing.assert_allclose(statistics[spatial].covariance.numpy(),
                                   np.cov(rows, rowvar=False), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(statistics[spatial].mean.numpy(), rows.mean(0), rtol=1e-10)


# ----------------------------------------------------------------------------------------------
# Completeness: variance explained


@pytest.mark.parametrize("layer, spatial", [("1", "positions"), ("1", "pooled"), ("7", None)])
def test_pcs_explain_at_least_as_much_variance_as_neurons_for_every_k(conv_net, images, layer,
                                                                      spatial):
    (statistics,) = wb.activations(conv_net, images, layer, spatial=spatial or "positions",
                                   progress=False).values()
    pca = bases.basis_from_statistics(statistics, "pca")
    neurons = bases.basis_from_statistics(statistics, "neurons")
    d = pca.dimension
    pca_curve = [wb.variance_explained(pca, k) for k in range(d + 1)]
    neuron_curve = [wb.variance_explained(neurons, k) for k in range(d + 1)]
    assert pca_curve[0] == neuron_curve[0] == 0
    assert all(p >= n - 1e-12 for p, n in zip(pca_curve, neuron_curve, strict=True))
    assert pca_curve[d] == pytest.approx(1, abs=1e-12)
    assert neuron_curve[d] == pytest.approx(1, abs=1e-12)
    assert all(b >= a for a, b in itertools.pairwise(pca_curve))
    # the neuron basis: the top-k neuron variances (diagonal of the covariance) over the trace
    diagonal = np.sort(np.diag(statistics.covariance.numpy()))[::-1]
    expected = np.concatenate([[0], np.cumsum(diagonal)]) / diagonal.sum()
    np.testing.assert_allclose(neuron_curve, expected, atol=1e-12)
    np.testing.assert_allclose(bases.cumulative_variance_explained(pca).numpy(), pca_curve,
                               atol=1e-12)
    k80 = bases.directions_for_variance(pca, 0.8)
    assert pca_curve[k80] >= 0.8 > pca_curve[k80 - 1]


# ----------------------------------------------------------------------------------------------
# The function test


def test_restriction_keeps_the_top_neurons_and_sets_the_others_to_their_mean(conv_net, images):
    basis = wb.fit_basis(conv_net, images, "1", kind="neurons", progress=False)
    output = conv_net[:2](images).detach()
    restricted = bases.restrict(output, basis, torch.arange(2))
    top = basis.neurons[:2]
    rest = basis.neurons[2:]
    torch.testing.assert_close(restricted[:, top], output[:, top])
    expected = basis.mean[rest].float()[None, :, None, None].expand(64, -1, 8, 8)
    torch.testing.assert_close(restricted[:, rest], expected)


def test_pca_restriction_is_the_projection_around_the_mean(tanh_net, vectors):
    basis = wb.fit_basis(tanh_net, vectors, "1", kind="pca", progress=False)
    output = tanh_net[:2](vectors).detach().double()
    restricted = bases.restrict(output, basis, torch.arange(3))
    # what is left of (a - mean) lies in the span of the top 3 PCs and keeps their coordinates
    residual = restricted - basis.mean
    torch.testing.assert_close(residual @ basis.directions[3:].T, torch.zeros(300, 13),
                               atol=1e-12, rtol=0, check_dtype=False)
    torch.testing.assert_close(residual @ basis.directions[:3].T,
                               (output - basis.mean) @ basis.directions[:3].T)


@pytest.mark.parametrize("kind", ["pca", "neurons"])
@pytest.mark.parametrize("layer", ["1", "4"])
def test_ablation_at_full_k_reproduces_the_original_accuracy(conv_net, images, kind, layer):
    labels = torch.randint(0, 4, (len(images),), generator=torch.Generator().manual_seed(2))
    basis = wb.fit_basis(conv_net, images, layer, kind=kind, progress=False)
    d = basis.dimension
    curve = wb.ablation_curve(conv_net, images, layer, basis, [0, 1, d], labels=labels,
                              batch_size=25, progress=False)
    with torch.no_grad():
        original = conv_net(images).argmax(1)
    assert curve.original_accuracy == pytest.approx((original == labels).double().mean().item())
    assert curve.accuracy[-1] == pytest.approx(curve.original_accuracy)
    assert curve.agreement[-1] == 1.0
    assert curve.samples == len(images)
    for keep, fill in (("bottom", "mean"), ("top", "zero")):  # all d directions: the identity
        full = wb.ablation_curve(conv_net, images, layer, basis, [d], keep=keep, fill=fill,
                                 labels=labels, progress=False)
        assert full.agreement == [1.0] and full.accuracy == [curve.original_accuracy]
    # k = 0: every input gets the same (mean) activations, so the same prediction
    with torch.no_grad():
        constant = basis.mean.float().view(1, -1, 1, 1).expand(1, *basis.feature_shape)
        class_of_mean = conv_net[int(layer) + 1:](constant).argmax(1).item()
    assert curve.agreement[0] == pytest.approx((original == class_of_mean).double().mean().item())


@pytest.mark.parametrize("kind", ["pca", "neurons"])
def test_no_directions_kept_from_either_end_is_the_mean_activation(tanh_net, vectors, kind):
    """k = 0 keeps no direction, from the top or from the bottom: every input gets the mean
    activations, hence the prediction of the mean (here not every input's prediction)."""
    basis = wb.fit_basis(tanh_net, vectors, "1", kind=kind, progress=False)
    with torch.no_grad():
        original = tanh_net(vectors).argmax(1)
        class_of_mean = tanh_net[2:](basis.mean.float()[None]).argmax(1)
    expected = (original == class_of_mean).double().mean().item()
    assert expected < 1
    for keep in ("top", "bottom"):
        curve = wb.ablation_curve(tanh_net, vectors, "1", basis, [0], keep=keep,
                                  progress=False)
        assert curve.agreement == [pytest.approx(expected)], keep


def test_ablation_reads_labels_from_batches(conv_net, images):
    labels = torch.randint(0, 4, (len(images),), generator=torch.Generator().manual_seed(3))
    basis = wb.fit_basis(conv_net, images, "4", kind="pca", progress=False)
    from_tensor = wb.ablation_curve(conv_net, images, "4", basis, [1, 3], labels=labels,
                                    progress=False)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    from_loader = wb.ablation_curve(conv_net, loader, "4", basis, [1, 3], progress=False)
    assert from_loader.accuracy == from_tensor.accuracy
    assert from_loader.agreement == from_tensor.agreement
    unlabelled = wb.ablation_curve(conv_net, images, "4", basis, [1, 3], progress=False)
    assert unlabelled.accuracy is None and unlabelled.agreement == from_tensor.agreement


class _Residual(nn.Module):
    """x + f(x): the skip connection cannot take a batch stacked inside f."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.f = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(x + self.f(x))


def _predictions_by_hand(model, inputs, module, basis, kept, fill):
    """One forward pass with the output of ``module`` replaced by ``restrict``."""
    handle = module.register_forward_hook(
        lambda _m, _i, output: bases.restrict(output, basis, kept, fill))
    try:
        with torch.no_grad():
            return model(inputs).argmax(1)
    finally:
        handle.remove()


@pytest.mark.parametrize("net", ["sequential", "residual"])
def test_ablation_curves_in_one_pass_equal_one_forward_per_k(tanh_net, vectors, net):
    """Stacked (a sequential net) or one at a time (a skip connection around the layer), every
    curve's agreement and accuracy equal those counted from one hooked forward per k."""
    model, layer = (tanh_net, "1") if net == "sequential" else (_Residual().eval(), "f.1")
    module = dict(model.named_modules())[layer]
    labels = torch.randint(0, 5, (len(vectors),), generator=torch.Generator().manual_seed(5))
    fitted = [wb.fit_basis(model, vectors, layer, kind=kind, progress=False)
              for kind in ("pca", "neurons")]
    restrictions = [bases.Restriction(b, [0, 2, 5, b.dimension], keep, fill)
                    for b in fitted for keep, fill in (("top", "mean"), ("bottom", "zero"))]
    calls = []
    counter = model[-1] if net == "sequential" else model.head
    handle = counter.register_forward_hook(lambda _m, _i, out: calls.append(len(out)))
    try:
        curves = bases.ablation_curves(model, vectors, layer, restrictions, labels,
                                       batch_size=70, progress=False, budget=16 * 17 * 40)
    finally:
        handle.remove()
    variants = sum(len(r.ks) for r in restrictions)                  # 16, plus the original
    if net == "sequential":   # 40 inputs and their 16 variants per pass: the budget's chunk
        assert calls == [40 * 17, 30 * 17, 40 * 17, 30 * 17, 40 * 17, 30 * 17, 40 * 17,
                         30 * 17, 20 * 17]
    else:                     # one pass per variant after the stacked one failed
        assert len(calls) == 5 * (variants + 1) and set(calls) <= {70, 20}
    with torch.no_grad():
        original = model(vectors).argmax(1)
    for r, curve in zip(restrictions, curves, strict=True):
        assert (curve.kind, curve.keep, curve.fill, curve.ks) == (r.basis.kind, r.keep, r.fill,
                                                                  r.ks)
        for k, agreement, accuracy in zip(r.ks, curve.agreement, curve.accuracy, strict=True):
            m = r.basis.dimension
            kept = torch.arange(k) if r.keep == "top" else torch.arange(m - k, m)
            predicted = _predictions_by_hand(model, vectors, module, r.basis, kept, r.fill)
            assert agreement == (predicted == original).double().mean().item()
            assert accuracy == (predicted == labels).double().mean().item()
        assert curve.original_accuracy == (original == labels).double().mean().item()
    assert _hooks(model) == 0


def test_removing_the_top_k_is_keeping_the_bottom_m_minus_k(tanh_net, vectors):
    """Removing nothing is the original net; removing all m gives every input the mean
    activations, hence the prediction of the mean."""
    basis = wb.fit_basis(tanh_net, vectors, "1", kind="pca", progress=False)
    m = basis.dimension
    curve = wb.ablation_curve(tanh_net, vectors, "1", basis, [m, 0], keep="bottom",
                              progress=False)
    with torch.no_grad():
        original = tanh_net(vectors).argmax(1)
        class_of_mean = tanh_net[2:](basis.mean.float()[None]).argmax(1)
    assert curve.agreement == [1.0, (original == class_of_mean).double().mean().item()]


# ----------------------------------------------------------------------------------------------
# Per direction


def test_top_activating_streams_to_the_brute_force_answer(conv_net, images):
    basis = wb.fit_basis(conv_net, images, "4", kind="pca", progress=False)
    with torch.no_grad():
        scores = wb.direction_activation(conv_net, images, basis, [0, 2])     # (64, 2)
    top = wb.top_activating(conv_net, images, basis, [0, 2], n=5, batch_size=9, progress=False)
    expected = scores.T.topk(5, dim=1)
    torch.testing.assert_close(top.scores, expected.values)
    assert torch.equal(top.indices, expected.indices)
    assert torch.equal(top.inputs[1], images[expected.indices[1]])


@pytest.mark.parametrize("kind", ["pca", "neurons"])
@pytest.mark.parametrize("layer", ["3", "7"])
def test_feature_visualisation_increases_the_objective(conv_net, images, kind, layer):
    basis = wb.fit_basis(conv_net, images, layer, kind=kind, progress=False)
    result = wb.feature_visualisation(conv_net, basis, [0, 1, 2], images.mean(0), steps=40,
                                      learning_rate=0.1, seed=0)
    assert result.inputs.shape == (3, 3, 8, 8)
    assert (result.objective > result.start_objective + 0.1).all()
    with torch.no_grad():
        again = wb.direction_activation(conv_net, result.inputs, basis, [0, 1, 2]).diagonal()
    torch.testing.assert_close(again, result.objective)
    repeated = wb.feature_visualisation(conv_net, basis, [0, 1, 2], images.mean(0), steps=40,
                                        learning_rate=0.1, seed=0)
    assert torch.equal(repeated.inputs, result.inputs)


def test_feature_visualisation_respects_radius_and_value_range(conv_net, images):
    basis = wb.fit_basis(conv_net, images, "1", kind="pca", progress=False)
    start = images.mean(0)
    result = wb.feature_visualisation(conv_net, basis, [0], start, steps=20,
                                      value_range=(-1.0, 1.0), radius=2.0)
    assert result.inputs.min() >= -1 and result.inputs.max() <= 1
    assert (result.inputs - start).flatten(1).norm(dim=1).max() <= 2.0 + 1e-5
    assert result.objective[0] > result.start_objective[0]


# ----------------------------------------------------------------------------------------------
# The model is left as it was


class _BrokenAfterFirst:
    """An iterable of batches whose second batch has the wrong shape."""

    def __init__(self, images):
        self.images = images

    def __iter__(self):
        yield self.images[:8]
        yield torch.zeros(4, 5, 8, 8)


def test_the_model_is_never_modified(conv_net, images):
    before, grads = _state(conv_net), [p.requires_grad for p in conv_net.parameters()]
    basis = wb.fit_basis(conv_net, images, "1", progress=False)
    wb.ablation_curve(conv_net, images, "1", basis, [1, 6], progress=False)
    wb.top_activating(conv_net, images, basis, [0], n=2, progress=False)
    wb.feature_visualisation(conv_net, basis, [0], images.mean(0), steps=3)
    broken = _BrokenAfterFirst(images)
    with pytest.raises(RuntimeError):
        wb.activations(conv_net, broken, ["1", "4"], progress=False)
    with pytest.raises(RuntimeError):
        wb.ablation_curve(conv_net, broken, "1", basis, [2], progress=False)
    with pytest.raises(RuntimeError):
        wb.top_activating(conv_net, broken, basis, [0], progress=False)
    assert _hooks(conv_net) == 0
    after = conv_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in conv_net.parameters()] == grads
    assert all(p.grad is None for p in conv_net.parameters())
    assert not conv_net.training


# ----------------------------------------------------------------------------------------------
# Errors that name the argument


def test_errors_name_the_bad_argument(conv_net, images):
    with pytest.raises(ValueError,
                       match=r"layer: the model has no module named 'features.9'; modules: 0, 1"):
        wb.fit_basis(conv_net, images, "features.9", progress=False)
    with pytest.raises(ValueError, match=r"kind must be one of \['pca', 'neurons', 'ica', "
                                         r"'nmf', 'sparse'\], got 'svd'"):
        wb.fit_basis(conv_net, images, "1", kind="svd", progress=False)
    with pytest.raises(ValueError, match="spatial must be one of"):
        wb.fit_basis(conv_net, images, "1", spatial="flat", progress=False)
    with pytest.raises(ValueError, match="layer: the module ReLU is not part of the model"):
        wb.fit_basis(conv_net, images, nn.ReLU(), progress=False)
    basis = wb.fit_basis(conv_net, images, "1", progress=False)
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 6\].*'1'.*got 7"):
        wb.variance_explained(basis, 7)
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 6\]"):
        wb.ablation_curve(conv_net, images, "1", basis, [1, -1], progress=False)
    with pytest.raises(ValueError, match="ks must be a non-empty sequence"):
        wb.ablation_curve(conv_net, images, "1", basis, 3, progress=False)
    with pytest.raises(ValueError, match="the basis is of layer '1', not of layer '4'"):
        wb.ablation_curve(conv_net, images, "4", basis, [1], progress=False)
    with pytest.raises(ValueError, match="keep must be one of"):
        wb.ablation_curve(conv_net, images, "1", basis, [1], keep="middle", progress=False)
    with pytest.raises(ValueError, match="fill must be one of"):
        wb.ablation_curve(conv_net, images, "1", basis, [1], fill="noise", progress=False)
    with pytest.raises(ValueError, match="restrictions must be a non-empty sequence"):
        bases.ablation_curves(conv_net, images, "1", [], progress=False)
    with pytest.raises(ValueError, match=r"direction index must be an integer in \[0, 5\]"):
        wb.top_activating(conv_net, images, basis, [6], progress=False)
    with pytest.raises(ValueError, match="data is empty"):
        wb.activations(conv_net, [], "1", progress=False)
    assert _hooks(conv_net) == 0


# ----------------------------------------------------------------------------------------------
# Transformers: token sequences (N, T, D), features last


class _Encoder(nn.Module):
    """Token vectors (N, T, 8) -> two pre-norm encoder blocks -> a head on token 0."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(block, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.encoder(x)[:, 0])


@pytest.fixture(scope="module")
def encoder():
    return _Encoder().eval()


@pytest.fixture(scope="module")
def sequences():
    return torch.randn(40, 5, 8, generator=torch.Generator().manual_seed(2))


def test_a_transformers_token_outputs_are_sampled_per_token_with_features_last(encoder,
                                                                            sequences):
    """In a model with attention, (N, T, D) is a token sequence: "positions" samples each
    token's D features (not T "channels"), "pooled" their mean over the tokens."""
    output = encoder.encoder.layers[0](sequences).detach().double()  # (40, 5, 8)
    statistics = {spatial: wb.activations(encoder, sequences, "encoder.layers.0",
                                          spatial=spatial, progress=False)["encoder.layers.0"]
                  for spatial in ("positions", "pooled", "tokens", "tokens_pooled")}
    assert statistics["positions"].spatial == "tokens" == statistics["tokens"].spatial
    assert statistics["pooled"].spatial == "tokens_pooled"
    assert statistics["positions"].count == 40 * 5 and statistics["pooled"].count == 40
    for spatial, rows in (("positions", output.reshape(-1, 8)), ("pooled", output.mean(1))):
        assert statistics[spatial].dimension == 8
        # (the model's own pass may take PyTorch's fused encoder path: float32 round-off)
        np.testing.assert_allclose(statistics[spatial].covariance.numpy(),
                                   np.cov(rows.numpy(), rowvar=False), rtol=1e-5, atol=1e-7)


def test_restricting_a_token_layer_projects_every_tokens_features(encoder, sequences):
    basis = wb.fit_basis(encoder, sequences, "encoder.layers.0", kind="pca", progress=False)
    output = encoder.encoder.layers[0](sequences).detach().double()
    restricted = bases.restrict(output, basis, torch.arange(3))
    assert restricted.shape == output.shape
    residual = restricted - basis.mean
    torch.testing.assert_close(residual @ basis.directions[3:].T, torch.zeros(40, 5, 5),
                               atol=1e-12, rtol=0, check_dtype=False)
    torch.testing.assert_close(bases.restrict(output, basis, torch.arange(8)), output)
    curve = wb.ablation_curve(encoder, sequences, "encoder.layers.0", basis, [0, 8],
                              progress=False)
    assert curve.agreement[1] == 1.0 > curve.agreement[0]  # all kept: the network unchanged


def test_token_layouts_need_token_sequences(conv_net, images):
    with pytest.raises(ValueError, match="reads token sequences"):
        wb.activations(conv_net, images, "1", spatial="tokens", progress=False)


def test_a_transformers_default_layers_include_its_blocks_after_their_insides():
    from workbench import models
    from workbench.experiments.basis import default_layers

    vit = models.vit(3, 4, 16, patch=8, depth=2, width=16, heads=2, mlp_width=32, seed=0)
    assert default_layers(vit) == [
        "encoder.layers.encoder_layer_0.mlp.1", "encoder.layers.encoder_layer_0",
        "encoder.layers.encoder_layer_1.mlp.1", "encoder.layers.encoder_layer_1"]
    assert default_layers(cnn(nn.ReLU)) == ["1", "4", "7"]
