"""Every method on every available device gives the CPU's answer (CUDA tests run where a GPU
is present and are skipped elsewhere)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, method_options

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
EXTRA = {"occlusion": {"window": (3, 2, 2)}}


def test_default_device_prefers_cuda_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert wb.default_device().type == expected
    assert wb.default_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            wb.default_device("cuda")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", wb.general_methods())
def test_result_lives_on_the_inputs_device_and_matches_the_cpu(method, device):
    model = cnn(nn.ReLU).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    options = method_options(method, model, x, **EXTRA)
    expected = wb.attribute(model, x, method, target=[1, 2], **options)
    if "patterns" in options:
        options["patterns"] = options["patterns"].to(device)
    actual = wb.attribute(model.to(device), x.to(device), method, target=[1, 2], **options)
    assert actual.device.type == device and actual.dtype == x.dtype
    torch.testing.assert_close(actual.cpu(), expected, rtol=1e-9, atol=1e-11)
