"""Composites: which rule each layer gets (first match wins, by type, name and position), the lrp
method's options, and every shipped composite on random small architectures (hypothesis)."""
from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import workbench as wb
from workbench.composites import (
    COMPOSITES,
    ByName,
    ByType,
    Composite,
    Everything,
    First,
    Last,
    lrp_rules,
)
from workbench.lrp_rules import AlphaBetaRule, FlatRule, GammaRule, PassRule, ZBoxRule
from workbench.rules import EpsilonRule, ZeroRule


def vgg_like() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_first_match_wins_by_type_name_and_position():
    model = vgg_like()
    gamma, epsilon, flat = GammaRule(0.5), EpsilonRule(0.1), FlatRule()
    composite = Composite([(First(), flat), (ByName("7"), ZeroRule()), (ByType(nn.Conv2d), gamma),
                           (Last(nn.Linear), AlphaBetaRule(1.0, 0.0)), (Everything(), epsilon)])
    assert composite.rules_for(model) == {"0": flat, "1": epsilon, "4": gamma,
                                          "7": composite.entries[1][1],
                                          "9": composite.entries[3][1]}
    # patterns are globs over dotted names; a layer no entry matches keeps LRP-0 (None)
    nested = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.Linear(2, 2))
    assert Composite([(ByName("0.*"), epsilon)]).rules_for(nested) == {"0.0": epsilon, "1": None}


def test_shipped_composites_follow_zennits_layer_maps():
    model = vgg_like()
    table = {name: {layer: repr(rule) for layer, rule in lrp_rules(model, name).items()}
             for name in COMPOSITES}
    linear = "EpsilonRule(epsilon=1e-06)"
    assert table["epsilon_plus"] == {"0": "AlphaBetaRule(alpha=1, beta=0)", "1": "PassRule()",
                                     "4": "AlphaBetaRule(alpha=1, beta=0)", "7": linear,
                                     "9": linear}
    assert table["epsilon_plus_flat"]["0"] == "FlatRule()"
    assert table["epsilon_alpha2_beta1"]["4"] == "AlphaBetaRule(alpha=2, beta=1)"
    assert table["epsilon_alpha2_beta1_flat"]["0"] == "FlatRule()"
    assert table["epsilon_gamma_box"] == {"0": "ZBoxRule(low=0, high=1)", "1": "PassRule()",
                                          "4": "GammaRule(gamma=0.25)", "7": linear, "9": linear}
    # the flat composites' first layer may be a Linear; the box composite's only a convolution
    mlp = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert isinstance(lrp_rules(mlp, "epsilon_plus_flat")["0"], FlatRule)
    assert isinstance(lrp_rules(mlp, "epsilon_gamma_box")["0"], EpsilonRule)
    options = lrp_rules(model, "epsilon_gamma_box", gamma=1.5, low=-2.0, epsilon=0.5)
    assert options["4"].gamma == 1.5 and options["0"].low == -2.0 and options["7"].epsilon == 0.5


def test_the_lrp_method_takes_a_composite_object_and_layer_overrides():
    model = vgg_like().double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    by_name = wb.attribute(model, x, "lrp", target=1, composite="epsilon_gamma_box", low=0.0)
    as_object = wb.attribute(model, x, "lrp", target=1,
                             composite=wb.composites.epsilon_gamma_box(low=0.0))
    torch.testing.assert_close(by_name, as_object, rtol=0, atol=0)
    # a per-layer override on top of the composite
    overridden = wb.attribute(model, x, "lrp", target=1, composite="epsilon_gamma_box",
                              layer_rules={"4": AlphaBetaRule(1.0, 0.0)})
    custom = Composite([(First(), ZBoxRule(0.0, 1.0)), (ByName("4"), AlphaBetaRule(1.0, 0.0)),
                        (ByType(nn.Conv2d), GammaRule()), (ByType(nn.BatchNorm2d), PassRule()),
                        (Everything(), EpsilonRule())])
    torch.testing.assert_close(
        overridden, wb.attribute(model, x, "lrp", target=1, composite=custom), rtol=0, atol=0)
    assert not torch.allclose(overridden, by_name)
    # lrp_epsilon is the composite with epsilon everywhere
    torch.testing.assert_close(
        wb.attribute(model, x, "lrp_epsilon", target=1, epsilon=0.1),
        wb.attribute(model, x, "lrp", target=1,
                     composite=Composite([(Everything(), EpsilonRule(0.1))])))


