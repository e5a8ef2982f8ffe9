"""Child processes that end with the command that started them: on exit, on error and on
SIGTERM, SIGINT or SIGHUP.

``supervised()`` (the command line runs every command in it) turns those signals into
``Interrupted`` (a ``KeyboardInterrupt`` that carries the signal) in the main thread, so the
``finally`` blocks run: a Dask cluster closes, papermill shuts its kernel down, Voilà is asked to
stop. On the way out it ends the processes started meanwhile that are still running (SIGTERM,
``grace`` seconds, SIGKILL; multiprocessing's resource tracker exits by itself right after). On
Linux the process is a child subreaper meanwhile, so grandchildren orphaned by a child that died
first (Voilà's kernels run in their own sessions) are still found and ended. A second signal,
or a shutdown that takes longer than ``3 * grace``, kills them at once and exits with
``128 + signal``.

``start(command)`` runs a child in its own session (only this process signals it) which, on
Linux, gets SIGTERM when this process dies, even by SIGKILL (``PR_SET_PDEATHSIG``);
``stop(process)`` asks it to stop and ends it and its descendants.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import psutil

#: the signals that mean "stop": from a service manager, a terminal (Ctrl-C) or a hang-up
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP")
                if hasattr(signal, name))
#: seconds a process gets between SIGTERM and SIGKILL
GRACE_SECONDS = 5.0

#: set while a stop signal is being handled (``stopping()``)
_stopping = threading.Event()

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``exit_status`` is ``128 + signum`` (the shell's convention)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def stopping() -> bool:
    """Whether a stop signal is being handled: a kernel or a server may then be ended at once
    instead of gracefully (nobody waits for its last words)."""
    return _stopping.is_set()


@functools.cache
def _prctl_function() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), looked up once: a child between fork and exec must not load
    libraries (another thread may have held the loader's lock at the fork)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _prctl(option: int, value: int | ctypes.c_int) -> bool:
    """Linux ``prctl(option, value)``; False where it is unavailable or refused."""
    prctl = _prctl_function()
    if prctl is None:
        return False
    argument = ctypes.byref(value) if isinstance(value, ctypes.c_int) else ctypes.c_ulong(value)
    return prctl(option, argument, 0, 0, 0) == 0


def _is_subreaper() -> bool:
    flag = ctypes.c_int(0)
    return _prctl(_PR_GET_CHILD_SUBREAPER, flag) and bool(flag.value)


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Every living descendant of ``pid`` (default: this process)."""
    try:
        return psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []


def end(processes: Iterable[psutil.Process], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to each of ``processes``, up to ``grace`` seconds for them to exit, then SIGKILL
    to the rest (and their exit is waited for, so no zombie is left behind)."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _gone, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace)


def _leftovers(earlier: set[psutil.Process]) -> list[psutil.Process]:
    """The descendants still running, but for the children in ``earlier`` (and their own
    descendants) and multiprocessing's resource tracker (a Dask cluster starts one): it
    ignores SIGTERM and exits by itself when this process exits."""
    found = []
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return []
    for child in children:
        if child in earlier:
            continue
        with contextlib.suppress(psutil.Error):
            for process in [child, *child.children(recursive=True)]:
                if "multiprocessing.resource_tracker" not in " ".join(process.cmdline()):
                    found.append(process)
    return found


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=1.0)


def _die_with_parent(parent: int) -> None:
    """In a child between fork and exec: SIGTERM when ``parent`` dies (Linux)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def start(command: Sequence[str], **options) -> subprocess.Popen:
    """``subprocess.Popen(command, **options)`` in a new session (a terminal's Ctrl-C reaches
    only this process, which stops the child itself), dying with this process on Linux."""
    parent = os.getpid()
    preexec = (lambda: _die_with_parent(parent)) if _prctl_function() is not None else None
    return subprocess.Popen(list(command), start_new_session=True, preexec_fn=preexec,
                            **options)


def stop(process: subprocess.Popen, grace: float = GRACE_SECONDS) -> int:
    """End ``process`` and every descendant; return its exit status.

    The process gets SIGTERM and ``grace`` seconds to stop by itself (Voilà shuts its kernels
    down then); the descendants it leaves behind (seen before and after) then get SIGTERM,
    ``grace`` seconds, and SIGKILL.
    """
    tree = descendants(process.pid)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            tree += descendants(process.pid)
            process.kill()
            process.wait()
    end([p for p in {p.pid: p for p in tree}.values() if p.is_running()], grace)
    return process.returncode


@contextlib.contextmanager
def supervised(grace: float = GRACE_SECONDS) -> Iterator[None]:
    """Stop signals become ``Interrupted`` here; on exit every process started meanwhile (and
    every descendant of one) is ended.

    Outside the main thread (where Python cannot handle signals) only the ending of the
    processes applies.
    """
    main = threading.current_thread() is threading.main_thread()
    earlier = set(psutil.Process().children())
    was_subreaper = _is_subreaper()
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    received: list[int] = []

    def hard_stop(signum: int) -> None:
        _kill(_leftovers(earlier))
        os._exit(128 + signum)

    def watchdog(signum: int) -> None:
        if not finished.wait(3 * grace):
            hard_stop(signum)

    def on_signal(signum, frame) -> None:
        if received:  # a second signal: stop waiting
            hard_stop(signum)
        received.append(signum)
        _stopping.set()
        threading.Thread(target=watchdog, args=(signum,), daemon=True,
                         name="shutdown-watchdog").start()
        raise Interrupted(signum)

    def while_ending(signum, frame) -> None:
        hard_stop(received[0] if received else signum)

    finished = threading.Event()
    previous = {s: signal.signal(s, on_signal) for s in SIGNALS} if main else {}
    try:
        yield
    finally:
        for s in previous:
            signal.signal(s, while_ending)
        try:
            end(_leftovers(earlier), grace)
        finally:
            finished.set()
            _stopping.clear()
            if not was_subreaper:
                _prctl(_PR_SET_CHILD_SUBREAPER, 0)
            for s, handler in previous.items():
                signal.signal(s, handler)


def run(function: Callable[[], int | None], name: str) -> int:
    """``function()`` under ``supervised()``: its exit status, or ``128 + signal`` (with a line
    on stderr) when a stop signal ended it. For a program's ``main``."""
    try:
        with supervised():
            return function() or 0
    except Interrupted as interrupted:
        print(f"{name}: stopped by {interrupted}", file=sys.stderr)
        return interrupted.exit_status
