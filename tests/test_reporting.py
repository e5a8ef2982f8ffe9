"""``Report`` (``workbench/reporting.py``): the settings in ``results.json`` are every parameter a
notebook declares, with the values the notebook ran with."""
from __future__ import annotations

import json

import nbformat
import pytest
from conftest import write_notebook

from workbench import runner
from workbench.reporting import Report, declared_parameters

PARAMETERS = '''scale: float = 1.0  # a factor
label: str = "x"  # a name
smoke: bool = False  # fast run
output_dir: str = ""  # where results go
'''
WRITES_REPORT = '''from workbench.reporting import Report, declared_parameters
scale = scale * 10  # a change made after the parameters cell is what gets recorded
report = Report.from_parameters("03_report.ipynb", globals())
report.add(value=1)
report.write()
'''


def test_settings_are_every_declared_parameter_with_its_current_value(tmp_path):
    notebook = write_notebook(tmp_path / "03_report.ipynb", "", PARAMETERS)
    namespace = {"scale": 2.5, "label": "y", "smoke": True, "output_dir": str(tmp_path / "out"),
                 "unrelated": 1}
    report = Report.from_parameters(notebook, namespace)
    assert report.results["settings"] == {k: namespace[k] for k in
                                          ("scale", "label", "smoke", "output_dir")}
    path = report.write()
    assert path == tmp_path / "out" / "results.json"
    assert json.loads(path.read_text())["settings"]["label"] == "y"


def test_a_missing_value_or_notebook_is_named(tmp_path):
    notebook = write_notebook(tmp_path / "03_report.ipynb", "", PARAMETERS)
    with pytest.raises(ValueError, match=r"\['label'\] declared in 03_report.ipynb"):
        Report.from_parameters(notebook, {"scale": 1.0, "smoke": False, "output_dir": ""})
    with pytest.raises(FileNotFoundError, match="notebook: no file 'nowhere.ipynb'"):
        Report.from_parameters("nowhere.ipynb", {})
    no_output = write_notebook(tmp_path / "04_plain.ipynb", "", "scale: float = 1.0  # a\n")
    with pytest.raises(ValueError, match="no 'output_dir'"):
        Report.from_parameters(no_output, {"scale": 1.0})
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "05_none.ipynb")
    with pytest.raises(ValueError, match="one cell tagged 'parameters', has 0"):
        Report.from_parameters(tmp_path / "05_none.ipynb", {})


@pytest.mark.parametrize("notebook", runner.notebooks(), ids=lambda p: p.stem)
def test_each_paper_notebook_reports_all_its_parameters(notebook):
    """Each notebook builds its report from its own parameters cell (found by file name in
    ``notebooks/``, the runner's folder), and never lists settings by hand."""
    code = "\n".join(cell.source for cell in nbformat.read(notebook, as_version=4).cells
                     if cell.cell_type == "code")
    assert f'Report.from_parameters("{notebook.name}", globals())' in code
    assert "Report(" not in code
    declared = runner.parameters_of(notebook)
    assert declared_parameters(notebook) == list(declared)  # the names papermill finds
    namespace = {name: f"value of {name}" for name in declared} | {"output_dir": ""}
    settings = Report.from_parameters(notebook.name, namespace).results["settings"]
    assert list(settings) == list(declared) and {"smoke", "output_dir"} <= set(settings)


@pytest.mark.slow
def test_values_injected_by_papermill_reach_results_json(tmp_path):
    notebook = write_notebook(tmp_path / "03_report.ipynb", WRITES_REPORT, PARAMETERS)
    record = runner.run_notebook(notebook, tmp_path / "out", {"scale": 3.0, "label": "given"},
                                 smoke=True)
    assert record.ok, record.error
    assert record.results["settings"] == {
        "scale": 30.0, "label": "given", "smoke": True,
        "output_dir": str((tmp_path / "out" / "03_report").resolve())}
    assert record.results["value"] == 1
