"""Time and memory of the workbench's attribution methods against Captum and Zennit.

Run from the repository root::

    python -m benchmarks.run            # full run (~9 minutes on 2 cores): benchmarks/results/
    python -m benchmarks.run --quick    # smoke run (~1 minute), writes benchmarks/results/quick/
    python -m benchmarks.run --profile lrp_epsilon   # torch.profiler tables, workbench vs floor

See benchmarks/README.md for what is measured and how.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Must precede the first torch import (libgomp reads it when it loads). With the default
# (active, spinning) policy, 2 OpenMP threads on a 2-core machine shared with other jobs are
# slowed 5-20x and erratically whenever another process holds a core; passive waiting keeps the
# slowdown proportional to the lost CPU share. See README.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ----------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    batch: int = 16
    channels: int = 3
    image: int = 64
    widths: tuple[int, ...] = (32, 32, 64, 64, 128, 128, 128, 128)
    hidden: int = 256
    classes: int = 10
    threads: int = 2
    seed: int = 0
    warmup: int = 2              # untimed rounds before timing, single-pass methods
    warmup_heavy: int = 0        # the same for IG and occlusion: one call is 5-25 s, and
                                 # the one-time costs (a few ms) vanish in it
    reps_single: int = 11        # timed calls per contender, single-pass methods
    reps_heavy: int = 3          # timed calls per contender, integrated gradients and occlusion
    ig_steps: int = 32
    ig_quadrature: str = "gausslegendre"
    ig_batch_sizes: tuple[int, ...] = (128, 256)  # rows (path points x samples) per pass
    occlusion_window: tuple[int, ...] = (3, 8, 8)
    occlusion_stride: tuple[int, ...] = (3, 8, 8)
    occlusion_per_eval: int = 16  # perturbations per forward pass (x batch = rows per pass)
    lrp_epsilon: float = 1e-6     # workbench and zennit; captum LRP keeps its default rules
    memory: bool = True
    memory_repeats: int = 1       # fresh subprocesses per contender; the median is reported
    memory_jobs: int = 2          # memory subprocesses running at once
    malloc_mmap_threshold: int | None = 65536  # for the memory subprocesses, see README


FULL = Settings()
QUICK = Settings(batch=4, warmup=1, warmup_heavy=1, reps_single=5, reps_heavy=3,
                 ig_batch_sizes=(32, 64))
HEAVY_GROUPS = ("integrated_gradients", "occlusion")

SINGLE_BACKWARD = ("guided_backprop", "lrp_epsilon", "deeplift_rescale")
#: the floors: plain autograd on the inputs as given (NCHW) and on a channels-last copy
FLOORS = ("torch", "torch_cl")
FLOOR_RATIO_TARGET = 1.3


# ----------------------------------------------------------------------------------------------
# Model and data


class VGG8(nn.Module):
    """VGG-style CNN: 8 conv 3x3 + ReLU layers, max pooling after every second, 2 linear layers.

    Every ReLU is its own module (not in place) and the flatten is functional, so that
    Captum's hook-based methods (DeepLift, LRP, GuidedBackprop) accept the model as it is.
    """

    def __init__(self, s: Settings):
        super().__init__()
        layers: list[nn.Module] = []
        channels = s.channels
        for i, width in enumerate(s.widths):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = s.image // 2 ** (len(s.widths) // 2)
        self.classifier = nn.Sequential(
            nn.Linear(channels * side * side, s.hidden), nn.ReLU(), nn.Linear(s.hidden, s.classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def setup(s: Settings):
    """Seeded model (eval mode), inputs and target classes (the model's predictions)."""
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    np.random.seed(s.seed)
    model = VGG8(s).eval()
    generator = torch.Generator().manual_seed(s.seed + 1)
    inputs = torch.randn(s.batch, s.channels, s.image, s.image, generator=generator)
    with torch.no_grad():
        target = model(inputs).argmax(dim=1)
    return model, inputs, target


# ----------------------------------------------------------------------------------------------
# Contenders


@dataclass
class Contender:
    row: str          # the method row of the report, e.g. "lrp_epsilon"
    library: str      # "workbench", "captum", "zennit" or "torch" (the floor)
    run: Callable[[], torch.Tensor]
    group: str        # contenders of a group are timed round-robin together
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.row}/{self.library}"


