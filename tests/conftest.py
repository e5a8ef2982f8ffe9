"""Shared fixtures: small seeded networks of the kinds the papers use."""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn


def mlp(activation: type[nn.Module] = nn.Tanh, bias: bool = True, sizes=(8, 16, 12, 5),
        seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers).eval()


def cnn(activation: type[nn.Module] = nn.ReLU, pool: type[nn.Module] = nn.MaxPool2d,
        bias: bool = True, seed: int = 0, classes: int = 4) -> nn.Module:
    """3x8x8 inputs -> conv, act, pool, conv, act, flatten, linear, act, linear."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=bias), activation(), pool(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=bias), activation(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16, bias=bias), activation(),
        nn.Linear(16, classes, bias=bias),
    ).eval()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run faster on one intra-op thread, above all on a busy machine (use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tanh_mlp():
    return mlp(nn.Tanh)


@pytest.fixture
def relu_cnn():
    return cnn(nn.ReLU)


@pytest.fixture
def image_batch():
    torch.manual_seed(1)
    return torch.randn(3, 3, 8, 8)


@pytest.fixture
def vector_batch():
    torch.manual_seed(1)
    return torch.randn(4, 8)


FAST_OPTIONS = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"n_samples": 3, "seed": 0},
                "shapley_sampling": {"n_samples": 2, "seed": 0},
                "gradient_shap": {"n_samples": 3, "seed": 0},
                "kernel_shap": {"n_samples": 8, "seed": 0}, "lime": {"n_samples": 8, "seed": 0},
                "feature_permutation": {"seed": 0}, "noise_tunnel": {"n_samples": 2, "seed": 0}}


def method_options(method: str, model: nn.Module, inputs: torch.Tensor, **extra) -> dict:
    """Fast options for ``method``; pattern methods get patterns fitted on ``inputs``."""
    import workbench as wb

    options = {**FAST_OPTIONS.get(method, {}), **extra.get(method, {})}
    if method in ("pattern_net", "pattern_attribution"):
        options["patterns"] = wb.fit_patterns(model, inputs, estimator="a+-", progress=False)
    return options


@pytest.fixture(scope="session")
def dask_client():
    """A Dask ``LocalCluster`` of 2 worker processes on loopback, shared by a test session."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def write_notebook(path, body: str, parameters: str):
    """A two-cell notebook at ``path``: a papermill ``parameters`` cell, then ``body``."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell, nbformat.v4.new_code_cell(body)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    return path


def seeded_case(model: nn.Module, seed: int, *, vector: bool):
    """Float64 ``model``, inputs, a random baseline and explicit targets, seeded: 4 vectors of 8
    features (``vector``) or 3 images of 3x8x8, the inputs of ``mlp`` and ``cnn``."""
    rng = torch.Generator().manual_seed(1000 + seed)
    shape = (4, 8) if vector else (3, 3, 8, 8)
    x = torch.randn(shape, generator=rng, dtype=torch.float64)
    baseline = 0.5 * torch.randn(shape, generator=rng, dtype=torch.float64)
    target = torch.tensor([4, 0, 2, 1]) if vector else torch.tensor([3, 0, 1])
    return model.double(), x, baseline, target


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerURL(str):
    """A server's base URL that can also show the end of the server's log (for a failure's
    message: a kernel that died and restarted, a websocket that dropped)."""

    def __new__(cls, url: str, log) -> ServerURL:
        made = super().__new__(cls, url)
        made._log = log
        return made

    def log_tail(self, characters: int = 3000) -> str:
        """The last ``characters`` of the server's log so far (read without moving the file's
        offset, which the server shares)."""
        import os

        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - 4 * characters)
        return os.pread(fd, size - start, start).decode(errors="replace")[-characters:]


@contextlib.contextmanager
def voila_server(target: str | None, cwd, timeout: float = 90.0, preheat: int = 0,
                 preheated_kernels: int = 0, preheat_timeout: float = 240.0):
    """Voilà serving ``target`` (a notebook path, or ``None``: the notebooks folder) with the
    smoke settings on a free loopback port; yields its URL once it answers (and, given
    ``preheated_kernels``, once that many preheated kernels have run their notebook), and stops
    it and its kernels (``workbench.processes.stop``) however the block ends."""
    import os
    import subprocess
    import tempfile
    import time
    import urllib.request

    from workbench import processes
    from workbench.serve import voila_command

    port = free_port()
    command, _ = voila_command(target, port=port, preheat=preheat)
    log = tempfile.TemporaryFile()  # a file, not a pipe: nobody reads Voila's log while it runs
    server = processes.start(command, cwd=cwd, env={**os.environ, "WORKBENCH_SMOKE": "1"},
                             stdout=log, stderr=subprocess.STDOUT)
    url = ServerURL(f"http://127.0.0.1:{port}/", log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if server.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"voila exited: {log.read().decode()[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"voila did not start within {timeout:.0f} s")
                time.sleep(0.5)
        if preheated_kernels:
            from benchmarks.load import wait_preheated

            if wait_preheated(server, preheated_kernels, preheat_timeout) is None:
                pytest.fail(f"{preheated_kernels} preheated kernels not ready within "
                            f"{preheat_timeout:.0f} s")
        yield url
    finally:
        processes.stop(server, grace=15)  # Voilà and its kernels
        log.close()
