"""Mutation testing: do the tests catch plausible one-line bugs?

Each mutation of ``benchmarks/mutants.py`` is applied to a fresh temporary copy of the
repository (``workbench/``, ``tests/``, the pytest configuration), and the mutant's test files
run there (``python -m pytest -x -q``, ``PYTHONPATH`` set to the copy) with a time limit. A
mutant is *caught* when a test fails (the first failing test is recorded) or the run times out,
and *survives* when every test passes. The score is the fraction of caught mutants among the
non-equivalent ones. The working tree is never changed.

Run from the repository root::

    python -m benchmarks.mutation                 # every mutant (~15-20 minutes on 2 cores)
    python -m benchmarks.mutation --quick         # a few mutants: benchmarks/results/quick/
    python -m benchmarks.mutation --only KEY ...  # rerun some mutants, update the results
    python -m benchmarks.mutation --check         # only check that every snippet still matches
    python -m benchmarks.mutation --list

Results: ``benchmarks/results/mutation.{md,json}``. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.mutants import MUTATIONS, Mutation

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COPIED = ("workbench", "tests", "conftest.py", "pyproject.toml", "data")
QUICK = ("engine-score-mean", "rules-guided-no-clamp", "patterns-backward-with-a-minus",
         "patterns-rho-clamp-negative")
_FAILED = re.compile(r"^(FAILED|ERROR) (.+?)(?: - .*)?$", re.MULTILINE)
_PASSED = re.compile(r"(\d+) passed")


class SnippetError(ValueError):
    """A mutation's snippet does not occur exactly once in its file."""


def mutated_source(mutation: Mutation, root: Path) -> str:
    """The file's text with the mutation applied; ``SnippetError`` unless the snippet occurs
    exactly once."""
    path = root / mutation.path
    if not path.exists():
        raise SnippetError(f"{mutation.key}: file {mutation.path} not found")
    text = path.read_text()
    count = text.count(mutation.original)
    if count != 1:
        what = "snippet not found" if count == 0 else f"snippet found {count} times"
        raise SnippetError(f"{mutation.key}: {what} in {mutation.path}: {mutation.original!r}")
    return text.replace(mutation.original, mutation.replacement)


def copy_repository(destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "cache", ".pytest_cache")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, destination / name)


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> dict:
    """Run ``tests`` in the copy at ``root``; the outcome, the first failing test, the time."""
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("WORKBENCH_CACHE", str(ROOT / "data" / "cache"))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-p", "no:randomly", "-rfE", *tests]
    start = time.perf_counter()
    try:
        process = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                                 timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"outcome": "caught", "by": f"timeout after {timeout:.0f} s",
                "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    output = process.stdout + process.stderr
    if process.returncode == 0:
        passed = _PASSED.findall(output)
        return {"outcome": "survived", "by": None, "seconds": seconds,
                "passed": int(passed[-1]) if passed else None}
    failed = _FAILED.search(output)
    if process.returncode in (1, 2) and failed:
        return {"outcome": "caught", "by": failed.group(2), "seconds": seconds}
    if process.returncode == 2:  # interrupted: e.g. an import error while collecting
        return {"outcome": "caught", "by": "collection error", "seconds": seconds,
                "detail": output[-2000:]}
    return {"outcome": "error", "by": f"pytest exit code {process.returncode}",
            "seconds": seconds, "detail": output[-2000:]}


def run_mutant(mutation: Mutation, base: Path, timeout: float) -> dict:
    try:
        source = mutated_source(mutation, base)
    except SnippetError as error:
        return {"outcome": "snippet not found", "by": str(error), "seconds": 0.0}
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.key}-") as folder:
        root = Path(folder)
        shutil.copytree(base, root, dirs_exist_ok=True)
        (root / mutation.path).write_text(source)
        return run_tests(root, mutation.tests, timeout)


def baseline(base: Path, mutations: list[Mutation], timeout: float) -> dict:
    """The unmutated copy must pass every test file the mutants use."""
    tests = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
    return run_tests(base, tests, timeout * len(tests))


