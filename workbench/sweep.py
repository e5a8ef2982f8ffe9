"""Parameter sweeps: one papermill run of a notebook per grid point, run as Dask tasks.

``sweep("02_unified_gradients", {"seed": [0, 1, 2]}, out="sweeps/seeds")`` runs every point of
the grid (the Cartesian product of the values) on a Dask cluster (``workbench.cluster``), each
in its own folder ``out/points/<point>/`` with its executed notebook, HTML and ``results.json``,
and writes one table of every point's parameters and results: ``out/sweep.csv`` (and
``sweep.parquet`` when pyarrow is installed), plus ``out/summary.html``.

- A failed point is retried ``retries`` times (a dead worker's points are rescheduled by Dask
  too); if it still fails, its row holds the error and the notebook cell that failed, and the
  other points are unaffected.
- Re-running into the same ``out`` skips the points already finished with a valid
  ``results.json`` (their rows say ``resumed``).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workbench import cluster, runner
from workbench.progress import bar

POINT_FILE = "point.json"


class PointFailed(RuntimeError):
    """A grid point's notebook raised; the message names the error and the failing cell."""


# ----------------------------------------------------------------------------------------------
# The grid


def parse_grid(specs: Sequence[str], declared: Mapping[str, Mapping[str, Any]]) -> dict[str, list]:
    """``["name=v1,v2", "seed=0..4"]`` as ``{"name": [v1, v2], "seed": [0, 1, 2, 3, 4]}``, each
    value converted to the notebook's declared type of the parameter (``a..b``: the integers
    from ``a`` to ``b`` inclusive)."""
    grid: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ValueError(f"--grid expects NAME=V1,V2,... or NAME=A..B, got {spec!r}")
        if name not in declared:
            raise ValueError(f"the notebook has no parameter '{name}'; its parameters: "
                             f"{sorted(declared)}")
        if name in grid:
            raise ValueError(f"parameter '{name}' is given twice in the grid")
        span = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*", values)
        if span:
            low, high = int(span[1]), int(span[2])
            if high < low:
                raise ValueError(f"empty range in --grid {spec!r}")
            texts = [str(v) for v in range(low, high + 1)]
        else:
            texts = [v.strip() for v in values.split(",")]
        grid[name] = [runner.parse_value(declared, name, text) for text in texts]
    return grid


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values (the first parameter varies slowest)."""
    if not grid:
        return [{}]
    for name, values in grid.items():
        if len(values) == 0:
            raise ValueError(f"grid parameter '{name}' has no values")
    names = list(grid)
    return [dict(zip(names, combination)) for combination in itertools.product(*grid.values())]


def point_name(parameters: Mapping[str, Any]) -> str:
    """A folder name for a point: readable ``name=value`` parts and a hash of all values."""
    canonical = json.dumps(parameters, sort_keys=True, default=str)
    digest = hashlib.sha1(canonical.encode()).hexdigest()[:8]
    readable = "_".join(f"{k}={v}" for k, v in parameters.items())
    readable = re.sub(r"[^A-Za-z0-9=.+-]+", "-", readable)[:80].strip("-") or "point"
    return f"{readable}-{digest}"


# ----------------------------------------------------------------------------------------------
# One point (runs on a worker)


def run_point(notebook: str, point_dir: str, name: str, grid_values: dict[str, Any],
              fixed: dict[str, Any], smoke: bool) -> dict[str, Any]:
    """Run the notebook for one point; write ``point.json``; raise ``PointFailed`` on error."""
    record = runner.run_notebook(Path(notebook), Path(point_dir), {**fixed, **grid_values},
                                 smoke=smoke)
    row = {"point": name, "worker_pid": os.getpid(), **asdict(record)}
    _write_atomically(Path(point_dir) / POINT_FILE, json.dumps(row, default=str))
    if not record.ok:
        raise PointFailed(f"point {name}: {record.error} (cell {record.failed_cell})")
    return row


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def finished_point(point_dir: Path) -> dict[str, Any] | None:
    """The row of a point that finished earlier with a valid ``results.json``, else None."""
    try:
        row = json.loads((point_dir / POINT_FILE).read_text())
        results = json.loads((Path(row["output_dir"]) / "results.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not row.get("ok") or not isinstance(results, dict):
        return None
    return {**row, "results": results}


def _failed_row(name: str, point_dir: Path, error: BaseException) -> dict[str, Any]:
    """The row of a point that failed for good: its last ``point.json`` if one was written
    (error and failed cell), else the exception (e.g. its worker kept dying)."""
    try:
        row = json.loads((point_dir / POINT_FILE).read_text())
    except (OSError, ValueError):
        row = {"point": name, "ok": False, "failed_cell": None, "results": {}}
    row["ok"] = False
    row["error"] = row.get("error") or f"{type(error).__name__}: {error}"
    return row


# ----------------------------------------------------------------------------------------------
# The sweep


def sweep(notebook: str | Path, grid: Mapping[str, Sequence[Any]] | Sequence[str], *,
          out: str | Path = "sweep", scheduler: Any = "local", workers: int = 2,
          retries: int = 1, smoke: bool = False, parameters: Mapping[str, Any] | None = None,
          progress: bool = True):
    """Run ``notebook`` once per grid point on Dask; return the combined table.

    Parameters
    ----------
    notebook: a path, or a notebook's name in ``notebooks/``.
    grid: ``{parameter: values}``, or command-line specs ``["seed=0..4", "method=a,b"]``.
    out: output folder; re-running into it skips the points already finished.
    scheduler, workers: see ``workbench.cluster.connect`` (default: 2 local processes).
    retries: extra attempts for a point that fails (its notebook raises or its worker dies).
    smoke: run every point with the notebook's smoke settings.
    parameters: values for the other parameters, the same for every point.

    Returns a ``pandas.DataFrame``, one row per point: the grid's parameters, ``ok``,
    ``seconds``, ``error``, ``failed_cell``, ``resumed``, then each scalar of the point's
    ``results.json`` (nested keys joined by dots).
    """
    path = runner.notebooks([str(notebook)])[0].resolve()
    declared = runner.parameters_of(path)
    if not isinstance(grid, Mapping):
        grid = parse_grid(list(grid), declared)
    unknown = [name for name in [*grid, *(parameters or {})] if name not in declared]
    if unknown:
        raise ValueError(f"the notebook {path.name} has no parameter(s) {unknown}; its "
                         f"parameters: {sorted(declared)}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    fixed = dict(parameters or {})
    points = grid_points(grid)
    out = Path(out).resolve()
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for values in points:
        name = point_name(values)
        done = finished_point(out / "points" / name)
        if done is not None:
            rows[name] = {**done, "resumed": True}
        else:
            todo.append((name, values))
    if todo:
        rows.update(_run_points(path, out, todo, fixed, smoke, scheduler, workers, retries,
                                progress))
    table = _table(points, rows)
    _write_outputs(table, list(grid), out)
    return table


def _run_points(path: Path, out: Path, todo: list[tuple[str, dict]], fixed: dict, smoke: bool,
                scheduler: Any, workers: int, retries: int, progress: bool) -> dict[str, dict]:
    from distributed import as_completed

    rows = {}
    with cluster.connect(scheduler, workers) as client:
        futures = {}
        for name, values in todo:
            point_dir = out / "points" / name
            point_dir.mkdir(parents=True, exist_ok=True)
            future = client.submit(run_point, str(path), str(point_dir), name, values, fixed,
                                   smoke, key=f"point-{name}-{os.urandom(4).hex()}",
                                   retries=retries, pure=False)
            futures[future] = name
        with bar(total=len(futures), desc=f"sweep {path.stem}", unit="point",
                 disable=not progress) as points_done:
            for future in as_completed(futures):
                name = futures[future]
                try:
                    rows[name] = {**future.result(), "resumed": False}
                except Exception as error:  # noqa: BLE001  (every failure becomes a row)
                    rows[name] = {**_failed_row(name, out / "points" / name, error),
                                  "resumed": False}
                points_done.set_postfix(failed=sum(not r.get("ok") for r in rows.values()),
                                        refresh=False)
                points_done.update()
    return rows


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if value is None or isinstance(value, (bool, int, float, str)):
        return {prefix: value}
    return {}  # lists and tables stay in the point's results.json


def _table(points: list[dict[str, Any]], rows: dict[str, dict[str, Any]]):
    """One row per point, in grid order: its parameters, status and flattened results."""
    import pandas as pd

    records = []
    for values in points:
        row = rows[point_name(values)]
        results = {k: v for k, v in (row.get("results") or {}).items()
                   if k not in ("settings", "figures")}
        records.append({**values, "point": row.get("point"), "ok": bool(row.get("ok")),
                        "seconds": row.get("seconds"), "error": row.get("error"),
                        "failed_cell": row.get("failed_cell"), "resumed": row.get("resumed"),
                        "output_dir": row.get("output_dir"),
                        **_flatten(results, "results")})
    return pd.DataFrame.from_records(records)


def summary_figure(table, grid_names: Sequence[str], max_panels: int = 6):
    """One panel per numeric result column of the sweep table: its value at each point that ran
    against the first grid parameter, one line per value of the second; failed points are named
    in the title. Without numeric results, the seconds each point took (failed ones red)."""
    from workbench import plots

    numeric = [c for c in table.columns if c.startswith("results.")
               and table[c].dtype.kind in "if"][:max_panels]
    x_name = grid_names[0] if grid_names else "point"
    group_name = grid_names[1] if len(grid_names) > 1 else None
    ok, failed = table[table["ok"]], table[~table["ok"]]
    title = f"sweep: {len(ok)} of {len(table)} points ok"
    if len(failed):
        title += f"; failed: {', '.join(str(p) for p in failed['point'])}"
    if not numeric:
        return plots.bars(table["point"], table["seconds"], ~table["ok"], title, "seconds")
    groups = [(None, ok)] if group_name is None else list(ok.groupby(group_name, sort=False))
    content = {}
    for column in numeric:
        series = {}
        for group, part in groups:
            part = part.sort_values(x_name)
            series["all" if group is None else f"{group_name}={group}"] = (part[x_name],
                                                                          part[column])
        content[column.removeprefix("results.")] = series
    return plots.panels(content, title, x_name, "", columns=min(3, len(numeric)))


def _write_outputs(table, grid_names: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sweep.csv", index=False)
    try:
        table.to_parquet(out / "sweep.parquet", index=False)
    except ImportError:  # no pyarrow/fastparquet: the CSV is the table
        pass
    summary_figure(table, grid_names).write_html(out / "summary.html", include_plotlyjs="cdn")