def _floor(model, inputs, target, channels_last: bool = False):
    """The floor: one forward and one plain ``torch.autograd.grad`` of the target logits; with
    ``channels_last`` on a channels-last copy of the inputs (the copy is timed), as the
    workbench runs conv nets on the CPU (``workbench.layout``)."""
    def run():
        x = inputs.detach()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        score = model(x).gather(1, target[:, None]).sum()
        (gradient,) = torch.autograd.grad(score, x)
        return gradient
    return run


def _zennit(model, composite, inputs, output_grad):
    """One Zennit attribution, hooks registered and removed inside the call like Captum's."""
    from zennit.attribution import Gradient

    def run():
        with Gradient(model=model, composite=composite) as attributor:
            _, relevance = attributor(inputs, output_grad)
        return relevance
    return run


def build_contenders(s: Settings, model: nn.Module, inputs: torch.Tensor,
                     target: torch.Tensor) -> list[Contender]:
    """Every contender. Each library gets its own copy of the model (same weights), so that
    attributes or hooks one library leaves behind cannot affect another."""
    import captum.attr as ca
    import zennit.composites as zc
    import zennit.rules as zr
    import zennit.types as zt

    import workbench as wb

    copies = {name: copy.deepcopy(model) for name in ("torch", "workbench", "captum", "zennit",
                                                      "captum_lrp")}
    m_torch, m_wb, m_ca, m_zn = (copies[k] for k in ("torch", "workbench", "captum", "zennit"))
    one_hot = torch.nn.functional.one_hot(target, s.classes).to(inputs.dtype)

    def wb_run(method, **options):
        return lambda: wb.attribute(m_wb, inputs, method, target=target, **options)

    def floor(group):
        return [Contender("gradient", "torch", _floor(m_torch, inputs, target), group,
                          "plain torch.autograd.grad of the target logits"),
                Contender("gradient", "torch_cl", _floor(m_torch, inputs, target, True), group,
                          "the same on a channels-last copy of the inputs (copy timed)")]

    out: list[Contender] = []
    # gradient ----------------------------------------------------------------------------------
    saliency = ca.Saliency(m_ca)
    out += [
        *floor("gradient"),
        Contender("gradient", "workbench", wb_run("gradient"), "gradient"),
        Contender("gradient", "captum", lambda: saliency.attribute(inputs, target=target,
                                                                   abs=False), "gradient",
                  "captum.attr.Saliency(abs=False)"),
    ]
    # guided backprop ---------------------------------------------------------------------------
    guided = ca.GuidedBackprop(m_ca)
    out += [
        *floor("guided_backprop"),
        Contender("guided_backprop", "workbench", wb_run("guided_backprop"), "guided_backprop"),
        Contender("guided_backprop", "captum", lambda: guided.attribute(inputs, target=target),
                  "guided_backprop", "captum.attr.GuidedBackprop"),
        Contender("guided_backprop", "zennit",
                  _zennit(m_zn, zc.GuidedBackprop(), inputs, one_hot), "guided_backprop",
                  "zennit GuidedBackprop composite, attr_output = one_hot"),
    ]
    # deeplift ----------------------------------------------------------------------------------
    deeplift = ca.DeepLift(m_ca)
    zeros = torch.zeros_like(inputs)
    out += [
        *floor("deeplift_rescale"),
        Contender("deeplift_rescale", "workbench", wb_run("deeplift_rescale", baseline=0.0),
                  "deeplift_rescale"),
        Contender("deeplift_rescale", "captum",
                  lambda: deeplift.attribute(inputs, baselines=zeros, target=target),
                  "deeplift_rescale",
                  "captum.attr.DeepLift (Rescale; Captum has its own max-pool rule, which agrees "
                  "with the workbench's here)"),
    ]
    # lrp epsilon -------------------------------------------------------------------------------
    composite = zc.LayerMapComposite(layer_map=[
        (zt.Activation, zr.Pass()),
        (zt.Convolution, zr.Epsilon(epsilon=s.lrp_epsilon)),
        (torch.nn.Linear, zr.Epsilon(epsilon=s.lrp_epsilon)),
    ])
    lrp = ca.LRP(copies["captum_lrp"])
    out += [
        *floor("lrp_epsilon"),
        Contender("lrp_epsilon", "workbench", wb_run("lrp_epsilon", epsilon=s.lrp_epsilon),
                  "lrp_epsilon"),
        Contender("lrp_epsilon", "zennit",
                  _zennit(m_zn, composite, inputs, lambda output: one_hot * output),
                  "lrp_epsilon",
                  "zennit LayerMapComposite: Epsilon on Conv/Linear, Pass on ReLU; "
                  "attr_output = one_hot * output"),
        Contender("lrp_epsilon", "captum", lambda: lrp.attribute(inputs, target=target),
                  "lrp_epsilon",
                  "captum.attr.LRP, default rules (epsilon 1e-9 on conv/linear AND max-pool); "
                  "runs two forward passes"),
    ]
    # integrated gradients ----------------------------------------------------------------------
    ig = ca.IntegratedGradients(m_ca)
    for size in s.ig_batch_sizes:
        row = f"integrated_gradients[batch={size}]"
        out += [
            Contender(row, "workbench",
                      wb_run("integrated_gradients", baseline=0.0, steps=s.ig_steps,
                             batch_size=size, quadrature=s.ig_quadrature),
                      "integrated_gradients"),
            Contender(row, "captum",
                      (lambda size=size: ig.attribute(
                          inputs, baselines=zeros, target=target, n_steps=s.ig_steps,
                          method=s.ig_quadrature, internal_batch_size=size)),
                      "integrated_gradients",
                      f"captum IntegratedGradients, internal_batch_size={size}"),
        ]
    # occlusion ---------------------------------------------------------------------------------
    occlusion = ca.Occlusion(m_ca)
    per_eval = s.occlusion_per_eval
    out += [
        Contender("occlusion", "workbench",
                  wb_run("occlusion", window=s.occlusion_window, stride=s.occlusion_stride,
                         baseline=0.0, batch_size=per_eval * s.batch),
                  "occlusion"),
        Contender("occlusion", "captum",
                  lambda: occlusion.attribute(
                      inputs, sliding_window_shapes=s.occlusion_window,
                      strides=s.occlusion_stride, baselines=0.0, target=target,
                      perturbations_per_eval=per_eval),
                  "occlusion", f"captum Occlusion, perturbations_per_eval={per_eval}"),
    ]
    return out


