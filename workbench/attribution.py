"""The one entry point: ``attribute(model, inputs, method, target=..., **options)``."""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

import workbench.methods  # noqa: F401  (registers the methods)
from workbench.checks import OutputShapeError, Target, check_model, check_model_and_inputs
from workbench.layout import like
from workbench.model_layers import Layer
from workbench.model_views import (NOT_ON_VIEWS, attribute_view, masks_differ_per_sample,
                                   output_score)
from workbench.registry import get_method


def attribute(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...], method: str, *,
              target: Target = None, forward_args: Any = None, layer: Layer | None = None,
              attribute_to: str = "output", neuron: tuple[Layer, Any] | None = None,
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
        Integer tensors (token ids) with ``layer``.
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
    layer, attribute_to:
        Explain a layer's output (``attribute_to="output"``) or its input
        (``attribute_to="input"``) instead of the inputs: a module of ``model`` or its dotted
        name; Captum's layer attributions (``attribute_to_layer_input``). For Grad-CAM and
        guided Grad-CAM, which always explain a layer, ``layer`` is their own option.
    neuron:
        ``(layer, index)``: explain one unit of a hidden layer's output instead of an output
        class (``target`` must be None); Captum's neuron attributions.
    **options:
        The method's options (see ``workbench.method_info(method).options``).

    Returns
    -------
    Tensor of the inputs' shape, dtype, device and memory layout (a tuple for a tuple of
    inputs; the layer's shape with ``layer``; Grad-CAM's layer-sized map with its
    ``upsample=False``). ``workbench.model_views`` says how the last
    four arguments work.
    """
    spec = get_method(method)
    layer, attribute_to = _renamed_layer_options(options, layer, attribute_to)
    if any(option.name == "layer" for option in spec.options):  # Grad-CAM's own layer
        if isinstance(inputs, torch.Tensor) and not inputs.is_floating_point():
            raise TypeError(f"{spec.name} takes floating-point inputs, got dtype {inputs.dtype}: "
                            f"{NOT_ON_VIEWS[spec.name]}, so token ids cannot be explained at "
                            "their embedding with it")
        if attribute_to != "output":
            raise ValueError(f"{spec.name} explains its layer's output: attribute_to must be "
                             f"'output', got {attribute_to!r}")
        if layer is not None:
            options = {**options, "layer": layer}
        layer = None
    values = spec.bind(options)
    view = dict(forward_args=forward_args, layer=layer, attribute_to=attribute_to, neuron=neuron)
    if callable(target):
        check_model(model)
        return attribute_view(spec, model, inputs, None, values, score=target, **view)
    try:
        if isinstance(inputs, tuple) or forward_args is not None or layer is not None \
                or attribute_to != "output" or neuron is not None \
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
    result = result.detach().to(dtype=inputs.dtype, device=inputs.device)
    return like(result, inputs) if result.shape == inputs.shape else result  # e.g. a layer's map


def _renamed_layer_options(options: dict[str, Any], layer: Layer | None,
                           attribute_to: str) -> tuple[Layer | None, str]:
    """``layer`` and ``attribute_to``, read from the earlier spellings ``to_layer`` and
    ``layer_input`` (removed from ``options``, with a ``FutureWarning``) where those are given."""
    if "to_layer" in options:
        warnings.warn("to_layer= is now layer=", FutureWarning, stacklevel=3)
        if layer is not None:
            raise TypeError("give layer= or to_layer=, not both")
        layer = options.pop("to_layer")
    if "layer_input" in options:
        warnings.warn("layer_input= is now attribute_to='input' or 'output'", FutureWarning,
                      stacklevel=3)
        attribute_to = "input" if options.pop("layer_input") else attribute_to
    return layer, attribute_to


def _raise_for_larger_output(model: nn.Module, inputs: torch.Tensor) -> None:
    """``OutputShapeError`` when ``model``'s output on one sample has more than two dimensions:
    a tuple target then indexes each sample's output (Captum's convention) and is not read
    as one class per sample (methods check that length before running the model)."""
    with torch.no_grad():
        output = model(inputs[:1].clone())
    if isinstance(output, torch.Tensor) and output.dim() > 2:
        raise OutputShapeError(torch.Size((len(inputs), *output.shape[1:])))
