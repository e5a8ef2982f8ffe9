"""Stopping the commands that start processes: ``workbench serve``, ``reproduce`` and ``sweep``
each run in a subprocess (in its own session, so a failing test leaves no orphans) and get
SIGTERM, SIGINT or SIGHUP while they work; within a few seconds no process they started may
remain, the port must be free, the exit status must be 128 + signal, and a stopped sweep must
resume. Also: the quiet progress line and the reproduce output without kernel and nbconvert
warnings."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import write_notebook

from workbench import processes, progress

ROOT = Path(__file__).resolve().parent.parent

PARAMETERS = '''x: int = 0  # a grid value
delay: float = 0.0  # seconds to sleep
smoke: bool = False  # fast run
output_dir: str = ""  # where results go
'''
BODY = '''import json, pathlib, time
time.sleep(delay)
pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)
pathlib.Path(output_dir, "results.json").write_text(json.dumps({"x": x, "square": x * x}))
'''


@pytest.fixture(scope="module")
def sleeper(tmp_path_factory):
    return write_notebook(tmp_path_factory.mktemp("processes") / "sleeper.ipynb", BODY,
                          PARAMETERS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def workbench(*args: str, **options):
    """``python -m workbench ARGS`` in its own session; on leaving, whatever is left of its
    process tree is killed (a failing test leaves nothing behind)."""
    env = {**os.environ, "WORKBENCH_SMOKE": "1", "PYTHONPATH": str(ROOT)}
    command = subprocess.Popen([sys.executable, "-m", "workbench", *args], cwd=ROOT, env=env,
                               start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, **options)
    seen: dict[int, psutil.Process] = {}
    try:
        yield command, seen
    finally:
        seen.update({p.pid: p for p in processes.descendants(command.pid)})
        with contextlib.suppress(ProcessLookupError):
            os.killpg(command.pid, signal.SIGKILL)
        for process in seen.values():
            with contextlib.suppress(psutil.Error):
                process.kill()
        command.communicate(timeout=30)


def _wait_for(condition, timeout: float, what: str, command: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if command.poll() is not None:
            _out, err = command.communicate()
            pytest.fail(f"the command exited ({command.returncode}) before {what}: {err[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout} s")


def _kernels(tree: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for process in tree:
        with contextlib.suppress(psutil.Error):
            if "ipykernel_launcher" in " ".join(process.cmdline()):
                found.append(process)
    return found


def _stopped_within(command: subprocess.Popen, tree: list[psutil.Process], seconds: float):
    """Wait for the command, then for each process of its tree (taken before the signal)."""
    _out, err = command.communicate(timeout=seconds)
    _gone, alive = psutil.wait_procs(tree, timeout=3)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return err, [f"{p.pid}: {' '.join(p.cmdline())[:120]}" for p in alive]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_serve_stops_voila_and_its_kernels(sleeper, stop):
    port = _free_port()
    with workbench("serve", str(sleeper), "--port", str(port)) as (command, seen):
        url = f"http://127.0.0.1:{port}/"

        def page():  # Voilà runs the notebook in a kernel for each page it serves
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=30) as response:
                    return response.status == 200
            return False

        _wait_for(page, 90, "page from Voilà", command)
        tree = processes.descendants(command.pid)
        seen.update({p.pid: p for p in tree})
        assert _kernels(tree), "Voilà started no kernel"
        started = time.monotonic()
        command.send_signal(stop)
        err, alive = _stopped_within(command, tree, 20)
        assert command.returncode == 128 + stop, err[-2000:]
        assert not alive, alive
        assert time.monotonic() - started < 12
        assert _port_is_free(port)
        assert f"stopped by {signal.Signals(stop).name}" in err


@pytest.mark.slow
def test_voila_stops_when_serve_is_killed_outright(sleeper):
    """SIGKILL cannot be handled: Voilà gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and
    shuts its kernels down itself."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    port = _free_port()
    with workbench("serve", str(sleeper), "--port", str(port)) as (command, seen):
        url = f"http://127.0.0.1:{port}/"
        _wait_for(lambda: urllib.request.urlopen(url, timeout=30).status == 200
                  if not _port_is_free(port) else False, 90, "page from Voilà", command)
        tree = processes.descendants(command.pid)
        seen.update({p.pid: p for p in tree})
        assert _kernels(tree)
        command.kill()
        _err, alive = _stopped_within(command, tree, 10)
        assert not alive, alive
        assert _port_is_free(port)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_reproduce_stops_its_kernel(sleeper, stop, tmp_path):
    with workbench("reproduce", str(sleeper), "-p", "delay", "60", "--out",
                   str(tmp_path)) as (command, seen):
        kernels = _wait_for(lambda: _kernels(processes.descendants(command.pid)), 60,
                            "kernel", command)
        time.sleep(1.0)  # the kernel is busy in its cell
        tree = processes.descendants(command.pid)
        seen.update({p.pid: p for p in tree})
        command.send_signal(stop)
        err, alive = _stopped_within(command, tree + kernels, 20)
        assert command.returncode == 128 + stop, err[-2000:]
        assert not alive, alive


