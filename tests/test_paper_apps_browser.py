"""Each paper app as a reader meets it: Voilà serves the notebook (smoke settings), headless
Chromium opens it, a control of the paper's panel is changed twice, and each change must redraw
the panel's figures for the new value, with no error text on the page.

Each test opens its page and waits for its panel, the notebook's last cell; the pages open one at
a time, so that a kernel running its notebook shares the cores only with the rest of the suite.
"""
from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path

import pytest
from conftest import voila_server

from workbench import runner

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.slow

#: per paper app: the control changed, and the two values it is set to in turn
CHANGES = {
    "01_patternnet": ("method", "gradient", "guided_backprop"),
    "02_unified_gradients": ("model", "digits_cnn_tanh", "digits_mlp_relu"),
    "03_sanity_checks": ("mode", "independent", "cascading"),
    "04_neurons_vs_pcs": ("basis", "neurons", "pca"),
}

# The panel's figures that drew: each one's title and a digest of what its data layers drew (the
# lines' paths, the heat maps' images, the tables' text), read from the SVG.
FIGURES_JS = """
() => [...document.querySelectorAll('.wb-recompute-figures .js-plotly-plot')]
  .filter(plot => plot.querySelector('.main-svg'))
  .map(plot => ({
    title: [...plot.querySelectorAll('.gtitle')].map(t => t.textContent).join(' '),
    drawn: [...plot.querySelectorAll('.overplot path, .overplot image, .table text')]
      .map(e => e.getAttribute('d') || e.getAttribute('href') || e.textContent).join('|')}))
"""

ERRORS_JS = """
() => [...document.querySelectorAll('.wb-error, .wb-option-error, .wb-inspector-error')]
  .map(e => e.textContent.trim()).filter(t => t)
"""

# ``selector`` shown, or a widget that the page's widget manager cannot show (no wait for it)
SHOWN_OR_BROKEN_JS = """
(selector) => document.querySelector(selector) !== null
  || (document.body !== null && document.body.innerText.includes('Error displaying widget'))
"""

# The status line once it reports the run for ``name=value`` as drawn.
READY_JS = """
(expected) => { const s = document.querySelector('.wb-recompute-status');
  return s && s.innerText.startsWith('ready') && s.innerText.includes(expected); }
"""


@pytest.fixture(scope="module")
def app():
    """Voilà serving the notebooks folder and one headless Chromium: ``(base URL, browser)``."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (make test installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with voila_server(None, runner.NOTEBOOK_DIR) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield url, browser
        finally:
            browser.close()


@contextlib.contextmanager
def opened(app, stem: str):
    """The paper app ``stem`` in a new tab: ``(tab, its JavaScript errors)``; closed afterwards."""
    url, browser = app
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    # the console's errors and warnings, for a failure's message (the widget manager logs there
    # why a widget could not be shown); not checked, the page's own errors are
    tab.console_errors = []
    tab.on("console", lambda message: message.type in ("error", "warning")
           and tab.console_errors.append(message.text[:500]))
    try:
        tab.goto(f"{url}voila/render/{stem}.ipynb", wait_until="commit", timeout=60_000)
        yield tab, errors
    finally:
        tab.close()


def _set(tab, control: str, value: str) -> list[dict]:
    """Choose ``value`` in the panel's ``control`` and return the figures once drawn."""
    tab.locator(f".wb-control-{control} select").select_option(value)
    tab.wait_for_function(READY_JS, arg=f"{control}={value}", timeout=90_000)
    tab.wait_for_function(
        f"(value) => {{ const figures = ({FIGURES_JS})();"
        " return figures.length > 0 && figures.some(f => f.title.includes(value)); }",
        arg=value, timeout=30_000)
    return tab.evaluate(FIGURES_JS)


class WidgetNotShown(AssertionError):
    """The page's widget manager could not show a widget ("Error displaying widget")."""


def _wait_shown(tab, selector: str, timeout_ms: int, server) -> None:
    """Wait for ``selector``; on a timeout, or at once when the page shows a widget that its
    widget manager could not show, fail with what the page shows instead (Voilà's error notice,
    a traceback, or how far the notebook got), the console's errors and the end of the
    ``server``'s log, not only the selector."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        tab.wait_for_function(SHOWN_OR_BROKEN_JS, arg=selector, timeout=timeout_ms)
        failure = None if tab.query_selector(selector) is not None else WidgetNotShown
    except PlaywrightTimeoutError:
        failure = AssertionError
    if failure is None:
        return
    text = tab.evaluate("() => document.body ? document.body.innerText : ''")
    raise failure(
        f"{selector} not shown within {timeout_ms / 1000:.0f} s; the page ends with: "
        f"{text[-1500:]!r}\nconsole errors and warnings: {tab.console_errors[-10:]!r}\n"
        f"the server's log ends with: {server.log_tail()}")


def _wait_panel(tab, selector: str, server) -> None:
    """Wait for the panel's ``selector``. A page whose widget manager could not show a widget
    (seen in CI under load, and here with two CPU-bound processes beside the test: the panel
    read "Error displaying widget: model not found") is reported as a warning with its
    diagnostics and opened once more, a fresh kernel running the notebook again; a second
    failure fails the test."""
    try:
        _wait_shown(tab, selector, 240_000, server)
    except WidgetNotShown as error:
        warnings.warn(f"opening the page again: {error}", stacklevel=2)
        tab.reload(wait_until="commit", timeout=60_000)
        _wait_shown(tab, selector, 240_000, server)


@pytest.mark.parametrize("stem", list(CHANGES))
def test_a_control_change_redraws_the_panels_figures(app, stem):
    with opened(app, stem) as (tab, page_errors):
        _check_a_control_change(tab, page_errors, app[0], *CHANGES[stem])


def _check_a_control_change(tab, page_errors: list[str], server, control: str, first: str,
                            second: str) -> None:
    _wait_panel(tab, f".wb-recompute-panel .wb-control-{control} select", server)
    assert tab.locator(".wb-recompute-figures .js-plotly-plot").count() == 0  # none computed yet
    before = _set(tab, control, first)
    after = _set(tab, control, second)
    assert len(before) == len(after) >= 2, (before, after)
    assert any(first in figure["title"] for figure in before), before
    assert any(second in figure["title"] for figure in after), after
    assert all(figure["drawn"] for figure in before + after), (before, after)
    assert [b["drawn"] for b in before] != [a["drawn"] for a in after]
    errors = tab.evaluate(ERRORS_JS)
    assert not errors, errors
    assert "Traceback" not in tab.content()
    # JupyterLab's plotly renderer's PNG snapshot fails on Voilà's read-only output models once
    # a notebook figure has drawn (see test_figures_offline); any other error counts
    errors = [e for e in page_errors if "setData is not a function" not in e]
    assert not errors, errors
