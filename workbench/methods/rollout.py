"""Attention rollout (Abnar & Zuidema 2020, "Quantifying attention flow in transformers", ACL,
arXiv 2005.00928, section 3) as an attribution method, for models that run attention only.

The rollout row of one output token (a class token) gives each token a share of it; the
method spreads each token's share evenly over the input features the token is made of:

- inputs ``(N, T', D)`` (token embeddings, e.g. at an embedding layer with ``layer``): token
  ``t`` is row ``t``; with ``T' = T - prefix_tokens`` the model prepends ``prefix_tokens``
  tokens (a class token) that are not inputs;
- images ``(N, C, H, W)``: the tokens after the ``prefix_tokens`` are a row-major grid of
  patches of equal size tiling the image (as in a vision transformer).

The attribution of a token's features sums to its rollout share. Rollout does not depend on
the target class (the target is still checked against the model's outputs).
"""
from __future__ import annotations

import torch
from torch import nn

from workbench.attention import attention_weights, has_attention_layers, rollout
from workbench.checks import resolve_target
from workbench.registry import Method, Option, Requirement, register

#: models that run self-attention in ``nn.MultiheadAttention`` modules
ATTENTION = Requirement(
    "attention", "models that run self-attention (nn.MultiheadAttention, as "
    "nn.TransformerEncoder and torchvision's vision transformers do)", has_attention_layers)


def _patch_grid(patches: int, height: int, width: int) -> tuple[int, int] | None:
    """``(rows, columns)`` of square-pixel patches tiling ``height x width``, or None."""
    for rows in range(1, patches + 1):
        if patches % rows:
            continue
        columns = patches // rows
        if height % rows == 0 and width % columns == 0 \
                and height // rows == width // columns:
            return rows, columns
    return None


def tokens_to_inputs(shares: torch.Tensor, inputs: torch.Tensor,
                     prefix_tokens: int) -> torch.Tensor:
    """Each token's share ``(N, T)`` spread evenly over its input features (module
    docstring); ``ValueError`` naming the shapes when the tokens do not map onto ``inputs``."""
    tokens = shares.size(1)
    if inputs.dim() == 3:
        if inputs.size(1) not in (tokens, tokens - prefix_tokens):
            raise ValueError(f"attention_rollout: the model runs attention over {tokens} tokens, "
                             f"which do not map onto inputs of shape {tuple(inputs.shape)} "
                             f"(tokens along dimension 1, {prefix_tokens} prefix tokens)")
        shares = shares[:, tokens - inputs.size(1):]
        return (shares / inputs.size(2))[:, :, None].expand_as(inputs)
    if inputs.dim() == 4:
        height, width = inputs.shape[-2:]
        grid = _patch_grid(tokens - prefix_tokens, height, width) \
            if tokens > prefix_tokens else None
        if grid is None:
            raise ValueError(f"attention_rollout: {tokens} tokens less {prefix_tokens} prefix "
                             f"tokens are not a grid of square patches tiling images of "
                             f"{height}x{width}; set prefix_tokens to the number of tokens "
                             "before the patches")
        rows, columns = grid
        side = height // rows
        patches = shares[:, prefix_tokens:].reshape(len(shares), 1, rows, columns)
        pixels = patches.repeat_interleave(side, 2).repeat_interleave(side, 3)
        return (pixels / (side * side * inputs.size(1))).expand_as(inputs)
    raise ValueError(f"attention_rollout explains images (N, C, H, W) or token embeddings "
                     f"(N, T, D), got inputs of shape {tuple(inputs.shape)}")


def attention_rollout(model: nn.Module, inputs: torch.Tensor, target,
                      token: int = 0, prefix_tokens: int = 1) -> torch.Tensor:
    """Row ``token`` of the rollout, spread over the input features (module docstring)."""
    output, weights = attention_weights(model, inputs)
    if not weights:
        raise ValueError(f"attention_rollout applies to {ATTENTION.description} only; "
                         f"{type(model).__name__} ran no attention")
    resolve_target(target, output)  # the target must name one of the model's outputs
    rolled = rollout(weights)
    if not 0 <= token < rolled.size(1):
        raise ValueError(f"option 'token' of attention_rollout must be one of the model's "
                         f"{rolled.size(1)} tokens (0..{rolled.size(1) - 1}), got {token}")
    if prefix_tokens >= rolled.size(1):
        raise ValueError(f"option 'prefix_tokens' of attention_rollout must be below the "
                         f"model's {rolled.size(1)} tokens, got {prefix_tokens}")
    return tokens_to_inputs(rolled[:, token], inputs, prefix_tokens).to(inputs.dtype)


register(Method(
    "attention_rollout", attention_rollout,
    "How much each input token flows into the class token through the attention layers, "
    "residual connections included; independent of the target class.",
    options=(
        Option("token", "int", 0, "the output token explained (0: the class token)",
               minimum=0),
        Option("prefix_tokens", "int", 1,
               "tokens the model puts before the inputs' tokens (1: a class token)", minimum=0),
    ),
    reference="Abnar & Zuidema 2020", requires=ATTENTION,
))
