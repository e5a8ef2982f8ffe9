"""Input validation shared by every method and metric: models, tensors, targets, devices.

Each check raises with a message that names the offending argument and what would be accepted.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

#: an int (or 0-d integer tensor, numpy integer), a sequence or 1-D tensor of ints, or None
Target = int | Sequence[int] | torch.Tensor | None


def check_model(model: nn.Module) -> None:
    """Require a ``torch.nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def check_model_and_inputs(model: nn.Module, inputs: torch.Tensor) -> None:
    """``check_model``, ``check_inputs`` and ``check_same_device``: what every method and metric
    requires of its model and inputs."""
    check_model(model)
    check_inputs(inputs)
    check_same_device(model, inputs)


def check_finite(value: object, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``value`` is an infinite or NaN float."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value}")


def check_inputs(inputs: torch.Tensor) -> None:
    """Require a floating-point, finite tensor with a batch dimension."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(
            f"inputs must be a floating-point tensor, got dtype {inputs.dtype}; "
            "convert with inputs.float(), or explain integer inputs (token ids) at a layer with "
            "layer=<the embedding>"
        )
    if inputs.dim() < 2:
        raise ValueError(
            f"inputs must have a batch dimension first (shape (N, ...)), got shape "
            f"{tuple(inputs.shape)}; use inputs.unsqueeze(0) for a single sample"
        )
    if not all_finite(inputs):
        raise ValueError("inputs contain NaN or infinite values")


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every element of a floating-point tensor is finite: one min-max reduction (NaN and
    the infinities carry into it), without ``torch.isfinite``'s full-size temporaries."""
    if tensor.numel() == 0 or not tensor.is_floating_point():
        return True  # (integers are)
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer, or None for a stateless model."""
    for tensor in _parameters_and_buffers(model):
        return tensor.device
    return None


def check_same_device(model: nn.Module, inputs: torch.Tensor) -> None:
    """Require every parameter and buffer of ``model`` to live on the device of ``inputs``."""
    for name, tensor in _named_parameters_and_buffers(model):
        if tensor.device != inputs.device:
            raise ValueError(
                f"model and inputs are on different devices: model tensor '{name}' is on "
                f"{tensor.device}, inputs on {inputs.device}; move one with .to(device)"
            )


class OutputShapeError(ValueError):
    """The model's output is not ``(N, classes)``; ``workbench.attribute`` then explains the
    score ``target`` picks from it (``workbench.model_views.output_score``)."""

    def __init__(self, shape: torch.Size):
        self.shape = shape
        super().__init__(
            f"the model must return scores of shape (N, classes), got shape {tuple(shape)} "
            "(workbench.attribute also explains (N,) outputs, a tuple target indexing "
            "higher-dimensional ones, and a target function of the output)")


def expand_target(target: Target, n_samples: int, device: torch.device | str = "cpu"
                  ) -> torch.Tensor | None:
    """``target`` as a LongTensor of one class per sample (``None`` stays ``None``): an int,
    a 0-d integer tensor or a numpy integer names one class for every sample.

    Checks the type and the length; the range needs the model's output (``resolve_target``).
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target must be an int, a sequence of ints or a 1-D integer tensor, "
                        "got bool")
    if isinstance(target, torch.Tensor) and target.dim() == 0 and not target.is_floating_point() \
            and target.dtype != torch.bool:
        target = int(target)  # a 0-d integer tensor names one class, as an int does
    if isinstance(target, np.integer):
        target = int(target)
    if isinstance(target, int):
        return torch.full((n_samples,), target, dtype=torch.long, device=device)
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.dtype == torch.bool or target.dim() != 1:
            raise TypeError(
                "target tensor must be a 1-D integer tensor (one class per sample), got "
                f"dtype {target.dtype} and shape {tuple(target.shape)}"
            )
        indices = target.to(device=device, dtype=torch.long)
    elif isinstance(target, Sequence) and not isinstance(target, str):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise TypeError("target sequence must contain only ints")
        indices = torch.tensor(list(target), dtype=torch.long, device=device)
    else:
        raise TypeError(
            "target must be None, an int, a sequence of ints or a 1-D integer tensor, got "
            f"{type(target).__name__}"
        )
    if indices.numel() != n_samples:
        raise ValueError(f"target has {indices.numel()} entries but inputs have {n_samples} "
                         "samples")
    return indices


def resolve_target(target: Target, output: torch.Tensor) -> torch.Tensor:
    """Turn ``target`` into a LongTensor of one class index per sample of ``output``.

    ``None`` means the model's predicted class; an int applies to every sample; a sequence or a
    1-D integer tensor gives one class per sample.
    """
    if output.dim() != 2:
        raise OutputShapeError(output.shape)
    n_samples, n_classes = output.shape
    indices = expand_target(target, n_samples, output.device)
    if indices is None:
        return output.argmax(dim=1)
    if n_samples and (indices.min() < 0 or indices.max() >= n_classes):
        raise ValueError(
            f"target out of range: the model has {n_classes} classes (0..{n_classes - 1}), "
            f"got {indices.tolist()}"
        )
    return indices


def _named_parameters_and_buffers(model: nn.Module):
    yield from model.named_parameters()
    yield from model.named_buffers()


def _parameters_and_buffers(model: nn.Module):
    for _, tensor in _named_parameters_and_buffers(model):
        yield tensor