def score(results: dict[str, dict]) -> dict:
    counted = [r for r in results.values() if r["outcome"] in ("caught", "survived")
               and not r.get("equivalent")]
    caught = sum(r["outcome"] == "caught" for r in counted)
    return {"caught": caught, "counted": len(counted),
            "score": caught / len(counted) if counted else float("nan"),
            "equivalent": sum(bool(r.get("equivalent")) for r in results.values()),
            "not_run": sum(r["outcome"] not in ("caught", "survived")
                           for r in results.values())}


def _area(path: str) -> str:
    return Path(path).stem if not path.startswith("workbench/methods/") else "methods"


def write_report(results: dict[str, dict], out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = score(results)
    (out / "mutation.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "mutants": results}, indent=1))
    areas: dict[str, list[dict]] = {}
    for result in results.values():
        areas.setdefault(_area(result["path"]), []).append(result)
    lines = [
        "# Mutation testing",
        "",
        "`python -m benchmarks.mutation` (see `benchmarks/README.md`): each one-line mutation "
        "of `benchmarks/mutants.py` applied to a temporary copy of the repository, its test "
        "files run with `pytest -x`. Caught: a test failed (the first one is named) or the "
        "run timed out. Equivalent mutants (they cannot change any result; the reason is "
        "given) are left out of the score.",
        "",
        f"Run {meta['started']} to {meta['finished']}, commit {meta['commit']}, "
        f"load average {meta['load_start']} at the start, {meta['load_end']} at the end.",
        "",
        f"**Score: {summary['caught']} of {summary['counted']} non-equivalent mutants caught "
        f"({100 * summary['score']:.1f} %)**; {summary['equivalent']} equivalent, "
        f"{summary['not_run']} not run (snippet not found or error).",
        "",
        "| area | mutants | caught | survived | equivalent |",
        "|---|---|---|---|---|",
    ]
    for area, items in areas.items():
        counts = [sum(1 for r in items if r.get("equivalent")),
                  sum(1 for r in items if r["outcome"] == "caught" and not r.get("equivalent")),
                  sum(1 for r in items if r["outcome"] == "survived"
                      and not r.get("equivalent"))]
        lines.append(f"| {area} | {len(items)} | {counts[1]} | {counts[2]} | {counts[0]} |")
    lines += ["", "| mutant | file | mutation | outcome | caught by | seconds |",
              "|---|---|---|---|---|---|"]
    for key, result in results.items():
        outcome = result["outcome"] + (" (equivalent)" if result.get("equivalent") else "")
        by = f"`{result['by']}`" if result.get("by") else ""
        lines.append(f"| `{key}` | `{result['path']}` | {result['description']} | {outcome} | "
                     f"{by} | {result['seconds']:.0f} |")
    equivalents = [(k, r) for k, r in results.items() if r.get("equivalent")]
    if equivalents:
        lines += ["", "## Equivalent mutants", ""]
        lines += [f"- `{k}`: {r['equivalent']}" for k, r in equivalents]
    survivors = [k for k, r in results.items()
                 if r["outcome"] == "survived" and not r.get("equivalent")]
    lines += ["", "## Survivors", ""]
    lines += [f"- `{k}`: {results[k]['description']}" for k in survivors] or ["None."]
    for rerun in meta.get("reruns", []):
        lines += ["", f"Rerun {rerun['started']} to {rerun['finished']}, commit "
                      f"{rerun['commit']}: {', '.join(f'`{k}`' for k in rerun['mutants'])}."]
    (out / "mutation.md").write_text("\n".join(lines) + "\n")


def _commit() -> str:
    """HEAD, with " + uncommitted changes" when the copied code differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", *COPIED], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes" if changes else "")


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few mutants only")
    parser.add_argument("--only", nargs="+", metavar="KEY", help="these mutants; the results "
                        "of the others are kept from the previous run in --out")
    parser.add_argument("--check", action="store_true",
                        help="check that every snippet matches the code, run nothing")
    parser.add_argument("--list", action="store_true", help="list the mutants")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds per mutant (a run past it counts as caught)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip running the unmutated tests first")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    keys = [m.key for m in MUTATIONS]
    if len(set(keys)) != len(keys):
        raise SystemExit("benchmarks/mutants.py: duplicate mutant keys")
    if args.list:
        for m in MUTATIONS:
            print(f"{m.key:42s} {m.path:34s} {m.description}")
        return 0
    if args.check:
        problems = []
        for m in MUTATIONS:
            try:
                mutated_source(m, ROOT)
            except SnippetError as error:
                problems.append(str(error))
        print("\n".join(problems) or f"all {len(MUTATIONS)} snippets match")
        return 1 if problems else 0
    selected = list(MUTATIONS)
    if args.quick:
        selected = [m for m in MUTATIONS if m.key in QUICK]
    if args.only:
        unknown = set(args.only) - set(keys)
        if unknown:
            raise SystemExit(f"unknown mutants: {sorted(unknown)}; see --list")
        selected = [m for m in MUTATIONS if m.key in args.only]
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    stale = []
    for m in selected:
        try:
            mutated_source(m, ROOT)
        except SnippetError as error:
            stale.append(str(error))
    if stale:  # reported now and at the end; the other mutants still run
        print("\n".join(stale), file=sys.stderr, flush=True)

    results: dict[str, dict] = {}
    run = {"started": time.strftime("%Y-%m-%d %H:%M"), "commit": _commit(),
           "load_start": _load(), "timeout_s": args.timeout, "python": sys.version.split()[0]}
    meta = run
    previous = out / "mutation.json"
    if args.only and previous.exists():  # update the previous run's table
        stored = json.loads(previous.read_text())
        current = {m.key for m in MUTATIONS}  # mutants retired from mutants.py leave the table
        results = {key: r for key, r in stored["mutants"].items() if key in current}
        meta = stored["meta"]
        run["mutants"] = list(args.only)
        meta.setdefault("reruns", []).append(run)  # the same dict: finished is filled in below
    with tempfile.TemporaryDirectory(prefix="mutation-base-") as folder:
        base = Path(folder)
        copy_repository(base)
        if not args.no_baseline:
            print("baseline: the unmutated tests ...", flush=True)
            result = baseline(base, selected, args.timeout)
            if result["outcome"] != "survived":
                print(f"the unmutated tests do not pass ({result['by']}); fix them first:\n"
                      f"{result.get('detail', '')}", file=sys.stderr)
                return 1
            print(f"baseline passes ({result['seconds']:.0f} s)", flush=True)
        for index, mutation in enumerate(selected, 1):
            result = run_mutant(mutation, base, args.timeout)
            entry = {key: value for key, value in asdict(mutation).items()
                     if key in ("path", "description", "equivalent", "original", "replacement",
                                "tests")}
            results[mutation.key] = {**entry, **result}
            print(f"[{index}/{len(selected)}] {mutation.key}: {result['outcome']}"
                  f"{' by ' + result['by'] if result.get('by') else ''} "
                  f"({result['seconds']:.0f} s)", flush=True)
    order = {m.key: i for i, m in enumerate(MUTATIONS)}
    results = dict(sorted(results.items(), key=lambda item: order.get(item[0], len(order))))
    run.update(finished=time.strftime("%Y-%m-%d %H:%M"), load_end=_load())
    write_report(results, out, meta)
    summary = score(results)
    print(f"score: {summary['caught']}/{summary['counted']} caught "
          f"({100 * summary['score']:.1f} %); report: {out / 'mutation.md'}")
    broken = [f"{key}: {r['outcome']}: {r['by']}" for key, r in results.items()
              if r["outcome"] not in ("caught", "survived")]
    if broken:
        print("not run (rewrite these mutations against the current code):\n"
              + "\n".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
