"""Grad-CAM (Selvaraju et al. 2017): a layer's activation maps weighted by their mean gradient;
Guided Grad-CAM: Guided Backprop times that map."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.checks import resolve_target
from workbench.forward import target_indices, tracked_copy
from workbench.model_layers import Layer, captured_outputs, find_layer, single_output
from workbench.methods.rule_based import RULED_MODULES
from workbench.registry import Method, Option, get_method, register

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def cam_layer(model: nn.Module, layer: Layer | None) -> tuple[str, nn.Module]:
    """The layer given by module or dotted name; ``None`` means the last convolution."""
    if layer is not None:
        return find_layer(model, layer, argument="option 'layer'")
    convolutions = [(n, m) for n, m in model.named_modules() if isinstance(m, _CONVOLUTIONS)]
    if not convolutions:
        raise ValueError("the model has no convolution layer; pass option 'layer'")
    return convolutions[-1]


#: ``interpolate_mode`` choices: "auto" is the n-linear mode of the map's dimension (linear,
#: bilinear or trilinear, as Selvaraju et al. upsample); the others are ``F.interpolate``'s
INTERPOLATE_MODES = ("auto", "nearest", "nearest-exact", "area", "linear", "bilinear", "bicubic",
                     "trilinear")
_N_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def grad_cam(model, inputs, target, layer, relu_attributions=True, interpolate_mode="auto",
             upsample=True):
    """``relu(sum_k mean(dy/dA_k) A_k)`` at ``layer`` (Selvaraju et al. 2017, eq. 1-2),
    upsampled to the input size and repeated over its channels; ``upsample=False``: the
    layer-sized map ``(N, 1, *layer's spatial shape)`` (Captum's ``LayerGradCam``);
    ``relu_attributions=False``: without the ReLU."""
    cam = _class_activation_map(model, inputs, target, layer, relu_attributions)
    if not upsample:
        return cam
    return _upsampled(cam, inputs.shape[2:], interpolate_mode).expand_as(inputs)


def _class_activation_map(model, inputs, target, layer, relu_attributions):
    name, module = cam_layer(model, layer)
    with captured_outputs(module, name) as outputs, torch.enable_grad():
        output = model(tracked_copy(inputs))
    activation = single_output(outputs, name, module)
    if activation.dim() < 3:
        raise ValueError(
            f"layer '{name}' ({type(module).__name__}) has output shape "
            f"{tuple(activation.shape)}; Grad-CAM needs channel and spatial dimensions"
        )
    indices = resolve_target(target, output)
    score = output.gather(1, indices[:, None]).sum()
    (gradient,) = torch.autograd.grad(score, activation)
    spatial = tuple(range(2, activation.dim()))
    weights = gradient.mean(dim=spatial, keepdim=True)
    cam = (weights * activation).sum(dim=1, keepdim=True)
    return F.relu(cam) if relu_attributions else cam


def _upsampled(cam: torch.Tensor, size: torch.Size, mode: str) -> torch.Tensor:
    """``cam`` resized to ``size`` with ``mode`` (``INTERPOLATE_MODES``)."""
    if tuple(cam.shape[2:]) == tuple(size):
        return cam
    if mode == "auto":
        mode = _N_LINEAR[len(size)]
    try:
        return F.interpolate(cam, size=size, mode=mode,
                             **({"align_corners": False} if "linear" in mode or "cubic" in mode
                                else {}))
    except (NotImplementedError, ValueError) as error:
        raise ValueError(f"option 'interpolate_mode' {mode!r} cannot resize a map of "
                         f"{len(size)} spatial dimension(s): {error}") from None


_LAYER = Option("layer", "layer", None, "module or dotted name (None: the last conv layer)")
_INTERPOLATE = Option(
    "interpolate_mode", "choice", "auto",
    "how the layer's map is resized to the input: auto is linear, bilinear or trilinear by the "
    "input's dimension (Captum's GuidedGradCam: nearest)", choices=INTERPOLATE_MODES)

register(Method(
    "grad_cam", grad_cam,
    "Activation maps of a convolution layer weighted by their mean gradient.",
    options=(
        _LAYER,
        Option("relu_attributions", "bool", True,
               "keep only the positive evidence, as Selvaraju et al. (Captum's default: False)"),
        _INTERPOLATE,
        Option("upsample", "bool", True,
               "resize to the input and repeat over its channels; False: the layer-sized map "
               "(N, 1, *spatial), as Captum's LayerGradCam"),
    ),
    reference="Selvaraju et al. 2017",
))


def guided_grad_cam(model, inputs, target, layer, interpolate_mode="auto"):
    """Guided Backprop's map times the upsampled Grad-CAM map of ``layer`` (Selvaraju et al.
    2017, section 3): fine detail where the class evidence is."""
    target = target_indices(model, inputs, target)  # one class for both maps
    guided = get_method("guided_backprop").run(model, inputs, target)
    return guided * grad_cam(model, inputs, target, layer, interpolate_mode=interpolate_mode)


register(Method(
    "guided_grad_cam", guided_grad_cam,
    "Guided Backprop times the upsampled Grad-CAM map.",
    options=(_LAYER, _INTERPOLATE),
    reference="Selvaraju et al. 2017", requires=RULED_MODULES,
))
