"""Transformer rules (CP-LRP, AttnLRP), each against its equation in float64; conservation;
fused attention decomposed with the same numbers; agreement with the authors' ``lxt``."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench import attention
from workbench.engine import RuleMode, UnsupportedOperationError
from workbench.methods.rule_based import attn_lrp_rules

pytestmark = pytest.mark.usefixtures("one_thread")
D = torch.float64


def _linear(a: int, b: int, seed: int, bias: bool = False) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(a, b, bias=bias).double()


def _relevance(model, x, method, target):
    return wb.attribute(model.eval(), x, method, target=target, epsilon=0.0)


# -- softmax ---------------------------------------------------------------------------------


class _SoftmaxHead(nn.Module):
    """``y = W softmax(x)`` (``gated``: ``y = W (softmax(x) * x)``)."""

    def __init__(self, gated: bool = False):
        super().__init__()
        self.out, self.gated = _linear(5, 3, 0), gated

    def forward(self, x):
        s = F.softmax(x, dim=-1)
        return self.out(s * x if self.gated else s)


def test_attn_lrp_softmax_rule_is_its_equation():
    """Achtibat et al. 2024, Prop. 3.1: ``R_x = x (R_s - s sum R_s)``; here ``R_s = s W_t``."""
    x = torch.randn(4, 5, dtype=D)
    model, target = _SoftmaxHead(), 2
    s = F.softmax(x, dim=-1)
    upper = s * model.out.weight[target].detach()
    expected = x * (upper - s * upper.sum(-1, keepdim=True))
    torch.testing.assert_close(_relevance(model, x, "attn_lrp", target), expected)


def test_cp_lrp_holds_the_softmax_constant():
    """Ali et al. 2022, section 3.2: with the weights ``s`` constant ``s * x`` is linear in
    ``x``, so ``R_x = x s W_t`` and nothing reaches x through ``s``."""
    x = torch.randn(4, 5, dtype=D)
    model, target = _SoftmaxHead(gated=True), 1
    expected = x * F.softmax(x, dim=-1) * model.out.weight[target].detach()
    torch.testing.assert_close(_relevance(model, x, "cp_lrp", target), expected)
    with pytest.raises(ValueError, match="does not depend on its inputs"):
        _relevance(_SoftmaxHead(), x, "cp_lrp", target)  # only through the weights


# -- products ----------------------------------------------------------------------------------


class _Gated(nn.Module):
    """``y = W (A x * B x)``, elementwise."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = _linear(4, 6, 1), _linear(4, 6, 2), _linear(6, 3, 3)

    def forward(self, x):
        return self.out(self.a(x) * self.b(x))


class _Bilinear(nn.Module):
    """``y = W vec(A X^T (B X^T)^T)``: a matrix product of two input-dependent tensors."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = _linear(4, 3, 4), _linear(4, 3, 5), _linear(25, 2, 6)

    def forward(self, x):  # x: (N, 5 tokens, 4)
        return self.out(torch.matmul(self.a(x), self.b(x).transpose(1, 2)).flatten(1))


def _through_linear(layer: nn.Linear, inputs, relevance):
    """LRP-0 through a bias-free linear layer: ``R_x = x W^T (R_z / z)``."""
    z = layer(inputs).detach()
    return inputs * ((relevance / z) @ layer.weight.detach())


def test_uniform_rule_halves_an_elementwise_product():
    """Achtibat et al. 2024, Prop. 3.2: ``R_a = R_b = R_y / 2``."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, dtype=D)
    model, target = _Gated().eval(), 0
    a, b = model.a(x).detach(), model.b(x).detach()
    product_relevance = a * b * model.out.weight[target].detach()
    expected = (_through_linear(model.a, x, product_relevance / 2)
                + _through_linear(model.b, x, product_relevance / 2))
    torch.testing.assert_close(_relevance(model, x, "attn_lrp", target), expected)
    torch.testing.assert_close(_relevance(model, x, "cp_lrp", target), expected)
    assert torch.allclose(expected.sum(1), model(x)[:, target].detach())  # conserved


