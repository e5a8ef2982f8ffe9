"""The audit's tests as claims about each method, read over the seeds
(``workbench.claims.Claim``: Student's t interval of the mean, and a verdict from where the
interval lies against the threshold).

Each test states what a trustworthy method does, the quantity measured, the threshold and why
it is there; the report prints them next to the numbers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.claims import Claim
from workbench.experiments.sanity import CLAIM_THRESHOLD

#: Claim verdicts in the report's words
STATUS = {"holds": "pass", "does not hold": "fail", "inconclusive": "inconclusive",
          "holds (1 seed)": "pass (1 seed)", "does not hold (1 seed)": "fail (1 seed)"}
NOT_APPLICABLE = "not applicable"


@dataclass(frozen=True)
class Test:
    """A test: ``statement`` (what passing means), ``quantity`` (what is measured per seed),
    ``threshold`` and side (``above``), ``why`` (where the threshold comes from) and the
    paper it follows."""

    name: str
    statement: str
    quantity: str
    threshold: float
    above: bool
    why: str
    source: str


_SANITY_WHY = (f"{CLAIM_THRESHOLD:g} is midway between unrelated maps (0) and the same map (1), "
               "the line notebook 03 reads Adebayo et al.'s Fig. 4 by")

TESTS = {test.name: test for test in (
    Test("cascading randomization",
         "the maps change once every layer is re-initialised, from the logits down",
         "Spearman rank correlation of |maps| with the original, all layers re-initialised",
         CLAIM_THRESHOLD, False, _SANITY_WHY, "Adebayo et al. 2018, arXiv 1810.03292, sec. 3.1"),
    Test("independent randomization",
         "the maps change when the top layer alone is re-initialised",
         "Spearman rank correlation of |maps| with the original, top layer re-initialised",
         CLAIM_THRESHOLD, False, _SANITY_WHY, "Adebayo et al. 2018, arXiv 1810.03292, sec. 3.1"),
    Test("data randomization",
         "the maps of a net trained on permuted labels differ from the model's",
         "Spearman rank correlation of |maps| of the two nets, same inputs and targets",
         CLAIM_THRESHOLD, False, _SANITY_WHY, "Adebayo et al. 2018, arXiv 1810.03292, sec. 4"),
    Test("Sensitivity-n",
         "removing patches lowers the output by what their attributions sum to",
         "Pearson correlation of attribution sums and output drops, mean over the subset sizes",
         0.5, True, "halfway between no relation (0) and Sensitivity-n itself (1), which only "
         "a linear model attains for every n (Ancona et al., Prop. 1)",
         "Ancona et al. 2018, arXiv 1711.06104, sec. 4"),
    Test("region perturbation",
         "replacing the least relevant patches first keeps the output higher than replacing "
         "the most relevant first",
         "area between the LeRF and MoRF curves over the change once every patch is replaced, "
         "mean over the inputs",
         0.0, True, "0 is what a ranking no better than chance gives on average (both orders "
         "then follow the random one)",
         "Samek et al. 2017, arXiv 1509.06321; the LeRF - MoRF area as in Achtibat et al. "
         "2024, arXiv 2402.05602"),
    Test("completeness",
         "the attributions sum to the change of the output from the zero baseline",
         "|sum a - (f(x) - f(0))| / |f(x) - f(0)|, mean over the inputs",
         0.05, False, "a 5% error allows Integrated Gradients' quadrature at the budget's steps; "
         "only methods that claim completeness are judged",
         "Sundararajan et al. 2017, arXiv 1703.01365; Shrikumar et al. 2017, arXiv 1704.02685"),
)}

#: methods whose papers claim completeness (summation to delta) against their baseline
COMPLETE_METHODS = ("integrated_gradients", "deeplift_rescale", "deeplift_shap")


def verdict(test: str, method: str, values: Sequence[float], seeds: Sequence[int],
            note: str = "") -> dict[str, Any]:
    """One row of the verdict table: ``test`` judged on ``method``'s value at each seed. Seeds
    where the quantity is undefined (NaN, e.g. constant maps) are left out and counted in the
    note; with none left the row is not applicable."""
    spec = TESTS[test]
    kept = [(s, v) for s, v in zip(seeds, values) if math.isfinite(v)]
    row = {"method": method, "test": test, "statement": spec.statement,
           "quantity": spec.quantity, "threshold": f"{'>' if spec.above else '<'} "
           f"{spec.threshold:g}", "why this threshold": spec.why, "source": spec.source,
           "values": [float(v) for v in values], "seeds": list(seeds)}
    dropped = len(values) - len(kept)
    if dropped:
        note = "; ".join(filter(None, [note, f"undefined at {dropped} seed(s)"]))
    if not kept:
        return {**row, "status": NOT_APPLICABLE, "mean": None, "low": None, "high": None,
                "note": note or "undefined at every seed"}
    claim = Claim(spec.statement, spec.quantity, [v for _, v in kept], [s for s, _ in kept],
                  threshold=spec.threshold, above=spec.above, source=spec.source)
    mean, low, high = claim.interval
    return {**row, "status": STATUS[claim.verdict], "mean": mean,
            "low": None if math.isnan(low) else low, "high": None if math.isnan(high) else high,
            "note": note}


def not_applicable(test: str, method: str, reason: str) -> dict[str, Any]:
    """A row saying why ``test`` was not run on ``method``."""
    spec = TESTS[test]
    return {"method": method, "test": test, "statement": spec.statement,
            "quantity": spec.quantity, "threshold": "", "why this threshold": "",
            "source": spec.source, "values": [], "seeds": [], "status": NOT_APPLICABLE,
            "mean": None, "low": None, "high": None, "note": reason}
