"""Conservation of CP-LRP and AttnLRP relevance on whole transformers, with every bias term
accounted for exactly.

The transformers here take their additive parameters (biases, class token, position embedding)
as inputs, one per sample, so the engine attributes to them the relevance they absorb (``b *
g_b``). Then the relevance of the inputs, the biases and what AttnLRP's softmax rule drops (its
Taylor bias, Achtibat et al. 2024, Prop. 3.1, recorded at each softmax as ``sum R_out - sum
R_in``) sums to the explained score; for CP-LRP (Ali et al. 2022, section 3) the softmax drops
nothing. Checked on random transformers (hypothesis: depth, heads, pre/post norm, LayerNorm /
RMSNorm, GELU / SiLU, gated MLP, patch or token inputs, class token) and on the zoo's trained
vision and text transformers, whose relevance at the pixels (at the embedding) the same
formulation reproduces.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import workbench as wb

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64
ACTIVATIONS = {"gelu": F.gelu, "silu": F.silu}


@dataclass(frozen=True)
class Architecture:
    depth: int = 1
    heads: int = 2
    width: int = 8
    pre_norm: bool = True
    norm: str = "layer"  # or "rms"
    eps: float = 1e-5
    activation: str = "gelu"
    gated: bool = False
    patch: int | None = None  # images cut into patches, else token embeddings (N, T, width)
    class_token: bool = True


class BiasInputTransformer(nn.Module):
    """``forward(x, *biases)``: a transformer whose weights are parameters and whose additive
    terms come in as inputs of shape ``(N, *bias.shape)``, in the order of ``bias_names``."""

    def __init__(self, architecture: Architecture, weights: dict[str, torch.Tensor],
                 bias_names: list[str]):
        super().__init__()
        self.a = architecture
        self.w = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(v.detach().clone())
                                   for k, v in weights.items()})
        self.bias_names = bias_names
        self.softmax_dropped: list[torch.Tensor] = []  # per call: sum R_out - sum R_in

    def weight(self, name):
        return self.w[name.replace(".", "_")]

    def forward(self, x, *values):
        b = dict(zip(self.bias_names, values, strict=True))
        if self.a.patch:
            h = F.conv2d(x, self.weight("patch"), stride=self.a.patch)
            h = (h + b["patch"][:, :, None, None]).flatten(2).transpose(1, 2)
        else:
            h = x
        if self.a.class_token:
            h = torch.cat([b["class_token"][:, None, :], h], dim=1)
        h = h + b["position"]
        for layer in range(self.a.depth):
            if self.a.pre_norm:
                h = h + self._attention(self._norm(h, b, f"{layer}.norm1"), b, layer)
                h = h + self._mlp(self._norm(h, b, f"{layer}.norm2"), b, layer)
            else:
                h = self._norm(h + self._attention(h, b, layer), b, f"{layer}.norm1")
                h = self._norm(h + self._mlp(h, b, layer), b, f"{layer}.norm2")
        if self.a.pre_norm:
            h = self._norm(h, b, "final")
        return self._linear(h[:, 0], b, "head")

    def _linear(self, h, b, name):
        bias = b[name] if h.dim() == 2 else b[name][:, None, :]
        return F.linear(h, self.weight(name)) + bias

    def _norm(self, h, b, name):
        if self.a.norm == "rms":
            return F.rms_norm(h, (h.size(-1),), self.weight(name), self.a.eps)
        return F.layer_norm(h, (h.size(-1),), self.weight(name), None, self.a.eps) \
            + b[name][:, None, :]

    def _attention(self, h, b, layer):
        n, tokens, width = h.shape
        heads = self.a.heads
        q, k, v = (t.reshape(n, tokens, heads, width // heads).transpose(1, 2)
                   for t in self._linear(h, b, f"{layer}.qkv").chunk(3, dim=-1))
        scores = torch.matmul(q * (width // heads) ** -0.5, k.transpose(-2, -1))
        weights = F.softmax(scores, dim=-1)
        self._record_softmax(scores, weights)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(n, tokens, width)
        return self._linear(out, b, f"{layer}.out")

    def _mlp(self, h, b, layer):
        hidden = ACTIVATIONS[self.a.activation](self._linear(h, b, f"{layer}.up"))
        if self.a.gated:
            hidden = hidden * self._linear(h, b, f"{layer}.gate")
        return self._linear(hidden, b, f"{layer}.down")

    def _record_softmax(self, scores, weights):
        """``sum(s g_s) - sum(x g_x)`` per sample: the relevance the softmax rule drops."""
        if not weights.requires_grad:  # CP-LRP: the weights are constants
            return
        entry = {}

        def out_hook(grad):
            entry["out"] = (weights.detach() * grad).sum((1, 2, 3))

        def in_hook(grad):
            self.softmax_dropped.append(entry.pop("out") - (scores.detach() * grad).sum((1, 2, 3)))

        weights.register_hook(out_hook)
        scores.register_hook(in_hook)


def random_transformer(a: Architecture, seed: int, classes: int = 3, hidden: int = 12):
    """Random weights and biases (float64) of ``a``."""
    g = torch.Generator().manual_seed(seed)
    weights, biases = {}, {}

    def linear(name, out, into, bias=True):
        weights[name] = torch.randn(out, into, generator=g, dtype=D) / into ** 0.5
        if bias:
            biases[name] = 0.1 * torch.randn(out, generator=g, dtype=D)

    if a.patch:
        weights["patch"] = torch.randn(a.width, 3, a.patch, a.patch, generator=g,
                                       dtype=D) / (3 * a.patch ** 2) ** 0.5
        biases["patch"] = 0.1 * torch.randn(a.width, generator=g, dtype=D)
    if a.class_token:
        biases["class_token"] = torch.randn(a.width, generator=g, dtype=D)
    norms = [f"{i}.norm{j}" for i in range(a.depth) for j in (1, 2)]
    for name in norms + (["final"] if a.pre_norm else []):
        weights[name] = 1 + 0.2 * torch.randn(a.width, generator=g, dtype=D)
        if a.norm == "layer":
            biases[name] = 0.1 * torch.randn(a.width, generator=g, dtype=D)
    for i in range(a.depth):
        linear(f"{i}.qkv", 3 * a.width, a.width)
        linear(f"{i}.out", a.width, a.width)
        linear(f"{i}.up", hidden, a.width)
        if a.gated:
            linear(f"{i}.gate", hidden, a.width)
        linear(f"{i}.down", a.width, hidden)
    linear("head", classes, a.width)
    return weights, biases


def _inputs(a: Architecture, n: int, tokens: int, seed: int):
    g = torch.Generator().manual_seed(seed + 1)
    if a.patch:
        return torch.randn(n, 3, a.patch * 2, a.patch * 2, generator=g, dtype=D)
    return torch.randn(n, tokens, a.width, generator=g, dtype=D)


def _tokens(a: Architecture, x) -> int:
    inputs = 4 if a.patch else x.size(1)
    return inputs + int(a.class_token)


def check_conservation(a: Architecture, weights, biases, x, method, target):
    """The score equals the relevance of the inputs and the biases plus what the softmax
    rule dropped; returns the input relevance."""
    bias_names = list(biases)
    model = BiasInputTransformer(a, weights, bias_names).double().eval()
    n = len(x)
    values = [biases[name].expand(n, *biases[name].shape).clone() for name in bias_names]
    relevance = wb.attribute(model, (x, *values), method, target=target, epsilon=0.0)
    with torch.no_grad():
        score = model(x, *values)[torch.arange(n), target]
    total = sum(r.flatten(1).sum(1) for r in relevance)
    dropped = sum(model.softmax_dropped, torch.zeros(n, dtype=D))
    if method == "cp_lrp":
        assert not model.softmax_dropped
    else:
        assert len(model.softmax_dropped) == a.depth
    torch.testing.assert_close(total + dropped, score, rtol=1e-9, atol=1e-9)
    return relevance[0]


@st.composite
def architectures(draw):
    return Architecture(
        depth=draw(st.integers(1, 3)), heads=draw(st.sampled_from([1, 2, 4])),
        pre_norm=draw(st.booleans()), norm=draw(st.sampled_from(["layer", "rms"])),
        activation=draw(st.sampled_from(list(ACTIVATIONS))), gated=draw(st.booleans()),
        patch=draw(st.sampled_from([None, 2])), class_token=draw(st.booleans()),
    ), draw(st.integers(0, 2 ** 16))


@pytest.mark.parametrize("method", ["cp_lrp", "attn_lrp"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=architectures())
def test_relevance_is_conserved_on_random_transformers(method, case):
    a, seed = case
    weights, biases = random_transformer(a, seed)
    x = _inputs(a, 3, 4, seed)
    biases["position"] = 0.1 * torch.randn(_tokens(a, x), a.width,
                                           generator=torch.Generator().manual_seed(seed),
                                           dtype=D)
    relevance = check_conservation(a, weights, biases, x, method, torch.tensor([0, 2, 1]))
    assert relevance.shape == x.shape


def test_the_dropped_softmax_bias_is_what_separates_attn_lrp_from_conservation():
    """The ledger is not vacuous: AttnLRP's softmax drops relevance on a random transformer
    (so the input and bias relevance alone do not sum to the score)."""
    a = Architecture(depth=2)
    weights, biases = random_transformer(a, 3)
    x = _inputs(a, 2, 5, 3)
    biases["position"] = 0.1 * torch.randn(6, 8, dtype=D)
    model = BiasInputTransformer(a, weights, list(biases)).double().eval()
    values = [v.expand(2, *v.shape).clone() for v in biases.values()]
    wb.attribute(model, (x, *values), "attn_lrp", target=0, epsilon=0.0)
    dropped = sum(model.softmax_dropped)
    assert float(dropped.abs().min()) > 1e-6


# -- the zoo's vision transformer ------------------------------------------------------------


def _from_torchvision(vit) -> tuple[Architecture, dict, dict]:
    """The architecture, weights and biases of a torchvision ``VisionTransformer`` (float64),
    under this file's names."""
    state = {k: v.detach().double() for k, v in vit.state_dict().items()}
    a, weights, biases = _encoder(vit.encoder, state, vit.hidden_dim, patch=vit.patch_size)
    weights.update({"patch": state["conv_proj.weight"], "head": state["heads.head.weight"]})
    biases.update({"patch": state["conv_proj.bias"], "class_token": state["class_token"][0, 0],
                   "head": state["heads.head.bias"]})
    return a, weights, biases


