"""Load test of the interpretability study app: N participants answer at once in Chromium.

Run from the repository root::

    python -m benchmarks.study_load                       # 8 participants x 30 trials
    python -m benchmarks.study_load --participants 3 --trials 5 --out /tmp/results

Writes ``benchmarks/results/study.md`` and ``study.json``. One Voilà server serves notebook
``05_interpretability_study`` (``workbench.serve.voila_command``) on a free 127.0.0.1 port over a
fresh SQLite study (``$WORKBENCH_STUDY_DB``): 2 bases x 4 directions of synthetic images, one
participant token per browser context (``workbench.study.join``), all contexts on one headless
Chromium, driven with Playwright's async API: the pages are opened one after another, then all
participants answer at the same time. Each participant answers every trial
(a seeded random answer; every other participant with the keyboard, the others with the mouse).

Measured: the trial-to-trial latency, from the click (or key press) to the next trial's buttons
(or the end) on the page, which includes committing the answer to disk; and the page's opening
time (a fresh kernel running the notebook's participant path). Checked against the database
afterwards: per participant, the stored answers are exactly those given, at their positions
(nothing lost, duplicated or misattributed). The target (p95 trial-to-trial under 300 ms at 8
participants x 30 trials) is reported as PASS/FAIL; ``tests/test_study_serving.py`` runs a small
version and asserts the database check.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench import processes, study

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOK = ROOT / "notebooks" / "05_interpretability_study.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGET_PARTICIPANTS, TARGET_TRIALS, TARGET_P95_S = 8, 30, 0.300
#: mean seconds a participant looks at a trial before answering (Borowski et al. report several
#: seconds per forced-choice trial; 1 s is a quick participant)
TARGET_THINK_S = 1.0
#: seconds a page may take to open (a kernel starts and runs the notebook) and a trial to follow
OPEN_TIMEOUT_S, TRIAL_TIMEOUT_S = 300.0, 60.0


def synthetic_study(database: Path, trials: int, participants: int,
                    seed: int = 0) -> tuple[int, list[str]]:
    """A study of 2 bases x 4 directions of random 16 x 16 images in ``database``, and one
    token per participant."""
    rng = np.random.default_rng(seed)

    def pictures(count: int) -> list[np.ndarray]:
        return [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(count)]

    engine = study.open_database(database)
    stimuli = [study.DirectionStimuli(basis, direction, pictures(6), pictures(2), pictures(2))
               for basis in ("neurons", "pca") for direction in range(4)]
    study_id = study.create_study(
        engine, study.StudyConfig("load", trials_per_participant=trials), stimuli)
    tokens = [study.join(engine, study_id, seed=seed + i) for i in range(participants)]
    engine.dispose()
    return study_id, tokens


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served(database: Path, port: int | None = None,
           timeout: float = 90.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Voilà serving the study notebook over ``database`` on 127.0.0.1; yields its URL and its
    process, and stops it and its kernels however the block ends (also after a SIGKILL of the
    server: the kernels it left are ended too)."""
    from workbench.serve import voila_command

    port = port or free_port()
    command, _ = voila_command(str(NOTEBOOK), port=port)
    environment = {**os.environ, "WORKBENCH_SMOKE": "1", "WORKBENCH_STUDY_DB": str(database)}
    log = tempfile.TemporaryFile()
    server = processes.start(command, cwd=NOTEBOOK.parent, env=environment, stdout=log,
                             stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(
                        f"voila did not start: {log.read().decode()[-2000:]}") from None
                time.sleep(0.3)
        yield url, server
    finally:
        kernels = processes.descendants(server.pid)
        processes.stop(server, grace=10)
        processes.end([k for k in kernels if k.is_running()], grace=5)
        log.close()


def kill_server(server: subprocess.Popen) -> None:
    """SIGKILL the Voilà server (not its kernels: they are orphaned, as after a crash, and ended
    when ``served`` exits)."""
    server.kill()
    server.wait()


@dataclass
class Participant:
    """One participant's page and what they did: ``given[position] = answer``."""

    token: str
    keyboard: bool
    seed: int
    given: dict[int, int] = field(default_factory=dict)
    tasks: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    open_seconds: float = 0.0
    page: object = None


def current_selector(position: int) -> str:
    return (f".wb-study-position-{position} .wb-study-choice, "
            f".wb-study-position-{position} .wb-study-rating")


async def open_page(browser, url: str, participant: Participant) -> int:
    """Open the participant's link in a new browser context; returns the position shown (the
    number of trials answered before; the total when all are done)."""
    context = await browser.new_context()
    participant.page = page = await context.new_page()
    start = time.perf_counter()
    await page.goto(f"{url}?participant={participant.token}", timeout=OPEN_TIMEOUT_S * 1000)
    progress = page.locator(".wb-study-progress")
    await page.wait_for_selector(".wb-study-choice, .wb-study-rating, .wb-study-done",
                                 timeout=OPEN_TIMEOUT_S * 1000)
    participant.open_seconds = time.perf_counter() - start
    text = await progress.inner_text()
    if await page.locator(".wb-study-done").count():
        return int(text.split("All ")[1].split()[0])
    return int(text.split()[1]) - 1  # "Trial k of n"


async def answer(participant: Participant, position: int, count: int | None = None,
                 think: float = 0.0) -> int:
    """Answer from ``position`` on, ``count`` trials (None: to the end), as the participant
    would: with the mouse or the keyboard, a seeded random answer each, after looking at the
    trial for a time drawn uniformly from [``think`` / 2, 3 ``think`` / 2] seconds; returns the
    position reached."""
    page, rng = participant.page, random.Random(f"{participant.seed}-{position}")
    answered = 0
    while count is None or answered < count:
        buttons = page.locator(current_selector(position))
        if not await buttons.count():
            break  # the end of the study
        choice = await page.locator(f".wb-study-position-{position} .wb-study-choice").count()
        value = rng.randrange(2) if choice else rng.randint(1, 5)
        if think:
            await asyncio.sleep(rng.uniform(think / 2, 3 * think / 2))
        start = time.perf_counter()
        if participant.keyboard:
            await page.keyboard.press(str(value + 1 if choice else value))
        else:
            await buttons.nth(value if choice else value - 1).click()
        participant.given[position] = value
        participant.tasks.add("forced_choice" if choice else "coherence")
        position += 1
        await page.wait_for_selector(f"{current_selector(position)}, .wb-study-done",
                                     timeout=TRIAL_TIMEOUT_S * 1000)
        participant.latencies.append(time.perf_counter() - start)
        answered += 1
    return position


def stored_answers(database: Path, token: str) -> dict[int, int]:
    """What the database holds for the participant: ``{position: answer}`` (a duplicate or a
    misattributed row would show as a count mismatch in ``check``)."""
    engine = study.open_database(database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                study.sa.select(study.trials.c.position, study.responses.c.answer)
                .join(study.responses, study.responses.c.trial_id == study.trials.c.id)
                .join(study.participants, study.participants.c.id == study.trials.c.participant_id)
                .where(study.participants.c.token == token,
                       study.responses.c.participant_id == study.participants.c.id)).all()
            total = connection.execute(
                study.sa.select(study.sa.func.count()).select_from(study.responses)
                .join(study.participants,
                      study.participants.c.id == study.responses.c.participant_id)
                .where(study.participants.c.token == token)).scalar()
    finally:
        engine.dispose()
    stored = {position: value for position, value in rows}
    if total != len(rows) or len(stored) != len(rows):
        raise AssertionError(f"{token[:6]}: {total} responses stored, {len(rows)} on its own "
                             "trials")
    return stored


def integrity(database: Path) -> str:
    """SQLite's ``PRAGMA integrity_check`` of ``database`` ("ok" when sound)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(database)) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


async def run_participants(participants: int, trials: int, database: Path,
                           think: float = 0.0) -> dict:
    """Serve a fresh study, let ``participants`` answer all ``trials`` at once (``think``: the
    mean seconds before each answer), check the database against what they did; returns the
    measurements, with the CPU seconds per answer of the server, its kernels and Chromium."""
    from playwright.async_api import async_playwright

    _, tokens = synthetic_study(database, trials, participants)
    people = [Participant(token, keyboard=i % 2 == 1, seed=i) for i, token in enumerate(tokens)]
    with served(database) as (url, server):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                       args=BROWSER_ARGS)
            try:
                # participants arrive one after another (8 kernels starting at once on a loaded
                # 2-core machine take minutes), then answer at the same time
                starts = [await open_page(browser, url, p) for p in people]
                assert starts == [0] * participants, starts
                before = cpu_seconds(server.pid)
                await asyncio.gather(*(answer(p, 0, think=think) for p in people))
                after = cpu_seconds(server.pid)
                errors = [await p.page.locator(".wb-error").inner_text() for p in people]
            finally:
                await browser.close()
    mismatches = {p.token[:6]: (len(p.given), len(stored)) for p in people
                  if (stored := stored_answers(database, p.token)) != p.given}
    latencies = sorted(s for p in people for s in p.latencies)
    return {"participants": participants, "trials": trials,
            "answers_given": sum(len(p.given) for p in people),
            "mismatches": mismatches, "page_errors": [e for e in errors if e.strip()],
            "integrity": integrity(database),
            "keyboard_tasks": set().union(*(p.tasks for p in people if p.keyboard)),
            "latency_p50_s": statistics.median(latencies),
            "latency_p95_s": latencies[max(0, int(round(0.95 * len(latencies))) - 1)],
            "latency_max_s": latencies[-1],
            "open_median_s": statistics.median(p.open_seconds for p in people),
            "think_s": think,
            "load_average_after": [round(x, 1) for x in os.getloadavg()],
            "cpu_s_per_answer": {part: (after[part] - before.get(part, 0.0)) / len(latencies)
                                 for part in after}}


def cpu_seconds(server: int) -> dict[str, float]:
    """CPU seconds used so far by the Voilà server, its kernels (all together), and Chromium
    (every process of the browser, children of this process)."""
    import psutil

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0

    kernels = processes.descendants(server)
    browser = [p for p in processes.descendants() if "chrom" in p.name().lower()]
    return {"voila server": used(psutil.Process(server)),
            "kernels": sum(used(p) for p in kernels),
            "chromium": sum(used(p) for p in browser),
            "driver (this process)": used(psutil.Process())}


def report(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(result, indent=2, default=sorted) + "\n")
    verdict = ("PASS" if result["latency_p95_s"] < TARGET_P95_S and not result["mismatches"]
               else "FAIL")
    lines = [
        "# Study app under load",
        "",
        f"{result['participants']} participants x {result['trials']} trials at once, each in "
        "its own Chromium context on one Voilà server (notebook 05, SQLite in WAL mode with "
        "synchronous=FULL); half answer with the keyboard; each looks at a trial for "
        f"{result['think_s']:g} s on average (uniform in [t/2, 3t/2]) before answering. Machine: "
        f"{os.cpu_count()} CPUs, {platform.python_version()}; `python -m benchmarks.study_load`.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| answers given | {result['answers_given']} |",
        f"| participants whose stored answers differ from those given | "
        f"{len(result['mismatches'])} |",
        f"| PRAGMA integrity_check | {result['integrity']} |",
        f"| trial-to-trial latency p50 | {1000 * result['latency_p50_s']:.0f} ms |",
        f"| trial-to-trial latency p95 | {1000 * result['latency_p95_s']:.0f} ms |",
        f"| trial-to-trial latency max | {1000 * result['latency_max_s']:.0f} ms |",
        f"| page opening (kernel start + notebook), median | {result['open_median_s']:.1f} s |",
        *(f"| CPU per answer: {part} | {1000 * seconds:.0f} ms |"
          for part, seconds in result["cpu_s_per_answer"].items()),
        "",
        f"Target: p95 trial-to-trial latency under {1000 * TARGET_P95_S:.0f} ms with nothing "
        f"lost, duplicated or misattributed: **{verdict}**.",
        "",
        f"Load average (1, 5, 15 min) at the end: {result.get('load_average_after')}.",
        "",
        "Latency is measured in the driving process, from the click or key press to the next "
        "trial's buttons on the page: it includes the answer's round trip to the kernel, its "
        "commit to disk, and the new trial's images.",
    ]
    (out / "study.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=TARGET_PARTICIPANTS)
    parser.add_argument("--trials", type=int, default=TARGET_TRIALS)
    parser.add_argument("--think", type=float, default=TARGET_THINK_S,
                        help="mean seconds a participant looks at a trial before answering")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if os.environ.get("WORKBENCH_SMOKE"):
        args.participants, args.trials = min(args.participants, 2), min(args.trials, 3)
    out = Path(os.environ.get("BENCHMARK_OUT", args.out))
    with processes.supervised(), tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(run_participants(args.participants, args.trials,
                                              Path(folder) / "study.sqlite", args.think))
    report(result, out)
    print((out / "study.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
