"""The Explorer as a user meets it: Voila serves the notebook, headless Chromium opens it, the
method is changed in the picker, and the heat map must change with no widget showing an error.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import voila_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "00_explorer.ipynb"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def voila_url():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (make test installs it with apt-get)")
    with voila_server(str(NOTEBOOK), NOTEBOOK.parent) as url:
        yield url


@pytest.fixture
def page_errors() -> list[str]:
    """JavaScript errors of the page (e.g. "[anywidget] Failed to initialize model.")."""
    return []


@pytest.fixture
def page(voila_url, page_errors):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.on("pageerror", lambda error: page_errors.append(str(error)))
            tab.goto(voila_url, timeout=120_000)
            yield tab
        finally:
            browser.close()


def _wait_ready(page, timeout_ms: int = 120_000):
    page.wait_for_function(
        "() => { const s = document.querySelector('.wb-status');"
        " return s && s.innerText.startsWith('ready'); }", timeout=timeout_ms)


# Each heat map tile: its title, its image's blob URL, and the image's decoded width (0 until
# the browser has decoded a valid picture).
TILES_JS = """
() => [...document.querySelectorAll('.wb-heatmaps .wb-heatmap-tile')].map(tile => {
  const image = tile.querySelector('img.wb-heatmap-image');
  return {title: tile.querySelector('.wb-heatmap-title').textContent.trim(),
          src: image ? image.src : '', width: image && image.complete ? image.naturalWidth : 0};
})
"""

# The tiles once column 1 shows `method` with a decoded picture other than `old_src`.
COLUMN_SHOWN_JS = """
({method, old_src}) => {
  const tiles = [...document.querySelectorAll('.wb-heatmaps .wb-heatmap-tile')];
  if (tiles.length < 2) return false;
  const title = tiles[1].querySelector('.wb-heatmap-title').textContent.trim();
  const image = tiles[1].querySelector('img.wb-heatmap-image');
  return title === method && image && image.src !== old_src && image.complete
         && image.naturalWidth > 0;
}
"""

ERRORS_JS = """
() => [...document.querySelectorAll('.wb-error, .wb-option-error, .wb-inspector-error')]
  .map(e => e.textContent.trim()).filter(t => t)
"""


def test_changing_the_method_changes_the_heat_map(page, page_errors):
    _wait_ready(page)
    page.wait_for_function(COLUMN_SHOWN_JS, arg={"method": "gradient", "old_src": ""},
                           timeout=30_000)
    before = page.evaluate(TILES_JS)
    assert [tile["title"] for tile in before[1:]] == [
        "gradient", "integrated_gradients", "lrp_epsilon", "guided_backprop"]
    assert before[0]["title"].startswith("input (label ")
    assert all(tile["width"] == 160 for tile in before), before  # 8x8 maps in 20 px blocks
    status_before = page.locator(".wb-status").inner_text()
    dropdown = page.locator(".wb-method-picker .wb-method-dropdown select")
    assert dropdown.input_value() == "gradient"  # the picker edits column 1
    dropdown.select_option("deconvnet")
    page.wait_for_function(
        "(old) => { const s = document.querySelector('.wb-status');"
        " return s && s.innerText.startsWith('ready') && s.innerText !== old; }",
        arg=status_before, timeout=60_000)
    page.wait_for_function(COLUMN_SHOWN_JS,
                           arg={"method": "deconvnet", "old_src": before[1]["src"]},
                           timeout=30_000)
    after = page.evaluate(TILES_JS)
    assert after[1]["title"] == "deconvnet" and after[1]["src"] != before[1]["src"]
    assert [t["title"] for t in after[2:]] == [t["title"] for t in before[2:]]
    assert all(tile["width"] == 160 for tile in after), after
    errors = page.evaluate(ERRORS_JS)
    assert not errors, errors
    assert "Traceback" not in page.content()
    # the default page holds no plotly figure (the layer inspector creates its own when opened)
    assert page.locator(".wb-layer-figure").count() == 0
    assert not page_errors, page_errors


def test_the_page_has_the_xsrf_cookie_its_shutdown_beacon_sends(page):
    """Voilà's page posts this cookie's value when it closes, to shut its kernel down."""
    _wait_ready(page)
    assert any(cookie["name"] == "_xsrf" for cookie in page.context.cookies())


def test_a_preheated_server_answers_with_the_executed_page_and_the_cookie():
    """``workbench serve --preheat 1``: Voilà runs the notebook in a kernel ahead of the first
    request (our config must not stop it: no prelaunch hook) and serves the executed page,
    widget outputs included, with the ``_xsrf`` cookie."""
    import time
    import urllib.request

    with voila_server(str(NOTEBOOK), NOTEBOOK.parent, preheat=1) as url:
        deadline = time.monotonic() + 120
        while True:
            with urllib.request.urlopen(url, timeout=120) as response:
                cookies = response.headers.get_all("Set-Cookie") or []
                body = response.read().decode()
            if "application/vnd.jupyter.widget-view+json" in body or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert "application/vnd.jupyter.widget-view+json" in body
    assert any(cookie.startswith("_xsrf=") for cookie in cookies)
