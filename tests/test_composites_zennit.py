"""Agreement of the lrp method's shipped composites with Zennit's (0.5.1), in float64.

For each composite, Zennit's composite of the same name (``zennit.composites.COMPOSITES``) with
the same epsilon, gamma, stabiliser, bounds and ``zero_params``; relevance starts from the target
logit in both. Zennit gets a deep copy of the model, since it hooks and canonizes the model it is
given. The definitions coincide except for two choices of Zennit's, neutralised here and shown
in ``test_agreement_zennit.py``:

- Zennit's ``Norm`` rule at average pooling and residual sums divides by ``z + 1e-6 sign(z)``;
  the workbench splits relevance there exactly in proportion. Zennit gets ``Norm`` with a
  negligible stabiliser for ``Sum`` and ``AvgPool`` (its ``layer_map`` argument, matched first).
- Zennit's BatchNorm merge keeps the BatchNorm's ``eps`` after resetting its statistics, so its
  canonized model computes ``BN(z) / sqrt(1 + eps)``; the BatchNorms here have ``eps = 0``.

Canonizers: Zennit's ``SequentialMergeBatchNorm`` (VGG-BN and the small BN net) and
``ResNetCanonizer`` (ResNet: BatchNorm merge, the residual addition as a ``Sum`` module). The
workbench needs none: its engine merges each BatchNorm into the layer before it and splits the
residual addition by the gradient, without touching the model.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import workbench as wb
from test_agreement_zennit import NETS, case, randomize_batch_norms

zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import COMPOSITES as ZENNIT_COMPOSITES  # noqa: E402
from zennit.layer import Sum  # noqa: E402
from zennit.rules import Norm  # noqa: E402
from zennit.types import AvgPool  # noqa: E402

from workbench.composites import COMPOSITES  # noqa: E402

NEGLIGIBLE = 1e-30
LOW, HIGH = -4.5, 4.5  # bounds of the seeded inputs below (checked)

pytestmark = pytest.mark.usefixtures("one_thread")


def zennit_relevance(model, x, target, name, canonizers=(), **options):
    model = copy.deepcopy(model)
    exact_sums = [(Sum, Norm(NEGLIGIBLE)), (AvgPool, Norm(NEGLIGIBLE))]
    composite = ZENNIT_COMPOSITES[name](layer_map=exact_sums, canonizers=list(canonizers),
                                        **options)

    def attr_output(output):
        return nn.functional.one_hot(target, output.shape[1]).to(output) * output

    with Gradient(model=model, composite=composite) as attributor:
        output, relevance = attributor(x, attr_output)
    return output.detach(), relevance.detach()


def options_for(name, bias=True, **given):
    """(workbench options, Zennit options) for composite ``name``."""
    ours = {"epsilon": given.get("epsilon", 1e-6), "stabilizer": 1e-6, "bias": bias}
    theirs = {"epsilon": ours["epsilon"], "stabilizer": 1e-6,
              "zero_params": None if bias else "bias"}
    if name == "epsilon_gamma_box":
        ours.update(gamma=given.get("gamma", 0.25), low=LOW, high=HIGH)
        theirs.update(gamma=ours["gamma"], low=LOW, high=HIGH)
    return ours, theirs


def agree(ours, theirs, rtol=1e-7, atol=1e-9):
    """Per-sample cosine and relative max error, then elementwise closeness."""
    assert ours.dtype == theirs.dtype == torch.float64 and ours.shape == theirs.shape
    cosine = nn.functional.cosine_similarity(ours.flatten(1), theirs.flatten(1), dim=1)
    assert (cosine >= 0.9999).all(), cosine
    relative = (ours - theirs).abs().amax() / theirs.abs().amax()
    assert relative <= 1e-4
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)


def small_case(net: str, seed: int):
    """The seeded net and inputs of test_agreement_zennit, inside the box bounds."""
    model, x, target, canonizers = case(net, seed)
    assert LOW <= x.min() and x.max() <= HIGH
    return model, x, target, canonizers


@pytest.mark.parametrize("name", list(COMPOSITES))
@pytest.mark.parametrize("net", list(NETS))
def test_small_nets(name, net):
    for seed in (0, 1):
        model, x, target, canonizers = small_case(net, seed)
        state = copy.deepcopy(model.state_dict())
        for bias in (True, False):
            ours_options, theirs_options = options_for(name, bias)
            ours = wb.attribute(model, x, "lrp", target=target, composite=name, **ours_options)
            output, theirs = zennit_relevance(model, x, target, name, canonizers,
                                              **theirs_options)
            with torch.no_grad():
                torch.testing.assert_close(output, model(x))  # the same function explained
            agree(ours, theirs)
        for key, value in model.state_dict().items():  # the model is untouched
            assert torch.equal(value, state[key])


@pytest.mark.parametrize("name", list(COMPOSITES))
def test_options_reach_the_rules(name):
    """Other epsilon and gamma values still agree, and change the result."""
    model, x, target, canonizers = small_case("relu_avgpool_cnn", 0)
    ours_options, theirs_options = options_for(name, epsilon=0.5, gamma=2.0)
    ours = wb.attribute(model, x, "lrp", target=target, composite=name, **ours_options)
    _, theirs = zennit_relevance(model, x, target, name, canonizers, **theirs_options)
    agree(ours, theirs)
    assert not torch.allclose(ours, wb.attribute(model, x, "lrp", target=target, composite=name,
                                                 **options_for(name)[0]), rtol=1e-4)


def test_per_channel_bounds_agree():
    model, x, target, _ = small_case("relu_maxpool_cnn", 1)
    low = torch.tensor([-4.5, -5.0, -6.0], dtype=torch.float64).view(1, 3, 1, 1)
    high = torch.tensor([4.5, 5.0, 6.0], dtype=torch.float64).view(1, 3, 1, 1)
    ours = wb.attribute(model, x, "lrp", target=target, composite="epsilon_gamma_box",
                        low=low, high=high)
    _, theirs = zennit_relevance(model, x, target, "epsilon_gamma_box", low=low, high=high)
    agree(ours, theirs)


# -- torchvision VGG-16 (with and without BatchNorm) and ResNet-18/50, random weights ----------


def _torchvision(name: str):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=5)
    randomize_batch_norms(model, seed=0, eps=0.0)  # eps=0: see the module docstring
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.eps == 0.0
    return model.double().eval()


def _canonizers(name: str):
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    return [ResNetCanonizer()] if name.startswith("resnet") else [VGGCanonizer()]


@pytest.fixture(scope="module", params=["vgg16", "vgg16_bn", "resnet18", "resnet50"])
def torchvision_case(request):
    name = request.param
    model = _torchvision(name)
    rng = torch.Generator().manual_seed(7)
    x = torch.randn(1, 3, 32, 32, generator=rng, dtype=torch.float64).clamp(LOW, HIGH)
    return name, model, x, torch.tensor([2])


@pytest.mark.parametrize("composite", list(COMPOSITES))
def test_torchvision_models(torchvision_case, composite):
    name, model, x, target = torchvision_case
    ours_options, theirs_options = options_for(composite)
    ours = wb.attribute(model, x, "lrp", target=target, composite=composite, **ours_options)
    output, theirs = zennit_relevance(model, x, target, composite, _canonizers(name),
                                      **theirs_options)
    with torch.no_grad():
        torch.testing.assert_close(output, model(x))
    assert ours.abs().amax() > 0
    agree(ours, theirs, rtol=1e-6, atol=1e-9 * float(theirs.abs().amax()))
