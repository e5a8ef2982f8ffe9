"""The engine sees operations, not modules: functional forms, in-place and reused activations,
residual additions and batch norm merging must all give the rule the same input."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.engine import UnsupportedOperationError

RULE_METHODS = ["lrp_epsilon", "lrp_alpha_beta", "deeplift_rescale", "guided_backprop",
                "deconvnet"]


class ModuleNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4 * 4, 4)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = F.max_pool2d(self.relu1(self.conv1(x)), 2)
        x = self.relu2(self.conv2(x))
        return self.fc(x.flatten(1))


class FunctionalNet(ModuleNet):
    """Same weights, the ReLUs spelled three other ways, one of them in place."""

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = self.conv2(x).relu_()
        return self.fc(x.flatten(1))


class ReusedInplaceNet(ModuleNet):
    """One in-place ReLU module used twice (a torchvision-ResNet habit)."""

    def __init__(self):
        super().__init__()
        self.shared = nn.ReLU(inplace=True)

    def forward(self, x):
        x = F.max_pool2d(self.shared(self.conv1(x)), 2)
        x = self.shared(self.conv2(x))
        return self.fc(x.view(len(x), -1))


@pytest.mark.parametrize("method", RULE_METHODS)
@pytest.mark.parametrize("variant", [FunctionalNet, ReusedInplaceNet])
def test_functional_inplace_and_reused_relus_match_module_relus(method, variant):
    reference_model = ModuleNet().double().eval()
    model = variant().double().eval()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    expected = wb.attribute(reference_model, x, method, target=[0, 1, 2])
    actual = wb.attribute(model, x, method, target=[0, 1, 2])
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-14)


class ResidualNet(nn.Module):
    """conv-bn-relu, a basic residual block with an in-place ReLU reused and ``out += identity``,
    global average pooling, linear."""

    def __init__(self, bias: bool = True):
        super().__init__()
        torch.manual_seed(3)
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5, bias=bias)
        for bn in (self.bn0, self.bn1, self.bn2):
            bn.weight.data.uniform_(0.5, 1.5)
            bn.running_var.uniform_(0.5, 2.0)
            if bias:
                bn.bias.data.normal_(0, 0.1)
                bn.running_mean.normal_(0, 0.1)
            else:
                bn.bias.data.zero_()
        self.eval()

    def forward(self, x):
        x = self.relu(self.bn0(self.stem(x)))
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        out = self.relu(out)
        return self.fc(torch.flatten(self.pool(out), 1))


def test_deeplift_summation_to_delta_on_a_residual_net():
    model = ResidualNet().double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    baseline = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    attr = wb.attribute(model, x, "deeplift_rescale", target=[1, 4], baseline=baseline)
    with torch.no_grad():
        delta = model(x)[[0, 1], [1, 4]] - model(baseline.expand_as(x))[[0, 1], [1, 4]]
    torch.testing.assert_close(attr.flatten(1).sum(1), delta, rtol=1e-10, atol=1e-12)


def test_lrp_epsilon_conserves_relevance_on_a_bias_free_residual_net():
    """Residual additions split relevance in proportion to their inputs (no rule needed)."""
    model = ResidualNet(bias=False).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    attr = wb.attribute(model, x, "lrp_epsilon", target=[0, 3], epsilon=1e-12)
    with torch.no_grad():
        expected = model(x)[[0, 1], [0, 3]]
    torch.testing.assert_close(attr.flatten(1).sum(1), expected, rtol=1e-8, atol=1e-12)


def _fuse(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = copy.deepcopy(conv)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.data = conv.weight * scale.view(-1, 1, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused


@pytest.mark.parametrize("method,options", [("lrp_epsilon", {"epsilon": 0.5}),
                                            ("lrp_alpha_beta", {"alpha": 2.0, "beta": 1.0})])
def test_batch_norm_is_merged_into_the_preceding_layer(method, options):
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    bn.weight.data.uniform_(-1.5, 1.5)
    bn.bias.data.normal_()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    model = nn.Sequential(conv, bn, *head).double().eval()
    fused = nn.Sequential(_fuse(conv, bn), *copy.deepcopy(head)).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    expected = wb.attribute(fused, x, method, target=[0, 2], **options)
    actual = wb.attribute(model, x, method, target=[0, 2], **options)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method,options", [("lrp_epsilon", {"epsilon": 0.5}),
                                            ("lrp_alpha_beta", {"alpha": 2.0, "beta": 1.0}),
                                            ("deeplift_rescale", {})])
def test_batch_norm_on_its_own_is_a_diagonal_affine_layer(method, options):
    """A batch norm after a ReLU follows no weighted layer: the rules treat it as the affine
    layer ``x -> s x + t`` per channel, ``s = gamma / sqrt(var + eps)``, ``t = beta - s mu``,
    and give what the same model with a Linear of weight ``diag(s)`` and bias ``t`` gives."""
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(5)
    bn.weight.data.uniform_(-1.5, 1.5)
    bn.bias.data.normal_()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), bn, nn.Linear(5, 3)).double().eval()
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
    diagonal = nn.Linear(5, 5).double()
    with torch.no_grad():
        diagonal.weight.copy_(torch.diag(scale))
        diagonal.bias.copy_(bn.bias.double() - bn.running_mean.double() * scale)
    reference = nn.Sequential(*copy.deepcopy([model[0], model[1]]), diagonal,
                              copy.deepcopy(model[3])).eval()
    x = torch.randn(6, 4, dtype=torch.float64)
    expected = wb.attribute(reference, x, method, target=[0, 1, 2] * 2, **options)
    actual = wb.attribute(model, x, method, target=[0, 1, 2] * 2, **options)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


def test_torchvision_resnet_runs_under_every_rule_based_method():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(1, 3, 16, 16)
    for method in RULE_METHODS:
        attr = wb.attribute(model, x, method, target=2)
        assert attr.shape == x.shape and torch.isfinite(attr).all(), method
    attr = wb.attribute(model.double(), x.double(), "deeplift_rescale", target=2)
    with torch.no_grad():
        delta = model(x.double())[0, 2] - model(torch.zeros_like(x).double())[0, 2]
    # max pooling in the stem takes the ordinary gradient, so summation-to-delta is approximate
    assert abs(attr.sum().item() - delta.item()) < 0.5 * abs(delta.item()) + 1e-6


def test_unsupported_layer_is_named_with_its_path_and_type():
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(4, 4))
            self.rnn = nn.LSTM(4, 6, batch_first=True)
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            out, _ = self.rnn(self.encoder(x))
            return self.head(out[:, -1])

    model = Recurrent().eval()
    x = torch.randn(2, 5, 4)
    with pytest.raises(NotImplementedError, match=r"lstm.*'rnn' \(LSTM\)"):
        wb.attribute(model, x, "lrp_epsilon", target=0)
    assert wb.attribute(model, x, "gradient", target=0).shape == x.shape


def test_product_of_input_dependent_tensors_is_refused_by_rules_only():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.value, self.gate = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return self.value(x) * torch.sigmoid(self.gate(x))

    model, x = Gated(), torch.randn(2, 4)
    with pytest.raises(UnsupportedOperationError, match="'mul' in module '<model>' \\(Gated\\)"):
        wb.attribute(model, x, "deeplift_rescale", target=1)
    assert torch.isfinite(wb.attribute(model, x, "integrated_gradients", target=1)).all()


class _Squared(nn.Module):
    """A matrix product of two input-dependent tensors (outer product of a layer's output)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        h = self.linear(x)
        return (h[:, :, None] @ h[:, None, :]).flatten(1)


class _Reciprocal(nn.Module):
    """A constant divided by an input-dependent tensor, spelled ``tensor / h`` or ``1 / h``."""

    def __init__(self, spelling: str):
        super().__init__()
        self.linear, self.spelling = nn.Linear(4, 3), spelling
        self.register_buffer("scale", torch.tensor([1.0, 2.0, 3.0]))

    def forward(self, x):
        h = self.linear(x)
        return self.scale / h if self.spelling == "tensor" else 1 / h


@pytest.mark.parametrize("model,reason", [
    (_Squared(), "it multiplies input-dependent tensors"),
    (_Reciprocal("tensor"), "it multiplies or divides input-dependent tensors"),
    (_Reciprocal("number"), "it multiplies or divides input-dependent tensors"),
], ids=["matmul", "tensor-divided-by-input", "number-divided-by-input"])
def test_products_and_quotients_that_are_not_linear_in_the_input_are_refused(model, reason):
    """A rule-based method is input times a modified gradient only through operations linear in
    the input: a product of two input-dependent tensors, or a division by one, is refused by
    name (by methods without weighted-layer rules too); the plain gradient runs."""
    x = torch.randn(2, 4)
    for method in ("deeplift_rescale", "guided_backprop"):
        with pytest.raises(UnsupportedOperationError, match=reason):
            wb.attribute(model.eval(), x, method, target=1)
    assert torch.isfinite(wb.attribute(model, x, "gradient", target=1)).all()


@pytest.mark.parametrize("method", RULE_METHODS)
def test_functional_relu6_is_the_relu6_module(method):
    """``nn.ReLU6`` runs ``F.hardtanh``; ``F.relu6`` is its own operation, of the same family."""

    class FunctionalRelu6(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.first, self.second = nn.Linear(4, 6), nn.Linear(6, 3)

        def forward(self, x):
            return self.second(F.relu6(self.first(x)))

    model = FunctionalRelu6().double().eval()
    reference = nn.Sequential(model.first, nn.ReLU6(), model.second).eval()
    x = 4 * torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(wb.attribute(model, x, method, target=2),
                               wb.attribute(reference, x, method, target=2),
                               rtol=1e-12, atol=1e-14)


def test_constant_scaling_and_normalisation_inside_the_model_are_linear():
    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1))
            self.scale = nn.Parameter(torch.tensor(2.0))
            self.net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(2 * 6 * 6, 3))

        def forward(self, x):
            return self.net((x - self.mean) / 0.25 * self.scale)

    model = Normalised().double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    lrp = wb.attribute(model, x, "lrp_epsilon", target=0)
    deeplift = wb.attribute(model, x, "deeplift_rescale", target=0)
    assert torch.isfinite(lrp).all() and torch.isfinite(deeplift).all()


