"""Rule-based methods: each is a set of backward rules over the one engine.

See ``workbench.rules`` for the rules and Ancona et al. 2018 (section 3) for why
"input times modified gradient" covers all of them.
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from workbench import composites
from workbench.arguments import compact_baseline
from workbench.engine import modified_gradient
from workbench.lrp_rules import AlphaBetaRule, collecting_input_relevance
from workbench.methods.gradients import BASELINE, MULTIPLY_BY_INPUTS
from workbench.registry import Method, Option, Requirement, register
from workbench.rules import (
    AffineRule,
    DeconvRule,
    EpsilonRule,
    GuidedRule,
    RatioRule,
    DeltaMaxRule,
    RescaleRule,
    Rules,
)
from workbench.transformer_rules import (
    ConstantScaleRule,
    ConstantSoftmaxRule,
    SoftmaxTaylorRule,
    UniformRule,
)


#: modules whose operations the rule-based methods other than cp_lrp and attn_lrp have no rule
#: for: layer and RMS normalisation (an input-dependent scale) and attention (softmax and a
#: product of two input-dependent tensors)
UNRULED_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.MultiheadAttention, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def _has_only_ruled_modules(model: nn.Module) -> bool:
    return not any(isinstance(module, UNRULED_MODULES) for module in model.modules())


#: what lrp_*, deeplift_rescale, guided_backprop, deconvnet and the methods built on them need
RULED_MODULES = Requirement(
    "ruled_modules", "models without layer normalisation or attention modules (nn.LayerNorm, "
    "nn.RMSNorm, nn.MultiheadAttention): for transformers use cp_lrp or attn_lrp",
    _has_only_ruled_modules, plain=True)


def _checked_layer_rules(layer_rules: Mapping[str, AffineRule] | None) -> dict[str, AffineRule]:
    if layer_rules is None:
        return {}
    if not isinstance(layer_rules, Mapping) or not all(
            isinstance(k, str) and isinstance(v, AffineRule) for k, v in layer_rules.items()):
        raise TypeError("option 'layer_rules' must map layer names (str) to AffineRule objects, "
                        "e.g. {'features.0': AlphaBetaRule(1, 0)}")
    return dict(layer_rules)


def lrp_epsilon_rules(epsilon: float = 1e-6, layer_rules=None) -> Rules:
    return Rules(activation=RatioRule(), affine=EpsilonRule(epsilon),
                 layer_affine=_checked_layer_rules(layer_rules))


def lrp_alpha_beta_rules(alpha: float = 1.0, beta: float = 0.0, layer_rules=None) -> Rules:
    return Rules(activation=RatioRule(), affine=AlphaBetaRule(alpha, beta),
                 layer_affine=_checked_layer_rules(layer_rules))


def lrp_rules(composite="epsilon_plus", epsilon: float = 1e-6, gamma: float = 0.25,
              low=0.0, high=1.0, stabilizer: float = 1e-6, bias: bool = True,
              layer_rules=None) -> Rules:
    """LRP with a composite's rule per layer (``workbench.composites``; Montavon et al. 2019,
    section 10.3), ``layer_rules`` overriding it."""
    chosen = composites.resolve(composite, epsilon=epsilon, gamma=gamma, low=low, high=high,
                                stabilizer=stabilizer, bias=bias)
    return Rules(activation=RatioRule(), composite=chosen,
                 layer_affine=_checked_layer_rules(layer_rules))


#: DeepLIFT's rules at max pooling, by the name of its ``max_pool`` option
MAX_POOL_RULES = {"gradient": None, "delta": DeltaMaxRule()}


def deeplift_rescale_rules(max_pool: str = "gradient") -> Rules:
    return Rules(activation=RescaleRule(), max_pool=MAX_POOL_RULES[max_pool])


def guided_backprop_rules() -> Rules:
    return Rules(activation=GuidedRule())


def deconvnet_rules() -> Rules:
    return Rules(activation=DeconvRule())


MAX_POOL = Option(
    "max_pool", "choice", "gradient",
    "rule at max pooling: 'gradient' (to the input's maximum; the original DeepLIFT and Ancona "
    "et al.'s formulation, the default so that DeepLIFT stays a modified gradient as notebook "
    "02 compares it) or 'delta' (the change split between the input's and the baseline's "
    "maximum: sums to f(x) - f(x0) exactly; Captum's default)",
    choices=tuple(MAX_POOL_RULES))
LAYER_RULES = Option("layer_rules", "object", None,
                     "per-layer rule overrides: {layer name: AffineRule}, e.g. z+ in low layers")


def _relevance(name: str, make_rules):
    """LRP relevance: ``x * g`` with ``g`` the gradient under the method's rules."""

    def run(model, inputs, target, **options):
        rules = make_rules(**options)
        # rules such as flat and z^B give relevance at the input that is not a multiple of x
        with collecting_input_relevance() as at_input:
            gradient = modified_gradient(model, inputs, target, rules, method=name)
        relevance = inputs * gradient
        for part in at_input:
            relevance = relevance + part.reshape(inputs.shape)
        return relevance

    return run


def _modified_gradient(name: str, make_rules):
    def run(model, inputs, target):
        return modified_gradient(model, inputs, target, make_rules(), method=name)

    return run


def deeplift_rescale(model, inputs, target, baseline, multiply_by_inputs=True,
                     max_pool="gradient"):
    """``(x - x0) * g`` with the Rescale multipliers (Shrikumar et al. 2017; Ancona Prop. 2), or
    the multipliers ``g`` alone when ``multiply_by_inputs`` is False (Captum's option).
    ``max_pool``: ``"gradient"`` at max pooling, or ``"delta"`` (``rules.DeltaMaxRule``,
    Captum's), which keeps summation to delta."""
    baseline = compact_baseline(baseline, inputs)
    rules = deeplift_rescale_rules(max_pool)
    gradient = modified_gradient(model, inputs, target, rules, method="deeplift_rescale",
                                 baseline=baseline)
    return (inputs - baseline) * gradient if multiply_by_inputs else gradient


