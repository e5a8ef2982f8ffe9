"""Agreement of LRP with Zennit (0.5.1) on seeded random networks, in float64.

Zennit setup: a ``LayerMapComposite`` with Zennit's base layer map (``layer_map_base``:
activations -> Pass, Sum and AvgPool -> Norm, BatchNorm -> Pass) plus the rule under test
(``Epsilon`` or ``AlphaBeta``) on ``nn.Linear`` and convolutions. Relevance starts from the target
logit (``one_hot * output``), as in the workbench. Max pooling has no rule in Zennit (plain
gradient: winner takes all), as in the workbench. Zennit gets a deep copy of the model, since it
hooks and canonizes the model it is given.

Two known differences in Zennit's definitions are neutralised for the tight comparisons and
shown in their own tests:

- Zennit's ``Norm`` rule (average pooling, residual sums) divides by ``z + 1e-6 sign(z)``; the
  workbench splits relevance exactly in proportion (ordinary gradient, no stabiliser). The tight
  tests pass a negligible stabiliser to ``layer_map_base``
  (``test_norm_rule_default_stabilizer_is_the_only_difference``).
- Zennit's BatchNorm merging resets the BatchNorm to ``mean=0, var=1, weight=1, bias=0`` but
  keeps its ``eps``, so the canonized model computes ``BN(z) / sqrt(1 + eps)`` at each BatchNorm
  (its output is not the model's). The tight tests use BatchNorms with ``eps=0``
  (``test_batchnorm_eps_scaling_in_zennit_merge``).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp, seeded_case

zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import LayerMapComposite, layer_map_base  # noqa: E402
from zennit.rules import AlphaBeta, Epsilon  # noqa: E402
from zennit.types import Convolution  # noqa: E402

RTOL, ATOL = 1e-7, 1e-9
#: stabiliser for Zennit's Norm rule in the tight comparisons: far below any |z| that occurs
#: (where z is exactly 0 the relevance there is 0 too), so the split is exactly proportional
NEGLIGIBLE = 1e-30

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster

EPSILONS = (1e-9, 1e-6, 0.1, 1.0)
ALPHA_BETAS = ((1.0, 0.0), (2.0, 1.0))
SEEDS = (0, 1)


def randomize_batch_norms(model: nn.Module, seed: int, eps: float | None = 0.0) -> nn.Module:
    """Non-trivial running statistics and affine parameters; ``eps=None`` keeps torch's."""
    rng = torch.Generator().manual_seed(500 + seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.rand(channels, generator=rng) - 0.5)
            module.running_var.copy_(0.5 + 1.5 * torch.rand(channels, generator=rng))
            module.weight.data.copy_(0.5 + torch.rand(channels, generator=rng))
            module.bias.data.copy_(torch.rand(channels, generator=rng) - 0.5)
            if eps is not None:
                module.eps = eps
    return model.eval()


def bn_cnn(seed: int, eps: float | None = 0.0) -> nn.Module:
    """The conftest CNN with a BatchNorm2d after each convolution."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 4),
    )
    return randomize_batch_norms(model, seed, eps)


NETS = {
    "tanh_mlp": lambda seed: mlp(nn.Tanh, seed=seed),
    "relu_maxpool_cnn": lambda seed: cnn(nn.ReLU, nn.MaxPool2d, seed=seed),
    "relu_avgpool_cnn": lambda seed: cnn(nn.ReLU, nn.AvgPool2d, seed=seed),
    "relu_batchnorm_cnn": bn_cnn,
}


def case(name: str, seed: int):
    model, x, _, target = seeded_case(NETS[name](seed), seed, vector=name == "tanh_mlp")
    canonizers = [SequentialMergeBatchNorm()] if name == "relu_batchnorm_cnn" else []
    return model, x, target, canonizers


def all_cases():
    return pytest.mark.parametrize(
        "name, seed", [(n, s) for n in NETS for s in SEEDS],
        ids=[f"{n}-seed{s}" for n in NETS for s in SEEDS])


def zennit_lrp(model, x, target, rule, canonizers=(), norm_stabilizer=NEGLIGIBLE):
    """Zennit's (output, relevance) with ``rule`` on every Linear and convolution."""
    model = copy.deepcopy(model)
    layer_map = layer_map_base(stabilizer=norm_stabilizer) + [
        (Convolution, rule), (nn.Linear, rule)]
    composite = LayerMapComposite(layer_map=layer_map, canonizers=list(canonizers))

    def attr_output(output):
        return nn.functional.one_hot(target, output.shape[1]).to(output) * output

    with Gradient(model=model, composite=composite) as attributor:
        output, relevance = attributor(x, attr_output)
    return output.detach(), relevance.detach()


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == torch.float64
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)


# -- tight agreement ---------------------------------------------------------------------------


@all_cases()
def test_epsilon_rule(name, seed):
    model, x, target, canonizers = case(name, seed)
    reference = copy.deepcopy(model.state_dict())
    for epsilon in EPSILONS:
        ours = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=epsilon)
        output, theirs = zennit_lrp(model, x, target, Epsilon(epsilon), canonizers)
        close(ours, theirs)
        with torch.no_grad():  # Zennit's canonized model computes the same function
            close(output, model(x))
    # the large epsilon absorbs relevance: the stabiliser really is in the denominator
    small = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=1e-9)
    large = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=1.0)
    assert large.abs().sum() < 0.9 * small.abs().sum()
    # neither library changed the model
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key])