def test_uniform_rule_for_a_matrix_product_is_proposition_3_3():
    """``R_ik^a = sum_j a_ik b_jk R_ij / (2 y_ij)``: epsilon (-> 0) on the sum, then half to
    each factor of each term."""
    torch.manual_seed(1)
    x = torch.randn(2, 5, 4, dtype=D)
    model, target = _Bilinear().eval(), 1
    a, b = model.a(x).detach(), model.b(x).detach()
    y = a @ b.transpose(1, 2)
    relevance_y = y * model.out.weight[target].detach().view(5, 5)
    terms = a[:, :, None, :] * b[:, None, :, :] / y[..., None] * relevance_y[..., None] / 2
    relevance_a, relevance_b = terms.sum(2), terms.sum(1)  # (N, i, k) and (N, j, k)
    expected = (_through_linear(model.a, x, relevance_a)
                + _through_linear(model.b, x, relevance_b))
    torch.testing.assert_close(_relevance(model, x, "attn_lrp", target), expected)


def test_methods_without_transformer_rules_still_refuse_products_and_softmax():
    x = torch.randn(3, 4, dtype=D)
    with pytest.raises(UnsupportedOperationError, match="multiplies or divides"):
        wb.attribute(_Gated().eval(), x, "lrp_epsilon", target=0)
    with pytest.raises(UnsupportedOperationError, match="softmax"):
        wb.attribute(_SoftmaxHead().eval(), torch.randn(3, 5, dtype=D), "lrp_epsilon", target=0)


# -- normalisation and activations ---------------------------------------------------------------


def _normalised(norm: nn.Module) -> nn.Module:
    torch.manual_seed(7)
    with torch.no_grad():
        for p in norm.parameters():
            p.uniform_(0.5, 1.5)
    return nn.Sequential(norm, _linear(6, 3, 8)).double().eval()


@pytest.mark.parametrize("method", ["cp_lrp", "attn_lrp"])
def test_layer_norm_holds_the_standard_deviation_constant(method):
    """Ali et al. 2022, section 3.3; Achtibat et al. 2024, Prop. 3.4: with ``sigma`` constant
    ``x_hat = (x - mean x) / sigma`` is linear, ``R_x = x C^T (R_x_hat / x_hat) / sigma`` with
    ``C = I - 1/n``; the affine part passes ``R_x_hat = x_hat w W_t`` (the bias absorbs the
    rest)."""
    torch.manual_seed(2)
    x = torch.randn(4, 6, dtype=D)
    model, target = _normalised(nn.LayerNorm(6)), 2
    sigma = torch.sqrt(x.var(1, unbiased=False, keepdim=True) + model[0].eps)
    x_hat = (x - x.mean(1, keepdim=True)) / sigma
    relevance_hat = x_hat * model[0].weight.detach() * model[1].weight[target].detach()
    centring = torch.eye(6, dtype=D) - 1 / 6
    expected = x * ((relevance_hat / x_hat) @ centring) / sigma
    torch.testing.assert_close(_relevance(model, x, method, target), expected)


def test_rms_norm_passes_relevance_unchanged():
    """Identity rule (Achtibat et al. 2024, Prop. 3.4): ``R_x = R_x_hat = x_hat w W_t``."""
    x = torch.randn(4, 6, dtype=D)
    model, target = _normalised(nn.RMSNorm(6, eps=1e-5)), 0
    x_hat = x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + 1e-5)
    expected = x_hat * model[0].weight.detach() * model[1].weight[target].detach()
    torch.testing.assert_close(_relevance(model, x, "attn_lrp", target), expected)


def test_gelu_and_silu_take_the_identity_rule():
    """Achtibat et al. 2024, Eq. 9: relevance passes an elementwise nonlinearity unchanged."""
    torch.manual_seed(3)
    x = torch.randn(5, 4, dtype=D)
    for activation in (nn.GELU(), nn.SiLU()):
        first, last = _linear(4, 6, 9), _linear(6, 3, 10)
        model = nn.Sequential(first, activation, last).eval()
        h = activation(first(x)).detach()
        expected = _through_linear(first, x, h * last.weight[1].detach())
        torch.testing.assert_close(_relevance(model, x, "attn_lrp", 1), expected)


