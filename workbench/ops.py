"""What the rule engine knows about torch operations.

The engine sees operations, not modules (``torch.overrides.TorchFunctionMode``), so ``nn.ReLU``,
an in-place ``nn.ReLU(inplace=True)``, a reused ReLU module, ``F.relu``, ``torch.relu`` and
``Tensor.relu_`` are all the same ``relu``. Each operation falls into one kind:

- ``ACTIVATION``: an elementwise nonlinearity; rule-based methods replace its derivative.
- ``AFFINE``: a weighted layer (linear, convolution); LRP-type rules act here.
- ``BATCH_NORM``: affine in evaluation mode; merged into the preceding affine layer.
- ``LINEAR``: linear in the input (reshapes, sums, pooling by averaging, residual additions,
  slicing); the ordinary gradient is already the right backward for every method, because each
  method is "input times a modified gradient" (Ancona et al. 2018, section 3).
- ``MAX``: max pooling and max reductions; the gradient routes to the winner.
- ``PRODUCT``: elementwise products and quotients; linear when only one factor depends on the
  input.
- ``MATRIX_PRODUCT``: matmul-like products; linear when one factor is constant, but they are
  layers that affine rules cannot see, so those rules refuse them.
- ``DROPOUT``: identity in evaluation mode.
- ``SOFTMAX``: couples its inputs; only transformer rule sets (``workbench.transformer_rules``)
  give it a rule.
- ``NORMALIZATION``: layer and RMS normalisation; transformer rule sets hold the scale constant.
- ``ATTENTION``: fused attention (``F.scaled_dot_product_attention``,
  ``F.multi_head_attention_forward``); the engine runs it in its decomposed form
  (``workbench.attention``) so that each of its operations meets its rule.
- ``NEUTRAL``: metadata (sizes, dtypes, attribute reads).
Anything else that produces an input-dependent tensor is reported by name, never guessed.
"""
from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F


class OpKind(enum.Enum):
    ACTIVATION = "activation"
    AFFINE = "affine"
    BATCH_NORM = "batch_norm"
    LINEAR = "linear"
    MAX = "max"
    PRODUCT = "product"
    MATRIX_PRODUCT = "matrix_product"
    DROPOUT = "dropout"
    SOFTMAX = "softmax"
    NORMALIZATION = "normalization"
    ATTENTION = "attention"
    NEUTRAL = "neutral"
    UNKNOWN = "unknown"


T = torch.Tensor

#: Elementwise nonlinearities by family. Every spelling of each (module, functional, tensor
#: method, in-place) lands in the same family.
ACTIVATION_FAMILIES: dict[str, tuple[Callable, ...]] = {
    "relu": (F.relu, F.relu_, torch.relu, torch.relu_, T.relu, T.relu_),
    "leaky_relu": (F.leaky_relu, F.leaky_relu_),
    "tanh": (F.tanh, torch.tanh, torch.tanh_, T.tanh, T.tanh_),
    "sigmoid": (F.sigmoid, torch.sigmoid, torch.sigmoid_, T.sigmoid, T.sigmoid_),
    "softplus": (F.softplus,),
    "elu": (F.elu, F.elu_),
    "selu": (F.selu, F.selu_, torch.selu, torch.selu_),
    "celu": (F.celu, F.celu_, torch.celu, torch.celu_),
    "gelu": (F.gelu,),
    "silu": (F.silu,),
    "mish": (F.mish,),
    "hardtanh": (F.hardtanh, F.hardtanh_, F.relu6),
    "hardsigmoid": (F.hardsigmoid,),
    "hardswish": (F.hardswish,),
}

#: Families whose function is the identity or a constant on each piece (ReLU, hard tanh,
#: ReLU6): for them ``f(z) - f(z0)`` and ``z - z0`` are each exact or one rounding, so their
#: ratio is accurate wherever ``z != z0`` however close the two are.
UNIT_SLOPE_FAMILIES = frozenset({"relu", "hardtanh"})

