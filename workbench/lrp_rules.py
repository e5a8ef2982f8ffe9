"""LRP's rules with modified parameters (Bach et al. 2015; Montavon et al. 2019, "Layer-wise
relevance propagation: an overview", in Explainable AI, LNCS 11700): alpha-beta, gamma, z-box,
flat, w-square and pass, each a short declaration of modified forward passes (:class:`Term`,
grouped by sign in a :class:`Group`) over the engine's :class:`~workbench.rules.AffineRule`.

Epsilon and LRP-0 live in ``workbench.rules`` (they scale the plain gradient); the rules here
compute their denominators in the forward pass and run one transposed pass per modified weight
in the backward pass. Flat, w-square and z-box give relevance that is not a multiple of the
input: they hand it to the LRP method directly (:func:`collecting_input_relevance`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

import torch

from workbench.collecting import collecting
from workbench.layout import memory_format_of
from workbench.rules import BATCHED_DIMS, INPUT_GRADIENTS, AffineCall, AffineRule, stabilize


def _positive(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def _ones(t: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(t)


def _square(t: torch.Tensor) -> torch.Tensor:
    return t * t


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass(frozen=True)
class Mix:
    """The parameter modifier ``t -> same * t + positive * t^+``. Rules declared with these
    need, besides the layer's own pass, one pass with ``W^+`` per part of ``x``, whatever their
    number of terms: ``W^- = W - W^+``, ``W + gamma W^+``, ... are combinations of the two."""

    same: float = 1.0
    positive: float = 0.0

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if not self.positive:
            return t if self.same == 1 else self.same * t
        return self.same * t + self.positive * t.clamp(min=0)

    def bases(self) -> dict[Callable, float]:
        return {basis: c for basis, c in ((_same, self.same), (_positive, self.positive)) if c}


def _negative(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)


SAME, POSITIVE = Mix(1.0, 0.0), Mix(0.0, 1.0)
#: ``W^-`` on its own pass, not ``W - W^+``: where an output has no negative part its
#: denominator must be exactly 0, not the round-off of a difference (alpha-beta divides by it)
NEGATIVE = _negative


def _bases(modifier: Callable) -> dict[Callable, float]:
    """``modifier`` as a combination of parameter modifiers (itself if it is not a Mix)."""
    return modifier.bases() if isinstance(modifier, Mix) else {modifier: 1.0}


#: what a term's input can be: the layer's input or a part of it, ones, or a rule's bound
_TERM_INPUTS = ("x", "x+", "x-", "ones", "low", "high")
_PARTS_OF_X = ("x", "x+", "x-")


@dataclass(frozen=True)
class Term:
    """One modified forward pass ``z_k = forward(x_k, W_k, b_k)`` of an LRP rule.

    ``inputs`` names ``x_k``: ``x``, ``x+`` or ``x-`` (the positive or negative part of ``x``),
    ``ones``, or ``low`` / ``high`` (the rule's bounds); ``weight`` and ``bias`` map the layer's
    parameters (``bias=None``: no bias). ``sign`` enters the denominator and the redistribution.
    """

    inputs: str
    weight: Callable[[torch.Tensor], torch.Tensor] = SAME
    bias: Callable[[torch.Tensor], torch.Tensor] | None = None
    sign: float = 1.0

    def __post_init__(self):
        if self.inputs not in _TERM_INPUTS:
            raise ValueError(f"a Term's inputs must be one of {list(_TERM_INPUTS)}, got "
                             f"{self.inputs!r}")


@dataclass(frozen=True)
class Group:
    """Terms sharing one denominator ``d_j = sum_k sign_k z_kj``: the group passes
    ``weight * R_j / stabilize(d_j)`` back through each term, only where the layer's output
    ``z_j`` has the sign ``where`` (``"positive"``, ``"negative"``; ``None``: everywhere)."""

    terms: tuple[Term, ...]
    weight: float = 1.0
    where: str | None = None

    def __post_init__(self):
        if self.where not in (None, "positive", "negative"):
            raise ValueError(f"a Group's where must be None, 'positive' or 'negative', got "
                             f"{self.where!r}")


class ModifiedRule(AffineRule):
    """An LRP rule declared as groups of modified forward passes (Zennit's ``BasicHook``):

    ``R_i = sum_groups weight sum_k sign_k x_ki [W_k^T (R / stabilize(d))]_i``.

    Rules whose every ``x_k`` is ``x`` or a part of it give ``g = R / x`` without dividing
    (``x+ / x`` is the indicator of ``x > 0``). Rules with ``gives_relevance`` (flat, w², z-box)
    give relevance that is not a multiple of ``x``: at the layer that reads the model's input
    they hand it to the LRP method (:func:`collecting_input_relevance`); at a hidden layer it
    goes on down as ``g = R / x`` (none where ``x = 0``).
    """

    groups: tuple[Group, ...] = ()
    gives_relevance = False

    def __init__(self, stabilizer: float = 1e-6, bias: bool = True):
        self.stabilizer, self.bias = float(stabilizer), bool(bias)

    def bounds(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tensors ``low`` and ``high`` for terms that use them (see :class:`ZBoxRule`)."""
        return {}

    def apply(self, call: AffineCall) -> torch.Tensor:
        if not self.gives_relevance:
            if any(t.inputs not in _PARTS_OF_X for group in self.groups for t in group.terms):
                raise TypeError(f"{type(self).__name__}: a rule with a term on ones or bounds "
                                "gives relevance itself; declare gives_relevance = True")
            # the call without its tensors: the backward keeps only what it saves
            layer = replace(call, inputs=None, weight=None, bias=None)
            return _ProportionalFunction.apply(call.inputs, call.weight, call.bias, self, layer)
        sink = _input_sink(self, call)
        bounds = self.bounds(call.inputs.detach())
        return _RelevanceFunction.apply(call.inputs, call.weight, call.bias, self, call.forward,
                                        (sink, bounds))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _term_inputs(kind: str, inputs: torch.Tensor, bounds: Mapping[str, torch.Tensor]):
    if kind == "x":
        return inputs
    if kind == "x+":
        return inputs.clamp(min=0)
    if kind == "x-":
        return inputs.clamp(max=0)
    if kind == "ones":
        return torch.ones_like(inputs)
    return bounds[kind]


def _masked(kind: str, inputs: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``x_k / x * grad`` for ``x_k`` a part of ``x`` (``0 / 0`` taken as 0)."""
    if kind == "x":
        return grad
    if kind == "x+":  # grad where x > 0, else 0: one pass
        return torch.ops.aten.threshold_backward(grad, inputs, 0)
    return torch.where(inputs < 0, grad, 0.0)


def _combination(pairs: Iterable[tuple[float, torch.Tensor]]) -> torch.Tensor:
    """``sum_k c_k t_k``, one pass per term (no product with 1, no sum starting from 0)."""
    total = None
    for c, t in pairs:
        if total is None:
            total = t if c == 1 else c * t
        else:
            total = torch.add(total, t, alpha=c)
    return total


def _modified_weight(basis: Callable, weight: torch.Tensor, inputs: torch.Tensor
                     ) -> torch.Tensor:
    """``basis(weight)``; a clamped conv weight is written straight in the channels-last order
    oneDNN reads it in when ``inputs`` are channels-last (else it reorders a copy per pass)."""
    if basis is _same:
        return weight
    if (basis in (_positive, _negative) and weight.dim() == 4 and inputs.dim() == 4
            and memory_format_of(inputs) is torch.channels_last):
        out = torch.empty_like(weight, memory_format=torch.channels_last)
        bounds = {"min": 0} if basis is _positive else {"max": 0}
        return torch.clamp(weight, **bounds, out=out)
    return basis(weight)


class _ProportionalFunction(torch.autograd.Function):
    """A rule whose terms read ``x``, ``x+`` or ``x-``. The forward pass runs the modified passes
    once, without a graph (one per part of ``x`` and parameter modifier, see :class:`Mix`; the
    layer's own pass on all of ``x`` is its output), and keeps per group
    ``factor = z [sign of z] / stabilize(d)``; the backward is then
    ``g_x = sum_k [x_k / x] W_k^T (g_z * factor)``, one transposed pass per part and modifier.
    A term whose input part is zero everywhere (``x-`` after a ReLU) and has no bias is
    skipped."""

    @staticmethod
    def forward(ctx, inputs, weight, bias, rule, call):  # call: without its tensors
        output = call.forward(inputs, weight, bias)
        zero = _zero_parts(inputs)
        used_bias = bias if rule.bias else None
        passes: dict[tuple[str, Callable], torch.Tensor] = {}
        weights: dict[Callable, torch.Tensor] = {}

        def run(part: str, basis: Callable) -> torch.Tensor:
            if (part, basis) not in passes:
                x_part = _part(part, inputs, zero)
                if basis is _same and x_part is inputs:  # the layer's own pass
                    passes[part, basis] = (output if bias is None
                                           else output - _bias_map(call, bias, output))
                else:
                    if basis not in weights:
                        weights[basis] = _modified_weight(basis, weight, inputs)
                    passes[part, basis] = call.forward(x_part, weights[basis], None)
            return passes[part, basis]

        plan, factors = [], []
        for group in rule.groups:
            terms = tuple(t for t in group.terms
                          if not (t.inputs in zero and (t.bias is None or used_bias is None)))
            if not terms:
                continue
            denominator = _combination((t.sign, _term_output(t, run, used_bias, call, output))
                                       for t in terms)
            factors.append(_where(group, output, output / stabilize(denominator,
                                                                    rule.stabilizer)))
            plan.append((group.weight, terms))
        ctx.save_for_backward(inputs, weight, *factors)
        ctx.plan, ctx.call = plan, call
        return output

    @staticmethod
    def backward(ctx, grad):
        inputs, weight, *factors = ctx.saved_tensors
        shares: dict[tuple[str, Callable], torch.Tensor] = {}
        for (group_weight, terms), factor in zip(ctx.plan, factors):
            share = grad * factor
            for term in terms:
                for basis, coefficient in _bases(term.weight).items():
                    c = group_weight * term.sign * coefficient
                    key = (term.inputs, basis)
                    if key in shares:
                        shares[key] = torch.add(shares[key], share, alpha=c)
                    else:
                        shares[key] = share if c == 1 else c * share
        by_kind: dict[str, torch.Tensor] = {}
        for (kind, basis), share in shares.items():
            part = _input_gradient(ctx.call, inputs, _modified_weight(basis, weight, inputs),
                                   share)
            by_kind[kind] = by_kind[kind] + part if kind in by_kind else part
        grad_inputs = _combination((1, _masked(kind, inputs, g)) for kind, g in by_kind.items())
        return grad_inputs, None, None, None, None


def _term_output(term: Term, run: Callable, bias: torch.Tensor | None, call: AffineCall,
                 output: torch.Tensor) -> torch.Tensor:
    """``forward(x_k, W_k, b_k)`` from the passes ``run(part, basis)``."""
    value = _combination((c, run(term.inputs, basis)) for basis, c in _bases(term.weight).items())
    if bias is not None and term.bias is not None:
        value = value + _bias_map(call, term.bias(bias), output)
    return value


def _bias_map(call: AffineCall, bias: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """``bias`` shaped to broadcast over the layer's ``output`` (channels in dimension 1, or 0
    for an unbatched convolution; the last dimension for a Linear layer)."""
    if call.kind == "linear":
        return bias
    batched = output.dim() == BATCHED_DIMS.get(call.kind, output.dim())
    return bias.view(-1, *[1] * (output.dim() - (2 if batched else 1)))


def _part(kind: str, inputs: torch.Tensor, zero: frozenset[str]) -> torch.Tensor:
    """``x``, ``x+`` or ``x-``; no copy where the part is all of ``x``."""
    whole = kind == "x" or (kind == "x+" and "x-" in zero) or (kind == "x-" and "x+" in zero)
    return inputs if whole else _term_inputs(kind, inputs, {})


def _where(group: Group, output: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """``share`` where the layer's output has the sign ``group.where`` (everywhere if None)."""
    if group.where is None:
        return share
    return torch.where(output > 0 if group.where == "positive" else output < 0, share, 0.0)


def _input_gradient(call: AffineCall, inputs: torch.Tensor, weight: torch.Tensor,
                    grad: torch.Tensor) -> torch.Tensor:
    """``W^T grad`` for the layer of ``call`` with ``weight``: in closed form where there is one
    (see :meth:`AffineCall.keeping_no_inputs`), else by autograd."""
    if (call.kind in INPUT_GRADIENTS and not isinstance(call.options.get("padding"), str)
            and inputs.dim() == BATCHED_DIMS.get(call.kind, inputs.dim())):
        return INPUT_GRADIENTS[call.kind](weight, call.options, grad, inputs)
    with torch.enable_grad():
        leaf = inputs.detach().requires_grad_()
        (gradient,) = torch.autograd.grad(call.forward(leaf, weight, None), leaf, grad)
    return gradient


class _RelevanceFunction(torch.autograd.Function):
    """A rule that gives relevance itself (flat, w-square, z-box): its backward hands
    ``sum_k x_k * grad_k`` to the LRP method (:func:`collecting_input_relevance`)."""

    @staticmethod
    def forward(ctx, inputs, weight, bias, rule, forward, extra):
        ctx.save_for_backward(inputs, weight, bias)
        ctx.rule, ctx.layer_forward, (ctx.sink, ctx.bounds) = rule, forward, extra
        return forward(inputs, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        inputs, weight, bias = ctx.saved_tensors
        output = ctx.layer_forward(inputs, weight, bias)
        leaves, outputs, shares = _modified_passes(ctx, inputs, weight, bias, output, grad)
        with torch.enable_grad():
            grads = torch.autograd.grad(outputs, list(leaves.values()), shares)
        relevance = sum(leaf.detach() * g for leaf, g in zip(leaves.values(), grads))
        if ctx.sink is not None:  # the model's input: the relevance itself
            ctx.sink.append(relevance)
            return torch.zeros_like(inputs), None, None, None, None, None
        # a hidden layer: the engine carries R = x * g on, so g = R / x; where x = 0 the
        # relevance stops here (below a ReLU it would stop at the ReLU all the same)
        zero = inputs == 0
        grad_inputs = torch.where(zero, 0.0, relevance / torch.where(zero, 1.0, inputs))
        return grad_inputs, None, None, None, None, None


def _zero_parts(inputs: torch.Tensor) -> frozenset[str]:
    """The parts of ``inputs`` that are zero everywhere (``x-`` after a ReLU): one reduction."""
    if inputs.numel() == 0:
        return frozenset({"x-"})
    low, high = torch.aminmax(inputs)
    if low >= 0:
        return frozenset({"x-"})
    if high <= 0:
        return frozenset({"x+"})
    return frozenset()


def _modified_passes(ctx, inputs, weight, bias, output, grad):
    """The rule's modified forward passes with a graph to their inputs (``leaves``, by kind),
    and the gradient each passes back: its group's share of the relevance ``R = z * g``."""
    relevance = output * grad
    rule, forward = ctx.rule, ctx.layer_forward
    bias = bias if rule.bias else None
    leaves: dict[str, torch.Tensor] = {}
    outputs, shares = [], []
    with torch.enable_grad():
        for group in rule.groups:
            group_outputs = []
            for term in group.terms:
                if term.inputs not in leaves:
                    leaves[term.inputs] = _term_inputs(
                        term.inputs, inputs, ctx.bounds).detach().requires_grad_()
                modified_bias = None if bias is None or term.bias is None else term.bias(bias)
                group_outputs.append(
                    forward(leaves[term.inputs], term.weight(weight), modified_bias))
            denominator = sum(t.sign * z for t, z in zip(group.terms, group_outputs)).detach()
            share = _where(group, output, relevance / stabilize(denominator, rule.stabilizer))
            outputs += group_outputs
            shares += [share * (group.weight * term.sign) for term in group.terms]
    return leaves, outputs, shares


class AlphaBetaRule(ModifiedRule):
    """LRP-alpha-beta (Bach et al. 2015), positive and negative parts as in Zennit.

    ``R_i = sum_j (alpha z_ij^+ / z_j^+ - beta z_ij^- / z_j^-) R_j``, where ``z_ij = x_i w_ij``
    and the bias joins the part of its sign. ``alpha - beta = 1`` conserves relevance;
    ``alpha=1, beta=0`` is the z+ rule.
    """

    name = "alpha_beta"

    def __init__(self, alpha: float = 1.0, beta: float = 0.0, stabilizer: float = 1e-6,
                 bias: bool = True):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be non-negative, got alpha={alpha}, beta={beta}")
        if abs(alpha - beta - 1.0) > 1e-9:
            raise ValueError(
                f"alpha - beta must equal 1 so that relevance is conserved, got alpha={alpha}, "
                f"beta={beta}"
            )
        super().__init__(stabilizer, bias)
        self.alpha, self.beta = float(alpha), float(beta)
        activating = Group((Term("x+", POSITIVE, POSITIVE), Term("x-", NEGATIVE)), self.alpha)
        inhibiting = Group((Term("x+", NEGATIVE, NEGATIVE), Term("x-", POSITIVE)), -self.beta)
        self.groups = (activating, inhibiting) if self.beta else (activating,)

    def __repr__(self) -> str:
        return f"AlphaBetaRule(alpha={self.alpha:g}, beta={self.beta:g})"


class GammaRule(ModifiedRule):
    """LRP-gamma (Montavon et al. 2019, section 10.2.3), generalised to inputs of both signs
    as in Zennit (Andéol et al. 2021): weights of the output's sign are boosted by ``gamma``,

    ``R_i = sum_j x_i (w_ij + gamma w_ij^+) / sum_i' x_i' (w_i'j + gamma w_i'j^+) R_j``

    for ``x >= 0`` and ``z_j > 0`` (the paper's case); in general the parts ``x^+ (w + gamma w^+)
    + x^- (w + gamma w^-)`` explain a positive ``z_j`` and ``x^+ (w + gamma w^-) + x^- (w +
    gamma w^+)`` a negative one. ``gamma = 0`` is LRP-0.
    """

    name = "gamma"

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6, bias: bool = True):
        if gamma < 0:
            raise ValueError(f"gamma must be non-negative, got {gamma}")
        super().__init__(stabilizer, bias)
        self.gamma = float(gamma)
        # W + gamma W^+, and W + gamma W^- = (1 + gamma) W - gamma W^+
        up, down = Mix(1.0, self.gamma), Mix(1.0 + self.gamma, -self.gamma)
        self.groups = (
            Group((Term("x+", up, up), Term("x-", down)), where="positive"),
            Group((Term("x+", down, down), Term("x-", up)), where="negative"),
        )

    def __repr__(self) -> str:
        return f"GammaRule(gamma={self.gamma:g})"


class ZBoxRule(ModifiedRule):
    """LRP-z^B for inputs bounded by ``low <= x <= high`` (Montavon et al. 2017, DTD, section 4;
    Montavon et al. 2019, section 10.2.4):

    ``R_i = sum_j (x_i w_ij - l_i w_ij^+ - h_i w_ij^-) / sum_i' (...) R_j``.

    ``low`` and ``high`` are numbers or tensors broadcastable to the layer's input (e.g. one value
    per channel, shape ``(1, C, 1, 1)``). The bias cancels from the denominator (as in Zennit).
    """

    name = "z_box"
    gives_relevance = True

    def __init__(self, low: float | torch.Tensor, high: float | torch.Tensor,
                 stabilizer: float = 1e-6, bias: bool = True):
        super().__init__(stabilizer, bias)
        self.low, self.high = low, high
        self.groups = (Group((Term("x", SAME, SAME), Term("low", POSITIVE, POSITIVE, -1.0),
                              Term("high", NEGATIVE, NEGATIVE, -1.0))),)

    def bounds(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        bounds = {}
        for name in ("low", "high"):
            value = torch.as_tensor(getattr(self, name), dtype=inputs.dtype, device=inputs.device)
            try:
                bounds[name] = value.broadcast_to(inputs.shape)
            except RuntimeError:
                raise ValueError(f"option '{name}' of the z_box rule must broadcast to the layer's "
                                 f"input of shape {tuple(inputs.shape)}, got shape "
                                 f"{tuple(value.shape)}") from None
        if ((inputs < bounds["low"]) | (inputs > bounds["high"])).any():
            raise ValueError("the z_box rule needs low <= inputs <= high (options 'low' and "
                             f"'high'), but the inputs range over [{inputs.min().item():g}, "
                             f"{inputs.max().item():g}]")
        return bounds

    def __repr__(self) -> str:
        def text(value):
            return f"{value:g}" if isinstance(value, (int, float)) else "tensor"
        return f"ZBoxRule(low={text(self.low)}, high={text(self.high)})"


class FlatRule(ModifiedRule):
    """LRP-flat (Lapuschkin et al. 2019; Montavon et al. 2019, section 10.2.4): relevance spreads
    evenly over each output's receptive field, ``R_i = sum_j R_j / sum_i' 1``; no bias."""

    name = "flat"
    gives_relevance = True
    groups = (Group((Term("ones", _ones),)),)


class WSquareRule(ModifiedRule):
    """LRP-w² (Montavon et al. 2017, DTD; Montavon et al. 2019, section 10.2.4):
    ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j`` (with the bias squared in the denominator, as in
    Zennit, unless ``bias=False``)."""

    name = "w_square"
    gives_relevance = True
    groups = (Group((Term("ones", _square, _square),)),)


class PassRule(AffineRule):
    """Relevance passes unchanged, ``R_x = R_z``, for a layer whose output has its input's shape
    (a batch norm on its own, as Zennit's ``Pass``). In ``g`` form ``g_x = z g_z / x``: where
    ``x = 0`` the relevance there is 0."""

    name = "pass"

    def apply(self, call: AffineCall) -> torch.Tensor:
        return _PassFunction.apply(call.inputs, call.weight, call.bias, call.forward, call.layer)

    def __repr__(self) -> str:
        return "PassRule()"


class _PassFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, weight, bias, forward, layer):
        output = forward(inputs, weight, bias)
        if output.shape != inputs.shape:
            raise ValueError(f"the pass rule needs a layer whose output has its input's shape, but "
                             f"layer {layer!r} maps {tuple(inputs.shape)} to "
                             f"{tuple(output.shape)}")
        ctx.save_for_backward(inputs, weight, bias)
        ctx.layer_forward = forward
        return output

    @staticmethod
    def backward(ctx, grad):
        inputs, weight, bias = ctx.saved_tensors
        output = ctx.layer_forward(inputs, weight, bias)
        safe = torch.where(inputs == 0, 1.0, inputs)
        grad_inputs = torch.where(inputs == 0, 0.0, output * grad / safe)
        return grad_inputs, None, None, None, None


# -- relevance at the model's input --------------------------------------------------------------

_INPUT_RELEVANCE: ContextVar[list[torch.Tensor] | None] = ContextVar("input_relevance",
                                                                      default=None)
#: autograd nodes that only view or copy a tensor: a layer whose input is the model's input
#: through these reads the model's input
_VIEW_NODES = frozenset({"ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0",
                         "CloneBackward0", "AsStridedBackward0"})


@contextmanager
def collecting_input_relevance() -> Iterator[list[torch.Tensor]]:
    """A list that rules with ``gives_relevance`` fill, in the backward pass, with the relevance
    they give at the model's input (in the shape of the layer's input); an LRP method adds it to
    ``x * g``."""
    with collecting(_INPUT_RELEVANCE) as sink:
        yield sink


def reads_model_input(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is the engine's input leaf or a view or copy of it."""
    node = tensor.grad_fn
    while node is not None and type(node).__name__ in _VIEW_NODES:
        following = [n for n, _ in node.next_functions if n is not None]
        if len(following) != 1:
            return False
        node = following[0]
    if node is None:
        return tensor.is_leaf and tensor.requires_grad
    return type(node).__name__ == "AccumulateGrad"


def _input_sink(rule: AffineRule, call: AffineCall) -> list[torch.Tensor] | None:
    """Where a rule that gives relevance puts it: the LRP method's list at the model's input,
    None at a hidden layer (the relevance then goes on as ``g = R / x``)."""
    if not reads_model_input(call.inputs):
        return None
    sink = _INPUT_RELEVANCE.get()
    if sink is None:
        raise ValueError(
            f"the {rule.name} rule gives relevance at the model's input, which only an LRP "
            f"method (lrp, lrp_epsilon, lrp_alpha_beta) collects; layer {call.layer!r}")
    return sink
