"""What-if measurements for the rule-based methods that miss their targets.

Times (and measures the memory of) the workbench as it is against the same workbench with
*candidate* changes to its ReLU and epsilon rules, patched in-process for the duration of each
call only. Nothing in ``workbench/`` is modified; the patches are prototypes that exist to put
numbers on the suggestions in README.md, not a fix. Every variant's result is checked against
the unpatched workbench.

    python -m benchmarks.whatif            # ~2-3 minutes; writes benchmarks/results/whatif.json
    python -m benchmarks.whatif --quick

Variants (all ReLU-specific, out-of-place ReLU only; anything else falls back to the engine).
The workbench's own rules change while this is written; the comparisons are against the code
imported at the start (its hash is in the output), as of a6d4781cc6b1:

- ``lrp_epsilon+lean_factor``: ReLUs keep the ordinary derivative (as the workbench now does:
  ``relu(z)/z = 1{z>0}``); the epsilon factor ``|z| / (|z| + eps)`` is computed once in the
  forward pass in three kernels (abs, add, div into the sum; no clamp unless epsilon is 0, no
  fourth allocation) and applied by a tensor hook, like the workbench's.
- ``guided_backprop+threshold``: ``threshold_backward(clamp(g, 0), relu(z))`` on the ReLU
  output that autograd keeps anyway, instead of ``clamp(g) * (output > 0)`` (a bool mask
  promoted to float: compare, copy, multiply, and two full-size temporaries).
- ``deeplift_rescale+fast_multiplier``: the Rescale multiplier of a ReLU is computed in the
  forward pass for the input half only (N rows, saved instead of the 2N pre-activations), with
  ``1{z>0}`` where ``|z - z0|`` is tiny instead of a nested ``torch.autograd.grad`` (which, in
  float32, runs at every layer of this model: a few of the 0.1-2 M differences per layer are
  below 1.2e-6 by chance); the baseline half's gradient is zero without a ``cat``.
- ``deeplift_rescale+split_baseline`` (a separate implementation with forward hooks, specific to
  this model): the baseline runs first under ``no_grad`` recording each ReLU's ``z0``; the input
  then runs alone with the Rescale multiplier, so the backward pass covers N samples, not 2N.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see run.py

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import run as bench  # noqa: E402

TINY = 10 * torch.finfo(torch.float32).eps


# ----------------------------------------------------------------------------------------------
# Candidate rule implementations


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre):
        output = torch.relu(pre)
        ctx.save_for_backward(output)
        return output

    @staticmethod
    def backward(ctx, grad):
        (output,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad.clamp(min=0), output, 0)


class _RescaleReLUPaired(torch.autograd.Function):
    """Batch = [inputs; baselines]; multiplier for the input half, computed in forward."""

    @staticmethod
    def forward(ctx, pre):
        output = torch.relu(pre)
        half = pre.shape[0] // 2
        delta_in = pre[:half] - pre[half:]
        delta_out = output[:half] - output[half:]
        small = delta_in.abs() <= TINY
        multiplier = delta_out.div_(delta_in.masked_fill_(small, 1.0))
        multiplier = torch.where(small, (pre[:half] > 0).to(pre.dtype), multiplier)
        ctx.save_for_backward(multiplier)
        return output

    @staticmethod
    def backward(ctx, grad):
        (multiplier,) = ctx.saved_tensors
        half = multiplier.shape[0]
        result = torch.zeros_like(grad)
        torch.mul(grad[:half], multiplier, out=result[:half])
        return result


class _RescaleReLU(torch.autograd.Function):
    """Inputs only; the baseline's pre-activation ``z0`` is given."""

    @staticmethod
    def forward(ctx, pre, pre_baseline):
        output = torch.relu(pre)
        delta_in = pre - pre_baseline
        small = delta_in.abs() <= TINY
        multiplier = (output - torch.relu(pre_baseline)).div_(delta_in.masked_fill_(small, 1.0))
        multiplier = torch.where(small, (pre > 0).to(pre.dtype), multiplier)
        ctx.save_for_backward(multiplier)
        return output

    @staticmethod
    def backward(ctx, grad):
        (multiplier,) = ctx.saved_tensors
        return grad * multiplier, None


