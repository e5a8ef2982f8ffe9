"""Time and memory of the workbench's metrics (workbench/metrics.py) against Quantus.

Run from the repository root::

    python -m benchmarks.metrics            # full run (~4 min on 2 idle cores, ~7 under load)
    python -m benchmarks.metrics --quick    # smoke run (~1 minute), writes results/quick/
    python -m benchmarks.metrics --rows mlp  # time again the rows named *mlp*, merged in

Writes ``benchmarks/results/metrics.json`` and ``metrics.md``.

What is compared (the same model, inputs, attributions and settings on both sides; the
attributions are computed once beforehand and handed to both as arrays):

- ``region_perturbation[order]``: ``workbench.metrics.degradation(patch=p,
  replacement="baseline", baseline=0)`` against ``quantus.RegionPerturbation(patch_size=p,
  regions_evaluation=all, perturb_baseline=0.0, normalise=False, abs=False)`` called with
  ``softmax=False``. Quantus returns the drops ``f(x) - f(x^(k))``, k = 1..steps, which is
  ``curve[:, :1] - curve[:, 1:]`` of the workbench; the two agree to float32 rounding for MoRF
  and LeRF. The random order draws from different generators, so only the times compare.
- ``sensitivity_n[quantus]``: ``quantus.SensitivityN`` does *not* compute Ancona's
  Sensitivity-n. It removes pixels cumulatively in the MoRF order, and for the k-th step
  correlates, *across the samples of the batch*, the attribution of the k-th pixel alone with
  the cumulative output drop (and with several batches it uses only the first). That quantity
  is reproduced here from the workbench's degradation engine (``patch=1``, one channel, so a
  patch is a feature) and checked against Quantus; its last 20 % of steps (which Quantus
  computes and discards, ``n_max_percentage=0.8``) are not computed.
- ``sensitivity_n[ancona]``: ``workbench.metrics.sensitivity_n`` (random subsets, correlation
  per sample) has no Quantus counterpart. Its settings use the same number of model evaluations
  as the Quantus row above, whose Quantus time is shown for scale only.

Two models per metric: a small MLP (Quantus's per-step Python and numpy work dominates) and a
small CNN (the model's own forward passes weigh more). The ``floor`` contender makes the forward
passes every implementation needs: one over the unperturbed inputs, then as many inputs as the
metric perturbs, in batches of 256, each batch copied into a reused buffer before the model
runs on it: no implementation can beat it, so quantus / floor bounds any speed-up. The workbench
runs at its default ``batch_size`` and at ``batch_size=N`` (as many rows per pass as Quantus:
memory-matched).

Targets: every row within 1.2x of its floor (workbench / floor <= 1.2), never slower than
Quantus (both workbench columns), and memory-matched no more peak memory than Quantus.

Time: median of ``reps`` calls per contender, alternating (each repetition calls every contender
of a row once, the first one rotating), after one untimed call each. Memory: in a fresh process
per contender, after one untimed call, the kernel's peak-RSS mark is reset
(``/proc/self/clear_refs``) and the increase of peak RSS (VmHWM) over the RSS before the
measured call is reported (as in benchmarks/run.py, with ``MALLOC_MMAP_THRESHOLD_=65536`` so
that freed buffers leave the process and every contender is measured the same way); each
contender in ``memory_repeats`` fresh processes, the median reported (RSS moves in pages and
malloc's bookkeeping: differences below about 1 MiB between single runs are noise).
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/run.py

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.metrics import degradation, sensitivity_n  # noqa: E402
from benchmarks.run import _reset_peak_rss, _status_kib  # noqa: E402  (same protocol)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Settings:
    batch: int = 16
    gray: tuple[int, int, int] = (1, 28, 28)      # Sensitivity-n rows (one channel, see above)
    color: tuple[int, int, int] = (3, 32, 32)     # region perturbation rows
    patch: int = 4                                # 64 regions of 32x32, all evaluated
    n_max_percentage: float = 0.8                 # Quantus's default for SensitivityN
    ancona_ns: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    batch_size: int = 256                         # workbench rows per forward pass
    ig_steps: int = 16
    reps: int = 5
    reps_heavy: int = 3                           # Sensitivity-n rows
    threads: int = 2
    seed: int = 0
    memory: bool = True
    malloc_mmap_threshold: int | None = 65536
    memory_repeats: int = 3                       # fresh processes per contender (median)


FULL = Settings()
QUICK = Settings(batch=4, gray=(1, 14, 14), color=(3, 16, 16), reps=2, reps_heavy=2,
                 ancona_ns=(1, 4, 16, 64, 128), memory_repeats=1)
MODELS = ("mlp", "cnn")


# ----------------------------------------------------------------------------------------------
# Models, data, attributions


def make_model(kind: str, shape: tuple[int, int, int], classes: int = 10) -> nn.Module:
    channels, height, width = shape
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, 64), nn.ReLU(),
                             nn.Linear(64, classes)).eval()
    side = (height // 4) * (width // 4)
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * side, 64), nn.ReLU(), nn.Linear(64, classes)).eval()


@dataclass
class Case:
    model: nn.Module
    inputs: torch.Tensor        # float32 (N, C, H, W)
    target: torch.Tensor        # the model's predictions
    attributions: torch.Tensor  # integrated gradients, zero baseline


def make_case(s: Settings, kind: str, shape: tuple[int, int, int]) -> Case:
    torch.manual_seed(s.seed)
    model = make_model(kind, shape)
    rng = torch.Generator().manual_seed(s.seed + 1)
    inputs = torch.randn(s.batch, *shape, generator=rng)
    with torch.no_grad():
        target = model(inputs).argmax(dim=1)
    attributions = wb.attribute(model, inputs, "integrated_gradients", target=target,
                                steps=s.ig_steps)
    return Case(model, inputs, target, attributions)


# ----------------------------------------------------------------------------------------------
# The quantities


def sensitivity_n_as_quantus(case: Case, n_max_percentage: float,
                             batch_size: int) -> torch.Tensor:
    """``quantus.SensitivityN``'s result from the workbench: for the k-th MoRF step, the Pearson
    correlation across samples between the attribution of the k-th pixel and the cumulative
    drop ``f(x) - f(x^(k))`` (one-channel images, zero baseline)."""
    n_features = case.inputs[0].numel()
    n_max = int(n_max_percentage * n_features)
    result = degradation(case.model, case.inputs, case.attributions, patch=1, steps=n_max,
                         replacement="baseline", target=case.target, batch_size=batch_size)
    drops = (result.curve[:, :1] - result.curve[:, 1:]).double()
    sums = case.attributions.flatten(1).gather(1, result.ranking[:, :n_max]).double()
    drops -= drops.mean(0)  # (in place: no more float64 temporaries than needed)
    sums -= sums.mean(0)
    return torch.linalg.vecdot(drops, sums, dim=0).div_(drops.norm(dim=0) * sums.norm(dim=0))


def quantus_sensitivity_n(case: Case, n_max_percentage: float) -> np.ndarray:
    import quantus

    metric = quantus.SensitivityN(features_in_step=1, n_max_percentage=n_max_percentage,
                                  perturb_baseline=0.0, normalise=False, abs=False,
                                  return_aggregate=False, disable_warnings=True)
    return np.asarray(metric(model=case.model, x_batch=case.inputs.numpy(),
                             y_batch=case.target.numpy(), a_batch=case.attributions.numpy(),
                             softmax=False, batch_size=len(case.inputs), device="cpu"))


def region_drops(case: Case, order: str, patch: int, batch_size: int, seed: int) -> torch.Tensor:
    result = degradation(case.model, case.inputs, case.attributions, order=order, patch=patch,
                         replacement="baseline", target=case.target, seed=seed,
                         batch_size=batch_size)
    return result.curve[:, :1] - result.curve[:, 1:]


def quantus_region_drops(case: Case, order: str, patch: int) -> np.ndarray:
    import quantus

    regions = (case.inputs.shape[2] // patch) * (case.inputs.shape[3] // patch)
    metric = quantus.RegionPerturbation(
        patch_size=patch, order={"most_relevant_first": "morf", "least_relevant_first": "lerf",
                                 "random": "random"}[order],
        regions_evaluation=regions, perturb_baseline=0.0, normalise=False, abs=False,
        return_aggregate=False, disable_warnings=True)
    return np.asarray(metric(model=case.model, x_batch=case.inputs.numpy(),
                             y_batch=case.target.numpy(), a_batch=case.attributions.numpy(),
                             softmax=False, batch_size=len(case.inputs), device="cpu"))


def floor(case: Case, rows: int, batch_size: int) -> Callable[[], torch.Tensor]:
    """The forward passes every implementation makes: one over the unperturbed inputs (their
    target outputs, the reference of every drop), then ``rows`` perturbed-size inputs,
    ``batch_size`` at a time, each batch written once (copied from the inputs into a buffer
    reused by every pass) before the model runs on it: the model's own cost."""
    inputs = case.inputs
    buffer = torch.empty(min(rows, batch_size), *inputs.shape[1:])

    def run():
        with torch.no_grad():
            out = [case.model(inputs)[:, 0]]
            for start in range(0, rows, batch_size):
                index = torch.arange(start, min(start + batch_size, rows)) % len(inputs)
                batch = torch.index_select(inputs, 0, index, out=buffer[:len(index)])
                out.append(case.model(batch)[:, 0])
        return torch.cat(out)
    return run