def test_bad_composites_and_options_are_named():
    model = vgg_like()
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="option 'composite' of lrp must be one of"):
        wb.attribute(model, x, "lrp", target=0, composite="epsilon_zplus")
    with pytest.raises(ValueError, match="composite must be one of"):
        wb.attribute(model, x, "lrp", target=0, composite=3)
    with pytest.raises(TypeError, match=r"entries must be \(Matcher, AffineRule\) pairs"):
        Composite([(nn.Linear, EpsilonRule())])
    with pytest.raises(TypeError, match="ByType takes module classes"):
        ByType("Linear")
    with pytest.raises(ValueError, match="option 'gamma' of lrp must be >= 0"):
        wb.attribute(model, x, "lrp", target=0, gamma=-1.0)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        lrp_rules("model", "epsilon_plus")


# -- random small architectures ------------------------------------------------------------------


class Residual(nn.Module):
    def __init__(self, channels: int, bias: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))) + x)


def _block(kind: str, channels: int, width: int, bias: bool) -> list[nn.Module]:
    if kind == "residual":
        return [Residual(channels, bias)]
    if kind in ("max", "avg"):
        return [nn.MaxPool2d(2) if kind == "max" else nn.AvgPool2d(2)]
    layers = [nn.Conv2d(channels, width, 3, padding=1, bias=bias)]
    if kind == "conv_bn":
        norm = nn.BatchNorm2d(width)
        with torch.no_grad():
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.uniform_(0.5, 1.5)
            if bias:
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.bias.uniform_(-0.5, 0.5)
        layers.append(norm)
    return [*layers, nn.ReLU()]


@st.composite
def architectures(draw):
    kinds = draw(st.lists(st.sampled_from(["conv", "conv_bn", "residual", "max", "avg"]),
                          min_size=1, max_size=4))
    if kinds[0] in ("residual", "max", "avg"):
        kinds = ["conv", *kinds]
    kinds = [k for i, k in enumerate(kinds) if k not in ("max", "avg")
             or sum(j in ("max", "avg") for j in kinds[:i]) < 2]  # at most two poolings
    return kinds, draw(st.integers(2, 4)), draw(st.integers(0, 2**16)), draw(st.booleans())


def build(kinds, width, seed, bias) -> tuple[nn.Module, int]:
    torch.manual_seed(seed)
    layers, channels, size = [], 3, 8
    for kind in kinds:
        layers += _block(kind, channels, width, bias)
        if kind in ("conv", "conv_bn"):
            channels = width
        if kind in ("max", "avg"):
            size //= 2
    layers += [nn.Flatten(), nn.Linear(channels * size * size, 6, bias=bias), nn.ReLU(),
               nn.Linear(6, 3, bias=bias)]
    return nn.Sequential(*layers).double().eval(), size


def _conserves(name: str, kinds) -> bool:
    """Whether ``name`` conserves relevance on a bias-free net of these blocks: gamma, z-box,
    flat and epsilon (with a negligible epsilon) do; z+ does wherever a ReLU follows the layer
    (an output with no positive part is then inactive), not at a residual block's second
    convolution; alpha=2, beta=1 only where each output has positive and negative parts, which
    small random layers do not guarantee."""
    if name == "epsilon_gamma_box":
        return True
    return name in ("epsilon_plus", "epsilon_plus_flat") and "residual" not in kinds


@pytest.mark.parametrize("name", list(COMPOSITES))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architecture=architectures())
def test_every_composite_on_random_architectures(name, architecture):
    kinds, width, seed, bias = architecture
    model, _ = build(kinds, width, seed, bias)
    state = copy.deepcopy(model.state_dict())
    rng = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 8, 8, generator=rng, dtype=torch.float64) * 2 - 1
    target = torch.tensor([0, 2])
    tiny = 1e-12
    relevance = wb.attribute(model, x, "lrp", target=target, composite=name, epsilon=tiny,
                             stabilizer=tiny, low=-1.0, high=1.0)
    assert relevance.shape == x.shape and torch.isfinite(relevance).all()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    if not bias and _conserves(name, kinds):
        with torch.no_grad():
            logits = model(x)[torch.arange(2), target]
        torch.testing.assert_close(relevance.flatten(1).sum(1), logits, rtol=1e-6, atol=1e-9)
