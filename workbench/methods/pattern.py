"""PatternNet and PatternAttribution (Kindermans et al. 2018): rules of the same engine."""
from __future__ import annotations

from workbench.engine import modified_gradient
from workbench.forward import target_scores
from workbench.patterns import pattern_rules
from workbench.methods.rule_based import RULED_MODULES
from workbench.registry import Method, Option, register

PATTERNS = Option("patterns", "object", None, "learned patterns: wb.fit_patterns(model, data)",
                  required=True)


def _pattern_method(name: str, mode: str):
    def run(model, inputs, target, patterns):
        """Starts from the output ``y`` (``r_out = y``): the signal estimate for ``net``, the
        relevance for ``attribution``; ReLUs gate as in the gradient."""
        rules = pattern_rules(patterns, mode, name)
        patterns.check(model)
        indices, scores = target_scores(model, inputs, target)
        gradient = modified_gradient(model, inputs, indices, rules, method=name)
        return scores.view(-1, *[1] * (inputs.dim() - 1)) * gradient

    return run


register(Method(
    "pattern_net", _pattern_method("pattern_net", "net"),
    "The signal the model detects, back-projected with learned patterns.",
    options=(PATTERNS,), reference="Kindermans et al. 2018", requires=RULED_MODULES,
))
register(Method(
    "pattern_attribution", _pattern_method("pattern_attribution", "attribution"),
    "Relevance backpropagated with weights times learned patterns.",
    options=(PATTERNS,), reference="Kindermans et al. 2018", requires=RULED_MODULES,
))
