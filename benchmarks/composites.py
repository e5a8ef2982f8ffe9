"""Time and peak memory of the lrp method's composites against Zennit's, on torchvision VGG-16.

Run from the repository root::

    python -m benchmarks.composites           # 1 x 3 x 224 x 224: benchmarks/results/composites.*
    python -m benchmarks.composites --quick   # 1 x 3 x 64 x 64, fewer repetitions: --out /tmp/x
    python -m benchmarks.composites --image 112 --reps 7   # other settings

One model (torchvision ``vgg16``, random weights, seed 0, eval mode, float32, CPU, 2 threads)
and one batch (standard normal, clamped to the z-box bounds [-3, 3]); targets are the model's
predictions, passed to both libraries. Per composite the workbench
(``wb.attribute(model, x, "lrp", composite=name, low=-3, high=3)``), Zennit's composite of the
same name (``Gradient`` attributor, ``attr_output = one_hot * output``, hooks registered and
removed inside each call) and the floor (one plain ``torch.autograd.grad`` of the target logits,
inputs as given) run round-robin; medians and quartiles of ``reps`` calls after ``warmup`` calls
are reported, and the paired ratios (workbench / Zennit and workbench / floor, call by call,
timed moments apart). A last row, ``epsilon`` on every layer, measures the one-product rule.
Memory: each contender in a fresh subprocess, the increase of peak RSS (VmHWM, reset after a
warm-up call) over one call. Targets: time <= 0.5 x Zennit's; <= 1.6 x the floor for composites
with a rule that needs two affine products (z+, alpha-beta, gamma, ...), <= 1.3 x for those with
one (epsilon, LRP-0); peak memory <= Zennit's. Nothing here asserts.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see run.py: before torch loads libgomp

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOW, HIGH = -3.0, 3.0
TIME_TARGET = 0.5
#: workbench / floor: composites with a two-product rule somewhere, and with one-product only
FLOOR_TARGETS = {"two products": 1.6, "one product": 1.3}
#: the extra row: epsilon on every weighted layer (one affine product per layer)
EPSILON_ROW = "epsilon"
LIBRARIES = ("workbench", "zennit", "floor")


@dataclass(frozen=True)
class Settings:
    batch: int = 1
    image: int = 224
    threads: int = 2
    warmup: int = 1
    reps: int = 5
    memory: bool = True


QUICK = Settings(image=64, reps=3)


def setup(s: Settings):
    import torchvision

    torch.set_num_threads(s.threads)
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(s.batch, 3, s.image, s.image, generator=generator).clamp(LOW, HIGH)
    with torch.no_grad():
        target = model(x).argmax(1)
    return model, x, target


def contender(library: str, composite: str, model: nn.Module, x: torch.Tensor,
              target: torch.Tensor):
    """A function running one attribution of ``library`` with ``composite``."""
    options = {"low": LOW, "high": HIGH} if composite == "epsilon_gamma_box" else {}
    if library == "floor":
        from benchmarks.run import _floor

        return _floor(model, x, target)
    if library == "workbench":
        import workbench as wb

        return lambda: wb.attribute(model, x, "lrp", target=target,
                                    composite=_workbench_composite(composite), **options)
    from zennit.attribution import Gradient

    one_hot = nn.functional.one_hot(target, 1000).to(x.dtype)

    def run():
        with Gradient(model=model, composite=_zennit_composite(composite, options)) as attr:
            return attr(x, lambda output: one_hot * output)[1]

    return run


def _workbench_composite(name: str):
    if name != EPSILON_ROW:
        return name
    from workbench.composites import Composite, Everything
    from workbench.rules import EpsilonRule

    return Composite(((Everything(), EpsilonRule(1e-6)),), EPSILON_ROW)


def _zennit_composite(name: str, options: dict):
    from zennit.composites import COMPOSITES, LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.types import Convolution

    if name != EPSILON_ROW:
        return COMPOSITES[name](**options)
    return LayerMapComposite(layer_map_base() + [(Convolution, Epsilon(1e-6)),
                                                 (nn.Linear, Epsilon(1e-6))])


def floor_target(name: str, model: nn.Module) -> tuple[str, float]:
    """The floor target of composite ``name`` on ``model``: 1.3 if every rule it gives is
    epsilon or LRP-0 (the plain gradient, rescaled), else 1.6."""
    import workbench as wb
    from workbench.rules import EpsilonRule

    rules = wb.lrp_rules(model, _workbench_composite(name)).values()
    kind = ("one product" if all(r is None or isinstance(r, EpsilonRule) for r in rules)
            else "two products")
    return kind, FLOOR_TARGETS[kind]


def _names() -> list[str]:
    from workbench.composites import COMPOSITES

    return [*COMPOSITES, EPSILON_ROW]


def quartiles(values: list[float]) -> dict:
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    return {"median": median, "q1": q1, "q3": q3}


def time_all(s: Settings) -> dict:
    from benchmarks.run import _resolved, paired_ratio

    model, x, target = setup(s)
    copies = {lib: copy.deepcopy(model) for lib in LIBRARIES}
    results = {}
    for name in _names():
        runs = {lib: contender(lib, name, copies[lib], x, target) for lib in LIBRARIES}
        outputs = {lib: runs[lib]() for lib in ("workbench", "zennit")}  # agreement, 1st call
        for _ in range(s.warmup):
            for run in runs.values():
                run()
        seconds: dict[str, list[float]] = {lib: [] for lib in runs}
        for _ in range(s.reps):
            for lib, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[lib].append(time.perf_counter() - start)
        cosine = nn.functional.cosine_similarity(outputs["workbench"].flatten(1),
                                                 outputs["zennit"].flatten(1), dim=1)
        kind, target_ratio = floor_target(name, model)
        vs_zennit = paired_ratio(seconds["workbench"], seconds["zennit"])
        vs_floor = paired_ratio(seconds["workbench"], seconds["floor"])
        results[name] = {
            "seconds": seconds, "quartiles_s": {lib: quartiles(v) for lib, v in seconds.items()},
            "median_s": {lib: float(np.median(v)) for lib, v in seconds.items()},
            "paired_ratio": vs_zennit, "paired_ratio_median": vs_zennit["median"],
            "target_time": vs_zennit["median"] <= TIME_TARGET,
            "target_time_resolved": _resolved(vs_zennit, TIME_TARGET),
            "floor_kind": kind, "floor_target": target_ratio, "paired_floor_ratio": vs_floor,
            "target_floor": vs_floor["median"] <= target_ratio,
            "target_floor_resolved": _resolved(vs_floor, target_ratio),
            "min_cosine": float(cosine.min())}
        print(f"{name:28s} workbench {results[name]['median_s']['workbench']:.2f} s  zennit "
              f"{results[name]['median_s']['zennit']:.2f} s  floor "
              f"{results[name]['median_s']['floor']:.2f} s  / zennit {vs_zennit['median']:.2f}"
              f"  / floor {vs_floor['median']:.2f}  cosine {cosine.min():.6f}", flush=True)
    return results


def memory_child(s: Settings, library: str, name: str) -> dict:
    from benchmarks.run import peak_increase_mib

    model, x, target = setup(s)
    return {"peak_increase_mib": peak_increase_mib(contender(library, name, model, x, target))}


def memory_all(s: Settings, quick: bool) -> dict:
    results: dict[str, dict] = {}
    for name in _names():
        results[name] = {}
        for library in ("workbench", "zennit"):
            command = [sys.executable, "-m", "benchmarks.composites", "--memory-child",
                       library, name, "--image", str(s.image)] + (["--quick"] if quick else [])
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            value = (json.loads(done.stdout.strip().splitlines()[-1])["peak_increase_mib"]
                     if done.returncode == 0 else None)
            results[name][library] = value
        print(f"memory {name:28s} {results[name]}", flush=True)
    return results


def _seconds(q: dict) -> str:
    return f"{q['median']:.2f} [{q['q1']:.2f}, {q['q3']:.2f}]"


def markdown(s: Settings, timing: dict, memory: dict | None) -> str:
    from benchmarks.run import _fmt_paired, _mark

    lines = [
        "# LRP composites: workbench vs Zennit on torchvision VGG-16",
        "",
        f"Input {s.batch} x 3 x {s.image} x {s.image} float32, CPU, {s.threads} threads. Times: "
        f"median [quartiles] in s of {s.reps} round-robin calls (workbench, Zennit, floor) "
        f"after {s.warmup} warm-up; ratios: median [quartiles] of the per-round ratios (paired). "
        "Floor: one plain `torch.autograd.grad` of the target logits, inputs as given. Targets: "
        f"time <= {TIME_TARGET} x Zennit; <= {FLOOR_TARGETS['two products']} x the floor for a "
        "composite with a two-product rule (z+, alpha-beta, gamma, z-box, flat), <= "
        f"{FLOOR_TARGETS['one product']} x for one-product rules only (the `{EPSILON_ROW}` row: "
        "epsilon on every layer); peak memory <= Zennit. '?' marks a target the paired "
        "quartiles do not resolve (they straddle it).",
        "",
        "| composite | workbench (s) | zennit (s) | floor (s) | wb / zennit | <= 0.5 x zennit | "
        "wb / floor | floor target | <= target | workbench MiB | zennit MiB | memory target | "
        "min cosine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in timing.items():
        mem = (memory or {}).get(name, {})
        wb_mib, zn_mib = mem.get("workbench"), mem.get("zennit")
        mem_ok = ("PASS" if wb_mib <= zn_mib else "FAIL") if wb_mib and zn_mib else "-"
        q = row["quartiles_s"]
        lines.append(
            f"| `{name}` | {_seconds(q['workbench'])} | {_seconds(q['zennit'])} | "
            f"{_seconds(q['floor'])} | {_fmt_paired(row['paired_ratio'])} | "
            f"{_mark(row['target_time'], row['target_time_resolved'])} | "
            f"{_fmt_paired(row['paired_floor_ratio'])} | {row['floor_target']} "
            f"({row['floor_kind']}) | {_mark(row['target_floor'], row['target_floor_resolved'])} | "
            f"{'-' if wb_mib is None else round(wb_mib)} | "
            f"{'-' if zn_mib is None else round(zn_mib)} | {mem_ok} | "
            f"{row['min_cosine']:.6f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--image", type=int, default=None, help="image side (default 224)")
    parser.add_argument("--reps", type=int, default=None, help="timed rounds (default 5)")
    parser.add_argument("--memory-child", nargs=2, metavar=("LIBRARY", "COMPOSITE"))
    args = parser.parse_args(argv)
    s = QUICK if args.quick else Settings()
    s = replace(s, image=args.image or s.image, reps=args.reps or s.reps)
    if args.memory_child:
        print(json.dumps(memory_child(s, *args.memory_child)))
        return
    timing = time_all(s)
    memory = None if args.no_memory else memory_all(s, args.quick)
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    report = {"settings": asdict(s), "timing": timing, "memory": memory}
    (out / "composites.json").write_text(json.dumps(report, indent=1))
    (out / "composites.md").write_text(markdown(s, timing, memory))
    print(f"wrote {out / 'composites.md'}")


if __name__ == "__main__":
    main()
