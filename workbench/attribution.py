"""The one entry point: ``attribute(model, inputs, method, target=..., **options)``."""
from __future__ import annotations

import torch
from torch import nn

import workbench.methods  # noqa: F401  (registers the methods)
from workbench.checks import Target, check_model_and_inputs
from workbench.layout import like
from workbench.registry import get_method


def attribute(model: nn.Module, inputs: torch.Tensor, method: str, *, target: Target = None,
              **options) -> torch.Tensor:
    """Attribution of ``model``'s target score to each input feature.

    Parameters
    ----------
    model:
        A module mapping inputs of shape ``(N, ...)`` to scores ``(N, classes)``. It is used as
        it is (train/eval mode included) and never modified.
    inputs:
        Floating-point tensor of shape ``(N, ...)``; left unchanged.
    method:
        A name from ``workbench.methods()``.
    target:
        Class per sample: an int, a sequence of ints or a 1-D integer tensor; ``None`` uses the
        model's predicted class.
    **options:
        The method's options (see ``workbench.method_info(method).options``).

    Returns
    -------
    Tensor of the inputs' shape, dtype, device and memory layout.
    """
    spec = get_method(method)
    values = spec.bind(options)
    check_model_and_inputs(model, inputs)
    result = spec.run(model, inputs, target, **values)
    return like(result.detach().to(dtype=inputs.dtype, device=inputs.device), inputs)
