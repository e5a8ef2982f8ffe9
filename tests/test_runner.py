"""The papermill batch runner and the Voila command line, on small notebooks made here."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import write_notebook

from workbench import runner
from workbench.serve import REFILL_DELAY_S, VOILA_CONFIG_DIR, voila_command


PARAMETERS = '''scale: float = 1.0  # a factor
label: str = "x"  # a name
smoke: bool = False  # fast run
output_dir: str = ""  # where results go
'''
WRITES_RESULTS = '''import json, pathlib
pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)
pathlib.Path(output_dir, "results.json").write_text(
    json.dumps({"value": scale * 2, "label": label, "smoke": smoke}))
'''


@pytest.fixture
def good(tmp_path):
    return write_notebook(tmp_path / "01_good.ipynb", WRITES_RESULTS, PARAMETERS)


@pytest.fixture
def bad(tmp_path):
    return write_notebook(tmp_path / "02_bad.ipynb", "raise ValueError('broken on purpose')",
                          PARAMETERS)


@pytest.mark.slow
def test_reproduce_runs_with_typed_parameters_and_exports(tmp_path, good):
    out = tmp_path / "out"
    records = runner.reproduce([str(good)], out, {"scale": "3", "label": "abc"}, smoke=True)
    assert records[0].ok and records[0].results == {"value": 6.0, "label": "abc", "smoke": True}
    assert (out / "01_good" / "01_good.ipynb").is_file()
    assert (out / "01_good" / "01_good.html").read_text().startswith("<!DOCTYPE html>")
    summary = json.loads((out / "summary.json").read_text())
    assert summary[0]["parameters"]["scale"] == 3.0


@pytest.mark.slow
def test_a_failing_notebook_is_named_with_its_cell(tmp_path, good, bad):
    with pytest.raises(runner.NotebookFailed,
                       match=r"02_bad.ipynb failed in cell 2: ValueError: broken on purpose"):
        runner.reproduce([str(good), str(bad)], tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["ok"] for r in summary] == [True, False]  # the good run is kept


@pytest.mark.slow
def test_command_line_exits_non_zero_naming_the_failure(tmp_path, bad):
    result = subprocess.run([sys.executable, "-m", "workbench", "reproduce", str(bad), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "02_bad.ipynb failed in cell 2" in result.stderr


def test_unknown_parameter_and_notebook_are_refused(tmp_path, good):
    with pytest.raises(ValueError, match="has a parameter 'nope'"):
        runner.reproduce([str(good)], tmp_path / "out", {"nope": "1"})
    with pytest.raises(FileNotFoundError, match="no notebook 'missing'"):
        runner.reproduce(["missing"], tmp_path / "out")


def test_parameter_values_take_the_declared_type(good):
    declared = runner.parameters_of(good)
    assert runner.parse_value(declared, "scale", "2") == 2.0
    assert isinstance(runner.parse_value(declared, "scale", "2"), float)
    assert runner.parse_value(declared, "label", "12") == "12"
    assert runner.parse_value(declared, "smoke", "true") is True
    with pytest.raises(ValueError, match="'smoke' is a bool"):
        runner.parse_value(declared, "smoke", "maybe")


def test_voila_binds_loopback_without_token_and_requires_one_elsewhere():
    command, token = voila_command()
    assert "--Voila.ip=127.0.0.1" in command and token is None
    assert not any(c.startswith("--Voila.token") for c in command)
    assert "--MappingKernelManager.cull_idle_timeout=600" in command
    assert not any("show_tracebacks=True" in c or "strip_sources=False" in c for c in command)
    command, token = voila_command(ip="0.0.0.0")
    assert token and len(token) >= 24 and f"--Voila.token={token}" in command
    command, token = voila_command(ip="0.0.0.0", token="given-secret")
    assert token == "given-secret" and "--Voila.token=given-secret" in command
    with pytest.raises(ValueError, match="port"):
        voila_command(port=0)


def test_the_study_notebook_checks_its_token_itself_on_a_public_address():
    """Voilà's token would cover the participants' pages too: the study notebook gets none, and
    the token goes to its researcher's page (``serve`` hands it to the kernels)."""
    command, token = voila_command("05_interpretability_study", ip="0.0.0.0")
    assert token and len(token) >= 24
    assert not any(c.startswith("--Voila.token") for c in command)
    command, token = voila_command("05_interpretability_study")
    assert token is None
    command, token = voila_command("00_explorer", ip="0.0.0.0")
    assert f"--Voila.token={token}" in command


def test_voila_command_preheats_kernels_on_request():
    command, _ = voila_command(preheat=2)
    assert "--VoilaConfiguration.preheat_kernel=True" in command
    assert "--VoilaConfiguration.default_pool_size=2" in command
    # a kernel a page took is replaced after the refill delay, not at once
    assert f"--VoilaKernelManager.fill_delay={REFILL_DELAY_S}" in command
    assert "--VoilaKernelManager.fill_delay=5.0" in voila_command(preheat=1, refill_delay=5)[0]
    assert not any("preheat" in c or "fill_delay" in c for c in voila_command()[0])
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="preheat"):
            voila_command(preheat=bad)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="refill_delay"):
            voila_command(preheat=1, refill_delay=bad)


def test_voila_pages_get_the_xsrf_cookie_their_shutdown_beacon_needs():
    """Voilà's page posts its ``_xsrf`` cookie when it closes; Voilà never set one, so each closed
    tab kept its kernel (403). Our config's identity provider sets it on page requests (not on
    websocket upgrades); XSRF checking itself stays on, and no prelaunch hook is configured
    (Voilà refuses preheated kernels with one)."""
    import asyncio
    from unittest import mock

    import tornado.httputil
    import tornado.web
    from jupyter_server.auth.identity import PasswordIdentityProvider
    from traitlets.config.loader import PyFileConfigLoader

    command, _token = voila_command()
    paths = [c.split("=", 1)[1] for c in command if c.startswith("--Voila.config_file_paths=")]
    assert paths[0] == "." and paths[-1] == str(VOILA_CONFIG_DIR)  # a user's config goes first
    assert not any("xsrf" in c.lower() for c in command)
    config = PyFileConfigLoader("voila.py", path=str(VOILA_CONFIG_DIR)).load_config()
    assert "prelaunch_hook" not in config.VoilaConfiguration
    provider_class = config.Voila.identity_provider_class
    assert issubclass(provider_class, PasswordIdentityProvider)

    def handler_for(headers):
        request = tornado.httputil.HTTPServerRequest(
            start_line=tornado.httputil.RequestStartLine("GET", "/", "HTTP/1.1"),
            headers=tornado.httputil.HTTPHeaders({"Host": "127.0.0.1:8866", **headers}),
            connection=mock.Mock())
        return tornado.web.RequestHandler(tornado.web.Application(), request)

    provider = provider_class(token="")
    with mock.patch.object(PasswordIdentityProvider, "get_user", return_value="user") as parent:
        page, socket = handler_for({}), handler_for({"Upgrade": "websocket"})
        assert asyncio.run(provider.get_user(page)) == "user"
        assert asyncio.run(provider.get_user(socket)) == "user"
    assert parent.call_count == 2  # the user still comes from Voilà's own provider
    assert "_xsrf" not in getattr(socket, "_new_cookie", {})
    cookie = page._new_cookie["_xsrf"]
    assert cookie.value and cookie["path"] == "/" and not cookie["httponly"]
