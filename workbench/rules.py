"""Backward rules: how a method replaces the derivative of an operation.

Every rule-based method is "input times a modified gradient" (Ancona et al. 2018, section 3):
the backward pass is the chain rule, except that

- at an elementwise nonlinearity ``a = f(z)`` an :class:`ActivationRule` replaces ``f'(z)``;
- at a weighted layer ``z = W x + b`` an :class:`AffineRule` replaces ``W^T``.

The quantity flowing backward is a (modified) gradient ``g``; relevance at any tensor ``t`` is
``t * g``. In that form averaging, residual additions and reshapes need no rule at all: their
ordinary gradient already splits relevance in proportion to the inputs.

A :class:`Rules` object declares which rules a method uses; the engine applies it.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from workbench.ops import UNIT_SLOPE_FAMILIES

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def stabilize(values: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``values + epsilon * sign(values)``, with sign(0) taken as +1 (safe division)."""
    step = torch.tensor(epsilon, dtype=values.dtype, device=values.device)
    return values + torch.where(values >= 0, step, -step)  # 3 passes, exact in any dtype


def tiny(dtype: torch.dtype) -> float:
    """Threshold below which a difference counts as zero for ``dtype``."""
    return 10 * torch.finfo(dtype).eps


def elementwise_derivative(function: Callable, pre: torch.Tensor, grad: torch.Tensor):
    """``grad * f'(pre)`` for an elementwise ``function``, by autograd."""
    with torch.enable_grad():
        point = pre.detach().requires_grad_()
        (derivative,) = torch.autograd.grad(function(point), point, grad)
    return derivative


# ----------------------------------------------------------------------------------------------
# Elementwise nonlinearities


@dataclass(frozen=True)
class ActivationCall:
    """One elementwise nonlinearity ``a = f(z)`` as the model runs it.

    ``run`` is the model's own call on ``z`` (in place if ``inplace``), ``function`` is ``f``
    out of place, ``family`` its family in ``workbench.ops.ACTIVATION_FAMILIES``; rules that
    compare with a baseline get its pre-activation ``reference``.
    """

    run: Callable[[torch.Tensor], torch.Tensor]
    function: Callable[[torch.Tensor], torch.Tensor]
    family: str
    inplace: bool = False
    reference: torch.Tensor | None = None


class Keeps(enum.Enum):
    """What an activation rule's backward needs from the forward pass."""

    PRE = "pre"                 #: the pre-activation ``z``
    OUTPUT = "output"           #: the output ``f(z)`` (for a mask)
    NOTHING = "nothing"
    MULTIPLIER = "multiplier"   #: a tensor computed in the forward pass by ``rule.multiplier``


class ActivationRule:
    """Replaces ``f'(z)`` in the backward pass of ``a = f(z)``.

    ``families`` limits the rule to some activation families (see ``workbench.ops``); elsewhere
    the ordinary derivative is used.
    """

    name = "gradient"
    families: frozenset[str] | None = None
    #: what the backward needs (see :class:`Keeps`)
    keeps: Keeps = Keeps.PRE
    #: the rule compares each pre-activation with the baseline's (``Rules.needs_reference``)
    needs_reference = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.keeps, Keeps):
            raise TypeError(f"{cls.__name__}.keeps must be a workbench.rules.Keeps member, got "
                            f"{cls.keeps!r}")

    def applies_to(self, family: str) -> bool:
        return self.families is None or family in self.families

    def multiplier(self, pre: torch.Tensor, output: torch.Tensor,
                   call: ActivationCall) -> torch.Tensor:
        """For ``keeps = Keeps.MULTIPLIER``: what replaces ``f'(z)``, from ``z = pre``, the output
        ``f(z)`` and the call (its function, family, the baseline's pre-activation)."""
        raise NotImplementedError

    def backward(self, grad: torch.Tensor, kept: torch.Tensor | None,
                 function: Callable) -> torch.Tensor:
        """The gradient at ``z`` given the gradient ``grad`` at ``f(z)``; ``kept`` is what
        :attr:`keeps` names; ``function`` is ``f`` (out of place)."""
        raise NotImplementedError