# -- transformers ------------------------------------------------------------------------------


class Classifier(nn.Module):
    """Token embeddings ``(N, T, d)`` -> nn.TransformerEncoder -> a linear head on token 0."""

    def __init__(self, bias: bool = True, activation: str = "relu", layers: int = 2):
        super().__init__()
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True, bias=bias,
                                           activation=activation)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3, bias=bias)

    def forward(self, x):
        return self.head(self.encoder(x)[:, 0])


def test_cp_lrp_conserves_relevance_on_a_bias_free_transformer():
    """With the attention weights and LayerNorm's scale constant and no biases, every
    operation left is linear or takes a conservative rule (epsilon -> 0): the input's relevance
    sums to the output score (Ali et al. 2022, section 3)."""
    model = Classifier(bias=False).double().eval()
    x = torch.randn(3, 5, 8, dtype=D)
    relevance = _relevance(model, x, "cp_lrp", [0, 1, 2])
    scores = model(x).detach()[torch.arange(3), [0, 1, 2]]
    torch.testing.assert_close(relevance.sum((1, 2)), scores)


def test_attn_lrp_also_explains_through_the_queries_and_keys():
    """AttnLRP's softmax rule drops the bias of its Taylor expansion (Prop. 3.1), so unlike CP
    it does not conserve relevance over a whole attention layer (its other rules do, tested
    above); it passes relevance through the queries and keys, which CP does not."""
    model = Classifier(bias=False, layers=1).double().eval()
    x = torch.randn(2, 5, 8, dtype=D)
    cp, attn = (_relevance(model, x, m, 0) for m in ("cp_lrp", "attn_lrp"))
    assert torch.isfinite(attn).all() and not torch.allclose(cp, attn)


@pytest.mark.parametrize("method", ["cp_lrp", "attn_lrp"])
def test_a_transformer_encoder_model_is_unchanged_afterwards(method):
    model = Classifier().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        expected = model(x)  # the fused fast path, outside the engine
    relevance = wb.attribute(model, x, method, target=1)
    assert relevance.shape == x.shape and torch.isfinite(relevance).all()
    assert not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules()) == 0
    assert torch._C._len_torch_function_stack() == 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


def test_the_engine_runs_the_encoder_decomposed_with_the_same_numbers():
    model = Classifier(activation="gelu").double().eval()
    x = torch.randn(2, 5, 8, dtype=D)
    with torch.no_grad():
        expected = model(x)
    with torch.enable_grad(), RuleMode(model, attn_lrp_rules(), "attn_lrp"):
        with attention.recording_attention() as weights:
            output = model(x.clone().requires_grad_())
    torch.testing.assert_close(output.detach(), expected, rtol=1e-12, atol=1e-12)
    assert len(weights) == 2 and weights[0].shape == (2, 2, 5, 5)  # decomposed: two layers


def test_training_mode_attention_dropout_is_refused():
    model = Classifier().train()
    with pytest.raises(ValueError, match="evaluation mode"):
        wb.attribute(model, torch.randn(2, 5, 8), "attn_lrp", target=0)


# -- fused attention, decomposed ---------------------------------------------------------------


@pytest.mark.parametrize("case", ["plain", "bool_mask", "float_mask", "causal", "gqa", "scale"])
def test_decomposed_scaled_dot_product_attention_gives_the_same_numbers(case):
    torch.manual_seed(4)
    q = torch.randn(2, 4, 5, 6, dtype=D)
    k, v = torch.randn(2, 4, 7, 6, dtype=D), torch.randn(2, 4, 7, 3, dtype=D)
    options = {
        "plain": {}, "causal": {"is_causal": True}, "scale": {"scale": 0.3},
        "bool_mask": {"attn_mask": torch.rand(5, 7) > 0.3},
        "float_mask": {"attn_mask": torch.randn(2, 1, 5, 7, dtype=D)},
        "gqa": {"enable_gqa": True},
    }[case]
    if case == "bool_mask":
        options["attn_mask"][:, 0] = True  # every query sees a key
    if case == "gqa":
        k, v = k[:, :2], v[:, :2]
    if case == "causal":
        k, v = k[:, :, :5], v[:, :, :5]
    torch.testing.assert_close(attention.scaled_dot_product_attention(q, k, v, **options),
                               F.scaled_dot_product_attention(q, k, v, **options))


