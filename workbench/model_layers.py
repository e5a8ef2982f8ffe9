"""A model's layers: finding one by module or dotted name, and reading its outputs.

Every function of the workbench that takes a ``layer`` resolves it here, so they accept the same
forms and fail with the same message. Outputs are read with a forward hook that never outlives
the call; the model's downstream layers get a copy of the output, so a later in-place operation
(``nn.ReLU(inplace=True)``) cannot change what was read.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

Layer = str | nn.Module

#: how many candidate names an error lists before it abbreviates
_SHOWN = 25


def _listing(names: Sequence[str], title: str) -> str:
    shown = ", ".join(names[:_SHOWN])
    if len(names) > _SHOWN:
        shown += f", ... ({len(names)} in all)"
    return f"{title}: {shown}"


def find_layer(model: nn.Module, layer: Layer, argument: str = "layer",
               candidates: Sequence[str] | None = None,
               candidates_title: str = "modules") -> tuple[str, nn.Module]:
    """The dotted name and the module of ``layer``: a module of ``model`` or its dotted name.

    ``argument`` names the caller's argument in errors; ``candidates`` (default: every named
    module) are the names an error lists under ``candidates_title``.
    """
    named = dict(model.named_modules())
    if candidates is None:
        candidates = [name for name in named if name]
    if isinstance(layer, nn.Module):
        for name, module in named.items():
            if module is layer:
                return name, module
        raise ValueError(f"{argument}: the module {type(layer).__name__} is not part of the "
                         f"model; {_listing(candidates, candidates_title)}")
    if not isinstance(layer, str):
        raise TypeError(f"{argument} must be a module of the model or its dotted name (str), "
                        f"got {type(layer).__name__}")
    if layer not in named:
        raise ValueError(f"{argument}: the model has no module named '{layer}'; "
                         f"{_listing(candidates, candidates_title)}")
    return layer, named[layer]


def describe(name: str, module: nn.Module) -> str:
    """``'features.conv1' (Conv2d)``: how errors name a layer."""
    return f"'{name}' ({type(module).__name__})"


@contextlib.contextmanager
def captured_outputs(module: nn.Module, name: str = "") -> Iterator[list[torch.Tensor]]:
    """Collect ``module``'s output tensor at each call while the block runs.

    The kept tensor is the module's own output (gradients flow back to it); the model continues
    with a copy, so in-place operations after the layer leave the kept tensor as the layer made
    it. The hook is removed when the block ends, also on an error.
    """
    outputs: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"layer {describe(name, module)} returns "
                             f"{type(output).__name__}, not a single tensor")
        outputs.append(output)
        return output.clone()

    handle = module.register_forward_hook(keep)
    try:
        yield outputs
    finally:
        handle.remove()


def single_output(outputs: list[torch.Tensor], name: str, module: nn.Module) -> torch.Tensor:
    """The one output of a layer that must run exactly once per forward pass."""
    if len(outputs) != 1:
        raise ValueError(f"layer {describe(name, module)} ran {len(outputs)} times in one "
                         "forward pass; choose a module that runs exactly once (e.g. its parent)")
    return outputs[0]
