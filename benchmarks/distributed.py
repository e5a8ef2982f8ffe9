"""Throughput of Dask sweeps and sharded pattern fits with 1 and 2 local workers.

Run from the repository root::

    python -m benchmarks.distributed            # ~3-5 minutes on 2 cores
    python -m benchmarks.distributed --quick    # smoke run, writes results/quick/

Writes ``benchmarks/results/distributed.json`` and ``distributed.md``.

- **Sweep**: ``workbench.sweep.sweep`` over a generated notebook whose cell does a fixed amount
  of single-threaded work (``--work`` seconds of float64 matrix products, measured once before
  the run), ``--points`` grid points, into a fresh folder, on a ``LocalCluster`` of 1 and then
  2 worker processes (1 thread each). Throughput: points per minute, kernel start-up and HTML
  export included (that is what a sweep costs).
- **Pattern fit**: ``wb.fit_patterns`` of the digits VGG-style net on the digits data repeated
  to ``--samples`` inputs, as ``Shards.split(x, 2 * workers)`` on 1 and 2 workers, against the
  one-process fit on the same data (1 torch thread everywhere). Throughput: samples per second;
  the cluster start-up is excluded (a sweep or a session keeps its cluster), the first task's
  import of torch on each worker is not (one warm-up fit runs first).

Speed-up = throughput with 2 workers / with 1. On this 2-core machine the ideal is 2.0; other
jobs on the machine lower it (the load average is recorded).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch

from workbench import processes

RESULTS = Path(__file__).resolve().parent / "results"

BODY = '''import json, pathlib, time
import numpy as np
rng = np.random.default_rng(seed)
a = rng.standard_normal((256, 256))
start = time.perf_counter()
for _ in range(repetitions):
    a = np.tanh(a @ a / 256)
pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)
pathlib.Path(output_dir, "results.json").write_text(json.dumps(
    {"seed": seed, "checksum": float(a.sum()), "seconds": time.perf_counter() - start}))
'''


def _probe_notebook(folder: Path) -> Path:
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(
        "seed: int = 0  # grid value\nrepetitions: int = 100  # work\n"
        "smoke: bool = False  # unused\noutput_dir: str = \"\"  # results\n")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(
        "import os\nos.environ['OMP_NUM_THREADS'] = '1'\n" + BODY)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    path = folder / "probe.ipynb"
    nbformat.write(notebook, path)
    return path


def _repetitions_for(seconds: float) -> int:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((256, 256))
    start = time.perf_counter()
    for _ in range(50):
        a = np.tanh(a @ a / 256)
    per = (time.perf_counter() - start) / 50
    return max(1, round(seconds / per))


def sweep_throughput(points: int, work: float, workers: int, folder: Path) -> dict:
    from workbench import cluster, sweep

    notebook = _probe_notebook(folder)
    repetitions = _repetitions_for(work)
    with cluster.connect("local", workers) as client:
        client.run(lambda: os.environ.update(OMP_NUM_THREADS="1"))
        start = time.perf_counter()
        table = sweep.sweep(notebook, {"seed": list(range(points))},
                            parameters={"repetitions": repetitions},
                            out=folder / f"sweep-{workers}", scheduler=client, progress=False)
        seconds = time.perf_counter() - start
    return {"workers": workers, "points": points, "ok": int(table["ok"].sum()),
            "seconds": seconds, "points_per_minute": 60 * points / seconds,
            "work_per_point_s": work}


def pattern_throughput(samples: int, workers: int | None, reps: int) -> dict:
    import workbench as wb
    from workbench import cluster, models
    from workbench.shards import Shards

    torch.set_num_threads(1)
    model, _ = models.zoo("digits32_vgg", progress=False)
    data = models.zoo_data("digits32_vgg")
    x = data.x_train.repeat(-(-samples // len(data.x_train)), 1, 1, 1)[:samples]
    times = []
    if workers is None:
        wb.fit_patterns(model, x[:256], progress=False)
        for _ in range(reps):
            start = time.perf_counter()
            wb.fit_patterns(model, x, progress=False)
            times.append(time.perf_counter() - start)
    else:
        with cluster.connect("local", workers) as client:
            client.run(torch.set_num_threads, 1)
            shards = Shards.split(x, 2 * workers)
            wb.fit_patterns(model, Shards.split(x[:256], workers), progress=False,
                            scheduler=client)  # warm-up: imports on the workers
            for _ in range(reps):
                start = time.perf_counter()
                wb.fit_patterns(model, shards, progress=False, scheduler=client)
                times.append(time.perf_counter() - start)
    best = sorted(times)[len(times) // 2]
    return {"workers": workers or 0, "samples": samples, "median_s": best, "times_s": times,
            "samples_per_second": samples / best}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Distributed work: sweeps and sharded pattern fits on Dask", "",
             f"{m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}, dask "
             f"{m['dask']}; load average at start {m['load_start']}, at end {m['load_end']}.",
             "", "## Sweep (points per minute)", "",
             "| workers | points | ok | seconds | points / min |", "|---|---|---|---|---|"]
    for row in report["sweep"]:
        lines.append(f"| {row['workers']} | {row['points']} | {row['ok']} | "
                     f"{row['seconds']:.1f} | {row['points_per_minute']:.1f} |")
    lines += ["", f"Speed-up with 2 workers: **{report['sweep_speedup']:.2f}x** "
              f"(each point: ~{report['sweep'][0]['work_per_point_s']:.1f} s of work plus a "
              "kernel start and an HTML export).", "",
              "## Pattern fit (samples per second)", "",
              "| workers | samples | median s | samples / s |", "|---|---|---|---|"]
    for row in report["patterns"]:
        label = "one process" if row["workers"] == 0 else str(row["workers"])
        lines.append(f"| {label} | {row['samples']} | {row['median_s']:.2f} | "
                     f"{row['samples_per_second']:.0f} |")
    lines += ["", f"Speed-up with 2 workers over 1: **{report['patterns_speedup']:.2f}x**; "
              f"2 workers over one process: {report['patterns_speedup_vs_local']:.2f}x.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import dask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: results/quick/")
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--work", type=float, default=4.0, help="seconds of work per point")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.work, args.samples, args.reps = 2, 0.5, 256, 1
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "torch": torch.__version__, "dask": dask.__version__,
               "load_start": [round(v, 2) for v in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as folder:
        sweeps = [sweep_throughput(args.points, args.work, w, Path(folder)) for w in (1, 2)]
    patterns = [pattern_throughput(args.samples, w, args.reps) for w in (None, 1, 2)]
    machine["load_end"] = [round(v, 2) for v in os.getloadavg()]
    report = {"machine": machine, "settings": vars(args) | {"out": str(out)},
              "sweep": sweeps,
              "sweep_speedup": sweeps[1]["points_per_minute"] / sweeps[0]["points_per_minute"],
              "patterns": patterns,
              "patterns_speedup": (patterns[2]["samples_per_second"]
                                   / patterns[1]["samples_per_second"]),
              "patterns_speedup_vs_local": (patterns[2]["samples_per_second"]
                                            / patterns[0]["samples_per_second"])}
    (out / "distributed.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "distributed.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'distributed.json'} and {out / 'distributed.md'}")


if __name__ == "__main__":
    # SIGTERM, SIGINT, SIGHUP: the Dask clusters and their kernels are stopped
    sys.exit(processes.run(main, "benchmarks.distributed"))