@pytest.mark.parametrize("case", ["self", "cross", "padding", "mask", "unbatched", "average"])
def test_decomposed_multi_head_attention_gives_the_same_numbers(case):
    torch.manual_seed(5)
    kdim = 5 if case == "cross" else None
    module = nn.MultiheadAttention(8, 2, batch_first=True, kdim=kdim, vdim=kdim).double().eval()
    x = torch.randn(3, 6, 8, dtype=D)
    memory = torch.randn(3, 4, 5, dtype=D) if case == "cross" else x
    options = {"need_weights": case != "self", "average_attn_weights": case == "average"}
    if case == "padding":
        options["key_padding_mask"] = torch.tensor([[False] * 5 + [True]] * 3)
    if case == "mask":
        options["attn_mask"] = torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)
    if case == "unbatched":
        x = memory = x[0]
    with torch.no_grad():
        expected = module(x, memory, memory, **options)
    with torch.enable_grad(), RuleMode(module, attn_lrp_rules(), "attn_lrp"):
        actual = module(x.clone().requires_grad_(), memory, memory, **options)
    torch.testing.assert_close(actual[0].detach(), expected[0])
    if expected[1] is not None:
        torch.testing.assert_close(actual[1], expected[1])


# -- agreement with the authors' implementation (lxt, Achtibat et al. 2024) -------------------


