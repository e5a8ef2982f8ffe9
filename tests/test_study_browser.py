"""The interpretability study as people use it: Voilà serves notebook 05, the researcher's page
makes a participant link, a participant opens it in Chromium and answers every trial with the
mouse, and the database holds exactly those answers."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import voila_server

from workbench import study
from workbench.study_results import responses_table

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_interpretability_study.ipynb"

pytestmark = pytest.mark.slow


def test_a_participant_answers_every_trial_in_the_browser(tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (make test installs it with apt-get)")
    database = tmp_path / "study.sqlite"
    monkeypatch.setenv("WORKBENCH_STUDY_DB", str(database))
    with voila_server(str(NOTEBOOK), NOTEBOOK.parent) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            researcher = browser.new_page()
            researcher.goto(url, timeout=180_000)
            researcher.get_by_text("New participant link").click(timeout=180_000)
            link = researcher.locator(".wb-study-links a").first
            link.wait_for(timeout=30_000)
            href = link.get_attribute("href")
            assert href.startswith(url) and "?participant=" in href
            participant = browser.new_page()
            participant.goto(href, timeout=180_000)
            answered = 0
            while True:  # the buttons of the trial at position `answered`, or the end
                current = (f".wb-study-position-{answered} .wb-study-choice, "
                           f".wb-study-position-{answered} .wb-study-rating")
                participant.wait_for_selector(f"{current}, .wb-study-done", timeout=90_000)
                if participant.locator(".wb-study-done").count():
                    break
                progress = participant.locator(".wb-study-progress").inner_text()
                assert progress.startswith(f"Trial {answered + 1} of "), progress
                participant.locator(current).first.click()
                answered += 1
            assert "All 6 trials done" in participant.locator(".wb-study-progress").inner_text()
            assert not participant.locator(".wb-error").inner_text().strip()
        finally:
            browser.close()
    engine = study.open_database(database)
    table = responses_table(engine, 1)
    assert answered == 6 and len(table) == 6
    assert sorted(table["position"]) == list(range(6))
