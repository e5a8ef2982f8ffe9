"""Fused attention in its decomposed form: matrix products, a softmax and an additive mask.

PyTorch's ``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` run fused kernels
that no rule can see into. Under a rule-based method the engine computes them here instead,
with the same numbers up to rounding, so that each product, softmax and linear layer meets its
rule (``workbench.transformer_rules``). The model is not changed.

The attention weights ``softmax(q k^T / sqrt(d) + mask)`` of every call can be recorded
(:func:`recording_attention`), for attention rollout.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from workbench import ops
from workbench.collecting import collecting

_RECORDED: ContextVar[list[torch.Tensor] | None] = ContextVar("attention_weights", default=None)


@contextmanager
def recording_attention() -> Iterator[list[torch.Tensor]]:
    """A list that each decomposed attention call fills with its weights, detached, of shape
    ``(N, heads, L, S)`` (batch, heads, queries, keys), in call order."""
    with collecting(_RECORDED) as sink:
        yield sink


def _additive(mask: torch.Tensor | None, masked_where: bool, like: torch.Tensor):
    """A float mask to add to the scores: a boolean mask becomes ``-inf`` where its value is
    ``masked_where``; a float mask is added as it is."""
    if mask is None or mask.is_floating_point():
        return mask
    return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(
        mask == masked_where, float("-inf"))


def _causal(length: int, source: int, like: torch.Tensor) -> torch.Tensor:
    allowed = torch.ones(length, source, dtype=torch.bool, device=like.device).tril()
    return _additive(allowed, False, like)


def _weighted_sum(query, key, value, mask, dropout_p: float, heads_shape) -> torch.Tensor:
    """``dropout(softmax(query @ key^T + mask)) @ value`` (the query already scaled); records
    the weights, viewed as ``heads_shape``."""
    scores = torch.matmul(query, key.transpose(-2, -1))
    if mask is not None:
        scores = scores + mask
    weights = F.softmax(scores, dim=-1)
    sink = _RECORDED.get()
    if sink is not None:
        sink.append(weights.detach().reshape(heads_shape))
    if dropout_p > 0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    return torch.matmul(weights, value), weights


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """``F.scaled_dot_product_attention`` decomposed (its documented reference form): a
    boolean ``attn_mask`` is True where attention is allowed; ``is_causal`` masks later keys;
    ``enable_gqa`` repeats key and value heads to the query's."""
    length, source = query.size(-2), key.size(-2)
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    if enable_gqa:
        repeats = query.size(-3) // key.size(-3)
        key = key.repeat_interleave(repeats, dim=-3)
        value = value.repeat_interleave(repeats, dim=-3)
    mask = _causal(length, source, query) if is_causal else _additive(attn_mask, False, query)
    if query.dim() >= 3:
        heads_shape = (-1, query.size(-3), length, source)
    else:
        heads_shape = (1, 1, length, source)
    output, _ = _weighted_sum(query * scale, key, value, mask, dropout_p, heads_shape)
    return output


_UNCOVERED = ("bias_k", "bias_v", "static_k", "static_v")


