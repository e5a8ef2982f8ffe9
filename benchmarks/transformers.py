"""Time and peak memory of AttnLRP and CP-LRP on vision transformers, against the plain
gradient (the floor: one forward and one backward pass) and the authors' ``lxt`` where it is
installed.

Run from the repository root::

    python -m benchmarks.transformers           # batch 8: benchmarks/results/transformers.*
    python -m benchmarks.transformers --quick   # smaller batches, fewer repetitions

Two models, random weights (speed does not depend on the weights), eval mode, float32, CPU,
2 threads: the zoo's small ViT architecture (``models.vit`` as ``photos_vit`` builds it: 32-pixel
images, 65 tokens, 4 blocks of width 64) and torchvision's ViT-B/16 (``models.vit_b_16``,
224-pixel images, 197 tokens, 12 blocks of width 768). Contenders, run round-robin, the median
of ``reps`` calls after ``warmup`` calls reported with the paired ratio to the floor:

- ``gradient floor``: ``x.requires_grad_()``, the model's forward, ``torch.autograd.grad`` of
  the target logits' sum with respect to ``x`` alone, in plain torch (no workbench);
- ``gradient``, ``attn_lrp`` and ``cp_lrp``: ``wb.attribute(model, x, method, target=...)``
  (the workbench's plain gradient shows its own overhead, apart from the rules');
- ``lxt``: its AttnLRP on the same model, if ``lxt`` imports (else the results say so); timed
  after the others (its patches change forwards process-wide), so its ratio is not paired
  call by call with the floor's calls of the same moment.

Memory: each contender in a fresh subprocess, the increase of peak RSS (VmHWM, reset after a
warm-up call) over one call. Targets: AttnLRP <= 1.5 x the floor, no slower than lxt, peak
memory <= lxt's. Nothing here asserts.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see run.py: before torch loads libgomp

import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIME_TARGET = 1.5
MODELS = ("small_vit", "vit_b_16")
CONTENDERS = ("gradient floor", "gradient", "attn_lrp", "cp_lrp", "lxt")


@dataclass(frozen=True)
class Settings:
    batch: int = 8
    large_batch: int = 8
    threads: int = 2
    warmup: int = 1
    reps: int = 5
    large_reps: int = 3


QUICK = Settings(batch=2, large_batch=1, reps=2, large_reps=1)


def lxt_available() -> str | None:
    """None if lxt's efficient AttnLRP imports, else why not. ``make install`` installs lxt
    without its dependencies (its explicit functions, which the tests compare with, need only
    torch); ``lxt.efficient`` also needs Hugging Face ``transformers``."""
    try:
        import lxt.efficient  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any failure to import is reported
        return f"{type(error).__name__}: {error}"
    return None


def setup(name: str, s: Settings):
    from workbench import models

    torch.set_num_threads(s.threads)
    if name == "small_vit":
        model, batch, side = models.vit(3, 20, 32, patch=4, seed=0).eval(), s.batch, 32
    else:
        model, batch, side = models.vit_b_16(random_weights=True, seed=0), s.large_batch, 224
    x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target


def contender(kind: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    """A function running one attribution of ``kind``, or None where it cannot run."""
    if kind == "gradient floor":
        def floor():
            leaf = x.detach().requires_grad_()
            score = model(leaf).gather(1, target[:, None]).sum()
            return torch.autograd.grad(score, leaf)[0]  # not the parameters' gradients

        return floor
    if kind in ("gradient", "attn_lrp", "cp_lrp"):
        import workbench as wb

        return lambda: wb.attribute(model, x, kind, target=target)
    if lxt_available() is not None:
        return None
    return _lxt_contender(model, x, target)


_LXT_PATCHED: list[bool] = []


def _lxt_contender(model, x, target):
    """lxt's efficient implementation: torchvision's vision-transformer modules patched with
    ``lxt.efficient.monkey_patch`` and lxt's default map for them (CP-LRP inside attention,
    identity rules for GELU and LayerNorm, plain linear layers), relevance as input times
    gradient. The patch replaces forwards process-wide, so ``time_model`` times lxt after every
    other contender, and the patch is applied at its first call."""
    def run():
        if not _LXT_PATCHED:  # once per process: a second patch would wrap the patched forwards
            from lxt.efficient import monkey_patch
            from torchvision.models import vision_transformer

            monkey_patch(vision_transformer, verbose=False)
            _LXT_PATCHED.append(True)
        leaf = x.detach().requires_grad_()
        score = model(leaf).gather(1, target[:, None]).sum()
        return leaf * torch.autograd.grad(score, leaf)[0]

    return run


def time_model(name: str, s: Settings, kinds: tuple[str, ...]) -> dict:
    """``kinds`` timed round-robin on the model ``name`` (those that cannot run left out)."""
    model, x, target = setup(name, s)
    runs = {kind: contender(kind, copy.deepcopy(model), x, target) for kind in kinds}
    runs = {kind: run for kind, run in runs.items() if run is not None}
    reps = s.reps if name == "small_vit" else s.large_reps
    seconds: dict[str, list[float]] = {kind: [] for kind in runs}
    for _ in range(1 + s.warmup):
        for kind in runs:
            runs[kind]()
    for _ in range(reps):
        for kind in runs:
            start = time.perf_counter()
            runs[kind]()
            seconds[kind].append(time.perf_counter() - start)
    return {"batch": len(x), "seconds": seconds}


def time_all(s: Settings, names: list[str]) -> dict:
    """Every contender on every model in ``names``: the workbench's and the floor round-robin,
    model by model; then lxt on each model. lxt patches torch.nn's classes process-wide, so it
    runs after everything else, and its ratio to the floor is the ratio of the medians (the
    floor cannot run beside it unpatched)."""
    timing = {name: time_model(name, s, tuple(k for k in CONTENDERS if k != "lxt"))
              for name in names}
    for name in names:
        timing[name]["seconds"].update(time_model(name, s, ("lxt",))["seconds"])
    for name, row in timing.items():
        seconds, floor = row["seconds"], row["seconds"]["gradient floor"]
        row["median_s"] = {kind: statistics.median(v) for kind, v in seconds.items()}
        row["paired_ratio_to_floor"] = {
            kind: (statistics.median([a / b for a, b in zip(v, floor)]) if kind != "lxt"
                   else row["median_s"][kind] / row["median_s"]["gradient floor"])
            for kind, v in seconds.items()}
        print(f"{name}: " + "  ".join(f"{kind} {row['median_s'][kind]:.3f} s "
                                      f"({row['paired_ratio_to_floor'][kind]:.2f}x)"
                                      for kind in seconds), flush=True)
    return timing


def memory_child(s: Settings, name: str, kind: str) -> dict:
    from benchmarks.run import peak_increase_mib

    model, x, target = setup(name, s)
    run = contender(kind, model, x, target)
    return {"peak_increase_mib": None if run is None else peak_increase_mib(run)}


def memory_all(s: Settings, quick: bool) -> dict:
    results: dict[str, dict] = {}
    for name in MODELS:
        results[name] = {}
        for kind in CONTENDERS:
            command = [sys.executable, "-m", "benchmarks.transformers", "--memory-child",
                       name, kind, "--large-batch", str(s.large_batch)] \
                + (["--quick"] if quick else [])
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            results[name][kind] = (
                json.loads(done.stdout.strip().splitlines()[-1])["peak_increase_mib"]
                if done.returncode == 0 else None)
        print(f"memory {name}: {results[name]}", flush=True)
    return results


def _cell(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(s: Settings, timing: dict, memory: dict | None, lxt: str | None) -> str:
    lines = [
        "# AttnLRP and CP-LRP on vision transformers: against the gradient floor and lxt",
        "",
        f"CPU, {s.threads} threads, float32, random weights; median of {s.reps} calls (small "
        f"ViT) or {s.large_reps} (ViT-B/16) after {s.warmup} warm-up; paired ratio to the plain "
        "gradient call by call (lxt: ratio of the medians, as it runs after the others). "
        f"Target: AttnLRP <= {TIME_TARGET} x the floor, no slower than "
        "lxt, peak memory <= lxt's.",
        "",
        "lxt: " + ("installed, compared below." if lxt is None else
                   f"its efficient AttnLRP does not import here ({lxt}); the lxt comparison "
                   "is not made. The test suite compares the relevance with lxt's explicit "
                   "functions, which need only torch (tests/test_transformer_rules.py)."),
        "",
        "| model | batch | contender | median (s) | ratio to floor | time target | "
        "peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in timing.items():
        for kind in row["median_s"]:
            ratio = row["paired_ratio_to_floor"][kind]
            target = ("PASS" if ratio <= TIME_TARGET else "FAIL") if kind == "attn_lrp" else ""
            mib = (memory or {}).get(name, {}).get(kind)
            lines.append(f"| {name} | {row['batch']} | {kind} | {row['median_s'][kind]:.3f} | "
                         f"{ratio:.2f} | {target} | {_cell(mib, 0)} |")
    lines += _against_lxt(timing, memory)
    return "\n".join(lines) + "\n"


def _against_lxt(timing: dict, memory: dict | None) -> list[str]:
    """Per model with an lxt row: the workbench's time and peak memory over lxt's. lxt's map
    for torchvision ViTs is CP-LRP inside attention, so ``cp_lrp`` is the like-for-like row."""
    lines = []
    for name, row in timing.items():
        if "lxt" not in row["median_s"]:
            continue
        lxt_seconds = row["median_s"]["lxt"]
        lxt_mib = (memory or {}).get(name, {}).get("lxt")
        parts = []
        for kind in ("attn_lrp", "cp_lrp"):
            ratio = row["median_s"][kind] / lxt_seconds
            mib = (memory or {}).get(name, {}).get(kind)
            memory_text = (f", peak memory {mib / lxt_mib:.2f}x" if mib and lxt_mib else "")
            parts.append(f"{kind} {ratio:.2f}x lxt's time "
                         f"({'PASS' if ratio <= 1 else 'FAIL'}){memory_text}")
        lines.append(f"- {name}: " + "; ".join(parts) + ".")
    if lines:
        lines = ["", "Against lxt (ratio of medians; lxt's map for torchvision ViTs is CP-LRP "
                 "inside attention, so cp_lrp is the like-for-like row):", ""] + lines
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--only", choices=MODELS, default=None)
    parser.add_argument("--large-batch", type=int, default=None,
                        help="ViT-B/16's batch (default 8; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--memory-child", nargs=2, metavar=("MODEL", "CONTENDER"))
    args = parser.parse_args(argv)
    s = QUICK if args.quick else Settings()
    if args.large_batch is not None:
        s = replace(s, large_batch=args.large_batch)
    if args.memory_child:
        print(json.dumps(memory_child(s, *args.memory_child)))
        return
    timing = time_all(s, [name for name in MODELS if args.only in (None, name)])
    memory = None if args.no_memory else memory_all(s, args.quick)
    lxt = lxt_available()
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    report = {"settings": asdict(s), "lxt": lxt or "installed", "timing": timing,
              "memory": memory}
    (out / "transformers.json").write_text(json.dumps(report, indent=1))
    (out / "transformers.md").write_text(markdown(s, timing, memory, lxt))
    print(f"wrote {out / 'transformers.md'}")


if __name__ == "__main__":
    from workbench import processes

    # a stop signal ends the memory children too
    sys.exit(processes.run(main, "benchmarks.transformers"))