class GuidedRule(ActivationRule):
    """Guided backprop (Springenberg et al. 2015): pass positive gradient where ``z > 0``."""

    name = "guided"
    families = frozenset({"relu"})
    keeps = Keeps.OUTPUT  # relu(z) > 0 exactly where z > 0

    def backward(self, grad, output, function):
        # clamp(g, 0) where relu(z) > 0, else 0, in one kernel (no float mask)
        return torch.ops.aten.threshold_backward(grad.clamp(min=0), output, 0)


class DeconvRule(ActivationRule):
    """DeConvNet (Zeiler & Fergus 2014): pass positive gradient, whatever the input."""

    name = "deconvnet"
    families = frozenset({"relu"})
    keeps = Keeps.NOTHING

    def backward(self, grad, kept, function):
        return grad.clamp(min=0)


class RatioRule(ActivationRule):
    """LRP: relevance passes unchanged, i.e. ``f'(z)`` becomes ``f(z) / z`` (Ancona, Prop. 1).

    For ReLU and LeakyReLU ``f(z) / z`` is ``f'(z)`` itself, so they keep the ordinary backward.
    """

    name = "ratio"

    def applies_to(self, family: str) -> bool:
        return family not in ("relu", "leaky_relu")

    def backward(self, grad, pre, function):
        return grad * function(pre) / stabilize(pre, tiny(pre.dtype))


class RescaleRule(ActivationRule):
    """DeepLIFT Rescale: ``f'(z)`` becomes ``(f(z) - f(z0)) / (z - z0)`` (Ancona, Prop. 2).

    ``z0`` is the pre-activation of the baseline at the same operation, recorded by the engine
    (``Rules.needs_reference``, ``workbench.engine.References``).
    Where ``|z - z0|`` is tiny the ordinary derivative ``f'(z)`` is used; for ReLU-like
    functions (``ops.UNIT_SLOPE_FAMILIES``) the ratio is exact down to ``z = z0`` and only that
    case needs it. The multiplier is computed in the forward pass and is all the backward keeps.
    """

    name = "rescale"
    keeps = Keeps.MULTIPLIER
    needs_reference = True

    def multiplier(self, pre, output, call):
        function, reference = call.function, call.reference
        delta_in = pre - reference
        multiplier = (output - function(reference)).div_(delta_in)  # inf or NaN where z = z0
        if call.family in UNIT_SLOPE_FAMILIES:
            # the ratio is accurate wherever z != z0 (see ops.UNIT_SLOPE_FAMILIES); it is 0/0
            # where z = z0 exactly, and there f'(z) = f'(z0), found on the (small) reference;
            # one sum tells whether there is any such place
            if not torch.isfinite(multiplier.sum()):
                slope = elementwise_derivative(function, reference, torch.ones_like(reference))
                torch.where(delta_in == 0, slope, multiplier, out=multiplier)
            return multiplier
        # elsewhere f(z) - f(z0) cancels when z is close to z0: the few places where |z - z0|
        # is tiny get f'(z) instead, found by flat (row-major) index; le_ in place leaves 1.0
        # there and 0.0 elsewhere
        small = delta_in.abs_().le_(tiny(pre.dtype))
        if small.any():
            index = small.reshape(-1).nonzero().squeeze(1)
            point = pre.reshape(-1).index_select(0, index)
            derivative = elementwise_derivative(function, point, torch.ones_like(point))
            multiplier = multiplier.contiguous()
            multiplier.view(-1).index_copy_(0, index, derivative)
        return multiplier

    def backward(self, grad, multiplier, function):
        return grad * multiplier


#: rules that need ``z`` as it was before an in-place activation overwrote it
_KEEPING_PRE = (Keeps.PRE, Keeps.MULTIPLIER)


