"""The Explorer as a user meets it: Voila serves the notebook, headless Chromium opens it, the
method is changed in the picker, and the heat map must change with no widget showing an error.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "00_explorer.ipynb"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def voila_url():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (make test installs it with apt-get)")
    from workbench.serve import voila_command

    port = _free_port()
    command, token = voila_command(str(NOTEBOOK), port=port)
    assert token is None
    env = {**os.environ, "WORKBENCH_SMOKE": "1"}
    server = subprocess.Popen(command, cwd=NOTEBOOK.parent, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"voila exited: {server.stdout.read().decode()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("voila did not start within 90 s")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def page(voila_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.goto(voila_url, timeout=120_000)
            yield tab
        finally:
            browser.close()


def _wait_ready(page, timeout_ms: int = 120_000):
    page.wait_for_function(
        "() => { const s = document.querySelector('.wb-status');"
        " return s && s.innerText.startsWith('ready'); }", timeout=timeout_ms)


def _heatmap_picture(page) -> bytes:
    page.wait_for_timeout(500)  # let plotly finish drawing
    return page.locator(".wb-heatmaps").screenshot()


def test_changing_the_method_changes_the_heat_map(page):
    _wait_ready(page)
    before = _heatmap_picture(page)
    status_before = page.locator(".wb-status").inner_text()
    dropdown = page.locator(".wb-method-picker .wb-method-dropdown select")
    assert dropdown.input_value() != "deconvnet"
    dropdown.select_option("deconvnet")
    page.wait_for_function(
        "(old) => { const s = document.querySelector('.wb-status');"
        " return s && s.innerText.startsWith('ready') && s.innerText !== old; }",
        arg=status_before, timeout=60_000)
    page.wait_for_function(  # plotly redraws the subplot titles with the new method
        "() => document.querySelector('.wb-heatmaps').textContent.includes('deconvnet')",
        timeout=30_000)
    deadline = time.monotonic() + 30
    after = _heatmap_picture(page)
    while after == before and time.monotonic() < deadline:
        after = _heatmap_picture(page)
    assert after != before
    errors = [e.strip() for e in page.locator(".wb-error").all_inner_texts()]
    assert not any(errors), errors
    assert "Traceback" not in page.content()
