"""Claims over seeds: the t interval against its closed form, the verdicts, the records, and
the claims table `workbench reproduce` gathers."""
import math

import pytest
from scipy import stats

from workbench.claims import Claim, claims_markdown, claims_table, parse_seeds, t_interval
from workbench.runner import RunRecord, write_claims


def test_t_interval_matches_the_closed_form():
    values = [1.0, 2.0, 4.0]
    mean, low, high = t_interval(values, 0.95)
    s = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    half = stats.t.ppf(0.975, 2) * s / math.sqrt(3)
    assert mean == pytest.approx(7 / 3)
    assert (low, high) == pytest.approx((7 / 3 - half, 7 / 3 + half))
    assert stats.t.ppf(0.975, 2) == pytest.approx(4.3027, abs=1e-4)


def test_one_value_has_no_interval():
    mean, low, high = t_interval([0.5])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize("values, above, verdict", [
    ((1.0, 1.1, 0.9), True, "holds"),
    ((-1.0, -1.1, -0.9), True, "does not hold"),
    ((-1.0, -1.1, -0.9), False, "holds"),
    ((1.0, -1.0, 0.2), True, "inconclusive"),
    ((0.5,), True, "holds (1 seed)"),
    ((0.5,), False, "does not hold (1 seed)"),
])
def test_verdict_reads_the_interval(values, above, verdict):
    claim = Claim("x", "q", values, tuple(range(len(values))), above=above)
    assert claim.verdict == verdict


def test_agreeing_counts_the_seeds_on_the_claimed_side():
    claim = Claim("x", "q", (0.3, -0.1, 0.2), (0, 1, 2), threshold=0.1)
    assert claim.agreeing == 2


def test_threshold_moves_the_verdict():
    claim = Claim("x", "q", (1.0, 1.1, 0.9), (0, 1, 2), threshold=2.0, above=False)
    assert claim.verdict == "holds"
    assert claim.record()["claimed"] == "< 2"


def test_record_and_tables_carry_every_field():
    claim = Claim("PA degrades fastest", "area difference", (-1.0, -2.0, -1.5), (0, 1, 2),
                  above=False, source="section 6", note="photos, not ImageNet")
    record = claim.record()
    assert record["verdict"] == "holds" and record["agreeing_seeds"] == 3
    assert record["low"] < record["mean"] < record["high"] < 0
    table = claims_table([claim])
    assert table.loc[0, "verdict"] == "holds" and table.loc[0, "seeds agreeing"] == "3/3"
    assert table.loc[0, "note"] == "photos, not ImageNet"
    markdown = claims_markdown([record])
    assert "PA degrades fastest" in markdown and "| holds |" in markdown


@pytest.mark.parametrize("bad, error", [
    (dict(values=(1.0, 2.0), seeds=(0,)), "2 values for 1 seeds"),
    (dict(values=(math.nan,), seeds=(0,)), "finite"),
    (dict(values=(), seeds=()), "at least"),
])
def test_bad_claims_are_refused(bad, error):
    with pytest.raises(ValueError, match=error):
        Claim("x", "q", **bad)


@pytest.mark.parametrize("given, seeds", [("0,1,2", [0, 1, 2]), (" 3 ", [3]), (5, [5]),
                                          ((1, 2), [1, 2])])
def test_parse_seeds(given, seeds):
    assert parse_seeds(given) == seeds


@pytest.mark.parametrize("bad, error", [("0,a", ValueError), ("", ValueError),
                                        ("1,1", ValueError), ((1.5,), TypeError)])
def test_parse_seeds_refuses_bad_input(bad, error):
    with pytest.raises(error, match="seeds"):
        parse_seeds(bad)


def test_write_claims_gathers_each_notebooks_table(tmp_path):
    claim = Claim("equivalence is exact", "max difference", (0.0, 1e-7), (0, 1),
                  threshold=1e-5, above=False)
    records = [RunRecord("02_unified_gradients.ipynb", "out/02", {}, ok=True,
                         results={"claims": [claim.record()]}),
               RunRecord("00_explorer.ipynb", "out/00", {}, ok=True)]
    write_claims(records, tmp_path / "claims.md")
    text = (tmp_path / "claims.md").read_text()
    assert "## 02_unified_gradients (seeds 0, 1)" in text
    assert "equivalence is exact" in text and "00_explorer" not in text
