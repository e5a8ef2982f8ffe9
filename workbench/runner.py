"""Batch runs of the paper notebooks through papermill.

Each notebook runs with its own output folder (``OUT/<notebook stem>/``) passed as the
``output_dir`` parameter; the executed notebook, its HTML export and whatever it writes
(figures, ``results.json``) land there, and ``OUT/summary.json`` lists every run.

The kernels talk to papermill over CurveZMQ-encrypted sockets where pyzmq supports it (ipykernel
warns on every start about plain TCP otherwise). The HTML export leaves out the outputs it cannot
show (plotly's JSON: each figure is saved as its own HTML file), without nbconvert's warning
about each of them; every other warning and error still shows. A run interrupted by
``KeyboardInterrupt`` shuts its kernel down (at once when a stop signal is being handled, see
``workbench.processes``).
"""
from __future__ import annotations

import ast
import functools
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.claims import claims_markdown, parse_seeds
from workbench.progress import bar

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
#: nbconvert's warning for an output with no representation in HTML (plotly's JSON)
UNREPRESENTED_OUTPUT = r"Your element with mimetype\(s\) .* is not able to be represented"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the failing cell."""


@dataclass
class RunRecord:
    notebook: str
    output_dir: str
    parameters: dict[str, Any]
    seconds: float = 0.0
    ok: bool = False
    error: str | None = None
    failed_cell: int | None = None
    results: dict[str, Any] = field(default_factory=dict)


def notebooks(names: list[str] | None = None) -> list[Path]:
    """The notebooks to run: ``names`` (paths, or stems/file names in ``notebooks/``) or all."""
    if not names:
        return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    found = []
    for name in names:
        path = Path(name)
        candidates = [path, NOTEBOOK_DIR / path.name, NOTEBOOK_DIR / f"{path.name}.ipynb"]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            known = ", ".join(p.stem for p in sorted(NOTEBOOK_DIR.glob("*.ipynb")))
            raise FileNotFoundError(f"no notebook '{name}'; known notebooks: {known}")
        found.append(match)
    return found


def parameters_of(notebook: Path) -> dict[str, dict[str, Any]]:
    """The notebook's declared parameters (papermill's inspection: type, default, help)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def parse_value(declared: dict[str, dict[str, Any]], name: str, text: str) -> Any:
    """A command-line value converted to the declared type of parameter ``name``."""
    kind = (declared[name].get("inferred_type_name") or "").replace("None", "").strip()
    if kind == "str":
        return text
    if kind == "bool":
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"parameter '{name}' is a bool, got {text!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if kind == "float" and isinstance(value, int):
        value = float(value)
    return value