def _epsilon_factor(output: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z / (z + eps sign z) = |z| / (|z| + eps)`` in three kernels and two allocations: the
    engine's version also clamps the denominator (needed only for epsilon = 0) and allocates a
    fourth tensor; on this model that costs 28 ms per call against 14 ms here."""
    magnitude = output.abs()
    denominator = magnitude + epsilon
    if epsilon <= 0:
        denominator.clamp_(min=torch.finfo(output.dtype).tiny)
    return torch.div(magnitude, denominator, out=denominator)


def _fast_epsilon_apply(rule, call):
    """The epsilon rule as a gradient hook on the layer output with a precomputed factor (no
    copy of the output, one saved tensor)."""
    output = call()
    if output.requires_grad:
        with torch.no_grad():
            factor = _epsilon_factor(output, rule.epsilon)
        output.register_hook(lambda grad: grad * factor)
    return output


@contextlib.contextmanager
def patched_rules():
    """Route out-of-place ReLUs and the epsilon rule through the candidates above."""
    from workbench import engine, ops
    from workbench.ops import OpKind
    from workbench.rules import EpsilonRule, GuidedRule, RatioRule, RescaleRule

    original_activation = engine.RuleMode._handlers[OpKind.ACTIVATION]
    original_epsilon = EpsilonRule.apply

    def activation(self, func, args, kwargs, layer):
        rule = self.rules.activation
        if (rule is not None and ops.activation_family(func) == "relu"
                and not ops.is_inplace(func, args, kwargs) and len(args) == 1
                and set(kwargs) <= {"inplace"}):
            if isinstance(rule, RatioRule):
                return func(*args, **kwargs)
            if isinstance(rule, GuidedRule):
                return _GuidedReLU.apply(args[0])
            if isinstance(rule, RescaleRule):
                return _RescaleReLUPaired.apply(args[0])
        return original_activation(self, func, args, kwargs, layer)

    def epsilon_apply(self, call):
        return _fast_epsilon_apply(self, call)

    engine.RuleMode._handlers[OpKind.ACTIVATION] = activation
    EpsilonRule.apply = epsilon_apply
    try:
        yield
    finally:
        engine.RuleMode._handlers[OpKind.ACTIVATION] = original_activation
        EpsilonRule.apply = original_epsilon


def deeplift_split_baseline(model: nn.Module, inputs, baseline, target):
    """DeepLIFT Rescale with the baseline run separately without autograd (ReLU modules)."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    recorded: list[torch.Tensor] = []
    handles = [r.register_forward_hook(lambda _m, i, _o: recorded.append(i[0])) for r in relus]
    try:
        with torch.no_grad():
            model(baseline)
    finally:
        for h in handles:
            h.remove()
    pending = iter(recorded)
    handles = [r.register_forward_hook(lambda _m, i, _o: _RescaleReLU.apply(i[0], next(pending)))
               for r in relus]
    try:
        x = inputs.detach().requires_grad_()
        output = model(x)
    finally:
        for h in handles:
            h.remove()
    (gradient,) = torch.autograd.grad(output.gather(1, target[:, None]).sum(), x)
    return (inputs - baseline) * gradient


# ----------------------------------------------------------------------------------------------
# Contenders


def contenders(s: bench.Settings, model, inputs, target) -> dict[str, callable]:
    import copy

    import workbench as wb

    m_wb, m_torch, m_split = (copy.deepcopy(model) for _ in range(3))
    zeros = torch.zeros_like(inputs)

    def workbench(method, patched, **options):
        def run():
            with patched_rules() if patched else contextlib.nullcontext():
                return wb.attribute(m_wb, inputs, method, target=target, **options)
        return run

    return {
        "floor": bench._floor(m_torch, inputs, target),
        "floor_2n": bench._floor_paired(m_torch, inputs, zeros, target),
        "lrp_epsilon": workbench("lrp_epsilon", False, epsilon=s.lrp_epsilon),
        "lrp_epsilon+lean_factor": workbench("lrp_epsilon", True,
                                                        epsilon=s.lrp_epsilon),
        "guided_backprop": workbench("guided_backprop", False),
        "guided_backprop+threshold": workbench("guided_backprop", True),
        "deeplift_rescale": workbench("deeplift_rescale", False, baseline=0.0),
        "deeplift_rescale+fast_multiplier": workbench("deeplift_rescale", True, baseline=0.0),
        "deeplift_rescale+split_baseline":
            lambda: deeplift_split_baseline(m_split, inputs, zeros, target),
    }


REFERENCE = {"lrp_epsilon+lean_factor": "lrp_epsilon",
             "guided_backprop+threshold": "guided_backprop",
             "deeplift_rescale+fast_multiplier": "deeplift_rescale",
             "deeplift_rescale+split_baseline": "deeplift_rescale"}


def memory_child(s: bench.Settings, name: str) -> dict:
    # the same imports as run.py's memory children: importing torch._dynamo (torchvision, hence
    # Zennit, does) changes the workbench's deeplift_rescale peak by ~33 MiB (see README)
    import captum.attr  # noqa: F401
    import zennit.composites  # noqa: F401
    model, inputs, target = bench.setup(s)
    run = contenders(s, model, inputs, target)[name]
    with torch.no_grad():
        model(inputs)
    gc.collect()
    rss_before = bench._status_kib("VmRSS")
    if not bench._reset_peak_rss():
        return {"error": "cannot reset VmHWM"}
    result = run()
    increase = bench._status_kib("VmHWM") - rss_before
    del result
    return {"peak_increase_mib": increase / 1024}


def main(argv=None):
    parser = argparse.ArgumentParser(description="what-if timings of candidate rule changes")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    s = bench.QUICK if args.quick else bench.FULL
    bench._quiet()
    if args.memory_child:
        print(json.dumps(memory_child(s, args.memory_child)))
        return
    snapshot = bench.snapshot_sources()
    fingerprint = bench.source_fingerprint()
    model, inputs, target = bench.setup(s)
    runs = contenders(s, model, inputs, target)
    outputs = {name: run().detach().clone() for name, run in runs.items()}
    agreement = {name: bench.agreement(outputs[ref], outputs[name])
                 for name, ref in REFERENCE.items()}
    del outputs
    names = list(runs)
    reps = args.reps or (5 if args.quick else 15)
    times = {n: [] for n in names}
    for rep in range(reps):
        for n in names[rep % len(names):] + names[:rep % len(names)]:
            gc.collect()
            start = time.perf_counter()
            result = runs[n]()
            times[n].append(time.perf_counter() - start)
            del result
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(s.malloc_mmap_threshold))
    memory = {}
    for n in names:
        command = [sys.executable, "-m", "benchmarks.whatif", "--memory-child", n]
        if args.quick:
            command.append("--quick")
        done = subprocess.run(command, cwd=snapshot, env=env, capture_output=True, text=True)
        memory[n] = (json.loads(done.stdout.strip().splitlines()[-1]).get("peak_increase_mib")
                     if done.returncode == 0 else None)
    floor = float(np.median(times["floor"]))
    floor_2n = float(np.median(times["floor_2n"]))
    import shutil
    shutil.rmtree(snapshot, ignore_errors=True)
    report = {"settings": {"batch": s.batch, "reps": reps, "workbench_source": fingerprint,
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                           "load_average_end": os.getloadavg()},
              "variants": {}}
    def paired(name, other):
        return bench.paired_ratio(times[name], times[other])["median"]

    print(f"{'variant':34s} {'median ms':>9s} {'IQR':>6s} {'/floor':>7s} {'/floor2N':>8s} "
          f"{'/unpatched':>10s} {'MiB':>5s}  agreement   (ratios: paired medians)")
    for n in names:
        q1, med, q3 = np.percentile(times[n], [25, 50, 75])
        entry = {"median_s": float(med), "iqr_s": float(q3 - q1),
                 "ratio_to_floor": float(med) / floor, "ratio_to_floor_2n": float(med) / floor_2n,
                 "paired_ratio_to_floor": bench.paired_ratio(times[n], times["floor"]),
                 "paired_ratio_to_floor_2n": bench.paired_ratio(times[n], times["floor_2n"]),
                 "paired_ratio_to_unpatched": (bench.paired_ratio(times[n], times[REFERENCE[n]])
                                               if n in REFERENCE else None),
                 "peak_rss_increase_mib": memory[n], "agreement": agreement.get(n),
                 "times_s": [round(t, 6) for t in times[n]]}
        report["variants"][n] = entry
        a = agreement.get(n)
        versus = f"{paired(n, REFERENCE[n]):10.2f}" if n in REFERENCE else " " * 10
        print(f"{n:34s} {med * 1e3:9.1f} {(q3 - q1) * 1e3:6.1f} {paired(n, 'floor'):7.2f} "
              f"{paired(n, 'floor_2n'):8.2f} {versus} {memory[n] or float('nan'):5.0f}  "
              + (f"rel err {a['rel_max_err']:.1e}, cos {a['min_cosine']:.6f}" if a else ""))
    out = bench.HERE / "results" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    (out / "whatif.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'whatif.json'}")


if __name__ == "__main__":
    main()