class _ActivationFunction(torch.autograd.Function):
    """Runs ``a = f(z)`` (in place if the model asked for it) with a rule's backward.

    Keeps what the rule asks for: ``z`` (a copy when ``f`` runs in place), the output (for a
    mask), the rule's multiplier, or nothing.
    """

    @staticmethod
    def forward(ctx, pre, rule, call):
        ctx.rule, ctx.function = rule, call.function
        keeps = rule.keeps
        kept_pre = pre.clone() if call.inplace and keeps in _KEEPING_PRE else pre
        output = call.run(pre)
        if call.inplace:
            ctx.mark_dirty(output)
        if keeps is Keeps.PRE:
            ctx.save_for_backward(kept_pre)
        elif keeps is Keeps.OUTPUT:
            ctx.save_for_backward(output)
        elif keeps is Keeps.MULTIPLIER:
            ctx.save_for_backward(rule.multiplier(kept_pre, output, call))
        return output

    @staticmethod
    def backward(ctx, grad):
        kept = ctx.saved_tensors[0] if ctx.saved_tensors else None
        return ctx.rule.backward(grad, kept, ctx.function), None, None


def apply_activation(rule: ActivationRule, pre: torch.Tensor,
                     call: ActivationCall) -> torch.Tensor:
    """``call.run(pre)`` with ``rule`` replacing the derivative."""
    return _ActivationFunction.apply(pre, rule, call)


# ----------------------------------------------------------------------------------------------
# Max pooling


