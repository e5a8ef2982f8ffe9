"""The method registry: names, declared options, and the command line listing them."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.registry import (
    KINDS, OPTION_KINDS, Method, Option, build_rules, register, takes_layer_rules,
    validate_options,
)

EXPECTED = {"gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "lrp_epsilon",
            "lrp_alpha_beta", "deeplift_rescale", "guided_backprop", "deconvnet", "occlusion",
            "shapley_sampling", "grad_cam", "feature_ablation", "feature_permutation",
            "gradient_shap", "deeplift_shap", "kernel_shap", "lime", "noise_tunnel"}


def test_the_gradient_perturbation_and_cam_methods_are_all_registered():
    assert EXPECTED <= set(wb.methods())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_declared_options_have_a_known_kind_and_a_valid_default(name):
    method = wb.method_info(name)
    for option in method.options:
        assert option.kind in OPTION_KINDS and option.kind in KINDS and option.help
        if option.default is not None:
            assert option.validate(option.default, name) == option.default
        try:
            text = option.format(option.default)
        except ValueError:  # a tensor or an object: set in code only
            continue
        assert option.parse(text, name) == option.default


def test_documented_defaults():
    defaults = {(m, o.name): o.default for m in EXPECTED for o in wb.method_info(m).options}
    assert defaults[("integrated_gradients", "steps")] == 50
    assert defaults[("integrated_gradients", "baseline")] == 0
    assert defaults[("smoothgrad", "n_samples")] == 50
    assert defaults[("smoothgrad", "noise")] == 0.15
    assert defaults[("lrp_epsilon", "epsilon")] == 1e-6
    assert defaults[("lrp_alpha_beta", "alpha")] == 1 and defaults[("lrp_alpha_beta", "beta")] == 0
    assert defaults[("shapley_sampling", "n_samples")] == 25
    assert defaults[("occlusion", "window")] is None  # one feature at a time


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register(Method("gradient", lambda *a: None, "duplicate"))


def test_command_line_lists_methods_with_options():
    result = subprocess.run([sys.executable, "-m", "workbench", "methods"], capture_output=True,
                            text=True, check=True)
    assert "lrp_epsilon" in result.stdout and "epsilon [float] = 1e-06" in result.stdout
    assert "option kinds:" in result.stdout and "    seed: an integer or None" in result.stdout


# --- the table of option kinds --------------------------------------------------------------

#: per kind: an option, values it accepts (as given -> as validated), and a value it refuses
#: with the exception type; a kind added to ``OPTION_KINDS`` must be added here
EXAMPLES = {
    "float": (Option("rate", "float", 0.5, "h", minimum=0.0), [(2, 2.0), (0.25, 0.25)],
              ("fast", TypeError)),
    "int": (Option("steps", "int", 3, "h", minimum=1), [(7, 7), (np.int64(4), 4)],
            (2.5, TypeError)),
    "bool": (Option("flag", "bool", False, "h"), [(True, True), (False, False)], (1, TypeError)),
    "seed": (Option("seed", "seed", None, "h"), [(None, None), (7, 7)], ("x", TypeError)),
    "baseline": (Option("baseline", "baseline", 0.0, "h"), [(1, 1), (-0.5, -0.5)],
                 ("zero", TypeError)),
    "shape": (Option("window", "shape", None, "h"), [(None, None), (3, (3,)), ([2, 2], (2, 2))],
              ((0, 2), ValueError)),
    "layer": (Option("layer", "layer", None, "h"), [(None, None), ("features.conv1",
                                                                    "features.conv1")],
              (3, TypeError)),
    "choice": (Option("rule", "choice", "a", "h", choices=("a", "b")), [("b", "b")],
               ("c", ValueError)),
    "named": (Option("composite", "named", "a", "h", choices=("a", "b")), [("b", "b")],
              ("c", ValueError)),
    "mask": (Option("mask", "mask", None, "h"), [(None, None)], (torch.zeros(3), TypeError)),
    "object": (Option("thing", "object", None, "h"), [(None, None)], None),
}


def test_every_kind_has_an_example_here():
    assert set(EXAMPLES) == set(OPTION_KINDS) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(OPTION_KINDS))
def test_each_kind_validates_refuses_and_round_trips_text(kind):
    option, accepted, refused = EXAMPLES[kind]
    assert OPTION_KINDS[kind].name == kind and KINDS[kind] == OPTION_KINDS[kind].accepts
    assert option.validate(option.default, "m") == option.default
    for given, validated in accepted:
        value = option.validate(given, "m")
        assert value == validated and type(value) is type(validated)
        text = option.format(value)
        assert isinstance(text, str)
        assert option.validate(option.parse(text, "m"), "m") == value
    if refused is not None:
        value, error = refused
        with pytest.raises(error, match=f"option '{option.name}' of m must be"):
            option.validate(value, "m")


def test_values_without_a_text_form_say_so():
    with pytest.raises(ValueError, match="'mask'.*set it in code"):
        EXAMPLES["mask"][0].format(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="'baseline'.*set it in code"):
        EXAMPLES["baseline"][0].format(torch.zeros(3))
    with pytest.raises(ValueError, match="'layer'.*set it in code"):
        EXAMPLES["layer"][0].format(nn.ReLU())
    named = EXAMPLES["named"][0]  # a name, or an object the method checks itself
    assert named.validate(nn.ReLU, "m") is nn.ReLU
    with pytest.raises(ValueError, match="'composite'.*set it in code"):
        named.format(nn.ReLU)


@pytest.mark.parametrize("kind, text, message", [
    ("float", "fast", "a number such as"), ("int", "2.5", "an integer"),
    ("bool", "maybe", "one of"), ("seed", "seven", "an integer, or empty for None"),
    ("shape", "a,b", "comma-separated integers"), ("mask", "1", "set in code"),
])
def test_unreadable_text_names_the_option(kind, text, message):
    option = EXAMPLES[kind][0]
    with pytest.raises(ValueError, match=f"option '{option.name}' of m must be.*{message}"
                       if kind != "mask" else f"option '{option.name}' of m.*{message}"):
        option.parse(text, "m")


@pytest.mark.parametrize("text, value", [("true", True), ("No", False), (" 1 ", True)])
def test_bool_text(text, value):
    assert EXAMPLES["bool"][0].parse(text, "m") is value


def test_bounds_and_choices_are_in_the_message():
    steps = EXAMPLES["int"][0]
    with pytest.raises(ValueError, match="'steps' of m must be >= 1, got 0"):
        steps.validate(0, "m")
    with pytest.raises(ValueError, match=r"'rule' of m must be one of \['a', 'b'\], got 'c'"):
        EXAMPLES["choice"][0].validate("c", "m")


def test_an_option_of_an_unknown_kind_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match="option 'size': kind must be one of.*'float'"):
        Option("size", "length", 1, "h")


# --- option values together -------------------------------------------------------------------

def test_validate_options_keeps_given_non_defaults_and_checks_combinations():
    assert validate_options("integrated_gradients", {"steps": 8, "baseline": 0}) == {"steps": 8}
    assert validate_options("lrp_alpha_beta", {"alpha": 2, "beta": 1}) == {"alpha": 2.0,
                                                                           "beta": 1.0}
    with pytest.raises(ValueError, match="alpha - beta must equal 1"):
        validate_options("lrp_alpha_beta", {"alpha": 2.0})
    with pytest.raises(ValueError, match="'noise' of smoothgrad must be a finite number"):
        validate_options("smoothgrad", {"noise": float("nan")})
    with pytest.raises(TypeError, match="unknown option"):
        validate_options("gradient", {"steps": 3})


def test_build_rules_passes_the_options_the_rules_take():
    method = wb.method_info("lrp_epsilon")
    rules = build_rules(method, method.bind({"epsilon": 0.5}))
    assert repr(rules.affine) == "EpsilonRule(epsilon=0.5)"
    assert build_rules(wb.method_info("gradient"), {}) is None
    assert takes_layer_rules("lrp_epsilon") and takes_layer_rules("lrp_alpha_beta")
    assert not takes_layer_rules("guided_backprop") and not takes_layer_rules("gradient")