def multi_head_attention_forward(*args, **kwargs):
    """``F.multi_head_attention_forward`` (what ``nn.MultiheadAttention`` runs) decomposed:
    input projections as ``F.linear`` (one packed call for self-attention, so the layer keeps
    its name), per-head scaled dot products, softmax, output projection. Returns the output and
    the weights (averaged over heads if asked), as PyTorch does."""
    a = ops.bound_arguments(F.multi_head_attention_forward, args, kwargs)
    uncovered = [name for name in _UNCOVERED if a[name] is not None]
    if uncovered or a["add_zero_attn"]:
        raise NotImplementedError(
            "rule-based methods run nn.MultiheadAttention in a decomposed form that does not "
            f"cover {uncovered or ['add_zero_attn']}; use a model without them")
    query, key, value = a["query"], a["key"], a["value"]
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
    length, batch, embed = query.shape
    heads = a["num_heads"]
    q, k, v = _projections(a, query, key, value)
    q, k, v = (t.reshape(t.size(0), batch * heads, embed // heads).transpose(0, 1)
               for t in (q, k, v))
    source = k.size(1)
    mask = _multi_head_mask(a, batch, heads, length, source, q)
    dropout_p = a["dropout_p"] if a["training"] else 0.0
    scale = 1.0 / math.sqrt(embed // heads)
    output, weights = _weighted_sum(q * scale, k, v, mask, dropout_p,
                                    (batch, heads, length, source))
    output = output.transpose(0, 1).reshape(length * batch, embed)
    output = F.linear(output, a["out_proj_weight"], a["out_proj_bias"]).view(length, batch, embed)
    if not a["need_weights"]:
        return (output.squeeze(1) if unbatched else output), None
    weights = weights.view(batch, heads, length, source)
    if a["average_attn_weights"]:
        weights = weights.mean(dim=1)
    if unbatched:
        return output.squeeze(1), weights.squeeze(0)
    return output, weights


def _projections(a: dict, query, key, value):
    weight, bias = a["in_proj_weight"], a["in_proj_bias"]
    if not a["use_separate_proj_weight"] and query is key and key is value:
        return F.linear(query, weight, bias).chunk(3, dim=-1)
    if a["use_separate_proj_weight"]:
        weights = (a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"])
    else:
        weights = weight.chunk(3)
    biases = (None,) * 3 if bias is None else bias.chunk(3)
    return tuple(F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))


def _multi_head_mask(a: dict, batch: int, heads: int, length: int, source: int, like):
    """The additive mask of shape broadcastable to ``(N * heads, L, S)``: ``attn_mask`` (True:
    masked, as nn.MultiheadAttention reads it), causal if only ``is_causal`` is given, plus the
    key padding mask ``(N, S)``."""
    mask = a["attn_mask"]
    if mask is None and a["is_causal"]:
        mask = _causal(length, source, like)
    mask = _additive(mask, True, like)
    if mask is not None and mask.dim() == 2:
        mask = mask.unsqueeze(0)
    padding = _additive(a["key_padding_mask"], True, like)
    if padding is not None:
        padding = padding.view(batch, 1, 1, source).expand(batch, heads, 1, source).reshape(
            batch * heads, 1, source)
        mask = padding if mask is None else mask + padding
    return mask


#: the decomposed form of each fused attention operation
DECOMPOSED = {
    F.scaled_dot_product_attention: scaled_dot_product_attention,
    F.multi_head_attention_forward: multi_head_attention_forward,
}


class _Decomposing(TorchFunctionMode):
    """Runs fused attention decomposed (so its weights are recorded); all else as it is."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in DECOMPOSED:
            with self:
                return DECOMPOSED[func](*args, **kwargs)
        return func(*args, **kwargs)


def has_attention_layers(model: torch.nn.Module) -> bool:
    """Whether ``model`` holds an ``nn.MultiheadAttention`` (as ``nn.TransformerEncoder`` and
    torchvision's vision transformers do); seen from its modules, without a forward pass."""
    return any(isinstance(module, torch.nn.MultiheadAttention) for module in model.modules())


def attention_weights(model: torch.nn.Module, inputs: torch.Tensor
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The model's output for ``inputs`` and the weights of each attention call, in call order
    (each ``(N, heads, L, S)``), with fused attention run decomposed; no gradients."""
    with torch.no_grad(), recording_attention() as weights, _Decomposing():
        output = model(inputs)
    return output, weights


def rollout(weights: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying attention flow in transformers",
    ACL, arXiv 2005.00928, section 3) of the weights of successive self-attention layers:
    ``A~_l = rownorm(0.5 mean_heads(A_l) + 0.5 I)`` (the residual connection as an identity),
    rolled out as ``A~_L ... A~_1``, shape ``(N, T, T)``; each row sums to 1."""
    if not weights:
        raise ValueError("attention rollout needs a model that runs attention "
                         "(nn.MultiheadAttention or F.scaled_dot_product_attention); none ran")
    result = None
    for layer in weights:
        if layer.size(-1) != layer.size(-2) or (result is not None
                                                and layer.size(-1) != result.size(-1)):
            raise ValueError("attention rollout needs self-attention over the same tokens in "
                             f"every layer, got weights of shape {tuple(layer.shape)}")
        mixed = 0.5 * layer.mean(dim=1) + 0.5 * torch.eye(layer.size(-1), dtype=layer.dtype,
                                                          device=layer.device)
        mixed = mixed / mixed.sum(-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    return result


def attention_rollout(model: torch.nn.Module, inputs: torch.Tensor, token: int = 0
                      ) -> torch.Tensor:
    """Row ``token`` of the attention :func:`rollout` of ``model`` on ``inputs``, shape
    ``(N, T)``: how much each input token flows into output token ``token`` (0: a class
    token); each row sums to 1. Every attention call must be self-attention over the same
    ``T`` tokens."""
    _, weights = attention_weights(model, inputs)
    return rollout(weights)[:, token]
