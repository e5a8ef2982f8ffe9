"""The layer table the inspector shows, and reading a layer's output."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import cnn
from workbench.layers import layer_output, layer_rules
from workbench.lrp_rules import AlphaBetaRule


def test_layer_rules_follow_the_method_declaration():
    model = cnn(nn.ReLU)
    table = {row.name: row for row in layer_rules(model, "lrp_epsilon", epsilon=0.25)}
    assert table["0"].kind == "Conv2d" and table["0"].rule == "EpsilonRule(epsilon=0.25)"
    assert table["0"].parameters == 3 * 6 * 9 + 6
    # relevance passes unchanged: f(z)/z, which for a ReLU is its ordinary derivative
    assert table["1"].rule == "gradient" and table["2"].rule.startswith("gradient")
    tanh_table = {row.name: row.rule for row in layer_rules(cnn(nn.Tanh), "lrp_epsilon")}
    assert tanh_table["1"] == "ratio"
    guided = {row.name: row.rule for row in layer_rules(model, "guided_backprop")}
    assert guided["0"] == "gradient" and guided["1"] == "guided"
    custom = {row.name: row.rule for row in
              layer_rules(model, "lrp_epsilon", layer_rules={"3": AlphaBetaRule(2.0, 1.0)})}
    assert custom["3"] == "AlphaBetaRule(alpha=2, beta=1)"
    assert custom["0"] == "EpsilonRule(epsilon=1e-06)"
    # the lrp method: a composite's rule per layer, overrides on top
    boxed = {row.name: row.rule for row in layer_rules(model, "lrp", composite="epsilon_gamma_box",
                                                      low=-1.0)}
    assert boxed["0"] == "ZBoxRule(low=-1, high=1)" and boxed["3"] == "GammaRule(gamma=0.25)"
    assert boxed["6"] == "EpsilonRule(epsilon=1e-06)"
    overridden = {row.name: row.rule for row in layer_rules(
        model, "lrp", composite="epsilon_plus", layer_rules={"0": AlphaBetaRule(2.0, 1.0)})}
    assert overridden["0"] == "AlphaBetaRule(alpha=2, beta=1)"
    assert overridden["3"] == "AlphaBetaRule(alpha=1, beta=0)"
    assert {row.rule for row in layer_rules(model, "occlusion")} == {
        "gradient", "gradient (winner takes all)"}


def test_layer_output_matches_a_manual_forward_and_leaves_no_hook():
    model = cnn(nn.ReLU)
    x = torch.randn(2, 3, 8, 8)
    expected = model[1](model[0](x))
    torch.testing.assert_close(layer_output(model, x, "1"), expected.detach())
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="no module named 'nope'"):
        layer_output(model, x, "nope")
