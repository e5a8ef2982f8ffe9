"""The method registry: names, declared options, and the command line listing them."""
from __future__ import annotations

import subprocess
import sys

import pytest

import workbench as wb
from workbench.registry import KINDS, Method, register

EXPECTED = {"gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "lrp_epsilon",
            "lrp_alpha_beta", "deeplift_rescale", "guided_backprop", "deconvnet", "occlusion",
            "shapley_sampling", "grad_cam"}


def test_every_method_of_the_engine_issue_is_registered():
    assert EXPECTED <= set(wb.methods())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_declared_options_have_a_known_kind_and_a_valid_default(name):
    method = wb.method_info(name)
    for option in method.options:
        assert option.kind in KINDS and option.help
        if option.default is not None:
            assert option.validate(option.default, name) == option.default


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
