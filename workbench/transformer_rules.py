"""Rules for the operations of transformers, in the engine's "input times a modified gradient"
form (relevance at a tensor ``t`` is ``t * g``).

Two rule sets from the literature:

- CP-LRP (Ali et al. 2022, "XAI for Transformers: better explanations through conservative
  propagation", ICML, arXiv 2202.07304, section 3): the attention weights (softmax outputs) and
  LayerNorm's scale ``1 / std`` are held constant in the backward pass.
- AttnLRP (Achtibat et al. 2024, "AttnLRP: attention-aware layer-wise relevance propagation for
  transformers", ICML, arXiv 2402.05602, section 3): the softmax rule (Prop. 3.1), the uniform
  rule for products of input-dependent tensors (Prop. 3.2, 3.3) and the identity rule for
  normalisation (Prop. 3.4) and elementwise nonlinearities (Eq. 9).

Weighted layers keep the epsilon rule (``workbench.rules.EpsilonRule``); elementwise
nonlinearities the identity rule, which is ``workbench.rules.RatioRule``
(``f'(z) -> f(z) / z``: relevance passes unchanged).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


# ----------------------------------------------------------------------------------------------
# Softmax


class SoftmaxRule:
    """Replaces the backward of ``s = softmax(x)``; ``run()`` is the model's own call."""

    name = "gradient"

    def apply(self, run: Callable[[], torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class SoftmaxTaylorRule(SoftmaxRule):
    """AttnLRP's softmax rule (Achtibat et al. 2024, Prop. 3.1): the Taylor decomposition at
    ``x`` with the bias term left out,

    ``R_i = x_i (R_i^out - s_i sum_j R_j^out)``.

    With ``R^out = s * g`` this is ``x_i s_i (g_i - sum_j s_j g_j)``: input times the ordinary
    gradient of the softmax, so the backward stays the ordinary one.
    """

    name = "taylor"

    def apply(self, run):
        return run()


class ConstantSoftmaxRule(SoftmaxRule):
    """CP-LRP (Ali et al. 2022, section 3.2): the attention weights ``p = softmax(q k^T)`` are
    constants of the backward pass, so ``y = p v`` is linear in ``v`` and no relevance flows
    into the queries and keys: ``g_x = 0``."""

    name = "constant"

    def apply(self, run):
        return run().detach()


# ----------------------------------------------------------------------------------------------
# Products of input-dependent tensors


class _ScaledGradient(torch.autograd.Function):
    """The identity whose backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx, tensor, factor):
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def scaled_gradient(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    """``tensor`` in the forward pass, ``factor * g`` in the backward."""
    return _ScaledGradient.apply(tensor, factor)


class ProductRule:
    """Replaces the backward of a product of ``n >= 2`` input-dependent factors (elementwise
    ``a * b``, ``matmul``, ``bmm``, ``einsum``). ``run(factors)`` is the model's call with the
    factors replaced by the given tensors."""

    name = "gradient"

    def apply(self, factors: Sequence[torch.Tensor],
              run: Callable[[Sequence[torch.Tensor]], torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class UniformRule(ProductRule):
    """AttnLRP's uniform rule (Achtibat et al. 2024, Prop. 3.2; Prop. 3.3 for matrix products
    ``y_jk = sum_i a_ji b_ik``, whose sum takes the epsilon rule with epsilon -> 0): each of the
    ``n`` factors gets ``1 / n`` of the relevance of each product term,

    ``R_a = R_b = R_y / 2``  (elementwise ``y = a * b``).

    With ``R = t * g``: ``a * g_a = y g / 2``, i.e. the ordinary gradient of each factor times
    ``1 / n``.
    """

    name = "uniform"

    def apply(self, factors, run):
        share = 1.0 / len(factors)
        return run([scaled_gradient(factor, share) for factor in factors])


# ----------------------------------------------------------------------------------------------
# Normalisation


@dataclass(frozen=True)
class NormalizationCall:
    """``y = (x - mean(x)) / std(x) * weight + bias`` (layer norm, ``centred``) or
    ``y = x / rms(x) * weight`` (RMS norm) over the trailing ``dims``; ``run()`` is the model's
    own call."""

    run: Callable[[], torch.Tensor]
    inputs: torch.Tensor
    dims: tuple[int, ...]
    weight: torch.Tensor | None
    eps: float
    centred: bool
    #: the same call returning ``(y, 1 / std)`` from one kernel (``torch.native_layer_norm``),
    #: where there is one: the scale is then not recomputed in the backward
    run_with_scale: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None


class NormalizationRule:
    """Replaces the backward of a layer or RMS normalisation."""

    name = "gradient"

    def apply(self, call: NormalizationCall) -> torch.Tensor:
        raise NotImplementedError


class ConstantScaleRule(NormalizationRule):
    """The scale ``1 / std`` (or ``1 / rms``) is a constant of the backward pass: CP-LRP's
    LayerNorm rule (Ali et al. 2022, section 3.3) and AttnLRP's identity rule for normalisation
    (Achtibat et al. 2024, Prop. 3.4). Then ``y`` is linear in ``x``:

    ``g_x = h - mean(h)``, ``h = g * weight / std``  (layer norm; RMS norm: ``g_x = h``)

    so relevance passes to ``x - mean(x)`` in full and the centring shares it as a linear map;
    the bias absorbs its part. The forward pass is the model's own call.
    """

    name = "constant_scale"

    def apply(self, call):
        return _ConstantScale.apply(call.inputs, call)


class _ConstantScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, call):
        ctx.call = call
        if call.run_with_scale is not None:
            output, scale = call.run_with_scale()
            ctx.save_for_backward(scale)
            return output
        ctx.save_for_backward(inputs)
        return call.run()

    @staticmethod
    def backward(ctx, grad):
        (saved,) = ctx.saved_tensors
        call = ctx.call
        if call.run_with_scale is not None:
            scale = saved
        elif call.centred:
            scale = torch.rsqrt(saved.var(dim=call.dims, keepdim=True, unbiased=False)
                                + call.eps)
        else:
            scale = torch.rsqrt(saved.pow(2).mean(dim=call.dims, keepdim=True) + call.eps)
        h = grad * scale
        if call.weight is not None:
            h = h * call.weight
        if call.centred:
            h = h - h.mean(dim=call.dims, keepdim=True)
        return h, None
