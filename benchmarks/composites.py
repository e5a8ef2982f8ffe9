"""Time and peak memory of the lrp method's composites against Zennit's, on torchvision VGG-16.

Run from the repository root::

    python -m benchmarks.composites           # 1 x 3 x 224 x 224: benchmarks/results/composites.*
    python -m benchmarks.composites --quick   # 1 x 3 x 64 x 64, fewer repetitions: --out /tmp/x

One model (torchvision ``vgg16``, random weights, seed 0, eval mode, float32, CPU, 2 threads)
and one batch (standard normal, clamped to the z-box bounds [-3, 3]); targets are the model's
predictions, passed to both libraries. Per composite the workbench
(``wb.attribute(model, x, "lrp", composite=name, low=-3, high=3)``) and Zennit's composite of
the same name (``Gradient`` attributor, ``attr_output = one_hot * output``, hooks registered and
removed inside each call) run round-robin; the median of ``reps`` calls after ``warmup`` calls
is reported, and the paired ratio (workbench / Zennit, call by call). Memory: each contender in
a fresh subprocess, the increase of peak RSS (VmHWM, reset after a warm-up call) over one call.
Targets: time <= 0.5 x Zennit's, peak memory <= Zennit's. Nothing here asserts.
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
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see run.py: before torch loads libgomp

import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOW, HIGH = -3.0, 3.0
TIME_TARGET = 0.5


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
    if library == "workbench":
        import workbench as wb

        return lambda: wb.attribute(model, x, "lrp", target=target, composite=composite,
                                    **options)
    from zennit.attribution import Gradient
    from zennit.composites import COMPOSITES

    one_hot = nn.functional.one_hot(target, 1000).to(x.dtype)

    def run():
        with Gradient(model=model, composite=COMPOSITES[composite](**options)) as attributor:
            return attributor(x, lambda output: one_hot * output)[1]

    return run


def _names() -> list[str]:
    from workbench.composites import COMPOSITES

    return list(COMPOSITES)


def time_all(s: Settings) -> dict:
    model, x, target = setup(s)
    copies = {"workbench": copy.deepcopy(model), "zennit": copy.deepcopy(model)}
    results = {}
    for name in _names():
        runs = {lib: contender(lib, name, copies[lib], x, target) for lib in copies}
        outputs = {lib: run() for lib, run in runs.items()}  # agreement, and the first call
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
        ratios = [w / z for w, z in zip(seconds["workbench"], seconds["zennit"])]
        results[name] = {"seconds": seconds,
                         "median_s": {lib: statistics.median(v) for lib, v in seconds.items()},
                         "paired_ratio_median": statistics.median(ratios),
                         "min_cosine": float(cosine.min())}
        print(f"{name:28s} workbench {results[name]['median_s']['workbench']:.2f} s  zennit "
              f"{results[name]['median_s']['zennit']:.2f} s  ratio "
              f"{results[name]['paired_ratio_median']:.2f}  cosine {cosine.min():.6f}",
              flush=True)
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
                       library, name] + (["--quick"] if quick else [])
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            value = (json.loads(done.stdout.strip().splitlines()[-1])["peak_increase_mib"]
                     if done.returncode == 0 else None)
            results[name][library] = value
        print(f"memory {name:28s} {results[name]}", flush=True)
    return results


def markdown(s: Settings, timing: dict, memory: dict | None) -> str:
    lines = [
        "# LRP composites: workbench vs Zennit on torchvision VGG-16",
        "",
        f"Input {s.batch} x 3 x {s.image} x {s.image} float32, CPU, {s.threads} threads; median "
        f"of {s.reps} calls after {s.warmup} warm-up; targets: time <= {TIME_TARGET} x Zennit, "
        "peak memory <= Zennit.",
        "",
        "| composite | workbench (s) | zennit (s) | paired ratio | time target | "
        "workbench MiB | zennit MiB | memory target | min cosine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in timing.items():
        mem = (memory or {}).get(name, {})
        wb_mib, zn_mib = mem.get("workbench"), mem.get("zennit")
        mem_ok = ("PASS" if wb_mib <= zn_mib else "FAIL") if wb_mib and zn_mib else "-"
        lines.append(
            f"| `{name}` | {row['median_s']['workbench']:.2f} | {row['median_s']['zennit']:.2f} "
            f"| {row['paired_ratio_median']:.2f} | "
            f"{'PASS' if row['paired_ratio_median'] <= TIME_TARGET else 'FAIL'} | "
            f"{wb_mib if wb_mib is None else round(wb_mib)} | "
            f"{zn_mib if zn_mib is None else round(zn_mib)} | {mem_ok} | "
            f"{row['min_cosine']:.6f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--memory-child", nargs=2, metavar=("LIBRARY", "COMPOSITE"))
    args = parser.parse_args(argv)
    s = QUICK if args.quick else Settings()
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
