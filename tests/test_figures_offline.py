"""Every figure a notebook makes is drawn where a reader looks, with no network: in the HTML
export of a batch run, in each per-figure HTML file, and on the notebook's Voilà page, and a
preheated app page (``workbench serve --preheat``) shows them at once.

Each notebook runs once in smoke mode through the batch runner; its ``results.json`` lists the
figures it made. Headless Chromium opens the pages with every request to a host other than
this machine aborted, and counts the figures that drew: plotly figures with their ``.main-svg``
layer, and decoded images (the Explorer's heat map tiles).
"""
from __future__ import annotations

import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import voila_server

from workbench import runner

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOKS = [path.stem for path in runner.notebooks()]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}

pytestmark = pytest.mark.slow

# plotly figures that drew (plotly adds .main-svg once the plot is laid out) and decoded images
# in cell outputs (not Voila's loading spinner)
DRAWN_JS = """
() => ({
  plots: [...document.querySelectorAll('.js-plotly-plot')]
           .filter(plot => plot.querySelector('.main-svg')).length,
  images: [...document.querySelectorAll('.jp-OutputArea img:not(.plot-img)')]
           .filter(image => image.complete && image.naturalWidth > 0).length,
  snapshots: [...document.querySelectorAll('.jp-RenderedPlotly img.plot-img')]
           .filter(image => image.complete && image.naturalWidth > 0
                            && getComputedStyle(image).display !== 'none').length,
})
"""


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """Every notebook run once in smoke mode; the folder holding ``<stem>/``."""
    out = tmp_path_factory.mktemp("batch")
    runner.reproduce(None, out, smoke=True)
    return out


def _figures(batch: Path, stem: str) -> list[str]:
    import json

    return json.loads((batch / stem / "results.json").read_text())["figures"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (make test installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield chromium
        finally:
            chromium.close()


class OfflinePage:
    """A browser tab whose requests to other hosts are aborted and recorded, as are its
    JavaScript errors."""

    def __init__(self, browser):
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _route(self, route) -> None:
        url = urllib.parse.urlsplit(route.request.url)
        if url.scheme in ("file", "data", "blob") or url.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def drawn(self, at_least: int, timeout_ms: int) -> dict[str, int]:
        """The figures drawn once ``at_least`` of them are (or after ``timeout_ms``)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(
                f"() => {{ const d = ({DRAWN_JS})(); "
                f"return d.plots + d.images + d.snapshots >= {at_least}; }}",
                timeout=timeout_ms)
        except PlaywrightTimeout:
            pass
        return self.page.evaluate(DRAWN_JS)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def offline(browser):
    page = OfflinePage(browser)
    yield page
    page.close()


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_html_export_draws_every_figure_offline(batch, offline, stem):
    figures = _figures(batch, stem)
    assert figures, f"{stem} made no figure"
    export = batch / stem / f"{stem}.html"
    text = export.read_text()
    assert 'src="https://cdn.plot.ly' not in text  # (plotly.js itself names the CDN for maps)
    offline.page.goto(export.as_uri(), timeout=60_000)
    drawn = offline.drawn(len(figures), timeout_ms=30_000)
    # each figure exactly once: displayed where it is computed, never twice
    assert drawn["plots"] == len(figures), (drawn, figures)
    assert not [url for url in offline.blocked if "plotly" in url], offline.blocked
    assert not offline.errors, offline.errors


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_each_figure_file_draws_offline(batch, offline, stem):
    folder = batch / stem
    assert (folder / "plotly.min.js").is_file()  # one local copy beside the figure files
    for name in _figures(batch, stem):
        offline.page.goto((folder / name).as_uri(), timeout=60_000)
        assert offline.drawn(1, timeout_ms=20_000)["plots"] == 1, name
    assert not offline.blocked, offline.blocked
    assert not offline.errors, offline.errors


@pytest.fixture(scope="module")
def voila_base_url():
    """Voilà serving the notebooks folder with the smoke settings."""
    with voila_server(None, runner.NOTEBOOK_DIR) as url:
        yield url


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_voila_page_draws_every_figure(batch, voila_base_url, offline, stem):
    """The app page (same smoke settings as the batch run) draws at least the figures the batch
    run made; the Explorer draws its maps as image tiles, the others as plotly figures."""
    figures = _figures(batch, stem)
    offline.page.goto(f"{voila_base_url}voila/render/{stem}.ipynb", timeout=180_000)
    drawn = offline.drawn(len(figures), timeout_ms=240_000)
    if stem.startswith("00_"):
        assert drawn["images"] >= len(figures), (drawn, figures)
    else:
        assert drawn["plots"] >= len(figures), (drawn, figures)
    assert "Traceback" not in offline.page.content()
    assert not [url for url in offline.blocked if "plotly" in url], offline.blocked
    # Once a figure has drawn, JupyterLab's plotly renderer stores a PNG snapshot of it in the
    # output's model; Voila's output models are read-only (no setData), so that step fails
    # after the figure is on the page. Any other error counts.
    errors = [e for e in offline.errors if "setData is not a function" not in e]
    assert not errors, errors


#: the paper app opened from a preheated pool here: one is enough for the code path (Voilà's
#: pool, the page streamed from a kernel that has already run the notebook); the first-paint
#: times of every app, at 1 and 8 sessions, are measured in benchmarks/load.py
PREHEATED = "02_unified_gradients"


@pytest.fixture(scope="module")
def preheated_base_url():
    """Voilà serving one paper app with a preheated kernel, once that kernel has run it."""
    with voila_server(PREHEATED, runner.NOTEBOOK_DIR, preheat=1,
                      preheated_kernels=1, preheat_timeout=300) as url:
        yield url


def test_preheated_app_paints_every_figure_at_once(batch, preheated_base_url, offline):
    """Opening an app whose notebook has run ahead in a preheated kernel: the page shows
    everything it shows (``benchmarks.load.first_paint_s``: every plotly figure laid out, the
    document loaded, no cell error), with at least one drawn figure per figure the notebook
    makes (the batch run's list)."""
    from benchmarks.load import PAINT_JS, first_paint_s

    figures = _figures(batch, PREHEATED)
    offline.context.add_init_script(PAINT_JS)
    offline.page.goto(preheated_base_url, wait_until="commit", timeout=60_000)
    drawn = offline.drawn(len(figures), timeout_ms=120_000)
    offline.page.wait_for_load_state("load", timeout=60_000)
    offline.page.wait_for_timeout(1000)  # whatever else the page shows, it shows by now
    paint_s, shown = first_paint_s(offline.page.evaluate("() => window.__paint.events"))
    assert paint_s is not None, shown
    # the preheated kernel attached a PNG snapshot to every figure (workbench.snapshots): the
    # page shows the snapshots and builds no figure until the pointer enters one
    assert drawn["snapshots"] >= len(figures), (drawn, figures)
    assert drawn["plots"] == 0, drawn
    assert not shown["failed"], shown
    snapshot = offline.page.locator(".jp-RenderedPlotly img.plot-img").first
    snapshot.evaluate("image => image.scrollIntoView()")
    box = snapshot.bounding_box()
    offline.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    offline.page.wait_for_function(f"() => ({DRAWN_JS})().plots >= 1", timeout=30_000)