@all_cases()
def test_alpha_beta_rule(name, seed):
    model, x, target, canonizers = case(name, seed)
    for alpha, beta in ALPHA_BETAS:
        ours = wb.attribute(model, x, "lrp_alpha_beta", target=target, alpha=alpha, beta=beta)
        _, theirs = zennit_lrp(model, x, target, AlphaBeta(alpha=alpha, beta=beta), canonizers)
        close(ours, theirs)
    # alpha=1, beta=0 and alpha=2, beta=1 are different explanations
    z_plus = wb.attribute(model, x, "lrp_alpha_beta", target=target, alpha=1.0, beta=0.0)
    a2b1 = wb.attribute(model, x, "lrp_alpha_beta", target=target, alpha=2.0, beta=1.0)
    assert not torch.allclose(z_plus, a2b1, rtol=1e-3, atol=1e-6)


# -- known differences in Zennit's definitions ----------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_norm_rule_default_stabilizer_is_the_only_difference(seed):
    # With Zennit's default base map the Norm rule at AvgPool divides by z + 1e-6 sign(z), which
    # shrinks relevance where pooled activations are small; the workbench has no stabiliser
    # there. The difference is small, and vanishes with a negligible stabiliser.
    model, x, target, _ = case("relu_avgpool_cnn", seed)
    ours = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=1e-6)
    _, default = zennit_lrp(model, x, target, Epsilon(1e-6), norm_stabilizer=1e-6)
    _, negligible = zennit_lrp(model, x, target, Epsilon(1e-6))
    scale = ours.abs().max()
    gap_default = (ours - default).abs().max() / scale
    gap_negligible = (ours - negligible).abs().max() / scale
    assert gap_negligible < 1e-10
    assert 1e-8 < gap_default < 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_batchnorm_eps_scaling_in_zennit_merge(seed):
    # With torch's default BatchNorm eps (1e-5), Zennit's SequentialMergeBatchNorm folds the
    # BatchNorm into the convolution and then sets the BatchNorm to mean 0, var 1, weight 1,
    # bias 0 while keeping eps: the canonized model multiplies each BatchNorm output by
    # c = 1 / sqrt(1 + eps). Zennit therefore explains a (slightly) different function. The
    # workbench on the model whose BatchNorm weight and bias are scaled by c reproduces Zennit
    # exactly (epsilon and stabiliser too small to notice the scaling of z).
    model = bn_cnn(seed, eps=None).double()
    eps = model[1].eps
    assert eps == 1e-5
    _, x, target, canonizers = case("relu_batchnorm_cnn", seed)
    output, theirs = zennit_lrp(model, x, target, Epsilon(1e-6), canonizers)
    with torch.no_grad():
        true_output = model(x)
    assert not torch.allclose(output, true_output, rtol=1e-7, atol=0)

    scaled = copy.deepcopy(model)
    c = (1 + eps) ** -0.5
    for module in scaled.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data *= c
            module.bias.data *= c
    with torch.no_grad():
        close(output, scaled(x), rtol=1e-12, atol=1e-14)
    close(wb.attribute(scaled, x, "lrp_epsilon", target=target, epsilon=1e-6), theirs)
    ours = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=1e-6)
    close(ours, theirs, rtol=1e-3, atol=1e-6)  # close, but not within the tight tolerance
    assert not torch.allclose(ours, theirs, rtol=RTOL, atol=ATOL)
    for alpha, beta in ALPHA_BETAS:
        _, theirs = zennit_lrp(model, x, target, AlphaBeta(alpha, beta), canonizers)
        ours = wb.attribute(scaled, x, "lrp_alpha_beta", target=target, alpha=alpha, beta=beta)
        close(ours, theirs)


# -- torchvision ResNet: residual additions, reused in-place ReLU, downsampling branches ---------


@pytest.fixture(scope="module")
def resnet18():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4)
    # random BatchNorm statistics; eps=0 because of Zennit's merge (see the test above)
    randomize_batch_norms(model, seed=0, eps=0.0)
    model = model.double().eval()
    rng = torch.Generator().manual_seed(7)
    x = torch.randn(1, 3, 32, 32, generator=rng, dtype=torch.float64)
    return model, x, torch.tensor([2])


def _resnet_canonizers():
    from zennit.torchvision import ResNetCanonizer

    return [ResNetCanonizer()]


def test_resnet18_structure_is_what_we_test(resnet18):
    model, _, _ = resnet18
    block = model.layer2[0]
    # BasicBlock calls the same in-place ReLU twice; this block also has a downsampling branch
    assert block.relu.inplace and block.downsample is not None
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20


@pytest.mark.parametrize("epsilon", [1e-6, 1.0])
def test_resnet18_epsilon(resnet18, epsilon):
    model, x, target = resnet18
    ours = wb.attribute(model, x, "lrp_epsilon", target=target, epsilon=epsilon)
    output, theirs = zennit_lrp(model, x, target, Epsilon(epsilon), _resnet_canonizers())
    with torch.no_grad():
        close(output, model(x))
    close(ours, theirs)


@pytest.mark.parametrize("alpha, beta", ALPHA_BETAS)
def test_resnet18_alpha_beta(resnet18, alpha, beta):
    model, x, target = resnet18
    ours = wb.attribute(model, x, "lrp_alpha_beta", target=target, alpha=alpha, beta=beta)
    _, theirs = zennit_lrp(model, x, target, AlphaBeta(alpha, beta), _resnet_canonizers())
    close(ours, theirs)
    assert ours.abs().max() > 0