ROW_NOTES = {
    "deeplift_rescale": "runs the baseline once (batch 1: it is shared) to record each "
                        "pre-activation, then the inputs with the Rescale multipliers: one "
                        "backward pass over N samples",
    "lrp_epsilon": "captum LRP applies epsilon to max-pooling too and normalises by the output "
                   "(rescaled back); it runs two forward passes",
}


# ----------------------------------------------------------------------------------------------
# Timing


def _quiet():
    warnings.filterwarnings("ignore")


def time_group(contenders: list[Contender], warmup: int, reps: int,
               agree: dict[str, dict]) -> dict[str, list[float]]:
    """Round-robin timing: each repetition calls every contender once, the starting contender
    rotating from one repetition to the next; ``warmup`` untimed rounds first. The results of
    the first round (warm-up, or the first timed one when ``warmup`` is 0) are compared with the
    workbench's of the same row (``agree``)."""
    def check(outputs: dict[str, torch.Tensor]) -> None:
        for c in contenders:
            reference = outputs.get(f"{c.row}/workbench")
            if c.library != "workbench" and reference is not None:
                agree[c.key] = agreement(reference, outputs[c.key])

    for round_ in range(warmup):
        outputs = {c.key: c.run().detach().clone() for c in contenders}
        if round_ == 0:
            check(outputs)
        del outputs
    times: dict[str, list[float]] = {c.key: [] for c in contenders}
    first: dict[str, torch.Tensor] = {}
    n = len(contenders)
    for rep in range(reps):
        order = contenders[rep % n:] + contenders[:rep % n]
        for c in order:
            gc.collect()
            start = time.perf_counter()
            result = c.run()
            elapsed = time.perf_counter() - start
            if rep == 0 and warmup == 0:
                first[c.key] = result.detach()
            del result
            times[c.key].append(elapsed)
    if first:
        check(first)
    return times


def summary(values: list[float]) -> dict:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median_s": float(median), "iqr_s": float(q3 - q1), "q1_s": float(q1),
            "q3_s": float(q3), "min_s": float(min(values)), "n": len(values),
            "times_s": [round(v, 6) for v in values]}


def agreement(reference: torch.Tensor, other: torch.Tensor) -> dict:
    """How close ``other`` is to the workbench's result: relative max error and the smallest
    per-sample cosine similarity."""
    ref, oth = reference.flatten(1).double(), other.detach().flatten(1).double()
    scale = ref.abs().max().clamp_min(1e-30)
    cosine = torch.nn.functional.cosine_similarity(ref, oth, dim=1)
    return {"rel_max_err": float((ref - oth).abs().max() / scale),
            "min_cosine": float(cosine.min())}


