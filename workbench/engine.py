"""The modified-gradient engine: one backward pass with per-operation rules.

During the forward pass a ``TorchFunctionMode`` sees every torch operation the model runs,
whatever module or functional form it comes from, and routes each through its rule
(``workbench.rules``). The backward pass is then an ordinary ``torch.autograd.grad``. Nothing is
attached to the model: no hooks, no attributes; leaving the ``with`` block removes the mode even
when the forward pass raises.
"""
from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from workbench import attention, ops
from workbench.checks import Target, resolve_target
from workbench.layout import like, memory_format_of, run_in_fast_layout
from workbench.ops import OpKind
from workbench.rules import ActivationCall, AffineCall, Rules, apply_activation
from workbench.transformer_rules import NormalizationCall


class UnsupportedOperationError(NotImplementedError):
    """The model runs an operation that a rule-based method has no rule for."""


def modified_gradient(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Target,
    rules: Rules | None = None,
    *,
    method: str = "gradient",
    baseline: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gradient of the target score with respect to ``inputs``, under ``rules``.

    ``rules=None`` gives the plain gradient. Rules that compare with a reference (DeepLIFT)
    first run ``baseline`` (one sample broadcast to all, or one per input) through the model
    to record each pre-activation; the backward pass then covers the inputs alone.
    """
    gradient = run_in_fast_layout(
        model, inputs,
        lambda batch: _gradient(model, batch, target, rules, method, baseline))
    return like(gradient, inputs)


def _gradient(model: nn.Module, inputs: torch.Tensor, target: Target, rules: Rules | None,
              method: str, baseline: torch.Tensor | None) -> torch.Tensor:
    # shares the caller's storage without a copy: autograd refuses any in-place change of a
    # leaf that requires grad before it happens (the engine checks its own in-place rules too),
    # and such a model is then given a copy
    leaf = inputs.detach().requires_grad_()
    references = None
    if rules is not None and rules.needs_reference:
        if baseline is None:
            raise ValueError(f"{method} needs a baseline")
        references = References()
        # requires grad so that the same operations count as input-dependent in both passes;
        # a copy (not a leaf, in the inputs' memory layout) so that a model may change it in
        # place
        reference_batch = baseline.detach().to(leaf).requires_grad_().clone(
            memory_format=memory_format_of(leaf))
        _forward(model, reference_batch, rules, method, references)
        references.replay()
    try:
        output = _forward(model, leaf, rules, method, references, guarded=leaf)
    except InputChangedInPlace:  # the model changes its input in place: give it a copy
        if references is not None:
            references.replay()
        output = _forward(model, leaf.clone(), rules, method, references)
    indices = resolve_target(target, output)
    score = output.gather(1, indices[:, None]).sum()
    if not score.requires_grad:
        raise ValueError("the model's output does not depend on its inputs (no gradient)")
    (gradient,) = torch.autograd.grad(score, leaf)
    return gradient


def _forward(model: nn.Module, batch: torch.Tensor, rules: Rules | None, method: str,
             references: References | None = None, guarded: torch.Tensor | None = None):
    """The model's output for ``batch`` under the rules' mode; ``guarded``: a tensor the model
    must not change in place (``InputChangedInPlace`` is raised before it would)."""
    mode = (RuleMode(model, rules, method, references, guarded) if rules is not None
            else NoWeightGradientMode(guarded))
    with torch.enable_grad(), mode:
        output = model(batch)
    if references is not None:
        references.check_all_used(model, method)
    return output


class References:
    """The baseline's pre-activations, recorded in call order and replayed for the inputs.

    Recording keeps a copy of each ``z0`` (the model may change tensors in place later);
    replaying hands them out in the same order and checks that each fits the inputs' ``z``.
    """

    def __init__(self):
        self.values: list[torch.Tensor] = []
        self.recording, self.position = True, 0

    def replay(self) -> None:
        self.recording, self.position = False, 0

    def record(self, pre: torch.Tensor) -> None:
        self.values.append(pre.detach().clone())

    def next_for(self, pre: torch.Tensor, model: nn.Module, method: str) -> torch.Tensor:
        if self.position >= len(self.values):
            self._mismatch(model, method, "runs more elementwise nonlinearities for the inputs "
                           "than for the baseline")
        reference = self.values[self.position]
        self.position += 1
        if reference.shape[1:] != pre.shape[1:] or reference.shape[0] not in (1, len(pre)):
            self._mismatch(model, method, f"gives a pre-activation of shape {tuple(pre.shape)} "
                           f"for the inputs but {tuple(reference.shape)} for the baseline")
        # in the inputs' memory layout: elementwise arithmetic across layouts is slow (a batch
        # of one may take another convolution path with another output layout)
        return reference.contiguous(memory_format=memory_format_of(pre))

    def check_all_used(self, model: nn.Module, method: str) -> None:
        if not self.recording and self.position != len(self.values):
            self._mismatch(model, method, f"ran {len(self.values)} elementwise nonlinearities "
                           f"for the baseline but {self.position} for the inputs")

    @staticmethod
    def _mismatch(model: nn.Module, method: str, what: str):
        path, kind = module_path(model)
        raise ValueError(f"{method} compares the forward passes of the inputs and the baseline, "
                         f"but the model (at module '{path}', {kind}) {what}; it needs a model "
                         "that runs the same operations for every input")


def module_path(model: nn.Module) -> tuple[str, str]:
    """Dotted name and type of the innermost module of ``model`` that is running now.

    Found from the Python call stack, so no hooks are needed; ``("<model>", type)`` when the
    operation is in the model's own ``forward``.
    """
    names = {id(module): name for name, module in model.named_modules()}
    frame = inspect.currentframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, nn.Module) and id(candidate) in names:
            name = names[id(candidate)] or "<model>"
            return name, type(candidate).__name__
        frame = frame.f_back
    return "<model>", type(model).__name__


def affine_call(func: Callable, args: tuple, kwargs: dict, layer: str | None = None
                ) -> AffineCall:
    """The weighted-layer call ``func(*args, **kwargs)`` (a Linear or Conv operation)."""
    bound = ops.bound_arguments(func, args, kwargs) or _positional(func, args, kwargs)
    inputs, weight, bias = bound.pop("input"), bound.pop("weight"), bound.pop("bias", None)
    options = dict(bound)

    def forward(x, w, b):
        return func(x, w, b, **options)

    return AffineCall(inputs, weight, bias, forward, layer, ops.AFFINE_OPS[func], options)


class InputChangedInPlace(Exception):
    """The model was about to overwrite the tensor it was given (raised before it did)."""


class _GuardingMode(TorchFunctionMode):
    """A mode that refuses, with :class:`InputChangedInPlace`, any operation that would write
    into ``guarded`` (the input leaf: the engine then gives the model a copy)."""

    def __init__(self, guarded: torch.Tensor | None = None):
        super().__init__()
        self.guarded = guarded

    def _guard(self, func, args, kwargs) -> None:
        if self.guarded is not None and ops.writes_into(func, args, kwargs, self.guarded):
            raise InputChangedInPlace(ops.op_name(func))


class NoWeightGradientMode(_GuardingMode):
    """The plain gradient's forward pass: a weighted layer whose weight is a parameter keeps no
    inputs for the backward (``AffineCall.keeping_no_inputs``: no weight gradient is ever asked
    for); every other operation runs as it is, so any model works."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._guard(func, args, kwargs)
        if func not in ops.AFFINE_OPS:
            return func(*args, **kwargs)
        args, kwargs = _detach_parameters(args), _detach_parameters(kwargs)
        if not _any_requires_grad(args, kwargs):
            return func(*args, **kwargs)
        return affine_call(func, args, kwargs).keeping_no_inputs()


class RuleMode(_GuardingMode):
    """Routes each torch operation of a forward pass through the rules of one method."""

    def __init__(self, model: nn.Module, rules: Rules, method: str,
                 references: References | None = None, guarded: torch.Tensor | None = None):
        super().__init__(guarded)
        self.model, self.rules, self.method = model, rules.bound_to(model), method
        self.references = references
        self.layer_of = {
            id(parameter): name
            for name, module in model.named_modules()
            for parameter in module.parameters(recurse=False)
        }
        # outputs of weighted layers, for merging a following batch norm: id -> (weak reference
        # to the output, call); weak, so that pre-activations the model has done with are freed
        # during the forward pass as they would be without the engine
        self._affine_outputs: dict[int, tuple[weakref.ref, AffineCall]] = {}

    def __exit__(self, *exc):
        self._affine_outputs.clear()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._guard(func, args, kwargs)
        kind = ops.classify(func)
        if kind is OpKind.NEUTRAL:
            return func(*args, **kwargs)
        if kind is OpKind.ATTENTION:  # before parameters are detached: layers keep their names
            return self._attention(func, args, kwargs)
        layer = self._layer_of_parameters(args, kwargs)
        args, kwargs = _detach_parameters(args), _detach_parameters(kwargs)
        if not _any_requires_grad(args, kwargs):
            return func(*args, **kwargs)
        handler = self._handlers.get(kind)
        if handler is not None:
            return handler(self, func, args, kwargs, layer)
        output = func(*args, **kwargs)
        if kind is OpKind.UNKNOWN and _any_requires_grad(output, {}):
            if func in ops.FUSED_TRANSFORMER_OPS:
                self._unsupported(func, "it is a fused transformer kernel no rule can see into")
            self._unsupported(func, "it is not an operation the engine knows to be linear")
        return output

    # -- handlers by kind ----------------------------------------------------------------------

    def _activation(self, func, args, kwargs, layer):
        rule, family = self.rules.activation, ops.activation_family(func)
        if rule is None or not rule.applies_to(family):
            return func(*args, **kwargs)
        inplace = ops.is_inplace(func, args, kwargs)
        if inplace and args[0].is_leaf:
            raise InputChangedInPlace(ops.op_name(func))
        reference = None
        if self.references is not None:
            if self.references.recording:
                self.references.record(args[0])
                return func(*args, **kwargs)
            reference = self.references.next_for(args[0], self.model, self.method)
        rest = args[1:]

        def run(pre):
            return func(pre, *rest, **kwargs)

        def function(pre):  # f, out of place
            return func(pre.clone(), *rest, **kwargs) if inplace else func(pre, *rest, **kwargs)

        call = ActivationCall(run, function, family, inplace, reference)
        return apply_activation(rule, args[0], call)

    def _affine(self, func, args, kwargs, layer):
        rule = self.rules.affine_for(layer)
        call = affine_call(func, args, kwargs, layer)
        if rule is None:
            return call.keeping_no_inputs()
        if call.weight.requires_grad:
            self._unsupported(func, "its weight depends on the input")
        output = rule.apply(call)
        self._affine_outputs[id(output)] = (weakref.ref(output), call)
        return output

    def _batch_norm(self, func, args, kwargs, layer):
        bound = ops.bound_arguments(func, args, kwargs)
        if bound["training"]:
            self._training_mode_error()
        if not self.rules.has_affine_rules:
            return func(*args, **kwargs)
        inputs = bound["input"]
        scale = torch.rsqrt(bound["running_var"] + bound["eps"])
        if bound["weight"] is not None:
            scale = scale * bound["weight"]
        shift = -bound["running_mean"] * scale
        if bound["bias"] is not None:
            shift = shift + bound["bias"]
        previous = self._affine_outputs.get(id(inputs))
        if previous is not None and previous[0]() is inputs:
            # merge into the weighted layer that produced the input: W' = s W, b' = s b + t
            call = previous[1]
            weight = call.weight * scale.view(-1, *[1] * (call.weight.dim() - 1))
            bias = shift if call.bias is None else call.bias * scale + shift
            merged = AffineCall(call.inputs, weight, bias, call.forward, call.layer, call.kind,
                                call.options)
            rule = self.rules.affine_for(call.layer)
        else:  # a batch norm on its own is a diagonal affine layer
            merged = AffineCall(inputs, scale, shift, _channel_affine, layer, "channel")
            rule = self.rules.affine_for(layer)
        if rule is None:
            return func(*args, **kwargs)
        output = rule.apply(merged)
        self._affine_outputs[id(output)] = (weakref.ref(output), merged)
        return output

    def _dropout(self, func, args, kwargs, layer):
        if ops.bound_arguments(func, args, kwargs).get("training", False):
            self._training_mode_error()
        return func(*args, **kwargs)

    def _product(self, func, args, kwargs, layer):
        operands = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        dependent = [a.requires_grad for a in operands]
        divisor_dependent = (
            (func in ops.QUOTIENT_OPS and len(dependent) > 1 and dependent[1])
            or (func in ops.RIGHT_QUOTIENT_OPS and dependent[0])
        )
        if divisor_dependent:
            self._unsupported(func, "it multiplies or divides input-dependent tensors (a division "
                              "by one has no rule; normalise with nn.LayerNorm, F.layer_norm "
                              "or F.rms_norm)")
        if sum(dependent) > 1:
            return self._dependent_product(func, args, kwargs,
                                           "it multiplies or divides input-dependent tensors")
        return func(*args, **kwargs)

    def _matrix_product(self, func, args, kwargs, layer):
        factors = _tensors(args[1:] if func in ops.ADDITIVE_FIRST_OPS else args, kwargs)
        if sum(t.requires_grad for t in factors) > 1:
            if func in ops.ADDITIVE_FIRST_OPS and args[0].requires_grad:
                self._unsupported(func, "it adds an input-dependent tensor to a product of them")
            return self._dependent_product(func, args, kwargs,
                                           "it multiplies input-dependent tensors")
        # transformer rule sets: a product with a constant that is no parameter (attention
        # weights held constant) is linear, as any constant scaling is
        if self.rules.has_affine_rules and (self.rules.product is None or layer is not None):
            self._unsupported(
                func, "weighted-layer rules apply only to nn.Linear and nn.Conv layers "
                "(F.linear, F.conv1d/2d/3d)")
        return func(*args, **kwargs)

    def _dependent_product(self, func, args, kwargs, reason: str):
        """A product of input-dependent factors, under the rules' product rule."""
        rule = self.rules.product
        if rule is None:
            self._unsupported(func, reason)
        if args and isinstance(args[0], torch.Tensor) and ops.writes_into(
                func, args, kwargs, args[0]):
            self._unsupported(func, "it multiplies input-dependent tensors in place")
        factors = [t for t in _tensors(args, kwargs) if t.requires_grad]

        def run(replacements):
            swap = {id(t): r for t, r in zip(factors, replacements)}
            return func(*_replaced(args, swap), **_replaced(kwargs, swap))

        return rule.apply(factors, run)

    def _softmax(self, func, args, kwargs, layer):
        if self.rules.softmax is None:
            self._unsupported(func, "softmax couples its inputs (cp_lrp and attn_lrp have rules "
                              "for it)")
        return self.rules.softmax.apply(lambda: func(*args, **kwargs))

    def _normalization(self, func, args, kwargs, layer):
        if self.rules.normalization is None:
            self._unsupported(func, "normalisation divides by an input-dependent scale (cp_lrp "
                              "and attn_lrp have rules for it)")
        bound = ops.bound_arguments(func, args, kwargs)
        inputs = bound["input"]
        dims = tuple(range(-len(bound["normalized_shape"]), 0))
        eps = bound["eps"] if bound["eps"] is not None else torch.finfo(inputs.dtype).eps
        with_scale = None
        if func is F.layer_norm:  # the same kernel F.layer_norm runs, with its 1 / std
            def with_scale():
                output, _, scale = torch.native_layer_norm(
                    inputs, list(bound["normalized_shape"]), bound["weight"], bound["bias"],
                    float(eps))
                return output, scale
        call = NormalizationCall(lambda: func(*args, **kwargs), inputs, dims, bound["weight"],
                                 float(eps), ops.NORMALIZATION_OPS[func], with_scale)
        return self.rules.normalization.apply(call)

    def _attention(self, func, args, kwargs):
        """Fused attention, run decomposed under this mode (``workbench.attention``)."""
        if not _any_requires_grad(_detach_parameters(args), _detach_parameters(kwargs)):
            return func(*args, **kwargs)
        with self:
            return attention.DECOMPOSED[func](*args, **kwargs)

    def _max(self, func, args, kwargs, layer):
        rule = self.rules.max_pool
        if rule is None:
            return func(*args, **kwargs)
        output = func(*args, **kwargs)
        if not isinstance(output, torch.Tensor):
            self._unsupported(func, f"the {rule.name} rule takes max operations that return "
                              "the maxima alone (no indices)")
        if self.references.recording:
            self.references.record(args[0])
            return output
        reference = self.references.next_for(args[0], self.model, self.method)
        rest = args[1:]
        return rule.apply(args[0], reference, lambda pre: func(pre, *rest, **kwargs))

    def _passthrough(self, func, args, kwargs, layer):
        return func(*args, **kwargs)

    _handlers: dict[OpKind, Callable] = {
        OpKind.ACTIVATION: _activation,
        OpKind.AFFINE: _affine,
        OpKind.BATCH_NORM: _batch_norm,
        OpKind.DROPOUT: _dropout,
        OpKind.PRODUCT: _product,
        OpKind.MATRIX_PRODUCT: _matrix_product,
        OpKind.SOFTMAX: _softmax,
        OpKind.NORMALIZATION: _normalization,
        OpKind.LINEAR: _passthrough,
        OpKind.MAX: _max,
    }

    # -- helpers -------------------------------------------------------------------------------

    def _layer_of_parameters(self, args, kwargs) -> str | None:
        # (a live tensor's id is a parameter's id only if it is that parameter)
        layer_of = self.layer_of
        for value in args:
            if id(value) in layer_of:
                return layer_of[id(value)]
        for value in kwargs.values():
            if id(value) in layer_of:
                return layer_of[id(value)]
        return None

    def _unsupported(self, func, reason: str):
        path, kind = module_path(self.model)
        raise UnsupportedOperationError(
            f"{self.method} has no rule for the operation '{ops.op_name(func)}' in module "
            f"'{path}' ({kind}): {reason}. Rule-based methods support Linear, Conv1d/2d/3d, "
            "BatchNorm, elementwise activations (ReLU, LeakyReLU, Tanh, Sigmoid, Softplus, ELU, "
            "...), max and average pooling, reshapes and residual additions (cp_lrp and attn_lrp "
            "add softmax, attention, products and layer normalisation); gradient-based "
            "methods (gradient, integrated_gradients, smoothgrad, occlusion) work on any model."
        )

    def _training_mode_error(self):
        path, kind = module_path(self.model)
        raise ValueError(
            f"{self.method} needs the model in evaluation mode, but module '{path}' ({kind}) "
            "runs in training mode (batch statistics or dropout); call model.eval() first"
        )


def _channel_affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    shape = (1, -1, *[1] * (x.dim() - 2))
    output = x * weight.view(shape)
    return output if bias is None else output + bias.view(shape)


def _positional(func, args, kwargs) -> dict:
    """Arguments of a builtin weighted-layer op, whose signature cannot be introspected."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


def _is_parameter(value) -> bool:
    """``isinstance(value, nn.Parameter)``, without the Python-level ``__instancecheck__`` of
    ``nn.Parameter`` for the plain tensors and numbers that most arguments are."""
    kind = type(value)
    if kind is torch.Tensor or kind is nn.Parameter:
        return kind is nn.Parameter
    return isinstance(value, torch.Tensor) and isinstance(value, nn.Parameter)


def _detach_parameters(value):
    """``value`` with every parameter in it (in lists, tuples and dicts) detached."""
    kind = type(value)
    if kind is tuple or kind is list or isinstance(value, (list, tuple)):
        for item in value:  # (a loop, not any(...): this runs for every operation)
            if _is_parameter(item) or isinstance(item, (list, tuple, dict)):
                return kind(_detach_parameters(v) for v in value)
        return value
    if kind is dict:
        for item in value.values():
            if _is_parameter(item) or isinstance(item, (list, tuple, dict)):
                return {k: _detach_parameters(v) for k, v in value.items()}
        return value
    if _is_parameter(value):
        return value.detach()
    return value


def _tensors(args, kwargs) -> list[torch.Tensor]:
    """The tensors among the arguments, in lists too (``torch.einsum(eq, [a, b])``)."""
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [v for v in value if isinstance(v, torch.Tensor)]
    return found


def _replaced(value, swap: dict):
    """``value`` with each tensor whose id is in ``swap`` replaced, in lists and dicts too."""
    if isinstance(value, torch.Tensor):
        return swap.get(id(value), value)
    if isinstance(value, (list, tuple)):
        return type(value)(_replaced(v, swap) for v in value)
    if isinstance(value, dict):
        return {k: _replaced(v, swap) for k, v in value.items()}
    return value


def _requires_grad(value) -> bool:
    """Whether ``value`` is, or a list or tuple holds, a tensor that requires grad."""
    if isinstance(value, torch.Tensor):
        return value.requires_grad
    if isinstance(value, (list, tuple)):
        for item in value:
            if _requires_grad(item):
                return True
    return False


def _any_requires_grad(args, kwargs) -> bool:
    if _requires_grad(args):
        return True
    for value in kwargs.values():
        if _requires_grad(value):
            return True
    return False