class _Block(nn.Module):
    """One pre-norm attention block with a ReLU MLP; a linear head on token 0. ``explicit``
    runs the same weights through ``lxt.explicit.functional``, whose backward is relevance."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.norm = nn.LayerNorm(6).double()
        self.q, self.k, self.v, self.o = (_linear(6, 6, s, bias=True) for s in range(20, 24))
        self.up, self.down, self.head = _linear(6, 8, 24, True), _linear(8, 6, 25, True), \
            _linear(6, 3, 26, True)

    def forward(self, x):
        h = self.norm(x)
        scores = torch.matmul(self.q(h) / 6 ** 0.5, self.k(h).transpose(1, 2))
        x = x + self.o(torch.matmul(F.softmax(scores, dim=-1), self.v(h)))
        x = x + self.down(torch.relu(self.up(x)))
        return self.head(x[:, 0])

    def explicit(self, x, epsilon: float):
        lxt = pytest.importorskip("lxt.explicit.functional")

        def linear(layer, t, scale=1.0):
            return lxt.linear_epsilon(t, layer.weight * scale, layer.bias * scale, epsilon)

        h = lxt.layer_norm_grad_fn.apply(x, self.norm.weight, self.norm.bias, self.norm.eps,
                                         epsilon)
        q = linear(self.q, h, 6 ** -0.5)
        scores = lxt.matmul(q, self.k_t(linear(self.k, h)), False, 1e-12)
        attended = lxt.matmul(lxt.softmax(scores, -1), linear(self.v, h), False, 1e-12)
        x = lxt.add2(x, linear(self.o, attended), False, 1e-12)
        x = lxt.add2(x, linear(self.down, torch.relu(linear(self.up, x))), False, 1e-12)
        return linear(self.head, x[:, 0])

    @staticmethod
    def k_t(k):
        return k.transpose(1, 2)


def _gradient(model, x, target):
    return wb.attribute(model, x, "gradient", target=target)


@pytest.mark.parametrize("epsilon,tolerance", [(1e-12, 1e-9), (1e-6, 1e-4)])
def test_attn_lrp_agrees_with_lxt(epsilon, tolerance):
    """The same block under our engine and under lxt's explicit relevance functions (ReLU's
    ordinary backward is lxt's identity rule). lxt also stabilises LayerNorm's output, and its
    query scale sits in the weights: at epsilon 1e-6 the two differ by about epsilon."""
    pytest.importorskip("lxt.explicit.functional")
    model = _Block().eval()
    torch.manual_seed(12)
    x = torch.randn(3, 5, 6, dtype=D)
    target = torch.tensor([0, 2, 1])
    ours = wb.attribute(model, x, "attn_lrp", target=target, epsilon=epsilon)
    leaf = x.clone().requires_grad_()
    output = model.explicit(leaf, epsilon)
    start = torch.zeros_like(output)
    start[torch.arange(3), target] = output.detach()[torch.arange(3), target]
    output.backward(start)
    theirs = leaf.grad
    scale = float(theirs.abs().max())
    assert float((ours - theirs).abs().max()) <= tolerance * scale
    assert not torch.allclose(ours, x * _gradient(model, x, target))  # not the plain gradient


_LXT_VIT = """
import sys, torch
from lxt.efficient import monkey_patch
from torchvision.models import vision_transformer
vit, x, target = torch.load(sys.argv[1], weights_only=False)
monkey_patch(vision_transformer)  # changes torch.nn's classes: in this process only
leaf = x.clone().requires_grad_()
vit(leaf).gather(1, target[:, None]).sum().backward()
torch.save(leaf.detach() * leaf.grad, sys.argv[2])
"""


def test_cp_lrp_agrees_with_lxts_efficient_implementation_on_a_torchvision_vit(tmp_path):
    """lxt's own patch map for torchvision's ViT (``lxt.efficient``: CP-LRP inside attention,
    identity rules for GELU and LayerNorm, plain linear layers) against ``cp_lrp`` with
    epsilon 0, on the same random ViT. lxt patches ``torch.nn`` classes process-wide, so it runs
    in a child process."""
    pytest.importorskip("lxt.efficient", exc_type=ImportError)  # needs Hugging Face transformers
    import subprocess
    import sys

    from workbench import models

    vit = models.vit(3, 5, 16, patch=4, depth=2, width=32, heads=4, mlp_width=64,
                     seed=0).double().eval()
    nn.init.normal_(vit.heads.head.weight, std=0.5, generator=torch.Generator().manual_seed(2))
    x = torch.randn(3, 3, 16, 16, dtype=D, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 2, 4])
    ours = wb.attribute(vit, x, "cp_lrp", target=target, epsilon=0.0)
    torch.save((vit, x, target), tmp_path / "case.pt")
    subprocess.run([sys.executable, "-c", _LXT_VIT, str(tmp_path / "case.pt"),
                    str(tmp_path / "theirs.pt")], check=True, timeout=300)
    theirs = torch.load(tmp_path / "theirs.pt")
    cosine = F.cosine_similarity(ours.flatten(1), theirs.flatten(1))
    assert bool((cosine >= 0.999999).all()), cosine
    assert float((ours - theirs).abs().max()) <= 1e-6 * float(theirs.abs().max())
    assert not torch.allclose(ours, x * _gradient(vit, x, target), atol=1e-3)


def test_attention_rollout_is_the_product_of_mixed_attention_matrices():
    """Abnar & Zuidema 2020, section 3, from the weights nn.MultiheadAttention returns."""
    model = Classifier(layers=2).double().eval()
    x = torch.randn(2, 5, 8, dtype=D)
    rollout = attention.attention_rollout(model, x, token=0)
    expected, h = torch.eye(5, dtype=D).expand(2, 5, 5), x
    with torch.no_grad():
        for layer in model.encoder.layers:
            _, weights = layer.self_attn(h, h, h, need_weights=True)
            mixed = 0.5 * weights + 0.5 * torch.eye(5, dtype=D)
            expected = (mixed / mixed.sum(-1, keepdim=True)) @ expected
            h = layer(h)
    torch.testing.assert_close(rollout, expected[:, 0])
    torch.testing.assert_close(rollout.sum(1), torch.ones(2, dtype=D))
    with pytest.raises(ValueError, match="needs a model that runs attention"):
        attention.attention_rollout(_Gated().eval(), torch.randn(2, 4, dtype=D))


# -- attention rollout as a method (for models with attention only) --------------------------


def _tiny_vit():
    from workbench.models import vit

    return vit(3, 3, 8, patch=4, depth=2, heads=2, width=8, mlp_width=16, seed=0).double().eval()


def test_rollout_method_spreads_each_patch_tokens_share_over_its_pixels():
    """The attribution of a patch's pixels sums to its token's rollout share (Abnar & Zuidema
    2020, section 3), evenly over the patch and the channels; the class token's own share is
    not an input's."""
    model = _tiny_vit()
    x = torch.randn(2, 3, 8, 8, dtype=D)
    shares = attention.attention_rollout(model, x, token=0)  # (2, 1 + 4 patches)
    attribution = wb.attribute(model, x, "attention_rollout", target=1)
    patches = attribution.reshape(2, 3, 2, 4, 2, 4)  # (N, C, row, pixel, column, pixel)
    torch.testing.assert_close(patches.sum((1, 3, 5)).flatten(1), shares[:, 1:])
    assert torch.allclose(patches, patches[:, :1, :, :1, :, :1].expand_as(patches))
    torch.testing.assert_close(attribution.sum((1, 2, 3)), 1 - shares[:, 0])