@pytest.mark.slow
def test_a_stopped_sweep_leaves_no_process_and_resumes(sleeper, tmp_path):
    out = tmp_path / "sweep"
    args = ("sweep", str(sleeper), "--grid", "x=0..2", "-p", "delay", "1.0", "--workers", "1",
            "--out", str(out))
    with workbench(*args) as (command, seen):
        def one_done_one_running():  # the LocalCluster's worker runs one point at a time
            tree = processes.descendants(command.pid)
            seen.update({p.pid: p for p in tree})
            return list(out.glob("points/*/point.json")) and _kernels(tree)

        _wait_for(one_done_one_running, 120, "finished point", command)
        tree = processes.descendants(command.pid)
        seen.update({p.pid: p for p in tree})
        started = time.monotonic()
        command.send_signal(signal.SIGTERM)
        err, alive = _stopped_within(command, tree, 30)
        assert command.returncode == 128 + signal.SIGTERM, err[-2000:]
        assert not alive, alive
        assert time.monotonic() - started < 15
    finished = {p.parent.name for p in out.glob("points/*/point.json")}
    assert 1 <= len(finished) < 3
    for name in finished:  # the finished points stay valid
        assert json.loads((out / "points" / name / "point.json").read_text())["ok"]
    with workbench(*args) as (command, _seen):
        stdout, err = command.communicate(timeout=180)
    assert command.returncode == 0, err[-3000:]
    assert f"3 of 3 points ok ({len(finished)} resumed)" in stdout
    squares = [row.split(",") for row in (out / "sweep.csv").read_text().splitlines()]
    column = squares[0].index("results.square")
    assert [int(row[column]) for row in squares[1:]] == [0, 1, 4]


def test_a_log_gets_one_final_progress_line():
    log = io.StringIO()  # not a terminal
    with progress.bar(total=3, desc="sweep probe", unit="point", file=log) as points:
        for _ in range(3):
            points.set_postfix(failed=0, refresh=False)
            points.update()
            assert log.getvalue() == ""
    assert log.getvalue().count("\n") == 1 and "\r" not in log.getvalue()
    assert log.getvalue().startswith("sweep probe: 100%|") and "3/3" in log.getvalue()
    assert "failed=0" in log.getvalue()
    log = io.StringIO()
    assert list(progress.bar(["a", "b"], desc="notebooks", file=log)) == ["a", "b"]
    assert log.getvalue().count("\n") == 1 and "2/2" in log.getvalue()
    assert progress.bar(range(2), file=io.StringIO(), disable=True).disable


PLOTLY_OUTPUT = '''
from IPython.display import display
display({"application/vnd.plotly.v1+json": {"data": [], "layout": {}}}, raw=True)
'''


@pytest.mark.slow
def test_reproduce_prints_the_bar_and_one_line_per_notebook_without_warnings(tmp_path):
    """ipykernel warns about plain TCP on each start (the kernel's socket is encrypted now);
    nbconvert warns about each plotly output it cannot export to HTML (filtered)."""
    notebook = write_notebook(tmp_path / "figure.ipynb", BODY + PLOTLY_OUTPUT, PARAMETERS)
    result = subprocess.run([sys.executable, "-m", "workbench", "reproduce", str(notebook),
                             "--smoke", "--out", str(tmp_path / "out")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, start_new_session=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("figure.ipynb: ok in ")
    assert "without encryption" not in result.stderr
    assert "not able to be represented" not in result.stderr
    assert result.stderr.count("\n") == 1 and "\r" not in result.stderr  # one progress line
    assert result.stderr.startswith("notebooks: 100%|") and "1/1" in result.stderr