def run_notebook(notebook: Path, out: Path, parameters: dict[str, Any] | None = None,
                 smoke: bool = False, kernel_name: str = "python3") -> RunRecord:
    """Execute one notebook with papermill; export HTML; read its ``results.json``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output_dir = out / notebook.stem
    output_dir.mkdir(parents=True, exist_ok=True)
    values = {"output_dir": str(output_dir.resolve()), **(parameters or {})}
    if smoke:
        values["smoke"] = True
    record = RunRecord(notebook.name, str(output_dir), values)
    executed = output_dir / notebook.name
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(executed), parameters=values,
                                   kernel_name=kernel_name, progress_bar=False,
                                   cwd=str(notebook.parent), config=_kernel_config(),
                                   kernel_manager_class=_kernel_manager_class())
        record.ok = True
    except PapermillExecutionError as error:
        record.failed_cell = _source_cell_number(executed, error.exec_count)
        record.error = f"{error.ename}: {error.evalue}"
    finally:
        record.seconds = time.perf_counter() - start
    if executed.is_file():
        _export_html(executed)
    results = output_dir / "results.json"
    if results.is_file():
        record.results = json.loads(results.read_text())
    return record


def _kernel_config():
    """nbclient's configuration: CurveZMQ transport encryption for the kernel where pyzmq has
    it and the kernel declares support (ipykernel does)."""
    import zmq
    from traitlets.config import Config

    config = Config()
    if zmq.has("curve"):
        config.KernelManager.transport_encryption = "auto"
    return config


@functools.cache
def _kernel_manager_class() -> type:
    """jupyter_client's ``AsyncKernelManager``, but a kernel still running when a stop signal
    is being handled is killed at once: shut down gracefully in the middle of a cell, ipykernel
    logs a traceback for the reply it can no longer send."""
    from jupyter_client import AsyncKernelManager

    from workbench import processes

    class KernelManager(AsyncKernelManager):
        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            await super().shutdown_kernel(now=now or processes.stopping(), restart=restart)

    return KernelManager


def _source_cell_number(executed: Path, exec_count: int | None) -> int | None:
    """1-based position, in the original notebook, of the cell that ran as ``exec_count``
    (papermill adds cells of injected parameters and error banners to the executed copy)."""
    import nbformat

    added = {"injected-parameters", "papermill-error-cell-tag"}
    position = 0
    for cell in nbformat.read(executed, as_version=4).cells:
        if added & set(cell.metadata.get("tags", [])):
            continue
        position += 1
        if cell.cell_type == "code" and cell.get("execution_count") == exec_count:
            return position
    return None


def _export_html(executed: Path) -> None:
    from workbench.html_export import export_html

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=UNREPRESENTED_OUTPUT, category=UserWarning)
        export_html(executed)


def reproduce(names: list[str] | None = None, out: str | Path = "output",
              parameters: dict[str, str] | None = None, smoke: bool = False,
              seeds: str | None = None) -> list[RunRecord]:
    """Run notebooks, write ``out/summary.json`` and ``out/claims.md`` (every notebook's claims
    table); raise ``NotebookFailed`` naming failures.

    ``seeds`` (``"0,1,2"``) sets the ``seeds`` parameter of every notebook: the seeds each
    claim is measured at, and its confidence interval taken over.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = notebooks(names)
    if not paths:
        raise FileNotFoundError(f"no notebooks found in {NOTEBOOK_DIR}")
    parameters = dict(parameters or {})
    if seeds is not None:
        if "seeds" in parameters:
            raise ValueError("give the seeds once: --seeds or -p seeds, not both")
        parameters["seeds"] = ",".join(str(s) for s in parse_seeds(seeds))
    declared = {path: parameters_of(path) for path in paths}
    for name in parameters:
        if not any(name in d for d in declared.values()):
            raise ValueError(f"no notebook among {[p.stem for p in paths]} has a parameter "
                             f"'{name}'")
    records = []
    for path in bar(paths, desc="notebooks", unit="notebook"):
        typed = {k: parse_value(declared[path], k, v) for k, v in parameters.items()
                 if k in declared[path]}
        records.append(run_notebook(path, out, typed, smoke=smoke))
    (out / "summary.json").write_text(json.dumps([asdict(r) for r in records], indent=2,
                                                 default=str))
    write_claims(records, out / "claims.md")
    failed = [r for r in records if not r.ok]
    if failed:
        lines = [f"{r.notebook} failed in cell {r.failed_cell}: {r.error}" for r in failed]
        raise NotebookFailed("; ".join(lines))
    return records


def write_claims(records: list[RunRecord], path: Path) -> None:
    """One Markdown claims table per notebook that reported claims, with the seeds it used."""
    sections = ["# Claims of the papers, as measured\n",
                "Each claim's quantity at every seed, Student's t interval of the mean over the "
                "seeds and the verdict (`workbench.claims`).\n"]
    for record in records:
        claims = record.results.get("claims")
        if not claims:
            continue
        seeds = sorted({s for claim in claims for s in claim["seeds"]})
        sections.append(f"## {Path(record.notebook).stem} (seeds {', '.join(map(str, seeds))})"
                        f"\n\n{claims_markdown(claims)}\n")
    path.write_text("\n".join(sections))
