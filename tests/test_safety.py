"""Nothing of the user's model or inputs changes, and nothing is left behind, even on errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn, method_options

EXTRA = {"occlusion": {"window": (3, 4, 4)}}


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_untouched(model, before, training):
    assert _hook_count(model) == 0
    assert model.training == training
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.parameters())
    assert torch._C._len_torch_function_stack() == 0  # no mode left active


def _model_with_batch_norm():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 4 * 4, 3),
    )


@pytest.mark.parametrize("method", wb.general_methods())
@pytest.mark.parametrize("requires_grad", [False, True])
def test_model_and_inputs_are_untouched(method, requires_grad):
    model = _model_with_batch_norm().eval()
    before = _snapshot(model)
    x = torch.randn(2, 3, 8, 8)
    x_before = x.clone()
    x.requires_grad_(requires_grad)
    options = method_options(method, model, torch.randn(4, 3, 8, 8), **EXTRA)
    before = _snapshot(model)
    attr = wb.attribute(model, x, method, target=[0, 2], **options)
    assert attr.shape == x.shape and attr.dtype == x.dtype and not attr.requires_grad
    assert torch.equal(x.detach(), x_before) and x.requires_grad == requires_grad and x.grad is None
    _assert_untouched(model, before, training=False)


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "occlusion"])
def test_training_mode_is_kept_for_gradient_methods(method):
    model = cnn(nn.ReLU).train()
    before = _snapshot(model)
    wb.attribute(model, torch.randn(2, 3, 8, 8), method, target=1,
                 **method_options(method, model, torch.randn(2, 3, 8, 8), **EXTRA))
    _assert_untouched(model, before, training=True)


class FailsMidway(nn.Module):
    """A model whose forward raises after a few layers."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))

    def forward(self, x):
        x = self.body(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", wb.general_methods())
def test_a_failing_forward_leaves_nothing_behind(method):
    model = FailsMidway().eval()
    before = _snapshot(model)
    options = method_options(method, _model_with_batch_norm().eval(), torch.randn(2, 3, 8, 8),
                             **EXTRA)
    options.pop("patterns", None)
    if method.startswith("pattern"):  # patterns of another model are refused before the forward
        options["patterns"] = wb.Patterns("a", {})
    with pytest.raises(RuntimeError, match="boom"):
        wb.attribute(model, torch.randn(2, 3, 8, 8), method, target=0, **options)
    _assert_untouched(model, before, training=False)


@pytest.mark.parametrize("method", wb.general_methods())
def test_an_error_after_the_forward_leaves_nothing_behind(method):
    model = _model_with_batch_norm().eval()
    before = _snapshot(model)
    options = method_options(method, model, torch.randn(4, 3, 8, 8), **EXTRA)
    before = _snapshot(model)
    with pytest.raises(ValueError, match="out of range"):
        wb.attribute(model, torch.randn(2, 3, 8, 8), method, target=7, **options)
    _assert_untouched(model, before, training=False)


def test_unsupported_operation_error_leaves_nothing_behind():
    model = nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=1)).eval()
    before = _snapshot(model)
    with pytest.raises(NotImplementedError, match="softmax"):
        wb.attribute(model, torch.randn(2, 4), "lrp_epsilon", target=0)
    _assert_untouched(model, before, training=False)


class InplaceOnInput(nn.Module):
    """Changes its input in place before anything else (an in-place first activation)."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.linear = nn.Linear(6, 2)

    def forward(self, x):
        return self.linear(self.relu(x))


@pytest.mark.parametrize("method", wb.general_methods())
def test_a_model_changing_its_input_in_place_never_changes_the_users_tensor(method):
    if method in ("grad_cam", "guided_grad_cam"):
        return  # needs a convolution
    model = InplaceOnInput().eval()
    x = torch.randn(3, 6)
    x_before = x.clone()
    options = method_options(method, model, torch.randn(8, 6))
    attr = wb.attribute(model, x, method, target=1, **options)
    assert torch.equal(x, x_before)
    assert torch.isfinite(attr).all()
    if method in ("gradient", "guided_backprop"):  # the ReLU gates the weights
        active = (x_before > 0).float()
        torch.testing.assert_close(attr, model.linear.weight[1].detach().clamp(
            min=0 if method == "guided_backprop" else -float("inf")) * active)


class ChangesInput(nn.Module):
    """Writes into its input tensor in one of four in-place forms."""

    def __init__(self, form: str):
        super().__init__()
        self.form = form
        torch.manual_seed(0)
        self.linear = nn.Linear(6, 2)

    def forward(self, x):
        if self.form == "iadd":
            x += 1.0
        elif self.form == "method":
            x.mul_(2.0)
        elif self.form == "setitem":
            x[:, 0] = 0.0
        else:
            torch.relu_(x)
        return self.linear(x)


_OUT_OF_PLACE = {"iadd": lambda x: x + 1.0, "method": lambda x: x * 2.0,
                 "setitem": lambda x: torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:]], 1),
                 "functional": torch.relu}


@pytest.mark.parametrize("form", list(_OUT_OF_PLACE))
@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "lrp_epsilon",
                                    "deeplift_rescale", "integrated_gradients"])
def test_every_in_place_form_on_the_input_leaves_the_users_tensor(form, method):
    """``x += 1``, ``x.mul_(2)``, ``x[:, 0] = 0``, ``torch.relu_(x)``: the engine sees the write
    coming, gives the model a copy, and the result is the out-of-place model's."""
    model = ChangesInput(form).eval()
    x = torch.randn(3, 6)
    x_before = x.clone()
    options = {"steps": 8} if method == "integrated_gradients" else {}
    attr = wb.attribute(model, x, method, target=1, **options)
    assert torch.equal(x, x_before)
    twin = nn.Sequential(_Lambda(_OUT_OF_PLACE[form]), model.linear).eval()
    torch.testing.assert_close(attr, wb.attribute(twin, x, method, target=1, **options))


class _Lambda(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)
