"""Each LRP rule against its equation in plain matrix form, in float64, on Linear and
Conv1d/2d/3d layers and a BatchNorm on its own; and conservation where the rule conserves.

A layer is written as a dense matrix ``W`` (``z = W x + b``, found as the Jacobian of the layer)
and each rule's redistribution ``R_i = sum_j q_ij / sum_i' q_i'j R_j`` from its paper
(Bach et al. 2015; Montavon et al. 2017, 2019, section 10.2), with the contributions
``c_ij = x_i W_ji``:

zero:        q = c                                    (denominator + b)
epsilon:     q = c                                    (denominator + b + eps sign)
gamma:       q = c + gamma c^+  where z_j > 0, c + gamma c^- where z_j < 0  (+ b + gamma b^+-)
alpha-beta:  alpha c^+ / (sum c^+ + b^+) - beta c^- / (sum c^- + b^-)
z-box:       q = x_i W_ji - l_i W_ji^+ - h_i W_ji^-
flat:        q = 1 on the receptive field
w-square:    q = W_ji^2                               (denominator + b^2)

The layer under test feeds a bias-free Linear with LRP-0, so that the relevance arriving at the
layer's output is ``R_z = z * v`` for a fixed ``v`` (not one-hot).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
import zennit.rules as zennit_rules

import workbench as wb
from workbench.lrp_rules import AlphaBetaRule, FlatRule, GammaRule, PassRule, WSquareRule, ZBoxRule
from workbench.rules import EpsilonRule, ZeroRule

STABILIZER = 1e-6

pytestmark = pytest.mark.usefixtures("one_thread")


def layer(kind: str, seed: int, bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    made = {
        "linear": lambda: nn.Linear(6, 5, bias=bias),
        "conv1d": lambda: nn.Conv1d(2, 3, 3, stride=2, padding=1, bias=bias),
        "conv2d": lambda: nn.Conv2d(2, 3, 3, padding=1, bias=bias),
        "conv3d": lambda: nn.Conv3d(2, 2, 2, bias=bias),
        "batchnorm": lambda: nn.BatchNorm1d(6),  # on its own: a diagonal affine layer
    }[kind]()
    if kind == "batchnorm":
        with torch.no_grad():
            made.running_mean.uniform_(-1, 1)
            made.running_var.uniform_(0.5, 2.0)
            made.weight.uniform_(-1.5, 1.5)
            made.bias.uniform_(-1, 1)
        made.eval()
    return made.double()


INPUT_SHAPES = {"linear": (6,), "conv1d": (2, 7), "conv2d": (2, 4, 4), "conv3d": (2, 3, 3, 3),
                "batchnorm": (6,)}


def dense(module: nn.Module, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """``W`` (outputs x inputs) and ``b`` (per output) of ``module`` on inputs of ``shape``."""
    zero = torch.zeros(1, *shape, dtype=torch.float64)
    with torch.no_grad():
        b = module(zero).reshape(-1)
    jacobian = torch.autograd.functional.jacobian(lambda x: module(x).reshape(-1), zero)
    return jacobian.reshape(len(b), -1), b


def ones_layer(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm1d):
        return nn.Identity()
    copy = type(module)(**_constructor_args(module)).double()
    with torch.no_grad():
        copy.weight.fill_(1.0)
    return copy


def _constructor_args(module):
    if isinstance(module, nn.Linear):
        return {"in_features": module.in_features, "out_features": module.out_features,
                "bias": False}
    return {"in_channels": module.in_channels, "out_channels": module.out_channels,
            "kernel_size": module.kernel_size, "stride": module.stride,
            "padding": module.padding, "bias": False}


def stabilize(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).double()


def redistribute(q, denominator, relevance):
    """``R_i = sum_j q_nij / denominator_nj R_nj``."""
    return torch.einsum("nij,nj->ni", q, relevance / denominator)


def reference(rule: str, x, W, b, relevance, bias_in_rule=True, low=None, high=None, mask=None,
              gamma=0.25, eps=STABILIZER):
    """``b`` is the layer's bias; the rule's denominators leave it out unless ``bias_in_rule``
    (the signs that select gamma's parts are those of the layer's output ``z``)."""
    c = torch.einsum("ni,ji->nij", x, W)
    z = c.sum(1) + b
    if not bias_in_rule:
        b = torch.zeros_like(b)
    if rule in ("zero", "epsilon"):
        denominator = c.sum(1) + b
        denominator = denominator if rule == "zero" else stabilize(denominator, eps)
        safe = torch.where(denominator == 0, 1.0, denominator)
        return redistribute(c, safe, torch.where(denominator == 0, 0.0, relevance))
    if rule == "gamma":
        up = c + gamma * c.clamp(min=0)
        down = c + gamma * c.clamp(max=0)
        positive = (z > 0).double() * relevance
        negative = (z < 0).double() * relevance
        return (redistribute(up, stabilize(up.sum(1) + b + gamma * b.clamp(min=0), eps),
                             positive)
                + redistribute(down, stabilize(down.sum(1) + b + gamma * b.clamp(max=0), eps),
                               negative))
    if rule.startswith("alpha"):
        alpha, beta = (1.0, 0.0) if rule == "alpha1" else (2.0, 1.0)
        plus, minus = c.clamp(min=0), c.clamp(max=0)
        return (alpha * redistribute(plus, stabilize(plus.sum(1) + b.clamp(min=0), eps),
                                     relevance)
                - beta * redistribute(minus, stabilize(minus.sum(1) + b.clamp(max=0), eps),
                                      relevance))
    if rule == "z_box":
        q = c - torch.einsum("ni,ji->nij", low, W.clamp(min=0)) \
            - torch.einsum("ni,ji->nij", high, W.clamp(max=0))
        return redistribute(q, stabilize(q.sum(1), eps), relevance)
    if rule == "flat":
        q = mask.T.expand(len(x), -1, -1)
        return redistribute(q, stabilize(q.sum(1), eps), relevance)
    if rule == "w_square":
        q = (W * W).T.expand(len(x), -1, -1)
        return redistribute(q, stabilize(q.sum(1) + b * b, eps), relevance)
    raise AssertionError(rule)


RULES = {
    "zero": lambda bias: ZeroRule(bias=bias),
    "epsilon": lambda bias: EpsilonRule(STABILIZER, bias=bias),
    "gamma": lambda bias: GammaRule(0.25, STABILIZER, bias),
    "alpha1": lambda bias: AlphaBetaRule(1.0, 0.0, STABILIZER, bias),
    "alpha2": lambda bias: AlphaBetaRule(2.0, 1.0, STABILIZER, bias),
    "z_box": lambda bias: ZBoxRule(-1.5, torch.tensor(2.0), STABILIZER, bias),
    "flat": lambda bias: FlatRule(STABILIZER, bias),
    "w_square": lambda bias: WSquareRule(STABILIZER, bias),
}


def case(kind: str, seed: int, bias: bool):
    under_test = layer(kind, seed, bias)
    shape = INPUT_SHAPES[kind]
    with torch.no_grad():
        outputs = under_test(torch.zeros(1, *shape, dtype=torch.float64))[0].numel()
    torch.manual_seed(100 + seed)
    top = nn.Linear(outputs, 3, bias=False).double()
    model = nn.Sequential(under_test, nn.Flatten(), top)
    rng = torch.Generator().manual_seed(200 + seed)
    x = torch.rand(4, *shape, generator=rng, dtype=torch.float64) * 3.0 - 1.5
    x[0, 0] = 0.0  # an input exactly 0: flat, w-square and z-box still give it relevance
    target = torch.tensor([0, 1, 2, 1])
    return model, x, target


@pytest.mark.parametrize("kind", list(INPUT_SHAPES))
@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias_in_rule"])
def test_rule_matches_its_equation(kind, rule, bias):
    for seed in (0, 1):
        model, x, target = case(kind, seed, bias=True)
        under_test, top = model[0], model[2]
        actual = wb.attribute(model, x, "lrp", target=target, composite=wb.Composite(
            [(wb.composites.ByName("0"), RULES[rule](bias)),
             (wb.composites.ByName("2"), ZeroRule())]))
        W, b = dense(under_test, x.shape[1:])
        flat_x = x.reshape(len(x), -1)
        with torch.no_grad():
            z = under_test(x).reshape(len(x), -1)
        relevance = z * top.weight[target]  # LRP-0 at the bias-free top layer
        extra = {}
        if rule == "z_box":
            extra = {"low": torch.full_like(flat_x, -1.5), "high": torch.full_like(flat_x, 2.0)}
        if rule == "flat":
            extra = {"mask": dense(ones_layer(under_test), x.shape[1:])[0]}
        expected = reference(rule, flat_x, W, b, relevance, bias, **extra)
        torch.testing.assert_close(actual.reshape(len(x), -1), expected, rtol=1e-9, atol=1e-12)
        if rule in ("flat", "w_square", "z_box"):  # relevance where the input is exactly 0
            assert actual[0].reshape(-1)[: x[0, 0].numel()].abs().sum() > 0


def _conservation_case(kind: str, seed: int):
    model, x, target = case(kind, seed, bias=False)
    return model, x.abs(), target  # z_box below uses low = 0


@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d", "conv3d"])  # a BN has a shift
@pytest.mark.parametrize("rule", ["zero", "gamma", "alpha1", "alpha2", "z_box", "flat",
                                  "w_square"])
def test_rule_conserves_relevance_without_bias(kind, rule):
    model, x, target = _conservation_case(kind, 0)
    tiny = 1e-12  # the stabiliser is the only leak: make it negligible
    chosen = {"zero": ZeroRule(), "gamma": GammaRule(0.25, tiny),
              "alpha1": AlphaBetaRule(1.0, 0.0, tiny), "alpha2": AlphaBetaRule(2.0, 1.0, tiny),
              "z_box": ZBoxRule(0.0, 1.5, tiny), "flat": FlatRule(tiny),
              "w_square": WSquareRule(tiny)}[rule]
    relevance = wb.attribute(model, x, "lrp", target=target, composite=wb.Composite(
        [(wb.composites.ByName("0"), chosen), (wb.composites.Everything(), ZeroRule())]))
    with torch.no_grad():
        logits = model(x)[torch.arange(len(x)), target]
    if rule.startswith("alpha"):  # a part that is empty at an output loses its share there
        logits = _alpha_beta_total(model, x, target, 1.0 if rule == "alpha1" else 2.0)
    torch.testing.assert_close(relevance.flatten(1).sum(1), logits, rtol=1e-9, atol=1e-12)


def _alpha_beta_total(model, x, target, alpha):
    """``sum_j (alpha [z_j^+ > 0] - beta [z_j^- < 0]) R_j``: what alpha-beta conserves."""
    W, _ = dense(model[0], x.shape[1:])
    c = torch.einsum("ni,ji->nij", x.flatten(1), W)
    with torch.no_grad():
        relevance = model[0](x).flatten(1) * model[2].weight[target]
    kept = alpha * (c.clamp(min=0).sum(1) > 0) - (alpha - 1) * (c.clamp(max=0).sum(1) < 0)
    return (kept * relevance).sum(1)


def test_epsilon_absorbs_relevance():
    model, x, target = _conservation_case("conv2d", 1)
    with torch.no_grad():
        logits = model(x)[torch.arange(len(x)), target]
    totals = []
    for epsilon in (1e-9, 1.0):
        relevance = wb.attribute(model, x, "lrp", target=target, composite=wb.Composite(
            [(wb.composites.Everything(), EpsilonRule(epsilon))]))
        totals.append(relevance.flatten(1).sum(1))
    torch.testing.assert_close(totals[0], logits, rtol=1e-7, atol=1e-9)
    assert (totals[1].abs() < logits.abs()).all()


def test_pass_rule_passes_relevance_unchanged():
    """A batch norm on its own with the pass rule: ``R_x = R_z``, except where ``x = 0``."""
    torch.manual_seed(0)
    norm = nn.BatchNorm1d(4).double().eval()
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.weight.uniform_(0.5, 2.0)
    top = nn.Linear(4, 2, bias=False).double()
    model = nn.Sequential(norm, top)
    x = torch.randn(3, 4, dtype=torch.float64)
    x[0, 1] = 0.0
    target = torch.tensor([0, 1, 1])
    relevance = wb.attribute(model, x, "lrp", target=target, composite=wb.Composite(
        [(wb.composites.ByName("0"), PassRule()), (wb.composites.Everything(), ZeroRule())]))
    with torch.no_grad():
        expected = norm(x) * top.weight[target]
    expected[0, 1] = 0.0
    torch.testing.assert_close(relevance, expected, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="pass rule needs a layer whose output has its input"):
        wb.attribute(nn.Sequential(nn.Linear(4, 2).double()), x, "lrp", target=0,
                     composite=wb.Composite([(wb.composites.Everything(), PassRule())]))


@pytest.mark.parametrize("layer, ours, theirs", [
    ("2", lambda e: FlatRule(e), lambda e: zennit_rules.Flat(stabilizer=e)),
    ("5", lambda e: WSquareRule(e), lambda e: zennit_rules.WSquare(stabilizer=e)),
    ("2", lambda e: ZBoxRule(0.0, 3.0, e), lambda e: zennit_rules.ZBox(0.0, 3.0, stabilizer=e)),
])
def test_input_rules_on_a_hidden_layer_agree_with_zennit(layer, ours, theirs):
    """Flat, w² and z-box anywhere (Zennit allows them on any layer): on a hidden layer the
    relevance they give goes on down as R / x; below a ReLU nothing is lost where x = 0."""
    from zennit.attribution import Gradient
    from zennit.composites import NameMapComposite

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(5 * 6 * 6, 7), nn.ReLU(),
                          nn.Linear(7, 3)).double().eval()
    x = torch.rand(4, 3, 6, 6, dtype=torch.float64)
    epsilon, names = 1e-9, ["0", "2", "5", "7"]
    rules = {name: EpsilonRule(epsilon) for name in names} | {layer: ours(epsilon)}
    relevance = wb.attribute(model, x, "lrp", target=1, composite=wb.Composite(
        [(wb.composites.ByName(name), rule) for name, rule in rules.items()]))
    reference = {name: zennit_rules.Epsilon(epsilon=epsilon) for name in names}
    reference[layer] = theirs(epsilon)
    composite = NameMapComposite([([name], rule) for name, rule in reference.items()])
    with Gradient(model=model, composite=composite) as attributor:
        _, expected = attributor(x, lambda out: nn.functional.one_hot(
            torch.full((4,), 1), 3).to(out) * out)
    torch.testing.assert_close(relevance, expected, atol=1e-14, rtol=1e-10)
    assert expected.abs().max() > 1e-4  # not vanishing: the comparison means something


def test_z_box_checks_its_bounds():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(2)).double()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    model(x)
    with pytest.raises(ValueError, match=r"needs low <= inputs <= high"):
        wb.attribute(model, x, "lrp", target=0, composite="epsilon_gamma_box", low=0.5)
    with pytest.raises(ValueError, match=r"option 'low' of the z_box rule must broadcast"):
        wb.attribute(model, x, "lrp", target=0, composite="epsilon_gamma_box",
                     low=torch.zeros(2, 1, 1))
    # one bound per channel, shape (1, C, 1, 1)
    low = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    high = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1)
    per_channel = wb.attribute(model, x, "lrp", target=0, composite="epsilon_gamma_box",
                               low=low, high=high)
    scalar = wb.attribute(model, x, "lrp", target=0, composite="epsilon_gamma_box")
    assert torch.isfinite(per_channel).all() and not torch.allclose(per_channel, scalar)


def test_gamma_zero_is_lrp_zero_and_large_gamma_approaches_z_plus():
    """Montavon et al. 2019, section 10.2.3: gamma = 0 is LRP-0; gamma -> infinity is z+ (for
    the active neurons of a ReLU net, the only ones that receive relevance)."""
    model, x, target = _conservation_case("conv2d", 2)
    model = nn.Sequential(model[0], nn.ReLU(), *model[1:])

    def lrp(rule):
        return wb.attribute(model, x, "lrp", target=target, composite=wb.Composite(
            [(wb.composites.ByName("0"), rule), (wb.composites.Everything(), ZeroRule())]))

    assert (model[0](x) < 0).any()  # some neurons are inactive
    torch.testing.assert_close(lrp(GammaRule(0.0, stabilizer=0.0)), lrp(ZeroRule()),
                               rtol=1e-10, atol=1e-12)
    z_plus = lrp(AlphaBetaRule(1.0, 0.0))
    assert (lrp(GammaRule(1e6)) - z_plus).abs().max() < 1e-4 * z_plus.abs().max()
    assert (lrp(GammaRule(0.25)) - z_plus).abs().max() > 1e-2 * z_plus.abs().max()


def test_a_rule_is_a_short_declaration():
    """LRP-0 declared as one group of one term (the layer as it is) is the ZeroRule, and a
    misdeclared term or group is refused."""
    from workbench.lrp_rules import Group, ModifiedRule, Term

    class DeclaredZero(ModifiedRule):
        groups = (Group((Term("x", bias=lambda b: b),)),)

    model, x, target = case("conv2d", 3, bias=True)

    def lrp(rule):
        return wb.attribute(model, x, "lrp", target=target, composite=wb.Composite(
            [(wb.composites.ByName("0"), rule), (wb.composites.Everything(), ZeroRule())]))

    torch.testing.assert_close(lrp(DeclaredZero(stabilizer=0.0)), lrp(ZeroRule()),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="a Term's inputs must be one of"):
        Term("x+-")
    with pytest.raises(ValueError, match="a Group's where must be"):
        Group((Term("x"),), where="positve")

    class Undeclared(ModifiedRule):
        groups = (Group((Term("ones"),)),)

    with pytest.raises(TypeError, match="declare gives_relevance = True"):
        lrp(Undeclared())


SIGNS = {
    "non_negative": lambda x: x.clamp(min=0),  # after a ReLU: the x- terms are skipped
    "one_negative": lambda x: _with_one_negative(x.clamp(min=0)),  # must take the full rule
    "non_positive": lambda x: x.clamp(max=0),  # the x+ terms are skipped
}


def _with_one_negative(x):
    x = x.clone()
    x.view(-1)[-1] = -0.75  # one entry of the last sample: the whole batch takes the full rule
    return x


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
@pytest.mark.parametrize("rule", ["gamma", "alpha1", "alpha2"])
@pytest.mark.parametrize("signs", list(SIGNS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sign_shortcuts_match_the_equation(kind, rule, signs, dtype):
    """The engine skips the terms of a part of ``x`` that is zero everywhere (checked on the
    data, not assumed from the layer before): on inputs of one sign, and on inputs with a
    single negative entry, the rule still equals its matrix form. In float32 a conv net runs
    channels-last and the clamped weights are built in that order."""
    model, x, target = case(kind, 3, bias=True)
    x = SIGNS[signs](x)
    under_test, top = model[0], model[2]
    W, b = dense(under_test, x.shape[1:])
    with torch.no_grad():
        relevance = under_test(x).reshape(len(x), -1) * top.weight[target]
    expected = reference(rule, x.reshape(len(x), -1), W, b, relevance)
    composite = wb.Composite([(wb.composites.ByName("0"), RULES[rule](True)),
                              (wb.composites.ByName("2"), ZeroRule())])
    actual = wb.attribute(model.eval().to(dtype), x.to(dtype), "lrp", target=target,
                          composite=composite)
    tolerance = {"rtol": 1e-9, "atol": 1e-12} if dtype == torch.float64 else {
        "rtol": 1e-4, "atol": 1e-5 * expected.abs().max().item()}
    torch.testing.assert_close(actual.reshape(len(x), -1).double(), expected, **tolerance)
