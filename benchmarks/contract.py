"""Time and memory of Captum's call contract on the workbench against Captum itself: integrated
gradients at a text model's embedding (``layer``; Captum's ``LayerIntegratedGradients``) and
GradientSHAP (``gradient_shap``; Captum's ``GradientShap``).

Run from the repository root::

    python -m benchmarks.contract            # benchmarks/results/contract.{md,json}
    python -m benchmarks.contract --quick    # smoke run: benchmarks/results/quick/

Timing, round-robin rotation, the per-round paired ratios and the peak-RSS measurement in a fresh
subprocess per contender are those of ``benchmarks.run`` (see benchmarks/README.md). Target:
the workbench at most Captum's time and memory on each row.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/run.py

import torch  # noqa: E402

from benchmarks import run as methods_benchmark  # noqa: E402
from benchmarks.run import Contender, paired_ratio, summary, time_group  # noqa: E402

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Settings:
    text_batch: int = 32         # sentences of the zoo's tokens_cnn (length 12)
    ig_steps: int = 50
    shap_samples: int = 20       # GradientSHAP draws per input
    shap_baselines: int = 8      # baseline distribution
    reps: int = 7
    warmup: int = 1
    threads: int = 2
    memory: bool = True


FULL = Settings()
QUICK = Settings(text_batch=4, ig_steps=8, shap_samples=4, reps=2, warmup=0)


def _image_case(s: Settings):
    """The methods benchmark's VGG8 and inputs (its quick settings: batch 4, 64 x 64)."""
    return methods_benchmark.setup(methods_benchmark.QUICK)


def contenders(s: Settings) -> list[Contender]:
    import captum.attr as ca

    import workbench as wb
    from workbench import models

    torch.set_num_threads(s.threads)
    text_model, _ = models.zoo("tokens_cnn", progress=False)
    sentences = models.zoo_data("tokens_cnn")
    ids, label = sentences.x_test[:s.text_batch], sentences.y_test[:s.text_batch]
    layer_ig = ca.LayerIntegratedGradients(text_model, text_model.embedding)

    model, images, target = _image_case(s)
    generator = torch.Generator().manual_seed(3)
    baselines = 0.1 * torch.randn(s.shap_baselines, *images.shape[1:], generator=generator)
    gradient_shap = ca.GradientShap(model)
    rows = len(images) * s.shap_samples  # one pass over every draw, as Captum does

    def captum_shap():
        torch.manual_seed(0)
        return gradient_shap.attribute(images, baselines, n_samples=s.shap_samples, stdevs=0.0,
                                       target=target)

    return [
        Contender("layer_ig_text", "workbench", lambda: wb.attribute(
            text_model, ids, "integrated_gradients", target=label, layer="embedding",
            baseline=0, steps=s.ig_steps), "layer_ig_text",
            "wb.attribute(layer='embedding'), Gauss-Legendre"),
        Contender("layer_ig_text", "captum", lambda: layer_ig.attribute(
            ids, baselines=torch.zeros_like(ids), target=label, n_steps=s.ig_steps),
            "layer_ig_text", "captum LayerIntegratedGradients, Gauss-Legendre"),
        Contender("gradient_shap", "workbench", lambda: wb.attribute(
            model, images, "gradient_shap", target=target, baselines=baselines,
            n_samples=s.shap_samples, seed=0, batch_size=rows), "gradient_shap",
            f"wb gradient_shap, batch_size={rows}"),
        Contender("gradient_shap", "captum", captum_shap, "gradient_shap",
                  "captum GradientShap, stdevs=0 (draws differ from ours: no agreement)"),
    ]


def memory_child(s: Settings, key: str) -> dict:
    """One contender run twice in this fresh process; the second call's peak-RSS increase."""
    methods_benchmark._quiet()
    contender = {c.key: c for c in contenders(s)}[key]
    peaks = []
    for _ in range(2):
        gc.collect()
        before = methods_benchmark._status_kib("VmRSS")
        if not methods_benchmark._reset_peak_rss():
            raise RuntimeError("needs Linux >= 4.0 (/proc/self/clear_refs resets VmHWM)")
        result = contender.run()
        peaks.append((methods_benchmark._status_kib("VmHWM") - before) / 1024)
        del result
    return {"peak_increase_mib": peaks[1], "first_call_peak_increase_mib": peaks[0]}


