"""What every notebook does with its results: display each figure where it is computed, and
write the figures and a ``results.json`` to ``output_dir``.

Notebooks stay thin: a parameters cell, calls into the package, figures, and a ``Report``.
``Report.from_parameters`` records every parameter the notebook declares, so none can be left
out of ``results.json``. An empty ``output_dir`` (the default when a notebook is served as an
app) writes nothing.
"""
from __future__ import annotations

import ast
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # plotly is imported by whoever makes a figure; light pages skip it
    import plotly.graph_objects as go

from workbench.claims import Claim, claims_table

SMOKE_VARIABLE = "WORKBENCH_SMOKE"


def smoke_requested(smoke: bool) -> bool:
    """``smoke``, or the ``WORKBENCH_SMOKE=1`` environment variable (set by the test suite so
    that nbval runs every notebook with its fast settings)."""
    return bool(smoke) or os.environ.get(SMOKE_VARIABLE, "") == "1"


def display_figure(figure: go.Figure) -> None:
    """Show ``figure`` as the output of the running notebook cell (plotly's JSON mimetype),
    with a PNG snapshot that the page shows until the pointer enters the figure where
    ``workbench.snapshots.requested()`` (a preheated Voilà kernel); does nothing outside
    IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # not in a notebook
        return
    if get_ipython() is None:
        return
    from workbench import snapshots

    if not snapshots.requested():
        figure.show(renderer="plotly_mimetype", validate=False)
        return
    from IPython.display import display

    display(figure_bundle(figure, snapshot=True), raw=True)


def figure_bundle(figure: go.Figure, snapshot: bool) -> dict[str, str | dict]:
    """The output mimebundle of ``figure``: plotly's JSON, and with ``snapshot`` its PNG
    (base64, ``workbench.snapshots.png_snapshot``) where one can be drawn."""
    import base64

    import plotly.io as pio

    from workbench import snapshots

    as_dict = figure.to_dict()
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(as_dict)
    png = snapshots.png_snapshot(as_dict) if snapshot else None
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    return bundle


def display_table(table: Any) -> None:
    """Show a pandas DataFrame as the output of the running notebook cell (HTML, which the
    export and Voila show as is); does nothing outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # not in a notebook
        return
    if get_ipython() is None:
        return
    display(table.style.hide(axis="index"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # tensors and arrays
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; None reads as "undefined"
    return value


def declared_parameters(notebook: str | Path) -> list[str]:
    """The names the notebook's cell tagged ``parameters`` assigns, in order (the names
    papermill's inspection lists, read without importing papermill)."""
    import nbformat

    cells = [cell for cell in nbformat.read(notebook, as_version=4).cells
             if "parameters" in cell.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"notebook {notebook} must have one cell tagged 'parameters', has "
                         f"{len(cells)}")
    names = []
    for statement in ast.parse(cells[0].source).body:
        targets = ([statement.target] if isinstance(statement, ast.AnnAssign)
                   else statement.targets if isinstance(statement, ast.Assign) else [])
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


class Report:
    """Collects a notebook's settings, results and figures, and writes them."""

    def __init__(self, output_dir: str | Path, settings: dict[str, Any]):
        self.output_dir = Path(output_dir) if output_dir else None
        self.results: dict[str, Any] = {"settings": dict(settings)}
        self.figures: list[str] = []
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_parameters(cls, notebook: str | Path, namespace: Mapping[str, Any]) -> Report:
        """A report whose settings are all the parameters ``notebook`` declares in its cell
        tagged ``parameters`` (``declared_parameters``), each with the value it has now in
        ``namespace`` (the notebook's ``globals()``): values papermill injected and changes made
        for smoke runs included. Writes to the declared ``output_dir``.

        ``notebook`` is a path, or the file name of a notebook in the current folder (where
        papermill, nbval and Voila run a notebook) or in the package's ``notebooks/`` folder.
        """
        from workbench.runner import NOTEBOOK_DIR

        path = Path(notebook)
        if not path.is_file() and not path.is_absolute() and (NOTEBOOK_DIR / path).is_file():
            path = NOTEBOOK_DIR / path
        if not path.is_file():
            raise FileNotFoundError(f"notebook: no file '{notebook}' here or in {NOTEBOOK_DIR}")
        declared = declared_parameters(path)
        missing = [name for name in declared if name not in namespace]
        if missing:
            raise ValueError(f"namespace has no value for the parameter(s) {missing} declared "
                             f"in {path.name}; pass the notebook's globals()")
        if "output_dir" not in declared:
            raise ValueError(f"{path.name} declares no 'output_dir' parameter")
        return cls(namespace["output_dir"], {name: namespace[name] for name in declared})

    def figure(self, name: str, figure: go.Figure, show: bool = True) -> None:
        """Display ``figure`` in the notebook (unless ``show`` is False) and keep it as
        ``<name>.html``.

        Displayed as plotly's JSON mimetype, which JupyterLab and Voilà draw with their plotly
        extension; the HTML export of a batch run draws it from the same output
        (``workbench.html_export``). The file loads plotly.js from one ``plotly.min.js`` that
        plotly copies into ``output_dir`` beside it, so it opens without a network.
        """
        if show:
            display_figure(figure)
        if self.output_dir is not None:
            figure.write_html(self.output_dir / f"{name}.html", include_plotlyjs="directory")
            self.figures.append(f"{name}.html")

    def add(self, **results: Any) -> None:
        self.results.update(results)

    def claims(self, claims: Iterable[Claim]) -> None:
        """Display the claims table (``workbench.claims.claims_table``) and keep every claim's
        record under ``"claims"`` in ``results.json``."""
        claims = list(claims)
        self.results["claims"] = [claim.record() for claim in claims]
        display_table(claims_table(claims))

    def write(self) -> Path | None:
        """Write ``results.json`` (NaN as null) and return its path."""
        if self.output_dir is None:
            return None
        path = self.output_dir / "results.json"
        content = _jsonable({**self.results, "figures": self.figures})
        path.write_text(json.dumps(content, indent=2))
        return path
