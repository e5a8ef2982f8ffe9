"""The model's forward pass as methods and metrics use it: outputs in chunks, the target score
of each input, and a tracked copy of the inputs that the model may change in place."""
from __future__ import annotations

import torch
from torch import nn

from workbench.checks import Target, expand_target, resolve_target
from workbench.layout import run_in_fast_layout


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Model outputs for ``inputs``, in chunks of ``batch_size`` samples."""
    if batch_size is None or len(inputs) <= batch_size:
        return run_in_fast_layout(model, inputs, model)
    return torch.cat([run_in_fast_layout(model, chunk, model)
                      for chunk in inputs.split(batch_size)])


def tracked_copy(inputs: torch.Tensor) -> torch.Tensor:
    """A copy of ``inputs`` that requires grad and is not a leaf, so that a model may change it
    in place (an in-place first activation) without touching the user's tensor."""
    return inputs.detach().clone().requires_grad_().clone()


def target_scores(model: nn.Module, inputs: torch.Tensor, target: Target,
                  batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Resolved target indices and the target score of each input (on a copy of the inputs:
    the model may change its input in place)."""
    output = predict(model, inputs.clone(), batch_size)
    indices = resolve_target(target, output)
    return indices, output.gather(1, indices[:, None])[:, 0]


def target_indices(model: nn.Module, inputs: torch.Tensor, target: Target,
                   batch_size: int | None = None) -> torch.Tensor:
    """One class per sample: ``target`` expanded, or the predicted class when it is ``None``
    (the only case that costs a forward pass; the range is checked by the engine)."""
    indices = expand_target(target, len(inputs), inputs.device)
    if indices is None:
        indices = resolve_target(None, predict(model, inputs.clone(), batch_size))
    return indices
