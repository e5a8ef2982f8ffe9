"""Bad input gets a clear exception that names the problem."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, mlp


@pytest.fixture
def model():
    return mlp(nn.ReLU)


def test_unknown_method_lists_the_known_names(model):
    with pytest.raises(ValueError, match="unknown method 'lrp_epsilom'.*Did you mean 'lrp_epsilon'"
                                         ".*integrated_gradients"):
        wb.attribute(model, torch.randn(2, 8), "lrp_epsilom")


@pytest.mark.parametrize("target,error,message", [
    (5, ValueError, "out of range.*5 classes"),
    (-1, ValueError, "out of range"),
    ([0, 1, 2], ValueError, "3 entries but inputs have 2 samples"),
    (torch.tensor([0.0, 1.0]), TypeError, "integer tensor"),
    (torch.tensor([[0, 1]]), TypeError, "1-D"),
    (torch.tensor(7), ValueError, "out of range.*5 classes.*7"),
    (torch.tensor(1.0), TypeError, "integer tensor"),
    (torch.tensor(True), TypeError, "integer tensor"),
    ("cat", TypeError, "target"),
    (True, TypeError, "bool"),
    (1.5, TypeError, "target"),
])
def test_bad_targets(model, target, error, message):
    with pytest.raises(error, match=message):
        wb.attribute(model, torch.randn(2, 8), "gradient", target=target)


def test_targets_in_every_accepted_form_agree(model):
    x = torch.randn(3, 8)
    forms = [1, [1, 1, 1], (1, 1, 1), torch.tensor([1, 1, 1]),
             torch.tensor([1, 1, 1], dtype=torch.int32), torch.tensor(1), np.int64(1)]
    results = [wb.attribute(model, x, "gradient", target=t) for t in forms]
    for result in results[1:]:
        torch.testing.assert_close(result, results[0])
    predicted = model(x).argmax(1)
    torch.testing.assert_close(wb.attribute(model, x, "gradient"),
                               wb.attribute(model, x, "gradient", target=predicted))


@pytest.mark.parametrize("inputs,error,message", [
    (torch.randint(0, 5, (2, 8)), TypeError, "floating-point"),
    (torch.tensor([[float("nan")] * 8, [0.0] * 8]), ValueError, "NaN or infinite"),
    (torch.tensor([[float("inf")] * 8, [0.0] * 8]), ValueError, "NaN or infinite"),
    (torch.randn(8), ValueError, "batch dimension"),
    ([[0.0] * 8], TypeError, "torch.Tensor"),
])
def test_bad_inputs(model, inputs, error, message):
    with pytest.raises(error, match=message):
        wb.attribute(model, inputs, "gradient", target=0)


def test_model_and_inputs_on_different_devices():
    model = nn.Linear(8, 2, device="meta")
    with pytest.raises(ValueError, match="different devices.*'weight' is on meta"):
        wb.attribute(model, torch.randn(2, 8), "gradient", target=0)


@pytest.mark.parametrize("model, inputs, error, message", [
    (lambda x: x, torch.randn(2, 8), TypeError, "model must be a torch.nn.Module, got function"),
    (nn.Linear(8, 2), torch.randn(8), ValueError, "batch dimension"),
    (nn.Linear(8, 2, device="meta"), torch.randn(2, 8), ValueError,
     "different devices.*'weight' is on meta"),
])
def test_attribute_and_the_metrics_check_model_and_inputs_alike(model, inputs, error, message):
    calls = [
        lambda: wb.attribute(model, inputs, "gradient", target=0),
        lambda: wb.metrics.sensitivity_n(model, inputs, torch.ones_like(inputs), 1, target=0),
        lambda: wb.metrics.degradation(model, inputs, torch.ones_like(inputs), target=0),
    ]
    for call in calls:
        with pytest.raises(error, match=message):
            call()


@pytest.mark.parametrize("method,options,error,message", [
    ("gradient", {"steps": 3}, TypeError, "unknown option.*'steps'.*accepts: no options"),
    ("integrated_gradients", {"step": 3}, TypeError, "unknown option.*'step'.*steps"),
    ("integrated_gradients", {"steps": 0}, ValueError,
     "'steps' of integrated_gradients must be >= 1"),
    ("integrated_gradients", {"steps": 2.5}, TypeError, "'steps'.*an integer"),
    ("integrated_gradients", {"quadrature": "simpson"}, ValueError, "'quadrature'.*one of"),
    ("integrated_gradients", {"baseline": torch.zeros(3)}, ValueError,
     "baseline.*does not broadcast"),
    ("integrated_gradients", {"baseline": "zero"}, TypeError, "'baseline'"),
    ("lrp_epsilon", {"epsilon": -1.0}, ValueError, "'epsilon'.*>= 0"),
    ("smoothgrad", {"seed": 1.5}, TypeError, "'seed'"),
    ("occlusion", {"window": (2, 2)}, ValueError, "'window' must have one entry per non-batch"),
    ("occlusion", {"window": (9,)}, ValueError, "'window'.*larger than the inputs"),
    ("occlusion", {"window": (0,)}, ValueError, "'window'"),
    ("shapley_sampling", {"feature_mask": torch.zeros(8)}, TypeError, "'feature_mask'"),
    ("shapley_sampling", {"feature_mask": torch.zeros(3, dtype=torch.long)}, ValueError,
     "feature_mask.*does not broadcast"),
])
def test_bad_options(model, method, options, error, message):
    with pytest.raises(error, match=message):
        wb.attribute(model, torch.randn(2, 8), method, target=0, **options)


def test_grad_cam_layer_errors():
    model = cnn(nn.ReLU)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="no module named 'conv9'.*modules: 0, 1"):
        wb.attribute(model, x, "grad_cam", target=0, layer="conv9")
    with pytest.raises(ValueError, match="not part of the model"):
        wb.attribute(model, x, "grad_cam", target=0, layer=nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="no convolution layer"):
        wb.attribute(mlp(nn.ReLU), torch.randn(2, 8), "grad_cam", target=0)
    with pytest.raises(ValueError, match="channel and spatial"):
        wb.attribute(model, x, "grad_cam", target=0, layer="6")
    with pytest.raises(ValueError, match="'interpolate_mode' 'trilinear' cannot resize a map of "
                                         "2 spatial"):
        wb.attribute(model, x, "grad_cam", target=0, layer="3", interpolate_mode="trilinear")
    with pytest.raises(ValueError, match="interpolate_mode' of grad_cam must be one of"):
        wb.attribute(model, x, "grad_cam", target=0, interpolate_mode="cubic")


def test_grad_cam_refuses_a_layer_that_runs_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.head = nn.Linear(3 * 8 * 8, 2)

        def forward(self, x):
            return self.head(self.conv(self.conv(x)).flatten(1))

    with pytest.raises(ValueError, match="ran 2 times"):
        wb.attribute(Twice(), torch.randn(1, 3, 8, 8), "grad_cam", target=0)


def test_model_must_return_one_score_or_class_scores_per_sample():
    with pytest.raises(ValueError, match=r"one value per sample, shape \(2,\).*got \(16,\)"):
        wb.attribute(nn.Flatten(0), torch.randn(2, 8), "gradient", target=0)
