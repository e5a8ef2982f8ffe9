"""Sweeps on a Dask LocalCluster (2 worker processes on loopback), on a small notebook made here:
results equal sequential runs, resume skips finished points, failures are rows, a killed
worker's points are still done."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import write_notebook

from workbench import runner, sweep

distributed = pytest.importorskip("distributed")

PARAMETERS = '''x: int = 0  # a grid value
seed: int = 0  # another
delay: float = 0.0  # seconds to sleep
fail_at: int = -1  # raise when x equals this
smoke: bool = False  # fast run
output_dir: str = ""  # where results go
'''
BODY = '''import json, os, pathlib, time
time.sleep(delay)
if x == fail_at:
    raise ValueError(f"x={x} fails on purpose")
pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)
pathlib.Path(output_dir, "results.json").write_text(json.dumps(
    {"settings": {"x": x, "seed": seed}, "score": x * 10 + seed, "nested": {"half": x / 2},
     "values": [x, seed]}))
'''


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return write_notebook(tmp_path_factory.mktemp("sweep") / "probe.ipynb", BODY, PARAMETERS)


@pytest.fixture
def client(dask_client):
    return dask_client


def test_grid_specs_are_typed_and_validated(probe):
    declared = runner.parameters_of(probe)
    grid = sweep.parse_grid(["x=1..3", "seed=5,7", "delay=0.5"], declared)
    assert grid == {"x": [1, 2, 3], "seed": [5, 7], "delay": [0.5]}
    assert len(sweep.grid_points(grid)) == 6
    with pytest.raises(ValueError, match="no parameter 'nope'.*fail_at"):
        sweep.parse_grid(["nope=1"], declared)
    with pytest.raises(ValueError, match="NAME=V1"):
        sweep.parse_grid(["x"], declared)
    with pytest.raises(ValueError, match="empty range"):
        sweep.parse_grid(["x=3..1"], declared)
    names = {sweep.point_name(p) for p in sweep.grid_points(grid)}
    assert len(names) == 6  # one folder per point


@pytest.mark.slow
def test_sweep_equals_sequential_runs_and_resumes(probe, client, tmp_path):
    grid = {"x": [0, 1], "seed": [3, 4]}
    table = sweep.sweep(probe, grid, out=tmp_path / "s", scheduler=client, progress=False)
    assert len(table) == 4 and table["ok"].all() and not table["resumed"].any()
    for _, row in table.iterrows():
        expected = runner.run_notebook(probe, tmp_path / "sequential" / row["point"],
                                       {"x": int(row["x"]), "seed": int(row["seed"])})
        assert expected.ok
        point_results = json.loads((tmp_path / "s" / "points" / row["point"] / "probe"
                                    / "results.json").read_text())
        assert point_results == expected.results
        assert row["results.score"] == expected.results["score"]
        assert row["results.nested.half"] == expected.results["nested"]["half"]
    assert (tmp_path / "s" / "sweep.csv").is_file() and (tmp_path / "s" / "summary.html").is_file()
    # both workers took part
    pids = {json.loads((tmp_path / "s" / "points" / p / "point.json").read_text())["worker_pid"]
            for p in table["point"]}
    assert len(pids) == 2

    # resume: finished points are skipped, a broken one is run again
    broken = tmp_path / "s" / "points" / table["point"][0] / "probe" / "results.json"
    broken.write_text("{not json")
    before = {p: (tmp_path / "s" / "points" / p / "point.json").stat().st_mtime_ns
              for p in table["point"]}
    again = sweep.sweep(probe, grid, out=tmp_path / "s", scheduler=client, progress=False)
    assert again["ok"].all()
    assert list(again["resumed"]) == [False] + [True] * 3
    after = {p: (tmp_path / "s" / "points" / p / "point.json").stat().st_mtime_ns
             for p in table["point"]}
    assert [before[p] == after[p] for p in table["point"]] == [False] + [True] * 3
    assert again[["x", "seed", "results.score"]].equals(table[["x", "seed", "results.score"]])


@pytest.mark.slow
def test_a_failed_point_is_a_row_with_its_cell_and_the_others_finish(probe, client, tmp_path):
    table = sweep.sweep(probe, ["x=0..3"], parameters={"fail_at": 2}, out=tmp_path / "f",
                        scheduler=client, retries=1, progress=False)
    assert list(table["ok"]) == [True, True, False, True]
    failed = table[~table["ok"]].iloc[0]
    assert "x=2 fails on purpose" in failed["error"] and failed["failed_cell"] == 2
    assert table[table["ok"]]["results.score"].tolist() == [0, 10, 30]
    # the failure is not taken for a finished point on re-run
    again = sweep.sweep(probe, ["x=0..3"], parameters={"fail_at": 2}, out=tmp_path / "f",
                        scheduler=client, retries=0, progress=False)
    assert list(again["resumed"]) == [True, True, False, True]


@pytest.mark.slow
def test_a_killed_worker_still_ends_with_every_point_done(probe, client, tmp_path):
    def kill_one_worker_while_busy():
        deadline = time.time() + 60
        while time.time() < deadline:
            processing = client.processing()
            if any(processing.values()):
                address = next(a for a, tasks in processing.items() if tasks)
                pid = client.run(os.getpid, workers=[address])[address]
                time.sleep(1.0)  # let its notebook start
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.2)

    killed: list[int] = []
    thread = threading.Thread(target=kill_one_worker_while_busy)
    thread.start()
    table = sweep.sweep(probe, {"x": [0, 1, 2, 3]}, parameters={"delay": 3.0},
                        out=tmp_path / "k", scheduler=client, retries=2, progress=False)
    thread.join()
    assert killed, "no worker was killed"
    assert table["ok"].all(), table[["point", "error"]]
    assert table["results.score"].tolist() == [0, 10, 20, 30]
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


@pytest.mark.slow
def test_the_command_line_runs_a_local_sweep(probe, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "workbench", "sweep", str(probe), "--grid", "x=1,2",
         "--workers", "2", "--out", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "cli" / "sweep.csv").read_text().splitlines()
    assert len(table) == 3 and "2 of 2 points ok" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "workbench", "sweep", str(probe), "--grid",
                          "nope=1", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no parameter 'nope'" in bad.stderr


def test_summary_figure_draws_each_numeric_result_per_group_and_names_failures():
    import pandas as pd

    table = pd.DataFrame({"x": [2, 1, 2, 1, 3], "seed": [0, 0, 1, 1, 0],
                          "point": ["x=2,seed=0", "x=1,seed=0", "x=2,seed=1", "x=1,seed=1",
                                    "x=3,seed=0"],
                          "ok": [True, True, True, True, False], "seconds": [1.0] * 5,
                          "results.score": [20.0, 10.0, 21.0, 11.0, None],
                          "results.label": ["a"] * 5})
    figure = sweep.summary_figure(table, ["x", "seed"])
    assert figure.layout.title.text == "sweep: 4 of 5 points ok; failed: x=3,seed=0"
    assert [a.text for a in figure.layout.annotations] == ["score"]  # numeric columns only
    lines = {trace.name: (list(trace.x), list(trace.y)) for trace in figure.data}
    assert lines == {"seed=0": ([1, 2], [10.0, 20.0]), "seed=1": ([1, 2], [11.0, 21.0])}
    no_numbers = sweep.summary_figure(table.drop(columns=["results.score"]), ["x"])
    assert list(no_numbers.data[0].marker.color) == ["#1f77b4"] * 4 + ["#d62728"]
