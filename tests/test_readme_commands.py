"""Every shell command of the README runs, in smoke mode, in a temporary folder.

A command is run as a user would type it, with only these changes, made by ``smoke_command``:
``workbench`` becomes ``python -m workbench`` (this interpreter), ``demo``, ``reproduce`` and
``sweep`` get ``--smoke``, a sweep's grid keeps the first value of each parameter and runs on one
worker, ``serve`` gets a free port, and ``make`` runs in the repository with this environment,
``WORKBENCH_SMOKE=1`` and outputs redirected to the temporary folder. Each command's outputs
(the files the README says it writes) are checked; a server is probed once over HTTP and
stopped. A README command that this file does not know fails the test, so a new command
cannot go untested. The two set-up commands (``make reproduce``, ``make test``) are what CI
itself runs and are not repeated here.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from readme import REPOSITORY, SETUP_COMMANDS, shell_commands

import workbench as wb

COMMANDS = [c for c in shell_commands() if c not in SETUP_COMMANDS]
SMOKE_FLAG_COMMANDS = ("demo", "reproduce", "sweep", "audit")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _option(words: list[str], name: str, default: str | None = None) -> str | None:
    return words[words.index(name) + 1] if name in words else default


def _first_value(spec: str) -> str:
    name, values = spec.split("=", 1)
    first = re.split(r",|\.\.", values)[0]
    return f"{name}={first}"


def smoke_command(words: list[str], tmp: Path) -> list[str]:
    """The README command ``words`` as the test runs it (see the module docstring)."""
    if words[0] == "make":
        return ["make", "-C", str(REPOSITORY), "-o", f"{sys.prefix}/.installed",
                f"VENV={sys.prefix}", f"OUT={tmp / 'output'}",
                f"BENCHMARK_OUT={tmp / 'benchmarks'}", *words[1:]]
    if words[:3] == ["python", "-m", "workbench"]:
        words = ["workbench", *words[3:]]
    assert words[0] == "workbench", f"unknown README command: {shlex_join(words)}"
    command, arguments = words[1], list(words[2:])
    if command in SMOKE_FLAG_COMMANDS and "--smoke" not in arguments:
        arguments.append("--smoke")
    if command == "sweep":
        arguments = [_first_value(a) if previous == "--grid" else a
                     for previous, a in zip(["", *arguments], arguments)]
        if "--workers" in arguments:
            arguments[arguments.index("--workers") + 1] = "1"
        else:
            arguments += ["--workers", "1"]
    if command == "serve":
        arguments += ["--port", str(_free_port())]
    return [sys.executable, "-m", "workbench", command, *arguments]


def shlex_join(words: list[str]) -> str:
    import shlex

    return shlex.join(words)


def _environment() -> dict[str, str]:
    return {**os.environ, "WORKBENCH_SMOKE": "1", "PYTHONUNBUFFERED": "1"}


def _run(command: list[str], tmp: Path, timeout: float = 540) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=tmp, env=_environment(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, (
        f"{shlex_join(command)} exited {done.returncode}\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-3000:]}")
    return done


def check_demo(words, tmp, done):
    out = tmp / _option(words, "--out", "output/demo")
    results = json.loads((out / "results.json").read_text())
    assert (out / "heatmaps.html").is_file()
    slow = {"shapley_sampling", "smoothgrad"}  # left out of a smoke run
    assert set(results["methods"]) == set(wb.general_methods()) - slow
    assert results["skipped"] == {}


def check_reproduce(words, tmp, done):
    out = tmp / _option(words, "--out", "output")
    names, arguments = [], iter(words[2:])
    for word in arguments:
        skip = {"-p": 2, "--parameter": 2, "--out": 1}.get(word, 0)
        for _ in range(skip):
            next(arguments)
        if not word.startswith("-"):
            names.append(word)
    summary = json.loads((out / "summary.json").read_text())
    assert [r["ok"] for r in summary] == [True] * len(summary)
    for name in names:
        assert (out / name / "results.json").is_file()
        assert (out / name / f"{name}.html").is_file()


def check_sweep(words, tmp, done):
    out = tmp / _option(words, "--out", "output/sweep")
    table = (out / "sweep.csv").read_text().splitlines()
    assert len(table) == 2  # the header and the one point of the reduced grid
    assert (out / "summary.html").is_file()
    assert "1 of 1 points ok" in done.stdout


def check_methods(words, tmp, done):
    methods = done.stdout.split("\noption kinds:")[0]  # then the option kinds' legend
    listed = [line.split(":")[0] for line in methods.splitlines() if not line.startswith(" ")]
    assert listed == wb.methods()


def check_benchmark(words, tmp, done):
    out = tmp / "benchmarks"
    for name in ("methods", "metrics", "composites", "transformers", "contract", "load",
                 "distributed"):
        assert (out / f"{name}.md").is_file(), f"make benchmark wrote no {name}.md"


def check_audit(words, tmp, done):
    out = tmp / _option(words, "--out", "output/audit")
    results = json.loads((out / "results.json").read_text())
    tested = {(row["method"], row["test"]) for row in results["verdicts"]}
    assert tested == {(m, t) for m in results["methods"] for t in wb.auditing.verdicts.TESTS}
    assert "pass" in done.stdout or "fail" in done.stdout
    assert (out / "report.html").is_file() and (out / "verdicts.csv").is_file()


CHECKS = {"demo": check_demo, "audit": check_audit, "reproduce": check_reproduce,
          "sweep": check_sweep, "methods": check_methods, "benchmark": check_benchmark}


def _probe_server(command: list[str], tmp: Path) -> None:
    """Start the server, GET its page once (with the token it prints), stop it."""
    port = int(command[command.index("--port") + 1])
    server = subprocess.Popen(command, cwd=tmp, env=_environment(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        token = None
        if "--ip" in command:  # a public address: the token comes first on stdout
            line = server.stdout.readline()
            token = re.search(r"Token \(required on [^)]*\): (\S+)", line).group(1)
        url = f"http://127.0.0.1:{port}/" + (f"?token={token}" if token else "")
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"{shlex_join(command)} exited {server.returncode}"
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        finally:
            if server.poll() is None or _group_alive(server.pid):
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def _id(words: list[str]) -> str:
    return " ".join(words)[:60]


@pytest.mark.slow
@pytest.mark.parametrize("words", COMMANDS, ids=_id)
def test_readme_command_runs(words, tmp_path):
    command = smoke_command(words, tmp_path)
    if words[0] != "make" and command[3] == "serve":
        _probe_server(command, tmp_path)
        return
    done = _run(command, tmp_path)
    key = words[1]
    assert key in CHECKS, f"no output check for README command {shlex_join(words)}"
    CHECKS[key](words if words[0] != "python" else ["workbench", *words[3:]], tmp_path, done)


def test_smoke_command_reduces_grids_and_workers(tmp_path):
    command = smoke_command(["workbench", "sweep", "02_x", "--grid", "seed=0..4", "--grid",
                             "n=8,16", "--workers", "2"], tmp_path)
    assert command[3:] == ["sweep", "02_x", "--grid", "seed=0", "--grid", "n=8", "--workers",
                           "1", "--smoke"]


def test_every_readme_command_is_known():
    for words in COMMANDS:
        if words[0] == "make":
            assert words[1] in CHECKS, f"no output check for README command {shlex_join(words)}"
        else:
            subcommand = smoke_command(words, Path("."))[3]
            assert subcommand in (*CHECKS, "serve"), f"unknown README command {words}"