register(Method(
    "lrp_epsilon", _relevance("lrp_epsilon", lrp_epsilon_rules),
    "Layer-wise relevance propagation with the epsilon rule at every weighted layer.",
    options=(Option("epsilon", "float", 1e-6,
                    "stabiliser added to each layer's output (Captum's default: 1e-9)",
                    minimum=0.0), LAYER_RULES),
    reference="Bach et al. 2015", rules=lrp_epsilon_rules, requires=RULED_MODULES,
))
register(Method(
    "lrp_alpha_beta", _relevance("lrp_alpha_beta", lrp_alpha_beta_rules),
    "Layer-wise relevance propagation weighting positive (alpha) and negative (beta) parts.",
    options=(
        Option("alpha", "float", 1.0, "weight of positive contributions", minimum=0.0),
        Option("beta", "float", 0.0, "weight of negative contributions (alpha - beta = 1)",
               minimum=0.0),
        LAYER_RULES,
    ),
    reference="Bach et al. 2015", rules=lrp_alpha_beta_rules, requires=RULED_MODULES,
))
register(Method(
    "lrp", _relevance("lrp", lrp_rules),
    "Layer-wise relevance propagation with a rule per layer from a composite (by layer type, "
    "name and position).",
    options=(
        Option("composite", "named", "epsilon_plus",
               "which rule each layer gets: a shipped composite's name or a Composite",
               choices=tuple(composites.COMPOSITES)),
        Option("epsilon", "float", 1e-6, "stabiliser of the epsilon rule (Linear layers)",
               minimum=0.0),
        Option("gamma", "float", 0.25, "boost of positive weights in the gamma rule",
               minimum=0.0),
        Option("low", "baseline", 0.0, "lowest input value, for the z-box rule"),
        Option("high", "baseline", 1.0, "highest input value, for the z-box rule"),
        Option("stabilizer", "float", 1e-6, "stabiliser of the other rules' denominators",
               minimum=0.0),
        Option("bias", "bool", True, "whether biases take part in the rules' denominators"),
        LAYER_RULES,
    ),
    reference="Bach et al. 2015; Montavon et al. 2019", rules=lrp_rules, requires=RULED_MODULES,
))
register(Method(
    "deeplift_rescale", deeplift_rescale,
    "DeepLIFT with the Rescale rule at every elementwise nonlinearity; max pooling takes its "
    "ordinary gradient, or with max_pool='delta' Captum's multiplier (sums to the change).",
    options=(BASELINE, MULTIPLY_BY_INPUTS, MAX_POOL), reference="Shrikumar et al. 2017",
    rules=deeplift_rescale_rules, requires=RULED_MODULES,
))
register(Method(
    "guided_backprop", _modified_gradient("guided_backprop", guided_backprop_rules),
    "Gradient with only positive signals passed back through ReLUs.",
    reference="Springenberg et al. 2015", rules=guided_backprop_rules, requires=RULED_MODULES,
))
register(Method(
    "deconvnet", _modified_gradient("deconvnet", deconvnet_rules),
    "Backward pass with ReLU applied to the signal instead of the gradient mask.",
    reference="Zeiler & Fergus 2014", rules=deconvnet_rules, requires=RULED_MODULES,
))


# -- transformers -----------------------------------------------------------------------------


def cp_lrp_rules(epsilon: float = 1e-6) -> Rules:
    """CP-LRP (Ali et al. 2022, arXiv 2202.07304, section 3): attention weights and LayerNorm's
    scale held constant, the epsilon rule at weighted layers, relevance passing unchanged
    through elementwise nonlinearities. A product of two input-dependent tensors other than
    through the attention weights (a gate) takes the uniform rule, which the paper leaves
    open; products with the attention weights are linear once those are constants."""
    return Rules(activation=RatioRule(), affine=EpsilonRule(epsilon),
                 softmax=ConstantSoftmaxRule(), product=UniformRule(),
                 normalization=ConstantScaleRule())


def attn_lrp_rules(epsilon: float = 1e-6) -> Rules:
    """AttnLRP (Achtibat et al. 2024, arXiv 2402.05602, section 3): the softmax rule
    (Prop. 3.1), the uniform rule for products (Prop. 3.2, 3.3), the identity rule for
    normalisation (Prop. 3.4) and elementwise nonlinearities (Eq. 9), the epsilon rule at
    weighted layers (Eq. 8)."""
    return Rules(activation=RatioRule(), affine=EpsilonRule(epsilon),
                 softmax=SoftmaxTaylorRule(), product=UniformRule(),
                 normalization=ConstantScaleRule())


_TRANSFORMER_EPSILON = Option("epsilon", "float", 1e-6,
                              "stabiliser of the epsilon rule at Linear and Conv layers",
                              minimum=0.0)

register(Method(
    "cp_lrp", _relevance("cp_lrp", cp_lrp_rules),
    "LRP for transformers with attention weights and LayerNorm's scale held constant "
    "(conservative propagation); runs fused attention decomposed.",
    options=(_TRANSFORMER_EPSILON,), reference="Ali et al. 2022", rules=cp_lrp_rules,
))
register(Method(
    "attn_lrp", _relevance("attn_lrp", attn_lrp_rules),
    "LRP for transformers with AttnLRP's softmax, uniform (products) and identity "
    "(normalisation, activations) rules; runs fused attention decomposed.",
    options=(_TRANSFORMER_EPSILON,), reference="Achtibat et al. 2024", rules=attn_lrp_rules,
))