AFFINE_OPS: dict[Callable, str] = {
    F.linear: "linear",
    torch.conv1d: "conv1d",
    torch.conv2d: "conv2d",
    torch.conv3d: "conv3d",
}

_MAX_OPS = (
    F.max_pool1d, F.max_pool2d, F.max_pool3d,
    F.max_pool1d_with_indices, F.max_pool2d_with_indices, F.max_pool3d_with_indices,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    F.adaptive_max_pool1d_with_indices, F.adaptive_max_pool2d_with_indices,
    F.adaptive_max_pool3d_with_indices,
    torch.max, T.max, torch.amax, T.amax,
)

_LINEAR_OPS = (
    # shape and layout
    T.view, T.view_as, T.reshape, T.reshape_as, torch.reshape, T.flatten, torch.flatten,
    T.unflatten, torch.unflatten, T.permute, torch.permute, T.transpose, torch.transpose, T.t,
    torch.t, T.squeeze, torch.squeeze, T.unsqueeze, torch.unsqueeze, T.expand, T.expand_as,
    T.contiguous, T.clone, torch.clone, T.to, T.float, T.double, T.half, T.type_as, T.repeat,
    T.tile, torch.tile, T.roll, torch.roll, T.flip, torch.flip, T.movedim, torch.movedim,
    F.pad, F.pixel_shuffle, F.pixel_unshuffle, F.unfold, F.fold, F.interpolate, T.unfold,
    # indexing and joining
    T.__getitem__, T.__setitem__, T.narrow, torch.narrow, T.select, torch.select, T.split,
    torch.split, T.chunk, torch.chunk, T.unbind, torch.unbind, torch.cat, torch.concat,
    torch.concatenate, torch.stack, torch.hstack, torch.vstack, T.index_select,
    torch.index_select, T.gather, torch.gather,
    # sums and differences
    T.add, T.add_, T.__add__, T.__iadd__, T.__radd__, torch.add, T.sub, T.sub_, T.__sub__,
    T.__isub__, T.__rsub__, torch.sub, T.neg, T.__neg__, torch.neg, T.__pos__, T.sum, torch.sum,
    T.mean, torch.mean, T.cumsum, torch.cumsum,
    # pooling by averaging
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
)

_PRODUCT_OPS = (
    T.mul, T.mul_, T.__mul__, T.__imul__, T.__rmul__, torch.mul, T.div, T.div_, T.__truediv__,
    T.__itruediv__, torch.div,
)
#: quotients whose *second* operand is the divisor (a nonlinear use of an input-dependent value)
QUOTIENT_OPS = frozenset((T.div, T.div_, T.__truediv__, T.__itruediv__, torch.div))
RIGHT_QUOTIENT_OPS = frozenset((T.__rtruediv__,))

_MATRIX_PRODUCT_OPS = (
    torch.matmul, T.matmul, T.__matmul__, T.__rmatmul__, torch.mm, T.mm, torch.bmm, T.bmm,
    torch.addmm, torch.baddbmm, T.baddbmm, torch.einsum, torch.tensordot, F.bilinear,
)
#: matrix products whose first operand is added, not multiplied (``input + b1 @ b2``)
ADDITIVE_FIRST_OPS = frozenset((torch.addmm, torch.baddbmm, T.baddbmm))

_SOFTMAX_OPS = (F.softmax, torch.softmax, T.softmax)
#: normalisations over trailing dimensions, by whether they subtract the mean first
NORMALIZATION_OPS: dict[Callable, bool] = {F.layer_norm: True}
if hasattr(F, "rms_norm"):
    NORMALIZATION_OPS[F.rms_norm] = False
_ATTENTION_OPS = (F.scaled_dot_product_attention, F.multi_head_attention_forward)
#: fused transformer kernels a rule cannot see into (PyTorch takes them only outside the
#: engine's mode; they are refused by name should one run under it)
FUSED_TRANSFORMER_OPS = frozenset(
    getattr(torch, name) for name in ("_native_multi_head_attention",
                                      "_transformer_encoder_layer_fwd")
    if hasattr(torch, name))

