"""Everything that reads a layer's output gives the same answer whether the layer is followed by
an in-place activation (``nn.ReLU(inplace=True)``) or by an out-of-place one.

An in-place ReLU after the layer overwrites the layer's output tensor; code that keeps that
tensor (to weigh it by its gradient, to project it on a basis) would otherwise read the
activation's output instead of the layer's.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.layers import layer_output

pytestmark = pytest.mark.usefixtures("one_thread")


def conv_net(inplace: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(inplace=inplace), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=inplace),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 8), nn.ReLU(inplace=inplace), nn.Linear(8, 3),
    ).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(16, 2, 8, 8)


@pytest.fixture(scope="module")
def nets():
    return conv_net(False), conv_net(True)


@pytest.mark.parametrize("method", ["grad_cam", "guided_grad_cam"])
@pytest.mark.parametrize("layer", ["0", "3"])
def test_cam_methods_read_the_layer_not_the_in_place_activation(nets, images, method, layer):
    plain, inplace = (wb.attribute(net, images, method, target=1, layer=layer) for net in nets)
    torch.testing.assert_close(inplace, plain, rtol=0, atol=0)


def test_grad_cam_after_an_in_place_relu_agrees_with_captum():
    """Captum's BasicModel_ConvNet_One_Conv (conv1, then ReLU(inplace=True)): Captum's
    LayerGradCam of conv1, upsampled bilinearly to the input, is the workbench's Grad-CAM."""
    from captum.attr import LayerGradCam
    from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv

    inputs = torch.arange(16.0).view(1, 1, 4, 4)
    reference = BasicModel_ConvNet_One_Conv(inplace=False).eval()
    expected = LayerGradCam(reference, reference.conv1).attribute(inputs, target=0)
    torch.testing.assert_close(expected.flatten(), torch.tensor([11.25, 13.5, 20.25, 22.5]))
    expected = F.interpolate(expected, size=(4, 4), mode="bilinear", align_corners=False)
    net = BasicModel_ConvNet_One_Conv(inplace=True).eval()
    torch.testing.assert_close(wb.attribute(net, inputs, "grad_cam", target=0, layer="conv1"),
                               expected)


@pytest.mark.parametrize("layer", ["0", "6"])
def test_layer_output_is_the_layers_own(nets, images, layer):
    plain, inplace = (layer_output(net, images, layer) for net in nets)
    torch.testing.assert_close(inplace, plain, rtol=0, atol=0)
    assert (plain < 0).any()  # the layer's output, before the ReLU that follows it


@pytest.mark.parametrize("layer", ["3", "6"])
def test_bases_ablation_and_features_read_the_layers_own_output(nets, images, layer):
    results = []
    for net in nets:
        stats = wb.activations(net, images, layer, progress=False)[layer]
        pca = wb.fit_basis(net, images, layer, kind="pca", progress=False)
        curve = wb.ablation_curve(net, images, layer, pca, [1, 3], progress=False)
        scores = wb.direction_activation(net, images, pca, [0, 1])
        top = wb.top_activating(net, images, pca, [0], n=3, progress=False)
        results.append((stats.mean, pca.directions.abs(), curve.agreement, scores, top.scores))
    for plain, inplace in zip(*results):
        torch.testing.assert_close(torch.as_tensor(inplace), torch.as_tensor(plain))
    assert (results[0][0] < 0).any()  # mean of the pre-activation output: some negative


def test_patterns_and_their_methods_are_the_same_with_in_place_relus(nets, images):
    results = []
    for net in nets:
        patterns = wb.fit_patterns(net, images, estimator="a+-", progress=False)
        quality = wb.signal_quality(net, images, patterns, progress=False)
        net_map = wb.attribute(net, images[:4], "pattern_net", target=0, patterns=patterns)
        results.append(([p.positive for p in patterns.layers.values()], quality, net_map))
    for plain, inplace in zip(*results):
        torch.testing.assert_close(inplace, plain)