def test_rollout_method_on_token_embeddings_gives_each_token_its_share():
    model = Classifier(layers=2).double().eval()
    x = torch.randn(2, 5, 8, dtype=D)
    attribution = wb.attribute(model, x, "attention_rollout", target=0, prefix_tokens=0)
    torch.testing.assert_close(attribution.sum(-1), attention.attention_rollout(model, x, 0))
    later = wb.attribute(model, x, "attention_rollout", target=0, token=3)
    torch.testing.assert_close(later.sum(-1), attention.attention_rollout(model, x, 3))


#: rule-based methods without rules for layer normalisation and attention
RULED_ONLY = {"lrp_epsilon", "lrp_alpha_beta", "lrp", "deeplift_rescale", "guided_backprop",
              "deconvnet", "guided_grad_cam", "deeplift_shap", "pattern_net",
              "pattern_attribution"}


def test_every_method_offered_for_a_transformer_runs_on_it():
    """``wb.methods(model)`` leaves out the methods whose rules stop at a LayerNorm or an
    attention; every method it offers computes an attribution with its default options."""
    from conftest import cnn

    model = _tiny_vit()
    offered = wb.methods(model)
    assert RULED_ONLY.isdisjoint(offered)
    assert {"gradient", "cp_lrp", "attn_lrp", "attention_rollout"} <= set(offered)
    assert RULED_ONLY <= set(wb.methods(cnn())) and RULED_ONLY <= set(wb.general_methods())
    x = torch.randn(2, 3, 8, 8, dtype=D)
    for name in offered:
        attribution = wb.attribute(model, x, name, target=0)
        assert attribution.shape == x.shape and torch.isfinite(attribution).all(), name
    with pytest.raises(NotImplementedError, match="no rule for the operation 'layer_norm'"):
        wb.attribute(model, x, "lrp_epsilon", target=0)


def test_rollout_applies_to_attention_models_only_and_says_so():
    from conftest import cnn

    conv = cnn()
    assert "attention_rollout" in wb.methods() and "attention_rollout" not in wb.methods(conv)
    assert "attention_rollout" not in wb.general_methods()
    assert "attention_rollout" in wb.methods(_tiny_vit())
    assert set(wb.methods(conv)) == set(wb.general_methods())
    with pytest.raises(ValueError, match="applies to models that run self-attention.*ran no"):
        wb.attribute(conv, torch.randn(2, 3, 8, 8), "attention_rollout", target=0)
    assert torch._C._len_torch_function_stack() == 0
    with pytest.raises(ValueError, match="target out of range"):
        wb.attribute(_tiny_vit(), torch.randn(2, 3, 8, 8, dtype=D), "attention_rollout",
                     target=5)
    with pytest.raises(ValueError, match="option 'token' of attention_rollout"):
        wb.attribute(_tiny_vit(), torch.randn(2, 3, 8, 8, dtype=D), "attention_rollout",
                     target=0, token=5)
    with pytest.raises(ValueError, match="not a grid of square patches"):
        wb.attribute(_tiny_vit(), torch.randn(2, 3, 8, 8, dtype=D), "attention_rollout",
                     target=0, prefix_tokens=2)
