"""What every notebook does at its end: write figures and a ``results.json`` to ``output_dir``.

Notebooks stay thin: a parameters cell, calls into the package, figures, and a ``Report``.
An empty ``output_dir`` (the default when a notebook is served as an app) writes nothing.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

SMOKE_VARIABLE = "WORKBENCH_SMOKE"


def smoke_requested(smoke: bool) -> bool:
    """``smoke``, or the ``WORKBENCH_SMOKE=1`` environment variable (set by the test suite so
    that nbval runs every notebook with its fast settings)."""
    return bool(smoke) or os.environ.get(SMOKE_VARIABLE, "") == "1"


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


class Report:
    """Collects a notebook's settings, results and figures, and writes them."""

    def __init__(self, output_dir: str | Path, settings: dict[str, Any]):
        self.output_dir = Path(output_dir) if output_dir else None
        self.results: dict[str, Any] = {"settings": dict(settings)}
        self.figures: list[str] = []
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)

    def figure(self, name: str, figure: go.Figure) -> go.Figure:
        """Keep ``figure`` as ``<name>.html`` (interactive, plotly.js from its CDN)."""
        if self.output_dir is not None:
            figure.write_html(self.output_dir / f"{name}.html", include_plotlyjs="cdn")
            self.figures.append(f"{name}.html")
        return figure

    def add(self, **results: Any) -> None:
        self.results.update(results)

    def write(self) -> Path | None:
        """Write ``results.json`` (NaN as null) and return its path."""
        if self.output_dir is None:
            return None
        path = self.output_dir / "results.json"
        content = _jsonable({**self.results, "figures": self.figures})
        path.write_text(json.dumps(content, indent=2))
        return path