def _from_token_transformer(model) -> tuple[Architecture, dict, dict]:
    """The same for the zoo's text transformer, whose inputs here are its embedding's output."""
    state = {k: v.detach().double() for k, v in model.state_dict().items()}
    a, weights, biases = _encoder(model.encoder, state, model.head.in_features, patch=None)
    weights["head"] = state["head.weight"]
    biases.update({"class_token": state["class_token"][0, 0], "head": state["head.bias"]})
    return a, weights, biases


def _encoder(encoder, state: dict, width: int, patch: int | None):
    """torchvision's ViT ``Encoder`` (pre-norm blocks, LayerNorm eps 1e-6) under this file's
    names: its architecture, weights and biases (position embedding and final norm included)."""
    layers = len(encoder.layers)
    a = Architecture(depth=layers, heads=encoder.layers[0].self_attention.num_heads,
                     width=width, eps=1e-6, patch=patch, class_token=True)
    weights = {"final": state["encoder.ln.weight"]}
    biases = {"position": state["encoder.pos_embedding"][0], "final": state["encoder.ln.bias"]}
    for i in range(layers):
        source = f"encoder.layers.encoder_layer_{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2"), ("up", "mlp.0"),
                             ("down", "mlp.3"), ("out", "self_attention.out_proj")):
            weights[f"{i}.{ours}"] = state[f"{source}{theirs}.weight"]
            biases[f"{i}.{ours}"] = state[f"{source}{theirs}.bias"]
        weights[f"{i}.qkv"] = state[f"{source}self_attention.in_proj_weight"]
        biases[f"{i}.qkv"] = state[f"{source}self_attention.in_proj_bias"]
    return a, weights, biases


