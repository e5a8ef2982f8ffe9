"""The HTML export of an executed notebook, with every plotly figure drawn and no network.

nbconvert cannot represent plotly's JSON mimetype (``application/vnd.plotly.v1+json``, what
JupyterLab and Voilà draw): an export of such outputs shows no figure. Before exporting, each
such output gets a ``text/html`` representation of the same figure; the first one carries
plotly.js itself, so the page holds one copy of it and loads nothing from a CDN.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"
#: height of a figure whose layout sets none (plotly's notebook renderer uses the same)
DEFAULT_HEIGHT = 525


def _figure_html(bundle: dict[str, Any], include_plotlyjs: bool) -> str:
    import plotly.io as pio

    figure = {key: bundle[key] for key in ("data", "layout", "frames") if key in bundle}
    return pio.to_html(figure, config=bundle.get("config"), include_plotlyjs=include_plotlyjs,
                       include_mathjax=False, full_html=False, default_width="100%",
                       default_height=DEFAULT_HEIGHT, validate=False)


def figure_div(figure: Any, include_plotlyjs: bool) -> str:
    """A ``<div>`` drawing the plotly ``figure``, with plotly.js inlined when
    ``include_plotlyjs`` (once per page: the page then loads nothing from a CDN)."""
    return _figure_html(figure.to_plotly_json(), include_plotlyjs)


def add_figure_html(notebook: Any) -> int:
    """Give every plotly output of ``notebook`` (an ``nbformat`` node, changed in place) that
    has no ``text/html`` one: a ``<div>`` drawing the figure, plotly.js inlined once, in the
    first. Returns the number of figures given one."""
    added = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIMETYPE in data and "text/html" not in data:
                data["text/html"] = _figure_html(data[PLOTLY_MIMETYPE], added == 0)
                added += 1
    return added


def export_html(executed: str | Path) -> Path:
    """Write ``executed``'s HTML export (same name, ``.html``) with its figures drawn; return
    its path."""
    import nbformat
    from nbconvert import HTMLExporter

    executed = Path(executed)
    notebook = nbformat.read(executed, as_version=4)
    add_figure_html(notebook)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    path = executed.with_suffix(".html")
    path.write_text(body)
    return path