def test_training_mode_batch_norm_is_refused_by_rule_based_methods():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    model.train()
    with pytest.raises(ValueError, match=r"'1' \(BatchNorm1d\).*model.eval\(\)"):
        wb.attribute(model, torch.randn(3, 4), "lrp_epsilon", target=0)
    assert model.training  # the user's mode is left alone


def test_conv1d_nets_with_every_supported_activation():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1, bias=False), nn.ELU(), nn.AvgPool1d(2),
        nn.Conv1d(4, 4, 3, padding=1, bias=False), nn.Softplus(), nn.MaxPool1d(2),
        nn.Conv1d(4, 4, 3, padding=1, bias=False), nn.LeakyReLU(0.1), nn.AdaptiveAvgPool1d(2),
        nn.Flatten(), nn.Linear(8, 6, bias=False), nn.Sigmoid(), nn.Dropout(0.2),
        nn.Linear(6, 3, bias=False),
    ).double().eval()
    x = torch.randn(2, 2, 16, dtype=torch.float64)
    with torch.no_grad():
        scores = model(x)[[0, 1], [0, 2]]
    lrp = wb.attribute(model, x, "lrp_epsilon", target=[0, 2], epsilon=1e-12)
    torch.testing.assert_close(lrp.flatten(1).sum(1), scores, rtol=1e-8, atol=1e-12)
    for method in RULE_METHODS:
        assert torch.isfinite(wb.attribute(model, x, method, target=[0, 2])).all(), method