@pytest.mark.parametrize("method", ["cp_lrp", "attn_lrp"])
def test_relevance_is_conserved_on_the_zoo_text_transformer(method):
    """On the trained ``tokens_transformer``, explained at its embedding: the bias-input form
    on the embedded sentences gives the same relevance as the engine on the token ids, and its
    ledger balances."""
    from workbench import models

    model, _ = models.zoo("tokens_transformer", progress=False)
    model = model.double().eval()
    ids = models.zoo_data("tokens_transformer").x_test[:3]
    target = torch.tensor([1, 0, 1])
    a, weights, biases = _from_token_transformer(model)
    with torch.no_grad():
        embedded = model.embedding(ids)
    relevance = check_conservation(a, weights, biases, embedded, method, target)
    expected = wb.attribute(model, ids, method, target=target, layer="embedding", epsilon=0.0)
    torch.testing.assert_close(relevance, expected, rtol=1e-7,
                               atol=1e-9 * float(expected.abs().max()))


@pytest.mark.parametrize("method", ["cp_lrp", "attn_lrp"])
def test_relevance_is_conserved_on_the_zoo_vision_transformer(method):
    """On the trained ``photos_vit``: the bias-input form gives the same scores and the same
    pixel relevance as the torchvision model run by the engine (fused attention decomposed),
    and its ledger balances."""
    from workbench import models

    vit, _ = models.zoo("photos_vit", progress=False)
    vit = vit.double().eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=D)
    target = torch.tensor([1, 4])
    a, weights, biases = _from_torchvision(vit)
    relevance = check_conservation(a, weights, biases, x, method, target)
    expected = wb.attribute(vit, x, method, target=target, epsilon=0.0)
    torch.testing.assert_close(relevance, expected, rtol=1e-7,
                               atol=1e-9 * float(expected.abs().max()))