_DROPOUT_OPS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                F.feature_alpha_dropout)

_NEUTRAL_OPS = (
    T.size, T.dim, T.numel, T.__len__, T.element_size, T.stride, T.is_contiguous,
    T.data_ptr, T.detach, T.__format__, T.__repr__, T.is_floating_point, T.__bool__,
)


def _build_table() -> dict[Callable, OpKind]:
    table: dict[Callable, OpKind] = {}

    def add(functions: Iterable[Callable], kind: OpKind) -> None:
        for function in functions:
            table[function] = kind

    add((f for fs in ACTIVATION_FAMILIES.values() for f in fs), OpKind.ACTIVATION)
    add(AFFINE_OPS, OpKind.AFFINE)
    add((F.batch_norm,), OpKind.BATCH_NORM)
    add(_LINEAR_OPS, OpKind.LINEAR)
    add(_MAX_OPS, OpKind.MAX)
    add(_PRODUCT_OPS + tuple(RIGHT_QUOTIENT_OPS), OpKind.PRODUCT)
    add(_MATRIX_PRODUCT_OPS, OpKind.MATRIX_PRODUCT)
    add(_DROPOUT_OPS, OpKind.DROPOUT)
    add(_SOFTMAX_OPS, OpKind.SOFTMAX)
    add(NORMALIZATION_OPS, OpKind.NORMALIZATION)
    add(_ATTENTION_OPS, OpKind.ATTENTION)
    add(_NEUTRAL_OPS, OpKind.NEUTRAL)
    return table


_TABLE = _build_table()
_FAMILY_OF = {f: family for family, fs in ACTIVATION_FAMILIES.items() for f in fs}


def classify(func: Callable) -> OpKind:
    """The kind of a torch function as seen by ``__torch_function__``."""
    kind = _TABLE.get(func)
    if kind is not None:
        return kind
    if getattr(func, "__name__", "") == "__get__":  # attribute reads: .shape, .T, .dtype, ...
        return OpKind.NEUTRAL
    return OpKind.UNKNOWN


def activation_family(func: Callable) -> str:
    return _FAMILY_OF[func]


def op_name(func: Callable) -> str:
    return getattr(func, "__name__", None) or repr(func)


@functools.cache
@functools.lru_cache(maxsize=1024)
def _signature(func: Callable) -> inspect.Signature | None:
    """``func``'s signature (None if it has none), read once per function."""
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def bound_arguments(func: Callable, args: tuple, kwargs: dict) -> dict:
    """Arguments of a call by parameter name, defaults filled in (empty if not introspectable)."""
    signature = _signature(func)
    if signature is None:
        return {}
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


#: Python's in-place operators and item assignment, as a ``TorchFunctionMode`` sees them
_INPLACE_DUNDERS = frozenset({
    "__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__",
    "__imod__", "__ipow__", "__imatmul__", "__iand__", "__ior__", "__ixor__", "__ilshift__",
    "__irshift__",
})


def writes_into(func: Callable, args: tuple, kwargs: dict, tensor: torch.Tensor) -> bool:
    """Whether the call overwrites ``tensor``: as its first argument in place (``x.relu_()``,
    ``x += 1``, ``x[i] = v``, ``inplace=True``) or as its ``out=``."""
    if kwargs.get("out") is tensor:
        return True
    if not args or args[0] is not tensor:
        return False
    name = op_name(func)
    if name.startswith("__"):
        return name in _INPLACE_DUNDERS
    return is_inplace(func, args, kwargs)


def is_inplace(func: Callable, args: tuple, kwargs: dict) -> bool:
    """Whether a call overwrites its first argument (``relu_``, ``inplace=True``)."""
    if op_name(func).endswith("_"):
        return True
    return bool(bound_arguments(func, args, kwargs).get("inplace", False))
