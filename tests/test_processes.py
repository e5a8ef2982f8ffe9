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
import threading
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


class Run:
    """``python -m workbench ARGS`` in its own session, its output in files (a process left
    behind cannot hold a pipe open); ``seen`` collects the processes of its tree."""

    def __init__(self, args: tuple[str, ...], folder: Path) -> None:
        env = {**os.environ, "WORKBENCH_SMOKE": "1", "PYTHONPATH": str(ROOT)}
        folder.mkdir(parents=True, exist_ok=True)
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "workbench", *args],
                                            cwd=ROOT, env=env, start_new_session=True,
                                            stdout=out, stderr=err)
        self.seen: dict[int, psutil.Process] = {}

    def tree(self) -> list[psutil.Process]:
        tree = processes.descendants(self.process.pid)
        self.seen.update({p.pid: p for p in tree})
        return tree

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()


@contextlib.contextmanager
def workbench(*args: str, folder: Path):
    """A ``Run``; on leaving, whatever is left of its process tree is killed (a failing test
    leaves nothing behind)."""
    run = Run(args, folder)
    try:
        yield run
    finally:
        run.tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.process.pid, signal.SIGKILL)
        for process in run.seen.values():
            with contextlib.suppress(psutil.Error):
                process.kill()
        run.process.wait(timeout=30)


def _wait_for(condition, timeout: float, what: str, run: Run):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if run.process.poll() is not None:
            pytest.fail(f"the command exited ({run.process.returncode}) before {what}: "
                        f"{run.stderr()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout} s")


def _kernels(tree: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for process in tree:
        with contextlib.suppress(psutil.Error):
            if "ipykernel_launcher" in " ".join(process.cmdline()):
                found.append(process)
    return found


def _page(port: int) -> bool:
    """Voilà serves the page (running the notebook in a kernel for it)."""
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            return response.status == 200
    return False


def _left_after_stop(run: Run, tree: list[psutil.Process], seconds: float) -> list[str]:
    """Wait for the command, then a little for each process of its tree (taken before the
    signal); the ones still running."""
    run.process.wait(timeout=seconds)
    _gone, alive = psutil.wait_procs(tree, timeout=3)
    left = []
    for process in alive:
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid}: {' '.join(process.cmdline())[:120]}")
    return left


def _sleepers(script: str) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", script], start_new_session=True)