class DeltaMaxRule:
    """DeepLIFT's multiplier for a max operation ``y = max_{i in window} x_i`` that keeps
    summation to delta (Captum's DeepLIFT at max pooling): the change of each window's output
    is split in two, ``max(y, y0) - y0`` assigned to the argmax of ``x`` and
    ``y - max(y, y0)`` to the argmax of the reference ``x0``, and each input's multiplier is
    its share divided by ``x_i - x0_i``, so that ``sum_i m_i (x_i - x0_i) = y - y0`` per
    window. Where ``x_i - x0_i`` is (nearly) zero the ordinary gradient is used.
    The default of ``deeplift_rescale`` is instead the gradient (routing to the argmax of
    ``x``), as in the original DeepLIFT (Shrikumar et al. 2017, arXiv 1704.02685) and in
    Ancona et al. 2018's gradient formulation of it.
    """

    name = "delta_max"
    needs_reference = True

    def apply(self, pre: torch.Tensor, reference: torch.Tensor,
              run: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``run(pre)`` (the max operation) with this rule as its backward."""
        return _DeltaMaxFunction.apply(pre, reference.expand_as(pre), run)


class _DeltaMaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, reference, run):
        ctx.save_for_backward(pre, reference)
        ctx.run = run
        return run(pre)

    @staticmethod
    def backward(ctx, grad):
        pre, reference = ctx.saved_tensors
        with torch.enable_grad():
            point = pre.detach().requires_grad_()
            base = reference.detach().contiguous().requires_grad_()
            output, output_reference = ctx.run(point), ctx.run(base)
            top = torch.maximum(output, output_reference).detach()
            (to_input,) = torch.autograd.grad(output, point,
                                              grad * (top - output_reference.detach()),
                                              retain_graph=True)
            (plain,) = torch.autograd.grad(output, point, grad)
            (to_reference,) = torch.autograd.grad(output_reference, base,
                                                  grad * (output.detach() - top))
        delta = pre - reference
        shared = (to_input + to_reference) / delta
        return torch.where(delta.abs() <= tiny(pre.dtype), plain, shared), None, None


# ----------------------------------------------------------------------------------------------
# Weighted layers


@dataclass(frozen=True)
class AffineCall:
    """One weighted layer ``z = forward(x, weight, bias)``, linear in ``x`` and in ``weight``.

    ``kind`` names the operation (``linear``, ``conv1d``, ``conv2d``, ``conv3d``, or ``channel``
    for a batch norm on its own) and ``options`` its keyword arguments (stride, padding, ...).
    """

    inputs: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    forward: Forward
    layer: str | None = None
    kind: str = "linear"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self) -> torch.Tensor:
        return self.forward(self.inputs, self.weight, self.bias)

    def keeping_no_inputs(self) -> torch.Tensor:
        """``self()``, differentiable in the inputs only, keeping only the weight for the
        backward (``g_x = W^T g_z``): autograd would also keep ``x``, for a weight gradient that
        attribution never asks for. Falls back to ``self()`` where the input gradient has no
        closed form here (a weight that depends on the inputs, string padding, an unbatched
        convolution, a channel affine)."""
        if (self.weight.requires_grad or self.kind not in INPUT_GRADIENTS
                or isinstance(self.options.get("padding"), str)
                or self.inputs.dim() != BATCHED_DIMS.get(self.kind, self.inputs.dim())):
            return self()
        return _KeepingNoInputs.apply(self.inputs, self.weight, self.bias, self)


def _linear_input_gradient(weight: torch.Tensor, options: Mapping[str, Any],
                           grad: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
    return grad.matmul(weight)


def _conv_input_gradient(weight: torch.Tensor, options: Mapping[str, Any],
                         grad: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
    dims = layout.dim() - 2

    def tupled(name: str, default: int) -> list[int]:
        value = options.get(name, default)
        return list(value) if isinstance(value, (tuple, list)) else [value] * dims

    return torch.ops.aten.convolution_backward(
        grad, layout, weight, None, tupled("stride", 1), tupled("padding", 0),
        tupled("dilation", 1), False, [0] * dims, options.get("groups", 1),
        (True, False, False))[0]


#: the input's dimensions for a batched convolution (N, C, *spatial)
BATCHED_DIMS = {"conv1d": 3, "conv2d": 4, "conv3d": 5}
INPUT_GRADIENTS = {"linear": _linear_input_gradient, "conv1d": _conv_input_gradient,
                    "conv2d": _conv_input_gradient, "conv3d": _conv_input_gradient}


class _KeepingNoInputs(torch.autograd.Function):
    """A weighted layer whose backward keeps only the weight (see
    :meth:`AffineCall.keeping_no_inputs`)."""

    @staticmethod
    def forward(ctx, inputs, weight, bias, call):
        ctx.save_for_backward(weight)
        ctx.kind, ctx.options = call.kind, call.options
        ctx.shape, ctx.strides = inputs.shape, inputs.stride()
        ctx.dtype, ctx.device = inputs.dtype, inputs.device
        return call.forward(inputs, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        # the convolution's backward reads the inputs' shape and layout, never their values:
        # an unwritten tensor of that layout costs no memory
        layout = torch.empty_strided(ctx.shape, ctx.strides, dtype=ctx.dtype, device=ctx.device)
        grad_inputs = INPUT_GRADIENTS[ctx.kind](weight, ctx.options, grad, layout)
        return grad_inputs, None, None, None


class AffineRule:
    """Replaces the backward ``W^T`` of a weighted layer."""

    name = "gradient"

    def apply(self, call: AffineCall) -> torch.Tensor:
        raise NotImplementedError


class EpsilonRule(AffineRule):
    """LRP-epsilon (Bach et al. 2015): ``R_i = sum_j x_i w_ij R_j / (z_j + eps sign(z_j))``.

    With ``R = t * g`` this is the gradient with ``g_z`` scaled by ``z / (z + eps sign z)``.
    ``bias=False`` leaves the bias out of the denominator (Zennit's ``zero_params='bias'``).
    """

    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6, bias: bool = True):
        self.epsilon, self.bias = float(epsilon), bool(bias)

    def apply(self, call: AffineCall) -> torch.Tensor:
        output = call.keeping_no_inputs()
        if output.requires_grad:
            with torch.no_grad():
                factor = self._factor(output, call)
            # a tensor hook scales the gradient at this version of the output, even if the
            # model later changes the tensor in place (an in-place ReLU, ``out += identity``)
            output.register_hook(lambda grad: grad * factor)
        return output

    def _factor(self, output: torch.Tensor, call: AffineCall) -> torch.Tensor:
        """``z / (z' + eps sign z')``, ``z'`` the output without the bias if ``bias=False``."""
        if not self.bias and call.bias is not None:
            unbiased = call.forward(call.inputs, call.weight, None)
            denominator = stabilize(unbiased, self.epsilon)
            return torch.where(denominator == 0, 0.0, output / denominator)
        magnitude = output.abs()  # z / (z + eps sign z) = |z| / (|z| + eps)
        denominator = magnitude + self.epsilon
        if self.epsilon <= 0:  # 0 / 0 where z = 0: make it 0
            denominator.clamp_(min=torch.finfo(output.dtype).tiny)
        return torch.div(magnitude, denominator, out=denominator)

    def __repr__(self) -> str:
        bias = "" if self.bias else ", bias=False"
        return f"EpsilonRule(epsilon={self.epsilon:g}{bias})"


class ZeroRule(EpsilonRule):
    """LRP-0 (Bach et al. 2015; Montavon et al. 2019, section 10.2.1): epsilon = 0; ``0 / 0`` is
    taken as 0."""

    name = "zero"

    def __init__(self, bias: bool = True):
        super().__init__(0.0, bias)

    def __repr__(self) -> str:
        return "ZeroRule()" if self.bias else "ZeroRule(bias=False)"


# -- rules as modified forward passes ------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# A method's rules


@dataclass(frozen=True)
class Rules:
    """The rules one method applies, for the engine in ``workbench.engine``.

    Attributes
    ----------
    activation:
        Rule for elementwise nonlinearities (``None``: ordinary derivative).
    affine:
        Rule for weighted layers (``None``: ordinary gradient).
    layer_affine:
        Per-layer overrides of ``affine``, by the module's dotted name.
    composite:
        A ``workbench.composites.Composite`` that gives the per-layer rules of a model (under
        ``layer_affine``); the engine resolves it once per forward pass (:meth:`bound_to`).
    max_pool:
        Rule for max pooling and max reductions (:class:`DeltaMaxRule`; ``None``: the gradient,
        routing to the argmax).
    softmax, product, normalization:
        Rules for transformers' operations (``workbench.transformer_rules``): softmax, products
        of two input-dependent tensors, layer and RMS normalisation. ``None`` (the default):
        the engine refuses such an operation by name.

    A rule with ``needs_reference`` (DeepLIFT) makes the engine run the baseline first and
    record each pre-activation ``z0``, then the inputs with the rule comparing ``z`` and ``z0``.
    """

    activation: ActivationRule | None = None
    affine: AffineRule | None = None
    layer_affine: Mapping[str, AffineRule] = field(default_factory=dict)
    composite: Any = None
    max_pool: DeltaMaxRule | None = None
    softmax: Any = None
    product: Any = None
    normalization: Any = None

    @property
    def needs_reference(self) -> bool:
        return ((self.activation is not None and self.activation.needs_reference)
                or self.max_pool is not None)

    def affine_for(self, layer: str | None) -> AffineRule | None:
        if layer is not None and layer in self.layer_affine:
            return self.layer_affine[layer]
        return self.affine

    @property
    def has_affine_rules(self) -> bool:
        return self.affine is not None or bool(self.layer_affine) or self.composite is not None

    def bound_to(self, model: torch.nn.Module) -> Rules:
        """These rules with the composite's rule for each layer of ``model`` (``layer_affine``
        overriding it); the rules themselves without a composite."""
        if self.composite is None:
            return self
        layers = {name: rule for name, rule in self.composite.rules_for(model).items()
                  if rule is not None}
        layers.update(self.layer_affine)
        return replace(self, layer_affine=layers, composite=None)