# ----------------------------------------------------------------------------------------------
# Memory (fresh subprocess per contender)


CORE_SOURCES = ("attribution.py", "engine.py", "rules.py", "ops.py", "checks.py", "registry.py",
                "methods/*.py")


def source_fingerprint(package: Path | None = None, core: bool = False) -> str:
    """Short hash of the workbench's source files (of the imported package by default), so that
    results name the code they measured; ``core``: only the attribution engine and methods."""
    import hashlib
    if package is None:
        import workbench
        package = Path(workbench.__file__).parent
    paths = ({p for pattern in CORE_SOURCES for p in package.glob(pattern)} if core
             else set(package.rglob("*.py")))
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


#: the snapshot the command line took before importing the workbench (see ``snapshot_sources``)
_SNAPSHOT: Path | None = None


def snapshot_sources() -> Path:
    """Copy ``workbench/`` and ``benchmarks/`` to a temporary folder and import the workbench
    from there, in this process and (as their working directory) in the memory subprocesses.

    Others edit the tree while benchmarks run; without a snapshot, a long run would time one
    version of the workbench and measure the memory of another.
    """
    import shutil
    import tempfile
    if "workbench" in sys.modules:
        raise RuntimeError("workbench is already imported; cannot snapshot it")
    folder = Path(tempfile.mkdtemp(prefix="workbench-benchmark-"))
    ignore = shutil.ignore_patterns("__pycache__", "results")
    shutil.copytree(ROOT / "workbench", folder / "workbench", ignore=ignore)
    shutil.copytree(HERE, folder / "benchmarks", ignore=ignore)
    sys.path.insert(0, str(folder))
    import workbench
    if Path(workbench.__file__).parent != folder / "workbench":
        raise RuntimeError(f"workbench imported from {workbench.__file__}, not the snapshot")
    return folder


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_increase_mib(call) -> float:
    """Increase of peak RSS (MiB) over one ``call()``, after a warm-up call (one-time
    allocations) whose result is freed; the result of the measured call is freed too."""
    call()
    gc.collect()
    before = _status_kib("VmRSS")
    if not (_reset_peak_rss() and _status_kib("VmHWM") is not None):
        raise RuntimeError("needs Linux >= 4.0 (/proc/self/clear_refs resets VmHWM)")
    result = call()
    del result
    return (_status_kib("VmHWM") - before) / 1024


def memory_child(s: Settings, key: str) -> dict:
    """Run one contender once in this (fresh) process; report the increase of peak RSS."""
    _quiet()
    fingerprint = source_fingerprint()
    model, inputs, target = setup(s)
    contender = {c.key: c for c in build_contenders(s, model, inputs, target)}[key]
    with torch.no_grad():                       # warm-up forward (not of the contender)
        model(inputs)
    peaks = []
    for _ in range(2):  # the first call in the process, then a second (steady state)
        gc.collect()
        rss_before = _status_kib("VmRSS")
        if not (_reset_peak_rss() and _status_kib("VmHWM") is not None):
            raise RuntimeError("needs Linux >= 4.0 (/proc/self/clear_refs resets VmHWM)")
        result = contender.run()
        peaks.append((_status_kib("VmHWM") - rss_before) / 1024)
        del result
    return {"peak_increase_mib": peaks[1], "first_call_peak_increase_mib": peaks[0],
            "rss_before_mib": (rss_before or 0) / 1024, "workbench_source": fingerprint}


