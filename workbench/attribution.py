"""The one entry point: ``attribute(model, inputs, method, target=..., **options)``."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

import workbench.methods  # noqa: F401  (registers the methods)
from workbench.checks import OutputShapeError, Target, check_model, check_model_and_inputs
from workbench.layout import like
from workbench.model_layers import Layer
from workbench.model_views import attribute_view, masks_differ_per_sample, output_score
from workbench.registry import get_method


def attribute(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...], method: str, *,
              target: Target = None, forward_args: Any = None, to_layer: Layer | None = None,
              layer_input: bool = False, neuron: tuple[Layer, Any] | None = None,
              **options) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Attribution of ``model``'s target score to each input feature.

    Parameters
    ----------
    model:
        A module mapping inputs of shape ``(N, ...)`` to scores ``(N, classes)``. It is used as
        it is (train/eval mode included) and never modified.
    inputs:
        Floating-point tensor of shape ``(N, ...)``, or a tuple of them (the model takes them
        as its positional arguments; attributions come back as a tuple); left unchanged.
        Integer tensors (token ids) with ``to_layer``.
    method:
        A name from ``workbench.methods()``.
    target:
        Class per sample: an int (or 0-d integer tensor), a sequence of ints or a 1-D integer
        tensor; ``None`` uses the model's predicted class. For outputs of shape ``(N,)``
        (regression): None. For outputs with more dimensions: a tuple index over the non-batch
        dimensions (None when each sample's output is one entry, shape ``(N, 1, ..., 1)``).
        For anything else: a function of the output returning one score per sample.
    forward_args:
        Further positional arguments of the model, passed unchanged after the inputs (a tuple,
        or one value; None: none); Captum's ``additional_forward_args``.
    to_layer, layer_input:
        Explain a layer's output (its input with ``layer_input=True``) instead of the inputs:
        a module of ``model`` or its dotted name; Captum's layer attributions.
    neuron:
        ``(layer, index)``: explain one unit of a hidden layer's output instead of an output
        class (``target`` must be None); Captum's neuron attributions.
    **options:
        The method's options (see ``workbench.method_info(method).options``).

    Returns
    -------
    Tensor of the inputs' shape, dtype, device and memory layout (a tuple for a tuple of
    inputs; the layer's shape with ``to_layer``). ``workbench.model_views`` says how the last
    four arguments work.
    """
    spec = get_method(method)
    values = spec.bind(options)
    view = dict(forward_args=forward_args, to_layer=to_layer, layer_input=layer_input,
                neuron=neuron)
    if callable(target):
        check_model(model)
        return attribute_view(spec, model, inputs, None, values, score=target, **view)
    try:
        if isinstance(inputs, tuple) or forward_args is not None or to_layer is not None \
                or layer_input or neuron is not None \
                or (isinstance(inputs, torch.Tensor)
                    and masks_differ_per_sample(spec, values, len(inputs))):
            check_model(model)
            return attribute_view(spec, model, inputs, target, values, **view)
        check_model_and_inputs(model, inputs)
        if isinstance(target, tuple):  # a class per sample, or an index into a larger output
            _raise_for_larger_output(model, inputs)
        result = spec.run(model, inputs, target, **values)
    except OutputShapeError as error:  # not (N, classes): explain the score target picks
        score = output_score(target, error.shape)
        return attribute_view(spec, model, inputs, None, values, score=score, **view)
    return like(result.detach().to(dtype=inputs.dtype, device=inputs.device), inputs)


def _raise_for_larger_output(model: nn.Module, inputs: torch.Tensor) -> None:
    """``OutputShapeError`` when ``model``'s output on one sample has more than two dimensions:
    a tuple target then indexes each sample's output (Captum's convention) and is not read
    as one class per sample (methods check that length before running the model)."""
    with torch.no_grad():
        output = model(inputs[:1].clone())
    if isinstance(output, torch.Tensor) and output.dim() > 2:
        raise OutputShapeError(torch.Size((len(inputs), *output.shape[1:])))