# ----------------------------------------------------------------------------------------------
# Contenders


@dataclass
class Contender:
    row: str
    library: str            # "workbench", "workbench[batch=N]", "quantus" or "floor"
    make: Callable[[], Callable[[], object]]   # builds the case (cached) and returns the call
    note: str = ""
    _run: Callable[[], object] | None = None

    @property
    def key(self) -> str:
        return f"{self.row}/{self.library}"

    def run(self):
        if self._run is None:
            self._run = self.make()
        return self._run()


def build_contenders(s: Settings) -> list[Contender]:
    """Every contender; a case (model, inputs, attributions) is built when first needed."""
    cache: dict[tuple, Case] = {}

    def case(kind: str, shape: tuple[int, int, int]) -> Case:
        if (kind, shape) not in cache:
            cache[kind, shape] = make_case(s, kind, shape)
        return cache[kind, shape]

    small = f"workbench[batch={s.batch}]"  # as many rows per forward pass as Quantus
    out: list[Contender] = []
    for kind in MODELS:
        def gray(kind=kind):
            return case(kind, s.gray)

        n_features = math.prod(s.gray)
        n_max = int(s.n_max_percentage * n_features)
        row = f"sensitivity_n[quantus]/{kind}"
        for library, size in (("workbench", s.batch_size), (small, s.batch)):
            out.append(Contender(row, library, lambda g=gray, b=size: partial(
                sensitivity_n_as_quantus, g(), s.n_max_percentage, b)))
        out.append(Contender(row, "quantus", lambda g=gray: partial(
            quantus_sensitivity_n, g(), s.n_max_percentage)))
        out.append(Contender(row, "floor", lambda g=gray, m=n_max: floor(g(), m * s.batch,
                                                                          s.batch_size)))
        # Ancona: as many model evaluations as quantus.SensitivityN makes (N * n_features)
        subsets = max(2, n_features // len(s.ancona_ns))
        note = f"{len(s.ancona_ns)} values of n x {subsets} subsets"
        row = f"sensitivity_n[ancona]/{kind}"
        out.append(Contender(row, "workbench", lambda g=gray, k=subsets: partial(
            ancona, g(), list(s.ancona_ns), k, s.seed, s.batch_size), note=note))
        out.append(Contender(row, "floor", lambda g=gray, k=subsets: floor(
            g(), len(s.ancona_ns) * k * s.batch, s.batch_size)))

        def color(kind=kind):
            return case(kind, s.color)

        regions = (s.color[1] // s.patch) * (s.color[2] // s.patch)
        for order in ("most_relevant_first", "least_relevant_first", "random"):
            row = f"region_perturbation[{order}]/{kind}"
            for library, size in (("workbench", s.batch_size), (small, s.batch)):
                out.append(Contender(row, library, lambda c=color, o=order, b=size: partial(
                    region_drops, c(), o, s.patch, b, s.seed)))
            out.append(Contender(row, "quantus", lambda c=color, o=order: partial(
                quantus_region_drops, c(), o, s.patch)))
            out.append(Contender(row, "floor", lambda c=color, r=regions: floor(
                c(), r * s.batch, s.batch_size)))
    return out


def ancona(case: Case, ns: list[int], subsets: int, seed: int, batch_size: int):
    return sensitivity_n(case.model, case.inputs, case.attributions, ns, target=case.target,
                         n_subsets=subsets, seed=seed, batch_size=batch_size).correlations


def agreement(workbench_result, quantus_result) -> dict:
    ours = torch.as_tensor(workbench_result).double().numpy()
    theirs = np.asarray(quantus_result, dtype=np.float64)
    both = np.isfinite(ours) & np.isfinite(theirs)
    scale = max(float(np.abs(theirs[both]).max()), 1e-30) if both.any() else 1.0
    return {"max_abs_err": float(np.abs(ours[both] - theirs[both]).max()) if both.any() else None,
            "rel_max_err": float(np.abs(ours[both] - theirs[both]).max() / scale)
            if both.any() else None,
            "same_nan_positions": bool((np.isnan(ours) == np.isnan(theirs)).all()),
            "shape": list(ours.shape)}


# ----------------------------------------------------------------------------------------------
# Timing and memory


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    import logging
    logging.disable(logging.WARNING)


def time_row(members: list[Contender], reps: int) -> tuple[dict[str, list[float]], dict]:
    outputs = {c.library: c.run() for c in members}       # the untimed call
    agree = {}
    if "quantus" in outputs and "random" not in members[0].row:
        agree = agreement(outputs["workbench"], outputs["quantus"])
    small = [lib for lib in outputs if lib.startswith("workbench[")]
    for lib in small:     # the batch size must not change the result
        torch.testing.assert_close(torch.as_tensor(outputs[lib]),
                                   torch.as_tensor(outputs["workbench"]), equal_nan=True,
                                   rtol=1e-4, atol=1e-5)  # float32 GEMM blocking
    del outputs
    times: dict[str, list[float]] = {c.library: [] for c in members}
    for rep in range(reps):
        order = members[rep % len(members):] + members[:rep % len(members)]
        for c in order:
            gc.collect()
            start = time.perf_counter()
            result = c.run()
            times[c.library].append(time.perf_counter() - start)
            del result
    return times, agree


def memory_child(s: Settings, key: str) -> dict:
    _quiet()
    torch.set_num_threads(s.threads)
    library = key.rsplit("/", 1)[1]
    if library == "quantus":
        import quantus  # noqa: F401  (imported before the measurement, as in real use)
    contender = {c.key: c for c in build_contenders(s)}[key]
    contender.run()                                         # untimed, unmeasured call
    gc.collect()
    rss_before = _status_kib("VmRSS")
    reset = _reset_peak_rss()                               # VmHWM := the current RSS
    result = contender.run()
    peak = _status_kib("VmHWM")
    del result
    if not reset or peak is None or rss_before is None:
        return {"error": "cannot reset or read VmHWM on this system"}
    return {"peak_increase_mib": (peak - rss_before) / 1024, "rss_before_mib": rss_before / 1024}


def measure_memory(s: Settings, keys: list[str], quick: bool) -> dict[str, dict]:
    env = dict(os.environ)
    if s.malloc_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(s.malloc_mmap_threshold)
    results = {}
    for key in keys:
        command = [sys.executable, "-m", "benchmarks.metrics", "--memory-child", key]
        if quick:
            command.append("--quick")
        runs, errors = [], []
        for _ in range(s.memory_repeats):
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                errors.append(done.stderr.strip().splitlines()[-1:])
                continue
            child = json.loads(done.stdout.strip().splitlines()[-1])
            if "peak_increase_mib" in child:
                runs.append(child["peak_increase_mib"])
            else:
                errors.append(child.get("error"))
        results[key] = {"peak_increase_mib": float(np.median(runs)) if runs else None,
                        "runs_mib": runs, "errors": errors}
        print(f"  memory {key:60s} {results[key]['peak_increase_mib']!s:.6} MiB "
              f"(runs {[round(r, 1) for r in runs]})", flush=True)
    return results


# ----------------------------------------------------------------------------------------------
# Report


def machine_info(s: Settings) -> dict:
    import quantus

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "usable_cores": len(os.sched_getaffinity(0)),
            "torch": torch.__version__, "threads": s.threads, "quantus": quantus.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
            "load_average_start": os.getloadavg()}


def markdown(report: dict) -> str:
    m, st = report["machine"], report["settings"]
    small = f"workbench[batch={st['batch']}]"
    lines = [
        "# Metrics: workbench vs Quantus",
        "",
        f"CPU: {m['cpu']} ({m['usable_cores']} usable cores, shared with other jobs), torch "
        f"{m['torch']} ({m['threads']} threads), quantus {m['quantus']}, numpy {m['numpy']}, "
        f"Python {m['python']}. Load average at start "
        f"{tuple(round(v, 2) for v in m['load_average_start'])}, at end "
        f"{tuple(round(v, 2) for v in m['load_average_end'])}. Full run: {report['wall_s']:.0f} s.",
        "",
        f"Inputs: {st['batch']} samples, float32; Sensitivity-n rows on {tuple(st['gray'])} "
        f"images, region perturbation rows on {tuple(st['color'])} images with "
        f"{st['patch']}x{st['patch']} patches, every region replaced by 0 in turn. Attributions: "
        f"integrated gradients ({st['ig_steps']} steps), computed once and given to both "
        "libraries. Models: `mlp` (flatten, linear 64, ReLU, linear 10) and `cnn` "
        "(conv 3x3 to 8 channels, ReLU, max pool, conv 3x3 to 16, ReLU, max pool, linear 64, "
        "ReLU, linear 10). Quantus: "
        "`softmax=False`, `normalise=False`, `abs=False`, `perturb_baseline=0.0`, the whole "
        "batch as one Quantus batch, so each of its steps is one forward pass of "
        f"{st['batch']} rows. `workbench`: default `batch_size={st['batch_size']}` rows per "
        f"forward pass; `{small}`: `batch_size={st['batch']}`, as many rows per pass as Quantus "
        "(memory-matched).",
        "",
        f"Time: median (IQR) in ms of {st['reps']} ({st['reps_heavy']} for the Sensitivity-n "
        "rows) alternating calls after one untimed call; ratios of medians, in parentheses "
        "ratios of the fastest calls (less sensitive to other jobs on the machine). "
        "`floor`: the forward passes every implementation makes, plain: one over the "
        "unperturbed inputs, then the same number of perturbed inputs in batches of "
        f"{st['batch_size']}, each batch copied into a reused buffer first; the model's own "
        "cost. Memory: increase of peak RSS (VmHWM) in MiB during one warm call in a fresh "
        f"process, the median of {st['memory_repeats']} processes, for the rows with a Quantus "
        "counterpart (MoRF stands for the three orders of region perturbation).",
        "",
        "## Time",
        "",
        f"| metric / model | workbench | {small} | quantus | floor | quantus / workbench | "
        f"quantus / {small} | bound: quantus / floor | workbench / floor | "
        "agreement with quantus (max abs err) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, r in report["rows"].items():
        def cell(lib, r=r):
            t = r["times"].get(lib)
            return f"{t['median_s'] * 1e3:.1f} ({t['iqr_s'] * 1e3:.1f})" if t else "-"

        ratios, by_min = r.get("quantus_over", {}), r.get("quantus_over_by_min", {})
        texts = [f"**{ratios[lib]:.1f}x** ({by_min[lib]:.1f}x)" if lib in ratios else "-"
                 for lib in ("workbench", small)]
        if "ancona" in row:
            texts = [f"({r['reference_over']['workbench']:.1f}x)*", "-"]
        bound = f"{r['quantus_over_floor']:.1f}x" if "quantus_over_floor" in r else "-"
        agree = r.get("agreement") or {}
        agree_text = (f"{agree['max_abs_err']:.1e}" if agree.get("max_abs_err") is not None
                      else ("different RNG" if "random" in row else "no counterpart"))
        lines.append(
            f"| {row} | {cell('workbench')} | {cell(small)} | {cell('quantus')} | "
            f"{cell('floor')} | {texts[0]} | {texts[1]} | {bound} | "
            f"{r['workbench_over_floor']:.2f} ({r['workbench_over_floor_by_min']:.2f}) | "
            f"{agree_text} |")
    lines += [
        "",
        "\\* `sensitivity_n[ancona]` (Ancona et al.'s definition, "
        f"{report['ancona_note']}) has no Quantus counterpart; in parentheses: "
        "`quantus.SensitivityN`'s time on the same model divided by this row's time, both "
        "making the same number of model evaluations, for scale only.",
        "",
        "## Peak memory (increase of peak RSS during one call, MiB)",
        "",
        f"| metric / model | workbench | {small} | quantus |",
        "|---|---|---|---|",
    ]
    for row in report["rows"]:
        values = [report["memory"].get(f"{row}/{lib}", {}).get("peak_increase_mib")
                  for lib in ("workbench", small, "quantus")]
        if all(v is None for v in values):
            continue
        lines.append(f"| {row} | " + " | ".join("-" if v is None else f"{v:.1f}"
                                                 for v in values) + " |")
    for rerun in report.get("reruns", []):
        lines += ["", f"Rerun {rerun['at']} (load average "
                  f"{tuple(round(v, 2) for v in rerun['load_average_start'])} at start), timing "
                  "only, after the full run's timings of these rows looked noisy: "
                  + ", ".join(rerun["rows"]) + "."]
    lines += ["", "## Findings", ""] + [f"- {line}" for line in report["findings"]]
    return "\n".join(lines) + "\n"


FLOOR_TARGET = 1.2   # workbench / floor, every row


def _listing(items: list[str]) -> str:
    return ", ".join(items) or "no row"


def floor_finding(rows: dict) -> str:
    """Which rows meet workbench / floor <= FLOOR_TARGET, by medians and by fastest calls."""
    def text(row, r):
        return f"{row} {r['workbench_over_floor']:.2f} ({r['workbench_over_floor_by_min']:.2f})"

    by_median = [row for row, r in rows.items() if r["workbench_over_floor"] <= FLOOR_TARGET]
    by_min = [row for row, r in rows.items()
              if r["workbench_over_floor_by_min"] <= FLOOR_TARGET]
    missed_rows = [row for row in rows if row not in by_median and row not in by_min]
    missed = [text(row, rows[row]) for row in missed_rows]
    line = (f"Target 1: every row within {FLOOR_TARGET}x of its floor (workbench / floor <= "
            f"{FLOOR_TARGET}). Met by medians on {len(by_median)} of {len(rows)} rows, by "
            f"fastest calls on {len(by_min)}; missed by both on " + _listing(missed)
            + " (median ratio, fastest-call ratio in parentheses).")
    if any(row.endswith("/mlp") for row in missed_rows):
        line += (" On the `mlp` rows the model is cheap: the 1,024 perturbed images of a "
                 "region-perturbation row take about 3 ms of forward passes, so what every call "
                 "does once (checking the inputs and attributions, ranking the regions, the "
                 "target outputs, about 0.3-0.5 ms) and writing each batch (one comparison for "
                 "the 0/1 weights kept and one multiplication by them for the zero baseline, "
                 "against the floor's one copy) add a third or more to that. "
                 "Sensitivity-n in Ancona's definition writes each batch by one copy and the "
                 "removed features over it, but it must also draw its random subsets, which the "
                 "floor does not: m = min(n, G - n) float64 uniforms per subset turned into m "
                 "distinct features by Floyd's algorithm (`workbench.subsets`), about 20 ms for "
                 "this row's 12,480 subsets (generating the uniforms alone takes 4 ms), as much "
                 "as the `mlp`'s forward passes.")
    return line


def quantus_finding(rows: dict, small: str) -> str:
    """Target 2: never slower than Quantus (both workbench columns, medians and fastest calls)."""
    slower = [f"{row} [{lib}] {r['quantus_over'][lib]:.2f}x ({r['quantus_over_by_min'][lib]:.2f}x)"
              for row, r in rows.items() if r.get("quantus_over")
              for lib in ("workbench", small)
              if min(r["quantus_over"][lib], r["quantus_over_by_min"][lib]) < 1]
    compared = [r for r in rows.values() if r.get("quantus_over")]
    lowest = min(min(r["quantus_over"].values()) for r in compared)
    return ("Target 2: never slower than Quantus, at the default batch_size and memory-matched "
            f"({small}). Lowest quantus / workbench ratio of medians {lowest:.1f}x; slower than "
            f"Quantus on {_listing(slower)}.")


def memory_finding(rows: dict, mem: dict, small: str) -> str:
    """Target 3: memory-matched peak memory at most Quantus's."""
    if not mem:
        return "Memory not measured (--no-memory)."

    def peak(row, lib):
        return mem.get(f"{row}/{lib}", {}).get("peak_increase_mib")

    compared = [row for row in rows if peak(row, "quantus") is not None]
    def runs(row, lib):
        return "/".join(f"{v:.1f}" for v in mem.get(f"{row}/{lib}", {}).get("runs_mib", []))

    heavier = {lib: [f"{row} ({peak(row, lib):.1f} vs {peak(row, 'quantus'):.1f} MiB; single "
                     f"processes {runs(row, lib)} vs {runs(row, 'quantus')})"
                     for row in compared
                     if peak(row, lib) is not None and peak(row, lib) > peak(row, "quantus")]
               for lib in ("workbench", small)}
    return (f"Target 3: memory-matched ({small}) no more peak memory than Quantus: more on "
            f"{_listing(heavier[small])}. At the default batch_size more than Quantus on "
            f"{_listing(heavier['workbench'])}: larger forward batches (activations and the "
            "reused batch buffer of batch_size rows); lower `batch_size` to trade speed for "
            "memory.")


def findings(report: dict) -> list[str]:
    rows, mem, st = report["rows"], report["memory"], report["settings"]
    small = f"workbench[batch={st['batch']}]"

    def ratio_text(lib: str) -> str:
        ratios = {row: r["quantus_over"][lib] for row, r in rows.items() if r.get("quantus_over")}
        parts = []
        for kind in MODELS:
            values = [v for row, v in ratios.items() if row.endswith("/" + kind)]
            parts.append(f"{kind} {min(values):.1f}x to {max(values):.1f}x")
        return ", ".join(parts)

    load = max(*report["machine"]["load_average_start"], *report["machine"]["load_average_end"],
               *(v for rerun in report.get("reruns", []) for v in rerun["load_average_start"]))
    cores = report["machine"]["usable_cores"]
    load_line = ([f"Load: the load average reached {load:.0f} on {cores} usable cores during "
                  "this run or its reruns (other jobs on the machine): the times and even the "
                  "fastest-call ratios of this report are unreliable; the memory figures are "
                  "not affected."] if load > 2 * cores else [])
    errors = [r["agreement"]["max_abs_err"] for r in rows.values()
              if r.get("agreement", {}).get("max_abs_err") is not None]
    max_err = max(errors) if errors else float("nan")
    return load_line + [
        floor_finding(rows),
        quantus_finding(rows, small),
        memory_finding(rows, mem, small),
        f"Speed-up quantus / workbench (default batch_size): {ratio_text('workbench')}. "
        f"Memory-matched ({small}): {ratio_text(small)}. Both definitions need the model on "
        "every perturbed input, so no implementation can beat quantus / floor (the `bound` "
        "column). The workbench's gain is Quantus's per-step overhead (a forward pass of only "
        "N rows per step, array copies, an `np.allclose` per sample and step), large only "
        "with many steps and a cheap model. Timed alongside, under load from other jobs on "
        "the machine: ratios of medians and of fastest calls can differ by 20 % or more.",
        "Agreement: region perturbation (MoRF, LeRF) and Quantus's SensitivityN quantity agree "
        f"to {max_err:.1e} at most (float32 outputs; table); the random order uses different "
        "generators (workbench: seeded torch CPU generator; Quantus: global numpy state), so "
        "only its time compares. "
        "Results do not depend on `batch_size` (checked on every row).",
        "Quantus's SensitivityN is not Ancona's Sensitivity-n: it removes pixels cumulatively "
        "in the MoRF order and, per step, correlates across the samples of the batch the "
        "attribution of the one pixel removed at that step with the cumulative output drop; "
        "with several batches only the first batch's values are kept (`evaluation_scores[0]`). "
        "`workbench.metrics.sensitivity_n` implements Ancona's definition (random subsets of n "
        "features, per-sample correlation between their attribution sum and the drop).",
    ]


def time_rows(s: Settings, groups: dict[str, list[Contender]]) -> dict[str, dict]:
    """Time every row of ``groups``; the entries of the report's ``rows``."""
    rows: dict[str, dict] = {}
    for row, members in groups.items():
        t0 = time.perf_counter()
        reps = s.reps_heavy if row.startswith("sensitivity_n") else s.reps
        times, agree = time_row(members, reps)
        summary = {lib: _summary(v) for lib, v in times.items()}
        entry = {"times": summary, "agreement": agree,
                 "notes": {c.library: c.note for c in members if c.note},
                 "workbench_over_floor": summary["workbench"]["median_s"]
                 / summary["floor"]["median_s"],
                 "workbench_over_floor_by_min": summary["workbench"]["min_s"]
                 / summary["floor"]["min_s"]}
        if "quantus" in summary:
            entry["quantus_over"] = {lib: summary["quantus"]["median_s"] / t["median_s"]
                                     for lib, t in summary.items()
                                     if lib.startswith("workbench")}
            entry["quantus_over_floor"] = (summary["quantus"]["median_s"]
                                           / summary["floor"]["median_s"])
            entry["quantus_over_by_min"] = {lib: summary["quantus"]["min_s"] / t["min_s"]
                                            for lib, t in summary.items()
                                            if lib.startswith("workbench")}
        rows[row] = entry
        print(f"{row} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for lib, t in summary.items():
            print(f"  {lib:10s} {t['median_s'] * 1e3:9.1f} ms  IQR {t['iqr_s'] * 1e3:7.1f}",
                  flush=True)
        if agree:
            print(f"  agreement {agree}", flush=True)
    return rows


def _scale_ancona(rows: dict[str, dict]) -> None:
    """Each Ancona row's ``reference_over``: the Quantus SensitivityN time on its model over
    the row's time."""
    for row, entry in rows.items():
        if "ancona" in row:
            reference = rows[row.replace("ancona", "quantus")]["times"]["quantus"]["median_s"]
            entry["reference_over"] = {lib: reference / t["median_s"]
                                       for lib, t in entry["times"].items()
                                       if lib.startswith("workbench")}


def rerun_rows(s: Settings, groups: dict[str, list[Contender]], wanted: list[str],
               out: Path) -> None:
    """Time again the rows whose name contains one of ``wanted`` (rows that looked noisy) and
    replace them in the report in ``out``; the report says which rows were rerun, and when."""
    report = json.loads((out / "metrics.json").read_text())
    chosen = {row: members for row, members in groups.items()
              if any(text in row for text in wanted)}
    if not chosen:
        raise SystemExit(f"no row contains any of {wanted}")
    load_start = os.getloadavg()
    report["rows"].update(time_rows(s, chosen))
    _scale_ancona(report["rows"])
    report.setdefault("reruns", []).append(
        {"rows": sorted(chosen), "at": time.strftime("%Y-%m-%d %H:%M"),
         "load_average_start": load_start, "load_average_end": os.getloadavg()})
    report["findings"] = findings(report)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    (out / "metrics.md").write_text(markdown(report))
    print(f"rerun {sorted(chosen)}; wrote {out / 'metrics.md'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (results/quick/)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--rows", nargs="+", metavar="TEXT", default=None,
                        help="time again only the rows whose name contains one of these (rows "
                             "that looked noisy) and replace them in the report in --out")
    parser.add_argument("--memory-child", metavar="KEY", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    if args.no_memory:
        s = dataclasses.replace(s, memory=False)
    _quiet()
    torch.set_num_threads(s.threads)
    if args.memory_child:
        print(json.dumps(memory_child(s, args.memory_child)))
        return
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    info = machine_info(s)
    contenders = build_contenders(s)
    groups: dict[str, list[Contender]] = {}
    for c in contenders:
        groups.setdefault(c.row, []).append(c)
    if args.rows:
        rerun_rows(s, groups, args.rows, out)
        return
    rows = time_rows(s, groups)
    _scale_ancona(rows)

    memory: dict[str, dict] = {}
    if s.memory:
        print("memory (fresh process per contender)", flush=True)
        # rows with a Quantus counterpart; the three orders of region perturbation allocate
        # alike, MoRF stands for them
        keys = [c.key for c in contenders if c.library != "floor" and "ancona" not in c.row
                and (not c.row.startswith("region_perturbation")
                     or "most_relevant_first" in c.row)]
        memory = measure_memory(s, keys, args.quick)
    info["load_average_end"] = os.getloadavg()
    ancona = next(c.note for c in contenders if "ancona" in c.row and c.note)
    report = {"machine": info, "settings": dataclasses.asdict(s), "rows": rows,
              "memory": memory, "ancona_note": ancona,
              "memory_method": "fresh process per contender; one untimed call; VmHWM reset via "
                               "/proc/self/clear_refs; VmHWM after - VmRSS before one call",
              "wall_s": None}
    report["findings"] = findings(report)
    report["wall_s"] = time.perf_counter() - started
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    (out / "metrics.md").write_text(markdown(report))
    print(f"wrote {out / 'metrics.json'} and {out / 'metrics.md'} "
          f"({report['wall_s']:.0f} s)", flush=True)


def _summary(values: list[float]) -> dict:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median_s": float(median), "iqr_s": float(q3 - q1), "min_s": float(min(values)),
            "n": len(values), "times_s": [round(v, 6) for v in values]}


if __name__ == "__main__":
    from workbench import processes

    sys.exit(processes.run(main, "benchmarks.metrics"))  # its memory subprocesses end with it
