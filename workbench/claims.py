"""A paper's claims checked over seeds: one line per claim, the quantity measured for it at each
seed, a confidence interval over the seeds, and a verdict.

A claim is a statement of the paper turned into a number with a side: "PatternAttribution
degrades the output fastest" becomes "area under PatternAttribution's degradation curve minus
the smallest area of the other methods", which the paper says is below 0. Each seed (a model
trained from another initialisation, other random subsets or orderings) gives one value; the
interval is Student's t interval of their mean,

    mean ± t_{(1 + confidence) / 2, n - 1} · s / √n,

(s the sample standard deviation of the n values). The verdict reads the interval:

- ``holds``: the whole interval is on the claimed side of the threshold;
- ``does not hold``: the whole interval is on the other side;
- ``inconclusive``: the interval contains the threshold (too few seeds, or an effect that
  changes sign between seeds).

With one seed there is no interval; the verdict then reads the value and says ``(1 seed)``.
``Claim.agreeing`` counts the seeds whose own value is on the claimed side.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

VERDICTS = ("holds", "inconclusive", "does not hold")


def parse_seeds(seeds: str | int | Sequence[int]) -> list[int]:
    """Seeds from ``"0,1,2"``, an int or a sequence of ints; at least one, no repeats."""
    if isinstance(seeds, str):
        parts = [part.strip() for part in seeds.split(",") if part.strip()]
        try:
            values = [int(part) for part in parts]
        except ValueError:
            raise ValueError(f"seeds must be comma-separated integers, got {seeds!r}") from None
    elif isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        values = [int(seeds)]
    else:
        values = list(seeds)
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            raise TypeError(f"seeds must be integers, got {seeds!r}")
        values = [int(v) for v in values]
    if not values:
        raise ValueError("seeds must name at least one seed, got none")
    if len(set(values)) != len(values):
        raise ValueError(f"seeds must not repeat, got {values}")
    return values


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student's t interval of the mean of ``values``; with one value
    the bounds are NaN."""
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    array = np.asarray(values, dtype=float)
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"values must be finite numbers, at least one, got {list(values)}")
    mean = float(array.mean())
    if array.size == 1:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, array.size - 1)
                 * array.std(ddof=1) / math.sqrt(array.size))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Claim:
    """One claim of a paper and what was measured for it.

    ``values`` holds the measured quantity at each of ``seeds``; the claim says the quantity is
    above ``threshold`` (``above=True``) or below it. ``source`` names the paper's section or
    figure; ``note`` says where the protocol here deviates from the paper's.
    """

    statement: str
    quantity: str
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    threshold: float = 0.0
    above: bool = True
    source: str = ""
    note: str = ""
    confidence: float = 0.95

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if len(self.values) != len(self.seeds):
            raise ValueError(f"claim '{self.statement}': {len(self.values)} values for "
                             f"{len(self.seeds)} seeds")
        if not self.values or not all(math.isfinite(v) for v in self.values):
            raise ValueError(f"claim '{self.statement}': values must be finite numbers, at least "
                             f"one, got {list(self.values)}")

    @property
    def interval(self) -> tuple[float, float, float]:
        """``(mean, low, high)`` over the seeds (``t_interval``)."""
        return t_interval(self.values, self.confidence)

    def _on_claimed_side(self, value: float) -> bool:
        return value > self.threshold if self.above else value < self.threshold

    @property
    def agreeing(self) -> int:
        """How many seeds' values are on the claimed side of the threshold."""
        return sum(self._on_claimed_side(v) for v in self.values)

    @property
    def verdict(self) -> str:
        mean, low, high = self.interval
        if len(self.values) == 1:
            word = "holds" if self._on_claimed_side(mean) else "does not hold"
            return f"{word} (1 seed)"
        if self._on_claimed_side(low) and self._on_claimed_side(high):
            return "holds"
        if not self._on_claimed_side(low) and not self._on_claimed_side(high) \
                and low != self.threshold and high != self.threshold:
            return "does not hold"
        return "inconclusive"

    def record(self) -> dict[str, Any]:
        """The claim as plain values, interval and verdict included (for ``results.json``)."""
        mean, low, high = self.interval
        side = ">" if self.above else "<"
        return {**asdict(self), "values": list(self.values), "seeds": list(self.seeds),
                "claimed": f"{side} {self.threshold:g}", "mean": mean, "low": low, "high": high,
                "agreeing_seeds": self.agreeing, "verdict": self.verdict}


def claims_table(claims: Iterable[Claim]):
    """A pandas DataFrame, one row per claim: statement, quantity, claimed side, mean and
    interval, seeds agreeing, verdict, source and note."""
    import pandas as pd

    rows = []
    for claim in claims:
        record = claim.record()
        interval = ("" if len(claim.values) == 1
                    else f"[{record['low']:.3g}, {record['high']:.3g}]")
        rows.append({
            "claim": claim.statement, "measured": claim.quantity,
            "claimed": record["claimed"], "mean": f"{record['mean']:.3g}",
            f"{claim.confidence:.0%} interval": interval,
            "seeds agreeing": f"{claim.agreeing}/{len(claim.values)}",
            "verdict": claim.verdict, "source": claim.source, "note": claim.note,
        })
    return pd.DataFrame(rows)


def claims_markdown(records: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of claim records (``Claim.record``), e.g. gathered from several
    notebooks' ``results.json``."""
    header = "| claim | measured | claimed | mean | interval | seeds agreeing | verdict |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in records:
        interval = ("" if r["low"] is None or (isinstance(r["low"], float) and math.isnan(r["low"]))
                    else f"[{r['low']:.3g}, {r['high']:.3g}]")
        cells = [r["statement"], r["quantity"], r["claimed"], f"{r['mean']:.3g}", interval,
                 f"{r['agreeing_seeds']}/{len(r['values'])}", r["verdict"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
