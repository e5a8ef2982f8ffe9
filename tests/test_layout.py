"""Channels-last batches for conv nets on the CPU (workbench.layout): same attributions as in
NCHW order, results in the caller's layout, models that cannot take them run as they are."""
from __future__ import annotations

import weakref

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, method_options
from workbench import layout, models

EXTRA = {"occlusion": {"window": (3, 2, 2)}}


@pytest.fixture
def channels_last_off():
    """Runs the test body's ``wb.attribute`` calls in NCHW order when called; restores after."""
    yield lambda: layout.set_channels_last(False)
    layout.set_channels_last(True)


class SeesLayout(nn.Module):
    """A conv net that notes whether each batch it gets is channels-last; with ``view`` it
    flattens its feature map with ``.view`` (which needs NCHW-contiguous memory)."""

    def __init__(self, view: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.linear = nn.Linear(4 * 8 * 8, 3)
        self.view, self.seen = view, []
        self.eval()

    def forward(self, x):
        self.seen.append(x.dim() == 4 and not x.is_contiguous()
                         and x.is_contiguous(memory_format=torch.channels_last))
        h = torch.relu(self.conv(x))
        h = h.view(len(h), -1) if self.view else torch.flatten(h, 1)
        return self.linear(h)


@pytest.mark.parametrize("method", wb.general_methods())
def test_every_method_gives_the_same_attribution_in_either_layout(method, channels_last_off):
    model = cnn(nn.ReLU)
    x = torch.randn(3, 3, 8, 8)
    options = method_options(method, model, torch.randn(16, 3, 8, 8), **EXTRA)
    if method in ("smoothgrad", "shapley_sampling"):
        options["seed"] = 0
    fast = wb.attribute(model, x, method, target=[0, 1, 3], **options)
    channels_last_off()
    plain = wb.attribute(model, x, method, target=[0, 1, 3], **options)
    assert fast.stride() == x.stride()  # returned in the caller's layout
    scale = plain.abs().max()
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5 * float(scale))


def test_a_conv_net_gets_a_channels_last_batch_and_other_inputs_are_left_alone():
    model = SeesLayout()
    x = torch.randn(2, 3, 8, 8)
    wb.attribute(model, x, "gradient", target=0)
    wb.attribute(model, x, "deeplift_rescale", target=0)  # baseline pass and inputs' pass
    assert model.seen == [True, True, True]
    model.seen.clear()
    wb.attribute(model.double(), x.double(), "gradient", target=0)  # oneDNN is float32 only
    assert model.seen == [False]
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))  # no convolution: no copy
    assert layout.fast_format(mlp, x) is None
    # a vision transformer's patch convolution alone does not make it a conv net
    vit = models.vit(3, 4, 8, patch=4, depth=1, seed=0).eval()
    assert layout.fast_format(vit, x) is None


def test_a_model_that_needs_nchw_memory_is_run_in_it_and_remembered(channels_last_off):
    model = SeesLayout(view=True)
    x = torch.randn(2, 3, 8, 8)
    first = wb.attribute(model, x, "integrated_gradients", target=1, steps=4)
    assert model.seen == [True, False]  # refused once ...
    model.seen.clear()
    second = wb.attribute(model, x, "integrated_gradients", target=1, steps=4)
    assert model.seen == [False]  # ... and not offered again
    channels_last_off()
    expected = wb.attribute(model, x, "integrated_gradients", target=1, steps=4)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)


def test_other_errors_of_the_model_are_raised_and_not_taken_for_a_layout_problem():
    class Broken(SeesLayout):
        def forward(self, x):
            raise RuntimeError("something else went wrong")

    model = Broken()
    with pytest.raises(RuntimeError, match="something else went wrong"):
        wb.attribute(model, torch.randn(2, 3, 8, 8), "gradient", target=0)
    assert layout.fast_format(model, torch.randn(2, 3, 8, 8)) == torch.channels_last


def test_channels_last_inputs_of_the_caller_give_channels_last_attributions():
    model = cnn(nn.ReLU)
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    attr = wb.attribute(model, x, "guided_backprop", target=0)
    assert attr.stride() == x.stride()


def test_the_engine_does_not_keep_pre_activations_alive_during_the_forward_pass():
    """Weighted-layer outputs are remembered (for merging a batch norm) by weak reference only:
    a pre-activation the model has done with is freed as it would be without the engine."""
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.linear = nn.Conv2d(3, 4, 3), nn.Linear(4 * 6 * 6, 2)
            self.freed = []

        def forward(self, x):
            z = self.conv(x)
            probe = weakref.ref(z)
            a = torch.relu(z)
            del z
            self.freed.append(probe() is None)
            return self.linear(torch.flatten(a, 1))

    model = Probe()
    for method in ("lrp_epsilon", "lrp_alpha_beta", "guided_backprop", "gradient"):
        wb.attribute(model, torch.randn(2, 3, 8, 8), method, target=0)
    assert model.freed == [True] * 4


def test_a_model_in_training_mode_is_run_once_as_it_is():
    """A training-mode forward updates batch-norm statistics: it must never run twice (as a
    refused channels-last attempt would), so such a model gets its batch unconverted."""
    class TrainingView(SeesLayout):
        def __init__(self):
            super().__init__(view=True)
            self.norm = nn.BatchNorm2d(3)

        def forward(self, x):
            return super().forward(self.norm(x))

    model = TrainingView().train()
    wb.attribute(model, torch.randn(2, 3, 8, 8), "gradient", target=0)
    assert model.seen == [False] and model.norm.num_batches_tracked == 1
    assert layout.fast_format(model, torch.randn(2, 3, 8, 8)) is None
    assert layout.fast_format(model.eval(), torch.randn(2, 3, 8, 8)) == torch.channels_last
