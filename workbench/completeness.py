"""Completeness (summation to delta) of an attribution: how far its sum is from the change of
the target score between the baseline and the input.

Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365, section 3, "completeness") and
DeepLIFT (Shrikumar et al. 2017, arXiv:1704.02685, section 3.2, "summation-to-delta") satisfy
``sum_i a_i = f_t(x) - f_t(x0)`` exactly, Integrated Gradients up to the error of its quadrature;
Captum reports the difference as the "convergence delta".
"""
from __future__ import annotations

import torch
from torch import nn

from workbench.arguments import broadcast_to_inputs, expand_baseline
from workbench.checks import Target, check_model_and_inputs, resolve_target
from workbench.forward import predict


def completeness_gap(model: nn.Module, inputs: torch.Tensor, attributions: torch.Tensor,
                     baseline: float | torch.Tensor = 0.0, target: Target = None,
                     batch_size: int | None = None) -> torch.Tensor:
    """``sum_i a_i - (f_t(x) - f_t(x0))`` per sample, shape ``(N,)``: Captum's convergence delta.

    Parameters
    ----------
    model, inputs, target:
        As for ``workbench.attribute``; ``target=None`` takes the class the model predicts for
        ``inputs``.
    attributions:
        Attributions of the inputs' shape (or broadcastable to it).
    baseline:
        The reference input ``x0`` the attributions were computed against: a number, one
        sample, or one baseline per input.
    """
    check_model_and_inputs(model, inputs)
    if not isinstance(attributions, torch.Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    attributions = broadcast_to_inputs(attributions.detach(), inputs.shape, "attributions")
    start = expand_baseline(baseline, inputs)
    output = predict(model, inputs.detach().clone(), batch_size)
    indices = resolve_target(target, output)
    end_scores = output.gather(1, indices[:, None])[:, 0]
    start_scores = predict(model, start, batch_size).gather(1, indices[:, None])[:, 0]
    total = attributions.flatten(1).to(end_scores.dtype).sum(dim=1)
    return total - (end_scores - start_scores)