# -- DeepLIFT's reference pass -----------------------------------------------------------------


@pytest.mark.parametrize("variant", [ModuleNet, FunctionalNet, ReusedInplaceNet])
def test_deeplift_one_shared_baseline_equals_the_baseline_repeated_per_input(variant):
    """A shared baseline runs once (batch 1) and is broadcast; one row per input runs N rows:
    the same attributions either way."""
    model = variant().double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    x0 = torch.randn(3, 8, 8, dtype=torch.float64)
    shared = wb.attribute(model, x, "deeplift_rescale", target=2, baseline=x0)
    per_input = wb.attribute(model, x, "deeplift_rescale", target=2,
                             baseline=x0.expand(4, 3, 8, 8).clone())
    torch.testing.assert_close(shared, per_input, rtol=1e-12, atol=1e-12)


def test_deeplift_baseline_tensor_is_never_changed_by_an_in_place_model():
    class InplaceOnInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(5, 2)

        def forward(self, x):
            return self.linear(torch.relu_(x))

    model = InplaceOnInput()
    x, x0 = torch.randn(3, 5), torch.randn(3, 5)
    before = x0.clone()
    attr = wb.attribute(model, x, "deeplift_rescale", target=0, baseline=x0)
    assert torch.equal(x0, before)
    with torch.no_grad():  # a ReLU on the input, then linear: Rescale's ratio is exact
        delta = model(x.clone())[:, 0] - model(x0.clone())[:, 0]
    torch.testing.assert_close(attr.sum(1), delta)


def test_deeplift_refuses_a_model_whose_operations_depend_on_the_input():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # an extra nonlinearity for some inputs only
                x = torch.tanh(x)
            return self.linear(torch.relu(x))

    model = DataDependent()
    x = torch.ones(2, 4)
    with pytest.raises(ValueError, match=r"inputs and the baseline.*more elementwise"):
        wb.attribute(model, x, "deeplift_rescale", target=0, baseline=0.0)
    with pytest.raises(ValueError, match=r"2 elementwise nonlinearities for the baseline but 1"):
        wb.attribute(model, -x, "deeplift_rescale", target=0, baseline=1.0)