def test_stop_ends_the_child_and_its_descendants():
    child = processes.start(["sh", "-c", "sleep 60 & sleep 60; exit 3"])
    deadline = time.monotonic() + 10
    while len(processes.descendants(child.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    tree = [psutil.Process(child.pid), *processes.descendants(child.pid)]
    assert os.getsid(child.pid) == child.pid != os.getsid(0)  # its own session
    assert processes.stop(child, grace=2) == -signal.SIGTERM
    _gone, alive = psutil.wait_procs(tree, timeout=2)
    assert not alive


def test_supervised_ends_what_started_inside_it_even_orphans_and_on_error():
    before = _sleepers("exec sleep 60")
    # processes of this test worker that predate the block (e.g. a session's Dask cluster)
    existing = {p.pid for p in processes.descendants()}
    try:
        with pytest.raises(RuntimeError, match="on purpose"):
            with processes.supervised(grace=2):
                inside = psutil.Process(_sleepers("exec sleep 60").pid)
                orphaner = _sleepers("sleep 60 & echo $!; exit 0")  # leaves its sleep behind
                orphaner.wait()
                time.sleep(0.3)
                orphans = [p for p in processes.descendants() if p.pid not in
                           (*existing, inside.pid, orphaner.pid)]
                assert orphans, "the orphaned sleep is not a descendant (no subreaper?)"
                raise RuntimeError("on purpose")
        _gone, alive = psutil.wait_procs([inside, *orphans], timeout=2)
        assert not alive
        assert before.poll() is None  # started before: not its business
    finally:
        before.kill()
        before.wait()


def test_a_stop_signal_becomes_interrupted_with_128_plus_the_signal():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    handler = signal.getsignal(signal.SIGHUP)
    with pytest.raises(processes.Interrupted) as raised:
        with processes.supervised(grace=2):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(5)
    assert raised.value.exit_status == 128 + signal.SIGHUP
    assert signal.getsignal(signal.SIGHUP) is handler  # the previous handler is back

    def sleeps() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    assert processes.run(sleeps, "test") == 128 + signal.SIGTERM


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_serve_stops_voila_and_its_kernels(sleeper, stop, tmp_path):
    port = _free_port()
    with workbench("serve", str(sleeper), "--port", str(port), folder=tmp_path) as run:
        _wait_for(lambda: _page(port), 90, "page from Voilà", run)
        tree = run.tree()
        assert _kernels(tree), "Voilà started no kernel"
        started = time.monotonic()
        run.process.send_signal(stop)
        left = _left_after_stop(run, tree, 20)
        assert run.process.returncode == 128 + stop, run.stderr()[-2000:]
        assert not left, left
        assert time.monotonic() - started < 12
        assert _port_is_free(port)
        assert f"stopped by {signal.Signals(stop).name}" in run.stderr()


@pytest.mark.slow
def test_voila_stops_when_serve_is_killed_outright(sleeper, tmp_path):
    """SIGKILL cannot be handled: Voilà gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and
    shuts its kernels down itself."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    port = _free_port()
    with workbench("serve", str(sleeper), "--port", str(port), folder=tmp_path) as run:
        _wait_for(lambda: _page(port), 90, "page from Voilà", run)
        tree = run.tree()
        assert _kernels(tree), "Voilà started no kernel"
        run.process.kill()
        left = _left_after_stop(run, tree, 30)
        assert not left, left
        assert _port_is_free(port)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_reproduce_stops_its_kernel(sleeper, stop, tmp_path):
    with workbench("reproduce", str(sleeper), "-p", "delay", "60", "--out", str(tmp_path / "out"),
                   folder=tmp_path) as run:
        _wait_for(lambda: _kernels(run.tree()), 60, "kernel", run)
        time.sleep(1.0)  # the kernel is busy in its cell
        tree = run.tree()
        run.process.send_signal(stop)
        left = _left_after_stop(run, tree, 20)
        assert run.process.returncode == 128 + stop, run.stderr()[-2000:]
        assert not left, left
        assert "Traceback" not in run.stderr()  # the kernel is not shut down mid-cell


@pytest.mark.slow
def test_a_stopped_sweep_leaves_no_process_and_resumes(sleeper, tmp_path):
    out = tmp_path / "sweep"
    args = ("sweep", str(sleeper), "--grid", "x=0..2", "-p", "delay", "1.0", "--workers", "1",
            "--out", str(out))
    with workbench(*args, folder=tmp_path / "first") as run:
        def one_done_one_running():  # the LocalCluster's worker runs one point at a time
            return list(out.glob("points/*/point.json")) and _kernels(run.tree())

        _wait_for(one_done_one_running, 120, "finished point", run)
        tree = run.tree()
        started = time.monotonic()
        run.process.send_signal(signal.SIGTERM)
        left = _left_after_stop(run, tree, 30)
        assert run.process.returncode == 128 + signal.SIGTERM, run.stderr()[-2000:]
        assert not left, left
        assert time.monotonic() - started < 15
    finished = {p.parent.name for p in out.glob("points/*/point.json")}
    assert 1 <= len(finished) < 3
    for name in finished:  # the finished points stay valid
        assert json.loads((out / "points" / name / "point.json").read_text())["ok"]
    with workbench(*args, folder=tmp_path / "again") as run:
        run.process.wait(timeout=180)
    assert run.process.returncode == 0, run.stderr()[-3000:]
    assert f"3 of 3 points ok ({len(finished)} resumed)" in run.stdout()
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
