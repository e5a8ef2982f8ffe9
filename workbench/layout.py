"""Memory layout of the batches the engine runs: channels-last for convolutional nets on the CPU.

oneDNN, PyTorch's CPU convolution backend, works in channels-last (NHWC) order; a batch in the
default NCHW order is reordered at every convolution, forward and backward. Handing the model
its batch in channels-last order is a copy of the inputs and makes forward plus backward passes
of a conv net about a quarter faster on the CPU (benchmarks/results/methods.md). Values are the
same up to float round-off; the model itself is never touched.

A model that cannot run on a channels-last batch (e.g. it calls ``x.view(len(x), -1)`` on a
feature map, which needs contiguous NCHW memory) is run again in its own layout and remembered,
so later calls go straight to it. A model with a module in training mode is left alone (its
forward pass has side effects, such as batch-norm statistics, that must not happen twice).
``set_channels_last(False)`` turns the conversion off.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

Result = TypeVar("Result")

_enabled = True
#: models that failed on a channels-last batch (weakly held: nothing is kept alive)
_refused: weakref.WeakSet[nn.Module] = weakref.WeakSet()
#: models known to be (or not be) conv nets without attention: walked once
_has_conv: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def set_channels_last(enabled: bool) -> None:
    """Turn the channels-last conversion of CPU conv-net batches on (the default) or off."""
    global _enabled
    _enabled = bool(enabled)


def fast_format(model: nn.Module, batch: torch.Tensor) -> torch.memory_format | None:
    """The memory format ``model`` runs ``batch`` fastest in: ``torch.channels_last`` for a 4-D
    float32 CPU batch and a model in eval mode with a Conv2d and no attention module that has
    not refused it (oneDNN present), ``torch.contiguous_format`` for a model that has refused
    it, ``None`` (as it is) otherwise.
    Callers that build a batch themselves can build it in this format and save a copy."""
    if not (_enabled and batch.dim() == 4 and batch.dtype == torch.float32
            and batch.device.type == "cpu" and torch.backends.mkldnn.is_available()):
        return None
    if model in _refused:
        return torch.contiguous_format
    if any(module.training for module in model.modules()):
        # a training-mode forward has side effects (batch-norm running statistics): never
        # risk running it twice
        return None
    has_conv = _has_conv.get(model)
    if has_conv is None:
        has_conv = _has_conv[model] = _conv_net(model)
    return torch.channels_last if has_conv else None


def _conv_net(model: nn.Module) -> bool:
    """Whether ``model`` has a Conv2d and no attention: a vision transformer's one patch
    convolution gains nothing from channels-last, and the refusal watch of
    :func:`run_in_fast_layout` would then cost a Python call on every operation of its
    attention blocks."""
    modules = list(model.modules())
    return (any(isinstance(m, nn.Conv2d) for m in modules)
            and not any(isinstance(m, nn.MultiheadAttention) for m in modules))


def run_in_fast_layout(model: nn.Module, batch: torch.Tensor,
                       run: Callable[[torch.Tensor], Result]) -> Result:
    """``run(batch)``, with ``batch`` in the format :func:`fast_format` names (a copy where it
    is not in that format already).

    A run that fails because the model cannot take a channels-last batch is repeated in NCHW
    order, and the model is not given one again. Results in channels-last order are the
    caller's to convert back (:func:`like`).
    """
    memory_format = fast_format(model, batch)
    if memory_format is None:
        return run(batch)
    if memory_format != torch.channels_last:
        return run(batch.contiguous(memory_format=memory_format))
    try:
        with _RefusalWatch():
            return run(batch.contiguous(memory_format=memory_format))
    except _LayoutRefused:
        pass
    _refused.add(model)
    return run(batch.contiguous())


def batch_like(inputs: torch.Tensor, rows: int,
               memory_format: torch.memory_format | None) -> torch.Tensor:
    """An uninitialised batch of ``rows`` samples shaped, typed and placed like ``inputs``, in
    ``memory_format`` (from :func:`fast_format`; ``None``: NCHW-contiguous)."""
    return torch.empty((rows, *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device,
                       memory_format=memory_format or torch.contiguous_format)


def like(result: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``result`` in the memory layout of ``reference`` (no copy when it already is)."""
    if result.stride() == reference.stride():
        return result
    return torch.empty_like(reference, dtype=result.dtype).copy_(result)


def memory_format_of(tensor: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a 4-D tensor in that order (and not also NCHW-contiguous),
    else ``torch.contiguous_format``."""
    if (tensor.dim() == 4 and not tensor.is_contiguous()
            and tensor.is_contiguous(memory_format=torch.channels_last)):
        return torch.channels_last
    return torch.contiguous_format


class _LayoutRefused(Exception):
    """A ``view`` of a tensor that is not NCHW-contiguous failed: the model needs NCHW order."""


class _RefusalWatch(TorchFunctionMode):
    """Turns a failed ``Tensor.view`` of a tensor that is not contiguous (what a model that
    flattens a feature map with ``x.view(len(x), -1)`` does with a channels-last batch) into
    :class:`_LayoutRefused`; every other operation and error passes through unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not torch.Tensor.view:
            return func(*args, **kwargs)
        try:
            return func(*args, **kwargs)
        except RuntimeError as error:
            if args[0].is_contiguous():
                raise
            raise _LayoutRefused from error
