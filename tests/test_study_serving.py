"""The study app as it is served: participants answering at once in Chromium (with the mouse and
the keyboard) through a SIGKILL of the Voilà server and its restart, the researcher's page
guarded on a public address, and a participant's kernel that never imports PyTorch.

The participants are driven by ``benchmarks.study_load`` (the load benchmark runs them at
8 x 30); here they are few and every database property is asserted.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port

from benchmarks import study_load
from benchmarks.study_load import (Participant, answer, integrity, kill_server, open_page,
                                   served, stored_answers, synthetic_study)
from widgets.study_app import REFUSAL, researcher_allowed
from workbench import processes, study

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _launch(playwright):
    if not Path(study_load.CHROMIUM).exists():
        pytest.fail("chromium is not installed (make test installs it with apt-get)")
    return playwright.chromium.launch(executable_path=study_load.CHROMIUM, headless=True,
                                      args=study_load.BROWSER_ARGS)


async def _at_once_killed_and_restarted(database: Path, participants: int, trials: int) -> None:
    from playwright.async_api import async_playwright

    _, tokens = synthetic_study(database, trials, participants)
    people = [Participant(token, keyboard=i % 2 == 1, seed=i) for i, token in enumerate(tokens)]
    async with async_playwright() as playwright:
        browser = await _launch(playwright)
        try:
            with served(database) as (url, server):
                assert await asyncio.gather(*(open_page(browser, url, p) for p in people)) \
                    == [0] * participants
                await asyncio.gather(*(answer(p, 0, 2) for p in people))
                # the first participant's next answer is on its way when the server dies
                await people[0].page.locator(study_load.current_selector(2)).first.click()
                kill_server(server)
                assert integrity(database) == "ok"
                before = [stored_answers(database, p.token) for p in people]
                for person, stored in zip(people, before):  # every acknowledged answer is there
                    assert {k: stored[k] for k in person.given} == person.given
                assert [len(stored) for stored in before[1:]] == [2] * (participants - 1)
                assert len(before[0]) in (2, 3)
                if len(before[0]) == 3:  # the answer in flight was committed: the one clicked
                    assert before[0][2] in (0, 1)
                    people[0].given[2] = before[0][2]
            for person in people:
                await person.page.context.close()
            with served(database) as (url, _server):
                resumed = await asyncio.gather(*(open_page(browser, url, p) for p in people))
                assert resumed == [len(stored) for stored in before]  # where they stopped
                for person in people:
                    progress = await person.page.locator(".wb-study-progress").inner_text()
                    assert progress == f"Trial {len(person.given) + 1} of {trials}"
                await asyncio.gather(*(answer(p, r) for p, r in zip(people, resumed)))
                for person in people:
                    assert not (await person.page.locator(".wb-error").inner_text()).strip()
        finally:
            await browser.close()
    assert integrity(database) == "ok"
    for person in people:  # nothing lost, duplicated or misattributed
        assert stored_answers(database, person.token) == person.given
        assert sorted(person.given) == list(range(trials))
    # the keyboard participant met both tasks: keys 1 / 2 picked images, keys 1-5 rated
    assert people[1].tasks == {"forced_choice", "coherence"}


def test_participants_at_once_lose_nothing_when_the_server_is_killed_and_restarted(tmp_path):
    """3 participants x 5 trials in Chromium at the same time (the second with the keyboard, the
    others with the mouse); the Voilà server is killed (SIGKILL) after 2 answers each, with one
    more on its way, and started again: the database is sound, holds every acknowledged answer,
    each participant resumes at their first unanswered trial, and in the end each one's stored
    answers are exactly those they gave, at their positions. (``benchmarks.study_load`` runs the
    same participants at 8 x 30 and measures the latency.)"""
    asyncio.run(_at_once_killed_and_restarted(tmp_path / "study.sqlite", 3, 5))


def _get(url: str, until: str | None = None) -> str:
    """The HTML outputs of the page's cells (Voilà embeds each output as JSON, streaming the page
    as the cells run); with ``until``, read only up to that text (later cells keep running)."""
    page = ""
    with urllib.request.urlopen(url, timeout=120) as response:
        assert response.status == 200
        while chunk := response.read1(65536):
            page += chunk.decode()
            if until and until in page:
                break
    embedded = re.findall(r'<script type="application/vnd.voila.cell-output\+json">(.*?)</script>',
                          page, flags=re.S)
    assert "voila" in page and (until is None or until in page), page[-500:]
    return "\n".join(json.loads(text).get("data", {}).get("text/html", "") for text in embedded)


def _studies(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM studies").fetchone()[0]


def test_on_a_public_address_the_researcher_page_needs_its_token(tmp_path):
    """``workbench serve 05_interpretability_study --ip 0.0.0.0``: no Voilà token (participant
    links carry only their own id), and the researcher's page shows nothing of the study
    without the printed token."""
    database = tmp_path / "study.sqlite"
    _, (participant,) = synthetic_study(database, 2, 1)
    port = free_port()
    environment = {**os.environ, "WORKBENCH_SMOKE": "1", "WORKBENCH_STUDY_DB": str(database)}
    server = processes.start(
        [sys.executable, "-m", "workbench", "serve", "05_interpretability_study", "--ip",
         "0.0.0.0", "--port", str(port)], env=environment, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        token = re.search(r"Researcher's token .*: (\S+)$", line).group(1)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 90
        while True:
            try:
                refused = _get(url)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.5)
        assert REFUSAL in refused and _studies(database) == 1  # nothing of the study computed
        page = _get(f"{url}?participant={participant}")  # no Voilà token needed
        assert REFUSAL not in page and token not in page
        # with the token, the page goes on to prepare the study (read up to that cell, which
        # fits the bases: the rest of the researcher's page is tested in test_study_browser)
        assert REFUSAL not in _get(f"{url}?researcher={token}", until="voila_process(4,")
    finally:
        processes.stop(server, grace=15)


def test_the_researcher_check_reads_the_secret_and_the_query():
    variable = study.RESEARCHER_SECRET_VARIABLE
    assert researcher_allowed({})  # served locally: no secret set
    assert researcher_allowed({variable: "s3cret", "QUERY_STRING": "researcher=s3cret"})
    for query in ("", "researcher=", "researcher=s3cre", "participant=s3cret"):
        assert not researcher_allowed({variable: "s3cret", "QUERY_STRING": query})


def test_a_participant_kernel_never_imports_torch(tmp_path, monkeypatch):
    """Notebook 05 run as a participant's page (the query string Voilà gives the kernel) in a
    Jupyter kernel: the page is drawn and ``torch`` is not among the kernel's modules."""
    import nbformat
    from nbclient import NotebookClient

    database = tmp_path / "study.sqlite"
    _, (participant,) = synthetic_study(database, 2, 1)
    monkeypatch.setenv("WORKBENCH_STUDY_DB", str(database))
    monkeypatch.setenv("QUERY_STRING", f"participant={participant}")
    monkeypatch.setenv("WORKBENCH_SMOKE", "1")
    notebook = nbformat.read(ROOT / "notebooks" / "05_interpretability_study.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"))
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    shown = [o for cell in notebook.cells for o in cell.get("outputs", ())
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(shown) == 1  # the participant's app (the researcher's cells did nothing)
    assert notebook.cells[-1].outputs[0]["text"].strip() == "[]"