def measure_memory(keys: list[str], quick: bool) -> dict[str, dict]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    results = {}
    for key in keys:
        command = [sys.executable, "-m", "benchmarks.contract", "--memory-child", key]
        done = subprocess.run(command + (["--quick"] if quick else []), cwd=HERE.parent,
                              env=env, capture_output=True, text=True)
        results[key] = (json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0
                        else {"error": done.stderr.strip().splitlines()[-1:]})
        print(f"  memory {key:30s} {results[key]}", flush=True)
    return results


def markdown(report: dict) -> str:
    lines = [
        "# Captum's call contract: the workbench against Captum",
        "",
        f"{report['machine']}. Settings: {report['settings']}. Load average at the end: "
        f"{report['load_average_end']}.",
        "",
        "| row | workbench | captum | wb / captum (paired median [q1, q3]) | time ≤ captum | "
        "memory: workbench | captum | memory ≤ captum |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, entry in report["rows"].items():
        ratio = entry["paired_ratio"]
        memory = entry.get("memory", {})
        wb_mib = memory.get("workbench", {}).get("peak_increase_mib")
        ca_mib = memory.get("captum", {}).get("peak_increase_mib")
        memory_ok = ("" if wb_mib is None or ca_mib is None
                     else "PASS" if wb_mib <= ca_mib else "FAIL")
        lines.append(
            f"| {row} | {entry['workbench']['median_s'] * 1e3:.1f} ms | "
            f"{entry['captum']['median_s'] * 1e3:.1f} ms | {ratio['median']:.2f} "
            f"[{ratio['q1']:.2f}, {ratio['q3']:.2f}] | "
            f"{'PASS' if ratio['median'] <= 1 else 'FAIL'} | "
            f"{'' if wb_mib is None else f'{wb_mib:.1f} MiB'} | "
            f"{'' if ca_mib is None else f'{ca_mib:.1f} MiB'} | {memory_ok} |")
    lines += ["", "Contenders: " + "; ".join(report["notes"]) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (results/quick/)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--memory-child", metavar="KEY", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    if args.no_memory:
        s = dataclasses.replace(s, memory=False)
    methods_benchmark._quiet()
    if args.memory_child:
        print(json.dumps(memory_child(s, args.memory_child)))
        return
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    members = contenders(s)
    groups: dict[str, list[Contender]] = {}
    for c in members:
        groups.setdefault(c.group, []).append(c)
    rows, agree = {}, {}
    for name, group in groups.items():
        times = time_group(group, s.warmup, s.reps, agree)
        rows[name] = {c.library: summary(times[c.key]) for c in group}
        rows[name]["paired_ratio"] = paired_ratio(times[f"{name}/workbench"],
                                                  times[f"{name}/captum"])
        print(f"{name}: " + ", ".join(f"{c.library} {rows[name][c.library]['median_s'] * 1e3:.1f}"
                                      " ms" for c in group), flush=True)
    if s.memory:
        memory = measure_memory([c.key for c in members], args.quick)
        for c in members:
            rows[c.row].setdefault("memory", {})[c.library] = memory[c.key]
    for key, value in agree.items():
        rows[key.split("/")[0]]["agreement_with_workbench"] = value
    report = {
        "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, {s.threads} threads",
        "settings": dataclasses.asdict(s), "load_average_end": os.getloadavg(),
        "rows": rows, "notes": [f"{c.key}: {c.note}" for c in members],
        "wall_time_s": time.perf_counter() - started,
    }
    (out / "contract.json").write_text(json.dumps(report, indent=2))
    (out / "contract.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    from workbench import processes

    sys.exit(processes.run(main, "benchmarks.contract"))
