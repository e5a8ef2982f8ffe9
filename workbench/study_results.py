"""What an interpretability study (``workbench.study``) measured: the answers, accuracy and
ratings per basis with confidence intervals, and a test of one basis against another.

- Forced choice: accuracy (the stronger query picked) with the Wilson score interval,
  ``(p̂ + z²/2n ± z √(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)``, which treats answers as independent.
- Coherence ratings (1-5): the mean with a bootstrap interval that resamples participants (their
  answers stay together, as they are not independent).
- Basis against basis: each participant's mean score on basis ``a`` minus on ``b`` (only
  participants who saw both); under the null hypothesis the labels are exchangeable within a
  participant, so the sign of each difference is flipped at random (all ``2^n`` flips when
  ``n <= 16``, else ``n_permutations`` random ones). The p value is two-sided. No
  mixed-effects model is assumed.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from workbench import study


def _engine(database: Engine | str | Path) -> Engine:
    return database if isinstance(database, Engine) else study.open_database(database)


def responses_table(database: Engine | str | Path, study_id: int) -> pd.DataFrame:
    """One row per answer: participant (a number, never the token), basis, direction, task,
    position, answer, correct (forced choice; NaN for ratings), confidence, seconds."""
    engine = _engine(database)
    t, d, p, r = study.trials, study.directions, study.participants, study.responses
    query = (sa.select(p.c.id.label("participant"), d.c.basis, d.c.direction, t.c.task,
                       t.c.position, r.c.answer, t.c.correct, r.c.confidence, r.c.seconds)
             .join(t, t.c.id == r.c.trial_id).join(d, d.c.id == t.c.direction_id)
             .join(p, p.c.id == r.c.participant_id).where(p.c.study_id == study_id)
             .order_by(p.c.id, t.c.position))
    with engine.connect() as connection:
        table = pd.DataFrame(connection.execute(query).mappings().all(),
                             columns=["participant", "basis", "direction", "task", "position",
                                      "answer", "correct", "confidence", "seconds"])
    choice = table["task"] == "forced_choice"
    table["correct"] = np.where(choice, table["answer"] == table["correct"], np.nan)
    table["participant"] = pd.factorize(table["participant"])[0]
    return table


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    from scipy import stats

    if n == 0:
        return math.nan, math.nan
    z = stats.norm.ppf((1 + confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def participant_bootstrap(values: pd.Series, groups: pd.Series, confidence: float = 0.95,
                          resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``, resampling whole ``groups``."""
    parts = [v.to_numpy(float) for _, v in values.groupby(groups)]
    if not parts:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):
        chosen = rng.integers(0, len(parts), len(parts))
        sample = np.concatenate([parts[j] for j in chosen])
        means[i] = sample.mean()
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def study_results(database: Engine | str | Path, study_id: int,
                  confidence: float = 0.95) -> pd.DataFrame:
    """Per basis and task: answers, participants, the score (accuracy or mean rating) and its
    interval (Wilson; participant bootstrap), mean confidence and median seconds."""
    table = responses_table(database, study_id)
    rows = []
    for (basis, task), group in table.groupby(["basis", "task"]):
        if task == "forced_choice":
            successes = int(group["correct"].sum())
            score, (low, high) = successes / len(group), wilson_interval(
                successes, len(group), confidence)
        else:
            score = float(group["answer"].mean())
            low, high = participant_bootstrap(group["answer"], group["participant"], confidence)
        rows.append({"basis": basis, "task": task, "answers": len(group),
                     "participants": group["participant"].nunique(), "score": score,
                     "low": low, "high": high,
                     "mean_confidence": float(group["confidence"].mean()),
                     "median_seconds": float(group["seconds"].median())})
    return pd.DataFrame(rows, columns=["basis", "task", "answers", "participants", "score", "low",
                                       "high", "mean_confidence", "median_seconds"])


def compare_bases(database: Engine | str | Path, study_id: int, a: str, b: str,
                  task: str = "forced_choice", n_permutations: int = 10000,
                  seed: int = 0) -> dict:
    """Sign-flip permutation test over participants of ``a``'s score minus ``b``'s."""
    table = responses_table(database, study_id)
    table = table[table["task"] == task]
    value = "correct" if task == "forced_choice" else "answer"
    means = table.pivot_table(index="participant", columns="basis", values=value, aggfunc="mean")
    for basis in (a, b):
        if basis not in means:
            raise ValueError(f"basis {basis!r} has no {task} answers in study {study_id}; "
                             f"bases answered: {sorted(means.columns)}")
    differences = (means[a] - means[b]).dropna().to_numpy(float)
    if len(differences) == 0:
        raise ValueError(f"no participant answered {task} trials of both {a} and {b}")
    p_value, exact = sign_flip_p_value(differences, n_permutations, seed)
    return {"a": a, "b": b, "task": task, "participants": len(differences),
            "difference": float(differences.mean()), "p_value": p_value, "exact": exact}


def sign_flip_p_value(differences: np.ndarray, n_permutations: int = 10000,
                      seed: int = 0) -> tuple[float, bool]:
    """Two-sided p value of the mean of per-participant ``differences`` under random sign
    flips, and whether it is exact (all ``2^n`` flips, ``n <= 16``)."""
    differences = np.asarray(differences, dtype=float)
    n = len(differences)
    if n <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_permutations, n))
    null = (signs * differences).mean(axis=1)
    return float(np.mean(np.abs(null) >= abs(differences.mean()) - 1e-12)), n <= 16


def export_csv(database: Engine | str | Path, study_id: int, path: str | Path) -> Path:
    """Every answer (``responses_table``) to ``path``, and the study's configuration beside it
    (``<path>.json``)."""
    engine = _engine(database)
    path = Path(path)
    responses_table(engine, study_id).to_csv(path, index=False)
    with engine.connect() as connection:
        config = connection.execute(sa.select(study.studies.c.config).where(
            study.studies.c.id == study_id)).scalar()
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(json.loads(config), indent=2))
    return path