def test_deeplift_refuses_training_mode_before_the_baseline_changes_running_statistics():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).train()
    running_mean = model[1].running_mean.clone()
    with pytest.raises(ValueError, match=r"'1' \(BatchNorm1d\).*model.eval\(\)"):
        wb.attribute(model, torch.randn(3, 4), "deeplift_rescale", target=0)
    assert torch.equal(model[1].running_mean, running_mean) and model.training


def test_deeplift_with_channels_last_inputs_matches_contiguous_ones():
    """The Rescale multiplier falls back to f'(z) by flat index: layouts must not matter."""
    model = ModuleNet().double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    x0 = x.clone()
    x0[:, :, :4] = 0.0  # z = z0 at many positions: the fallback runs
    expected = wb.attribute(model, x, "deeplift_rescale", target=1, baseline=x0)
    channels_last = x.to(memory_format=torch.channels_last)
    attr = wb.attribute(model.to(memory_format=torch.channels_last), channels_last,
                        "deeplift_rescale", target=1,
                        baseline=x0.to(memory_format=torch.channels_last))
    torch.testing.assert_close(attr, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", [nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Tanh])
def test_deeplift_where_inputs_and_baseline_tie_takes_the_ordinary_derivative(dtype, activation):
    """Where z = z0 exactly the Rescale ratio is 0/0 and f'(z) takes its place. A tie matters
    when input differences cancel inside a unit: units 0-2 below see ``x1 - x2`` and both
    inputs moved by the same amount; their biases put them in the active (slope 1), inactive
    (slope 0) and, for Tanh, curved part. Closed form: ``R = dx * W1^T (m * w2)`` with
    ``m = f'(z0)`` at the ties and ``(f(z) - f(z0)) / (z - z0)`` at unit 3."""
    weight1 = torch.tensor([[1.0, -1.0, 0.0], [2.0, -2.0, 0.0], [-1.0, 1.0, 0.0],
                            [0.5, 0.0, 1.0]], dtype=dtype)
    bias1 = torch.tensor([0.5, -3.0, 0.25, -0.2], dtype=dtype)
    weight2 = torch.tensor([[1.0, -2.0, 3.0, 0.7]], dtype=dtype)
    model = nn.Sequential(nn.Linear(3, 4), activation(), nn.Linear(4, 1)).to(dtype).eval()
    with torch.no_grad():
        model[0].weight.copy_(weight1)
        model[0].bias.copy_(bias1)
        model[2].weight.copy_(weight2)
    baseline = torch.tensor([[0.1, 0.1, -0.3]], dtype=dtype)
    x = baseline + torch.tensor([[0.75, 0.75, 1.5], [-2.0, -2.0, 0.4]], dtype=dtype)
    attr = wb.attribute(model, x, "deeplift_rescale", target=0, baseline=baseline)

    function = model[1]
    z, z0 = x @ weight1.T + bias1, baseline @ weight1.T + bias1
    assert torch.equal(z[:, :3], z0.expand(2, 4)[:, :3])  # the ties are exact
    point = z0.detach().clone().requires_grad_()
    (slope,) = torch.autograd.grad(function(point).sum(), point)
    ratio = (function(z) - function(z0)) / (z - z0)
    multiplier = torch.cat([slope.expand(2, 4)[:, :3], ratio[:, 3:]], dim=1)
    expected = (x - baseline) * ((multiplier * weight2) @ weight1)
    tolerance = {} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(attr, expected.detach(), **tolerance)
    assert slope[0, 0] != 0  # the active tie carries gradient (slope 0 there would be wrong)


@pytest.mark.parametrize("activation", [nn.Tanh, nn.Sigmoid, nn.Softplus])
def test_deeplift_where_inputs_and_baseline_nearly_tie_takes_the_ordinary_derivative(activation):
    """For a smooth function ``f(z) - f(z0)`` cancels when ``z - z0`` is a few units of
    round-off: the quotient is then noise (0 or a multiple of the spacing of f's values), so
    Rescale takes ``f'(z)`` wherever ``|z - z0| <= 10 eps``. Here ``z - z0`` is 1 to 5 ulps."""
    model = nn.Sequential(nn.Linear(1, 1), activation(), nn.Linear(1, 1)).eval()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.fill_(1.0)
            layer.bias.zero_()
    baseline = torch.full((1, 1), 0.5)
    x = baseline.expand(3, 1).clone()
    for row, steps in enumerate((1, 2, 5)):
        for _ in range(steps):
            x[row] = torch.nextafter(x[row], torch.tensor(1.0))
    assert (x - baseline).abs().max() <= 10 * torch.finfo(torch.float32).eps
    attr = wb.attribute(model, x, "deeplift_rescale", target=0, baseline=baseline)
    point = x.clone().requires_grad_()
    (slope,) = torch.autograd.grad(model[1](point).sum(), point)
    torch.testing.assert_close(attr, (x - baseline) * slope, rtol=1e-5, atol=0)


# -- weighted layers keep no inputs for the backward -------------------------------------------


class ConvOptionsNet(nn.Module):
    """Every convolution option the input gradient must honour, and functional calls with
    defaults left out."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2),
                              groups=2)
        self.same = nn.Conv2d(6, 6, 3, padding="same")  # string padding: the ordinary backward
        self.conv1d = nn.Conv1d(6, 4, 3, stride=2)
        self.conv3d = nn.Conv3d(1, 2, (1, 3, 3), padding=1)
        self.weight = nn.Parameter(torch.randn(5, 2, 3, 3))
        self.linear = nn.Linear(12, 3)

    def forward(self, x):
        h = torch.tanh(self.same(self.conv(x)))                    # (N, 6, 4, 7)
        h = self.conv1d(h.flatten(2))                             # (N, 4, 13)
        h = torch.tanh(self.conv3d(h[:, None, :, :, None]))[..., 0]  # (N, 2, 6, 13)
        h = F.conv2d(h, self.weight)                              # defaults: stride 1, ...
        h = torch.stack([F.conv2d(sample, self.same.weight[:5, :5], padding=1)  # unbatched
                         for sample in h])
        h = F.adaptive_avg_pool2d(h, (1, 4)).flatten(2)           # (N, 5, 4)
        return self.linear(torch.cat([h, h[:, :, :1].expand(-1, -1, 8)], dim=2)).sum(1)


@pytest.mark.parametrize("method", ["gradient", "deeplift_rescale", "lrp_epsilon"])
def test_input_gradient_of_every_convolution_option_matches_autograd(method):
    """Layers that keep no inputs compute ``W^T g`` themselves; the result must be autograd's
    (for the rule-based methods: the same rules on the ordinary layers, via a copy of the model
    whose layers cannot take that path because their weights need gradients)."""
    model = ConvOptionsNet().double().eval()
    x = torch.randn(3, 4, 7, 5, dtype=torch.float64)
    attr = wb.attribute(model, x, method, target=[0, 1, 2])
    if method == "gradient":
        leaf = x.clone().requires_grad_()
        expected = torch.autograd.grad(model(leaf)[torch.arange(3), [0, 1, 2]].sum(), leaf)[0]
    else:
        from workbench import rules

        original = rules.AffineCall.keeping_no_inputs
        try:  # the ordinary weighted layers, everything else the same
            rules.AffineCall.keeping_no_inputs = rules.AffineCall.__call__
            expected = wb.attribute(model, x, method, target=[0, 1, 2])
        finally:
            rules.AffineCall.keeping_no_inputs = original
    torch.testing.assert_close(attr, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "deeplift_rescale",
                                    "lrp_epsilon", "integrated_gradients"])
def test_the_backward_keeps_no_inputs_of_weighted_layers(method):
    """Autograd keeps a layer's input for the weight gradient; attribution never asks for one.
    Neither the batch (input of the first conv), the pooled map (input of the second) nor the
    flattened map (input of the linear layer) may be among the tensors saved for the backward
    pass."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(5, 7, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(7 * 4 * 4, 4)).eval()
    x = torch.randn(2, 3, 8, 8)
    saved: list[tuple[tuple[int, ...], torch.dtype]] = []

    def pack(tensor):
        saved.append((tuple(tensor.shape), tensor.dtype))
        return tensor

    options = {"steps": 4} if method == "integrated_gradients" else {}
    rows = 2 * 4 if options else 2  # IG: path points x samples in one pass
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        wb.attribute(model, x, method, target=1, **options)
    layer_inputs = [((rows, 3, 8, 8), torch.float32), ((rows, 5, 4, 4), torch.float32),
                    ((rows, 7 * 4 * 4), torch.float32)]
    assert saved and not any(kept in saved for kept in layer_inputs)
    # the same model under plain autograd keeps them all: the probe would see them
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x.clone().requires_grad_())
    assert all(((2, *shape[1:]), dtype) in saved for shape, dtype in layer_inputs)
