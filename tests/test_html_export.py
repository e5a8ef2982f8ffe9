"""``Report.figure`` displays each figure where it is computed, and the batch run's HTML export
(``workbench/html_export.py``) draws those outputs with one embedded copy of plotly.js."""
from __future__ import annotations

import nbformat
import plotly.graph_objects as go
import pytest
from conftest import write_notebook

from workbench import runner
from workbench.html_export import PLOTLY_MIMETYPE, add_figure_html
from workbench.reporting import Report

PLOTLYJS_BANNER = "* plotly.js v"  # the licence header at the top of plotly.min.js
PARAMETERS = '''smoke: bool = False  # fast run
output_dir: str = ""  # where results go
'''
MAKES_FIGURES = '''import plotly.graph_objects as go
from workbench.reporting import Report
report = Report.from_parameters("01_figures.ipynb", globals())
for i in range(2):
    report.figure(f"line_{i}", go.Figure(go.Scatter(x=[0, 1], y=[i, 1 - i])))
report.figure("hidden", go.Figure(go.Bar(x=["a"], y=[1])), show=False)
report.write()
'''


def _plotly_output(y: list[float]) -> dict:
    bundle = go.Figure(go.Scatter(y=y)).to_plotly_json()
    return nbformat.v4.new_output("display_data", data={PLOTLY_MIMETYPE: bundle})


def test_plotly_outputs_get_html_with_plotlyjs_in_the_first_only():
    notebook = nbformat.v4.new_notebook()
    has_html = nbformat.v4.new_output("display_data", data={
        PLOTLY_MIMETYPE: go.Figure().to_plotly_json(), "text/html": "<p>kept</p>"})
    notebook.cells = [nbformat.v4.new_code_cell("a", outputs=[_plotly_output([1, 2])]),
                      nbformat.v4.new_markdown_cell("text"),
                      nbformat.v4.new_code_cell("b", outputs=[has_html, _plotly_output([3])])]
    assert add_figure_html(notebook) == 2
    first = notebook.cells[0].outputs[0].data["text/html"]
    second = notebook.cells[2].outputs[1].data["text/html"]
    assert PLOTLYJS_BANNER in first and PLOTLYJS_BANNER not in second
    assert "Plotly.newPlot" in first and "Plotly.newPlot" in second
    assert "[3]" in second.replace(" ", "")  # the second output's own data
    assert notebook.cells[2].outputs[0].data["text/html"] == "<p>kept</p>"
    assert add_figure_html(notebook) == 0  # nothing left to convert


def test_figure_outside_a_notebook_writes_a_file_using_a_local_plotlyjs(tmp_path):
    report = Report(tmp_path, {})
    assert report.figure("line", go.Figure(go.Scatter(y=[1, 2]))) is None
    text = (tmp_path / "line.html").read_text()
    assert 'src="plotly.min.js"' in text and "cdn" not in text.lower()
    assert (tmp_path / "plotly.min.js").read_text().lstrip().startswith("/**")
    assert report.figures == ["line.html"]


@pytest.mark.slow
def test_a_batch_run_displays_shown_figures_and_exports_them_with_one_plotlyjs(tmp_path):
    notebook = write_notebook(tmp_path / "01_figures.ipynb", MAKES_FIGURES, PARAMETERS)
    record = runner.run_notebook(notebook, tmp_path / "out")
    assert record.ok, record.error
    folder = tmp_path / "out" / "01_figures"
    executed = nbformat.read(folder / "01_figures.ipynb", as_version=4)
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])
               if PLOTLY_MIMETYPE in output.get("data", {})]
    assert [o.data[PLOTLY_MIMETYPE]["data"][0]["y"] for o in outputs] == [[0, 1], [1, 0]]
    assert all("text/html" not in o.data for o in outputs)  # the notebook itself stays small
    html = (folder / "01_figures.html").read_text()
    assert html.count(PLOTLYJS_BANNER) == 1 and html.count("Plotly.newPlot(") == 2
    assert record.results["figures"] == ["line_0.html", "line_1.html", "hidden.html"]
