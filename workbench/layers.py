"""Layers of a model as the workbench sees them: names, the rule each method applies, and
their activations for an input. What the layer inspector shows."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.model_layers import Layer, captured_outputs, describe, find_layer
from workbench.registry import build_rules, get_method
from workbench.rules import Rules

ACTIVATION_MODULES = {
    nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
    nn.Softplus: "softplus", nn.ELU: "elu", nn.SELU: "selu", nn.CELU: "celu", nn.GELU: "gelu",
    nn.SiLU: "silu", nn.Mish: "mish", nn.Hardtanh: "hardtanh", nn.Hardsigmoid: "hardsigmoid",
    nn.Hardswish: "hardswish",
}
#: the layers the engine's affine rules apply to
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
              nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


@dataclass(frozen=True)
class LayerRule:
    """One leaf module and the backward rule a method applies to it."""

    name: str
    kind: str
    parameters: int
    rule: str


def _family(module: nn.Module) -> str | None:
    for module_type, family in ACTIVATION_MODULES.items():
        if isinstance(module, module_type):
            return family
    return None


def rule_for(module: nn.Module, name: str, rules: Rules | None) -> str:
    """A readable name of the rule ``rules`` applies at ``module`` (the gradient if none)."""
    if isinstance(module, _WEIGHTED):
        rule = rules.affine_for(name) if rules else None
        return repr(rule) if rule else "gradient"
    if isinstance(module, _BATCH_NORMS):
        if rules and rules.has_affine_rules:
            return "merged into the preceding Linear/Conv layer"
        return "gradient"
    family = _family(module)
    if family is not None:
        rule = rules.activation if rules else None
        return rule.name if rule and rule.applies_to(family) else "gradient"
    if isinstance(module, _MAX_POOLS):
        return "gradient (winner takes all)"
    return "gradient"


def layer_rules(model: nn.Module, method: str, **options) -> list[LayerRule]:
    """Every leaf module of ``model`` with the rule ``method`` (with ``options``) applies."""
    spec = get_method(method)
    rules = build_rules(spec, spec.bind(options))
    if rules is not None:
        rules = rules.bound_to(model)  # a composite's rule for each layer
    return [
        LayerRule(name, type(module).__name__,
                  sum(p.numel() for p in module.parameters(recurse=False)),
                  rule_for(module, name, rules))
        for name, module in model.named_modules()
        if name and not any(True for _ in module.children())
    ]


def layer_output(model: nn.Module, inputs: torch.Tensor, layer: Layer) -> torch.Tensor:
    """The output of ``layer`` (a module of ``model`` or its dotted name) for ``inputs``, without
    gradients, at its last call. The hook that reads it never outlives the call."""
    name, module = find_layer(model, layer)
    with captured_outputs(module, name) as outputs, torch.no_grad():
        model(inputs)
    if not outputs:
        raise ValueError(f"layer {describe(name, module)} did not run in the forward pass")
    return outputs[-1]
