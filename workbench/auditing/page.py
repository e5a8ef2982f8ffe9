"""The audit's report: ``results.json`` (through ``workbench.reporting.Report``), the verdict
table as ``verdicts.csv``, and ``report.html``, one page that opens without a network: the
verdict table with the thresholds beside the numbers, then the figures behind the verdicts
(plotly.js inlined once, ``workbench.html_export.figure_div``)."""
from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch
from torch import nn

from workbench import plots
from workbench.auditing import measure
from workbench.experiments.sanity import METRIC_TITLES
from workbench.html_export import figure_div
from workbench.reporting import Report

#: the verdict table's columns, in the page's order
COLUMNS = ("method", "test", "status", "mean", "interval", "threshold", "quantity",
           "why this threshold", "note", "source")
_STATUS_COLOURS = {"pass": "#d4edda", "fail": "#f8d7da", "inconclusive": "#fff3cd"}
_EXAMPLES = 3


def figures(measured, inputs: torch.Tensor, targets: torch.Tensor,
            runs: Mapping[str, tuple[str, dict]], model: nn.Module) -> dict[str, go.Figure]:
    """The figures behind the verdicts: each randomization test's similarity curves, the
    Sensitivity-n curves, the methods' agreement, and example maps of the first seed."""
    result = {}
    for mode, tables in measured.randomization.items():
        if tables:
            from workbench.auditing.run import _stage_summary

            summary = _stage_summary(tables).sort_values("stage_index", kind="stable")
            result[f"{mode} randomization"] = plots.similarity_curves(
                summary, panel_titles=METRIC_TITLES,
                title=f"{mode.capitalize()} randomization: similarity to the original maps "
                      "(mean and s.d. over inputs and seeds)")
    if measured.sensitivity:
        first = measured.sensitivity[0]
        series = {label: [sum(s["curves"][label][i] for s in measured.sensitivity)
                          / len(measured.sensitivity) for i in range(len(first["ns"]))]
                  for label in first["curves"]}
        result["Sensitivity-n"] = plots.curves(
            first["ns"], series, f"Sensitivity-n (mean over seeds; {first['features']} patches)",
            "patches removed (n)", "Pearson correlation")
    if measured.degradation:
        result["region perturbation"] = _degradation_figure(measured.degradation)
    agreement = measured.mean_agreement()
    if agreement:
        result["agreement"] = plots.correlation_matrix(
            agreement["labels"], agreement["spearman"],
            "Agreement between methods: signed Spearman rank correlation of the maps")
    if measured.first_inputs is not None:
        chosen = measured.first_inputs[:_EXAMPLES]
        maps = measure.explain(model, inputs[chosen], runs, targets[chosen])
        result["example maps"] = plots.heatmap_grid(
            inputs[chosen], maps, title="Example maps (first seed's first inputs)")
    return result


def _degradation_figure(per_seed: list[dict[str, Any]]) -> go.Figure:
    """MoRF and LeRF curves of every method and the random order, each the mean over the
    seeds."""
    def mean(curves: list[list[float]]) -> list[float]:
        return [sum(values) / len(values) for values in zip(*curves)]

    first = per_seed[0]
    series = {f"{label} {short}": mean([d["curves"][label][order] for d in per_seed])
              for label in first["curves"]
              for order, short in (("most_relevant_first", "MoRF"),
                                   ("least_relevant_first", "LeRF"))}
    series["random order"] = mean([d["random"] for d in per_seed])
    patch = "x".join(map(str, first["patch"]))
    return plots.curves(range(len(first["random"])), series,
                        f"Region perturbation: {patch} patches replaced by their mean, most "
                        "(MoRF) or least (LeRF) relevant first (mean over seeds)",
                        "patches replaced", "target output")


def verdict_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The verdict rows as the page shows them: numbers rounded, the interval as text."""
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=COLUMNS)

    def interval(row) -> str:
        return "" if row["low"] is None or pd.isna(row["low"]) else \
            f"[{row['low']:.3g}, {row['high']:.3g}]"

    table["interval"] = table.apply(interval, axis=1)
    table["mean"] = table["mean"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.3g}")
    return table[list(COLUMNS)]


def _table_html(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for _, row in table.iterrows():
        colour = _STATUS_COLOURS.get(str(row["status"]).split(" ")[0], "#eeeeee")
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in row)
        body.append(f'<tr style="background:{colour}">{cells}</tr>')
    return (f'<table class="verdicts"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
          "td,th{border:1px solid #ccc;padding:4px;vertical-align:top}")


def page_html(result) -> str:
    """The report page: what was audited, the verdict table, skipped methods, the figures."""
    described = result.results.get("model", {})
    lines = "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>"
                    for k, v in described.items())
    seeds = ", ".join(map(str, result.results["seeds"]))
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Attribution audit"
             f"</title><style>{_STYLE}</style></head><body><h1>Attribution audit</h1>",
             f"<ul>{lines}<li>seeds: {seeds}; intervals are 95% Student t intervals of the mean "
             "over the seeds</li></ul>", "<h2>Verdicts</h2>",
             _table_html(verdict_table(result.results["verdicts"]))]
    if result.results["skipped"]:
        items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                        for k, v in result.results["skipped"].items())
        parts.append(f"<h2>Methods that do not run on this model</h2><ul>{items}</ul>")
    for index, (name, figure) in enumerate(result.figures.items()):
        parts.append(f'<h2>{html.escape(name)}</h2><div class="figure">'
                     f"{figure_div(figure, include_plotlyjs=index == 0)}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(result, out: str | Path) -> Path:
    """Write ``results.json``, ``verdicts.csv`` and ``report.html`` to ``out``; returns it."""
    report = Report(out, {"seeds": result.results["seeds"], **result.results["budget"]})
    report.add(**{k: v for k, v in result.results.items() if k not in ("seeds", "budget")})
    folder = Path(out)
    verdict_table(result.results["verdicts"]).to_csv(folder / "verdicts.csv", index=False)
    (folder / "report.html").write_text(page_html(result))
    report.add(report_figures=list(result.figures))
    report.figures.append("report.html")
    report.write()
    return folder
