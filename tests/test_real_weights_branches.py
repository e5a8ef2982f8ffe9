"""The notebooks' branches for assets a user brings (ImageNet weights, MNIST files) run here on
stand-ins of the same format: torchvision's architectures with random weights saved to a file,
and MNIST-format IDX files of random digits. The numbers mean nothing; the code path is the one
a user with the real files takes, so they do not meet its first run.

Notebook 01's VGG-16 branch runs on 64-pixel crops (the network's adaptive pooling takes them):
the code path of 224 pixels, at a twelfth of the convolutions' cost. Its largest memory is the
float64 moments of the 25,088 x 4,096 first dense layer (fitting the patterns, about 3 GB).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench import runner

pytestmark = pytest.mark.slow


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Nets trained on the stand-ins go to a cache of their own, never the user's."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE", str(folder))
    return folder


def write_idx(path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (the MNIST format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def random_weights(factory, path):
    torch.manual_seed(0)
    torch.save(factory(weights=None).state_dict(), path)
    return path


def run(notebook: str, out, **parameters) -> dict:
    (record,) = runner.reproduce([notebook], out, {k: str(v) for k, v in parameters.items()},
                                 smoke=True)
    assert record.ok
    return json.loads((out / notebook / "results.json").read_text())


def test_unified_gradients_on_mnist_files(tmp_path, cache):
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    for stem, count in (("train", 120), ("t10k", 40)):
        write_idx(root / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        write_idx(root / f"{stem}-labels-idx1-ubyte", np.arange(count) % 10)
    results = run("02_unified_gradients", tmp_path / "out", mnist_root=root)
    assert results["settings"]["mnist_root"] == str(root)


def test_patternnet_with_vgg16_weights_from_a_file(tmp_path, cache):
    from torchvision.models import vgg16

    weights = random_weights(vgg16, tmp_path / "vgg16.pth")
    results = run("01_patternnet", tmp_path / "out", vgg16_weights=weights, vgg16_size=64)
    assert results["settings"]["vgg16_weights"] == str(weights)
    rho = results["rho"]["0"]
    # rho is defined on every layer, the 25,088-input first dense layer included
    for estimator in ("S_w", "S_a", "S_a+-"):
        assert set(rho[estimator]) >= {"features.0", "classifier.0", "classifier.6"}
        assert all(value == value for value in rho[estimator].values())  # no NaN
    # one seed in the smoke run: a verdict reads the value and says so
    verdicts = {claim["verdict"].removesuffix(" (1 seed)") for claim in results["claims"]}
    assert verdicts <= {"holds", "inconclusive", "does not hold"}, verdicts


def test_neurons_vs_pcs_with_alexnet_weights_from_a_file(tmp_path, cache):
    from torchvision.models import alexnet

    weights = random_weights(alexnet, tmp_path / "alexnet.pth")
    results = run("04_neurons_vs_pcs", tmp_path / "out", alexnet_weights=weights,
                  layers="features.4,classifier.5",  # a conv and a dense layer: enough for the path
                  kinds_layer="")  # the five bases of a 4,096-wide layer take minutes
    assert results["settings"]["alexnet_weights"] == str(weights)
    # the claims are about AlexNet's own layers: its first dense layer is classifier.5 here
    quantities = [claim["quantity"] for claim in results["claims"]]
    assert any(q.endswith("classifier.5") for q in quantities)
    assert all("AlexNet on the shipped photos" in claim["note"] for claim in results["claims"])