def measure_memory(s: Settings, keys: list[str], quick: bool,
                   cwd: Path = ROOT) -> dict[str, dict]:
    """Peak-RSS increase of each contender, each run in ``memory_repeats`` fresh subprocesses.

    Peak RSS is per process, so ``memory_jobs`` children run side by side (they share only time).
    """
    from concurrent.futures import ThreadPoolExecutor

    env = dict(os.environ)
    if s.malloc_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(s.malloc_mmap_threshold)

    def child(key: str) -> dict:
        command = [sys.executable, "-m", "benchmarks.run", "--memory-child", key]
        if quick:
            command.append("--quick")
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1:]}
        return json.loads(done.stdout.strip().splitlines()[-1])

    results: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=s.memory_jobs) as pool:
        pending = {key: [pool.submit(child, key) for _ in range(s.memory_repeats)]
                   for key in keys}
        for key in keys:
            runs = [future.result() for future in pending[key]]
            good = [r for r in runs if "peak_increase_mib" in r]
            results[key] = {
                "peak_increase_mib": (statistics.median(r["peak_increase_mib"] for r in good)
                                      if good else None),
                "first_call_peak_increase_mib": (
                    statistics.median(r["first_call_peak_increase_mib"] for r in good)
                    if good else None),
                "runs_mib": [r["peak_increase_mib"] for r in good],
                "errors": [r["error"] for r in runs if "error" in r],
                "workbench_source": sorted({r["workbench_source"] for r in runs
                                            if "workbench_source" in r}),
            }
            print(f"  memory {key:45s} {results[key]['peak_increase_mib']!s:>10.10} MiB "
                  f"(runs {[round(g, 1) for g in results[key]['runs_mib']]}; first call "
                  f"{results[key]['first_call_peak_increase_mib']!s:.6} MiB)", flush=True)
    return results


# ----------------------------------------------------------------------------------------------
# Report


def machine_info(s: Settings) -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    import captum
    import zennit  # noqa: F401
    return {
        "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "captum": captum.__version__,
        "zennit": version("zennit"), "numpy": np.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_start": os.getloadavg(),
    }


def paired_ratio(numerator: list[float], denominator: list[float]) -> dict:
    """Median and quartiles of the per-round ratios: both were timed in the same round-robin
    round, moments apart, so slow changes of the machine's load cancel out."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "n": len(ratios)}


def _resolved(paired: dict, threshold: float) -> bool:
    """Whether the interquartile range of the paired ratios lies on one side of ``threshold``."""
    return paired["q3"] <= threshold or paired["q1"] > threshold


def build_report(s: Settings, contenders: list[Contender], timings: dict[str, dict],
                 memory: dict[str, dict], agree: dict[str, dict]) -> dict:
    group_of_row = {c.row: c.group for c in contenders if c.library == "workbench"}
    methods = {}
    for row, group in group_of_row.items():
        members = [c for c in contenders if c.row == row and c.group == group]
        libs = {}
        for c in members:
            if c.library in FLOORS and row != "gradient":
                continue
            t = timings[f"{group}:{c.key}"]
            libs[c.library] = {**t, "note": c.note,
                               "peak_rss_increase_mib": memory.get(c.key, {}).get(
                                   "peak_increase_mib"),
                               "memory_runs_mib": memory.get(c.key, {}).get("runs_mib"),
                               "first_call_peak_rss_increase_mib": memory.get(c.key, {}).get(
                                   "first_call_peak_increase_mib"),
                               "agreement_with_workbench": agree.get(c.key)}
        floors = {name: timings.get(f"{group}:gradient/{name}") for name in FLOORS}
        floor_memory = {name: memory.get(f"gradient/{name}", {}).get("peak_increase_mib")
                        for name in FLOORS}
        wb = libs["workbench"]
        peers = {k: v for k, v in libs.items() if k not in ("workbench", *FLOORS)
                 and v["median_s"] is not None}
        entry: dict = {"libraries": libs, "group": group}
        if peers:
            fastest = min(peers, key=lambda k: peers[k]["median_s"])
            entry["fastest_peer"] = fastest
            entry["ratio_to_fastest_peer"] = wb["median_s"] / peers[fastest]["median_s"]
            entry["target_not_slower_than_fastest_peer"] = entry["ratio_to_fastest_peer"] <= 1.0
            paired = paired_ratio(wb["times_s"], peers[fastest]["times_s"])
            entry["paired_ratio_to_fastest_peer"] = paired
            entry["target_not_slower_than_fastest_peer_resolved"] = _resolved(paired, 1.0)
            mem_peers = {k: v["peak_rss_increase_mib"] for k, v in peers.items()
                         if v["peak_rss_increase_mib"] is not None}
            if mem_peers and wb["peak_rss_increase_mib"] is not None:
                lowest = min(mem_peers, key=mem_peers.get)
                entry["lowest_memory_peer"] = lowest
                entry["memory_ratio_to_lowest_peer"] = (
                    wb["peak_rss_increase_mib"] / max(mem_peers[lowest], 1e-9))
                entry["target_memory_not_higher"] = (
                    wb["peak_rss_increase_mib"] <= mem_peers[lowest])
        entry["floors"] = {}
        for name, floor in floors.items():
            if floor is None:
                continue
            entry["floors"][name] = {
                "median_s": floor["median_s"], "iqr_s": floor["iqr_s"],
                "times_s": floor["times_s"], "peak_rss_increase_mib": floor_memory[name],
                "ratio": wb["median_s"] / floor["median_s"],
                "paired_ratio": paired_ratio(wb["times_s"], floor["times_s"])}
        if row in SINGLE_BACKWARD:
            # the target is against plain autograd on the batch as given ("torch");
            # against the channels-last floor it is the like-for-like engine overhead
            for floor in entry["floors"].values():
                floor["target_within_1.3x"] = floor["ratio"] <= FLOOR_RATIO_TARGET
                floor["target_within_1.3x_resolved"] = _resolved(floor["paired_ratio"],
                                                                  FLOOR_RATIO_TARGET)
            if "torch" in entry["floors"]:
                entry["target_within_1.3x_floor"] = entry["floors"]["torch"]["target_within_1.3x"]
        if row in ROW_NOTES:
            entry["note"] = ROW_NOTES[row]
        methods[row] = entry
    return methods


def _fmt_s(lib: dict | None) -> str:
    if lib is None:
        return "-"
    return f"{lib['median_s'] * 1e3:.1f} ± {lib['iqr_s'] * 1e3:.1f}"


def _loads(values) -> str:
    return "-" if values is None else "/".join(f"{v:.1f}" for v in values)


def _fmt_mib(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _mark(value, resolved: bool | None = None) -> str:
    if value is None:
        return "-"
    return ("PASS" if value else "FAIL") + ("?" if resolved is False else "")


def _fmt_paired(paired: dict | None) -> str:
    if paired is None:
        return "-"
    return f"{paired['median']:.2f} [{paired['q1']:.2f}, {paired['q3']:.2f}]"


def markdown(report: dict) -> str:
    m, st = report["machine"], report["settings"]
    lines = [
        "# Attribution methods: workbench vs Captum and Zennit",
        "",
        f"CPU: {m['cpu']} ({m['cpus_usable']} usable cores), torch {m['torch']} "
        f"({m['torch_threads']} threads), captum {m['captum']}, zennit {m['zennit']}, "
        f"Python {m['python']}, OMP_WAIT_POLICY={m.get('omp_wait_policy')}. Load average at start "
        f"{_loads(m['load_average_start'])}, at end {_loads(m.get('load_average_end'))}. "
        f"Workbench source {m.get('workbench_source')} (engine and methods "
        f"{m.get('workbench_core_source')})"
        + (" (snapshot taken at the start)" if m.get("workbench_snapshot") else "")
        + ("" if m.get("workbench_source_consistent", True) else
           " (**changed during the run: results mix code versions**)") + ".",
        f"Model: VGG8 (conv widths {st['widths']}, max pooling after every 2nd conv, "
        f"linear {st['hidden']} -> {st['classes']}); inputs {st['batch']}x{st['channels']}x"
        f"{st['image']}x{st['image']} float32, CPU. "
        f"Times: median ± IQR in ms of {st['reps_single']} (single-pass) / {st['reps_heavy']} "
        f"(IG, occlusion) round-robin repetitions after {st['warmup']} / {st['warmup_heavy']} "
        "warm-up rounds. "
        "Ratios: of the medians; 'paired': median [quartiles] of the per-round ratios (timed "
        "moments apart in the same round). PASS/FAIL compare the ratio of medians with the target; "
        "'?' marks a target that the paired quartiles do not resolve (they straddle it). "
        "The floors: plain autograd on the inputs as given (NCHW) and on a channels-last copy "
        "(the layout the workbench runs conv nets in on the CPU): the 1.3x target "
        "is against the first (plain autograd as a user calls it); against the second it "
        "measures the engine's own overhead, like for like. "
        "Memory: increase of peak RSS in MiB during the second of two calls in a fresh process "
        "(steady state; the first call, with one-time allocations, in its own column; median of "
        f"{st['memory_repeats']} processes).",
        "",
        "## Time",
        "",
        "| method | workbench | captum | zennit | floor | floor, channels-last | "
        "wb / fastest peer | paired | wb / floor | paired | ≤1.3x floor | "
        "wb / floor, channels-last | paired | ≤1.3x floor, channels-last | ≤ fastest peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, e in report["methods"].items():
        libs, floors = e["libraries"], e.get("floors", {})
        ratio_peer = (f"{e['ratio_to_fastest_peer']:.2f} ({e['fastest_peer']})"
                      if "ratio_to_fastest_peer" in e else "-")
        peer_resolved = e.get("target_not_slower_than_fastest_peer_resolved")

        def against(name, floors=floors):
            floor = floors.get(name)
            if floor is None:
                return "- | - | -"
            mark = _mark(floor.get("target_within_1.3x"), floor.get("target_within_1.3x_resolved"))
            return f"{floor['ratio']:.2f} | {_fmt_paired(floor['paired_ratio'])} | {mark}"

        lines.append(
            f"| {row} | {_fmt_s(libs.get('workbench'))} | {_fmt_s(libs.get('captum'))} | "
            f"{_fmt_s(libs.get('zennit'))} | {_fmt_s(floors.get('torch'))} | "
            f"{_fmt_s(floors.get('torch_cl'))} | {ratio_peer} | "
            f"{_fmt_paired(e.get('paired_ratio_to_fastest_peer'))} | {against('torch')} | "
            f"{against('torch_cl')} | "
            f"{_mark(e.get('target_not_slower_than_fastest_peer'), peer_resolved)} |")
    lines += [
        "",
        "## Peak memory (increase of peak RSS, MiB)",
        "",
        "| method | workbench | captum | zennit | floor | floor, channels-last | "
        "wb / lowest peer | memory ≤ lowest peer | first call: workbench | captum | zennit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, e in report["methods"].items():
        libs, floors = e["libraries"], e.get("floors", {})

        def mem(name, libs=libs, key="peak_rss_increase_mib"):
            return _fmt_mib(libs[name][key]) if name in libs else "-"

        def first(name, libs=libs):
            return mem(name, libs, "first_call_peak_rss_increase_mib")

        def floor_mem(name, floors=floors):
            return _fmt_mib(floors[name]["peak_rss_increase_mib"]) if name in floors else "-"

        ratio = (f"{e['memory_ratio_to_lowest_peer']:.3f} ({e['lowest_memory_peer']})"
                 if "memory_ratio_to_lowest_peer" in e else "-")
        lines.append(
            f"| {row} | {mem('workbench')} | {mem('captum')} | {mem('zennit')} | "
            f"{floor_mem('torch')} | {floor_mem('torch_cl')} | {ratio} | "
            f"{_mark(e.get('target_memory_not_higher'))} | {first('workbench')} | "
            f"{first('captum')} | {first('zennit')} |")
    lines += ["", "## Agreement of each peer with the workbench (same inputs and targets)", "",
              "| method | library | rel. max error | min per-sample cosine |", "|---|---|---|---|"]
    for row, e in report["methods"].items():
        for lib, v in e["libraries"].items():
            a = v.get("agreement_with_workbench")
            if lib != "workbench" and a:
                lines.append(f"| {row} | {lib} | {a['rel_max_err']:.2e} | {a['min_cosine']:.6f} |")
    lines += ["", "## Notes", ""]
    for row, e in report["methods"].items():
        if "note" in e:
            lines.append(f"- **{row}**: {e['note']}.")
    for row, e in report["methods"].items():
        for lib, v in e["libraries"].items():
            if v.get("note"):
                lines.append(f"- {row} / {lib}: {v['note']}.")
    lines += ["", f"Total benchmark wall time: {report['wall_time_s']:.0f} s.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Profiling aid


def profile(s: Settings, row: str) -> None:
    """torch.profiler tables (self CPU time) for the workbench's ``row`` and the floor, and a
    cProfile summary of the workbench call (Python-side overhead)."""
    import cProfile
    import pstats

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model, inputs, target = setup(s)
    contenders = {c.key: c for c in build_contenders(s, model, inputs, target)}
    for key in (f"{row}/workbench", "gradient/torch"):
        c = contenders[key]
        for _ in range(3):
            c.run()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                c.run()
        print(f"\n=== {key}: torch.profiler, 5 calls ===")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    c = contenders[f"{row}/workbench"]
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(5):
        c.run()
    pr.disable()
    print(f"\n=== {row}/workbench: cProfile, 5 calls ===")
    pstats.Stats(pr).sort_stats("tottime").print_stats(25)


# ----------------------------------------------------------------------------------------------
# Main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 4, fewer repetitions (results/quick/)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--only", nargs="+", default=None,
                        help="time only these groups (gradient, guided_backprop, ...)")
    parser.add_argument("--profile", metavar="ROW", default=None,
                        help="print profiles of the workbench's ROW and the floor, then exit")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed repetitions, single-pass methods")
    parser.add_argument("--reps-heavy", type=int, default=None,
                        help="timed repetitions, integrated gradients and occlusion")
    parser.add_argument("--no-snapshot", action="store_true",
                        help="import workbench/ in place instead of from a snapshot copy")
    parser.add_argument("--memory-child", metavar="KEY", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    if args.no_memory:
        s = dataclasses.replace(s, memory=False)
    if args.reps:
        s = dataclasses.replace(s, reps_single=args.reps)
    if args.reps_heavy:
        s = dataclasses.replace(s, reps_heavy=args.reps_heavy)
    _quiet()
    if args.memory_child:
        print(json.dumps(memory_child(s, args.memory_child)))
        return
    if args.profile:
        profile(s, args.profile)
        return
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    snapshot = None if args.no_snapshot else (_SNAPSHOT or snapshot_sources())
    fingerprint = source_fingerprint()
    model, inputs, target = setup(s)
    info = machine_info(s)
    contenders = build_contenders(s, model, inputs, target)
    groups: dict[str, list[Contender]] = {}
    for c in contenders:
        groups.setdefault(c.group, []).append(c)
    if args.only:
        groups = {g: cs for g, cs in groups.items() if g in args.only}
        contenders = [c for c in contenders if c.group in groups]

    agree: dict[str, dict] = {}
    timings: dict[str, dict] = {}
    for name, members in groups.items():
        heavy = name in HEAVY_GROUPS
        reps = s.reps_heavy if heavy else s.reps_single
        t0 = time.perf_counter()
        times = time_group(members, s.warmup_heavy if heavy else s.warmup, reps, agree)
        for c in members:
            timings[f"{name}:{c.key}"] = summary(times[c.key])
        print(f"{name} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for c in members:
            t = timings[f"{name}:{c.key}"]
            print(f"  {c.key:45s} {t['median_s'] * 1e3:9.1f} ms  IQR {t['iqr_s'] * 1e3:7.1f}",
                  flush=True)

    memory: dict[str, dict] = {}
    if s.memory:
        print("memory (fresh process per contender)", flush=True)
        memory = measure_memory(s, list(dict.fromkeys(c.key for c in contenders)), args.quick,
                                cwd=snapshot or ROOT)

    info["load_average_end"] = os.getloadavg()
    seen = {fingerprint}
    for entry in memory.values():
        seen.update(entry.get("workbench_source", []))
    info["workbench_source"] = fingerprint
    info["workbench_core_source"] = source_fingerprint(core=True)
    info["workbench_source_consistent"] = len(seen) == 1
    info["workbench_snapshot"] = snapshot is not None
    info["workbench_source_now"] = source_fingerprint(ROOT / "workbench")
    if snapshot is not None:
        import shutil
        shutil.rmtree(snapshot, ignore_errors=True)
    if len(seen) > 1:
        print(f"WARNING: workbench/ changed during the run ({sorted(seen)}): the results mix "
              "code versions; run again", flush=True)
    report = {
        "machine": info,
        "settings": {**dataclasses.asdict(s), "floor_ratio_target": FLOOR_RATIO_TARGET,
                     "single_backward_methods": list(SINGLE_BACKWARD)},
        "memory_method": (
            "peak RSS increase during a call in a fresh subprocess, two calls in a row (the "
            "second is reported; the first, with its one-time allocations such as imports and "
            "caches, is kept as first_call_peak_rss_increase_mib): before each, the kernel's "
            "peak-RSS mark (VmHWM) is reset through /proc/self/clear_refs, and the increase "
            "is VmHWM after the call minus VmRSS before it; glibc's mmap threshold is pinned "
            "with MALLOC_MMAP_THRESHOLD_ so freed large tensors leave RSS at once"),
        "methods": build_report(s, contenders, timings, memory, agree),
    }
    report["wall_time_s"] = time.perf_counter() - started
    (out / "methods.json").write_text(json.dumps(report, indent=2))
    (out / "methods.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'methods.json'} and {out / 'methods.md'}")


if __name__ == "__main__":
    if not {"--no-snapshot", "--memory-child", "--profile"} & set(sys.argv):
        _SNAPSHOT = snapshot_sources()  # before anything imports workbench (processes does)
    from workbench import processes

    sys.exit(processes.run(main, "benchmarks.run"))  # its memory subprocesses end with it
