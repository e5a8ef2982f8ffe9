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


def grad_cam(model, inputs, target, layer):
    """``relu(sum_k mean(dy/dA_k) A_k)`` at ``layer``, upsampled to the input size."""
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
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    size = inputs.shape[2:]
    if tuple(cam.shape[2:]) != tuple(size):
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
        cam = F.interpolate(cam, size=size, mode=mode, align_corners=False)
    return cam.expand_as(inputs)


register(Method(
    "grad_cam", grad_cam,
    "Activation maps of a convolution layer weighted by their mean gradient.",
    options=(Option("layer", "layer", None, "module or dotted name (None: the last conv layer)"),),
    reference="Selvaraju et al. 2017",
))


def guided_grad_cam(model, inputs, target, layer):
    """Guided Backprop's map times the upsampled Grad-CAM map of ``layer`` (Selvaraju et al.
    2017, section 3): fine detail where the class evidence is."""
    target = target_indices(model, inputs, target)  # one class for both maps
    guided = get_method("guided_backprop").run(model, inputs, target)
    return guided * grad_cam(model, inputs, target, layer)


register(Method(
    "guided_grad_cam", guided_grad_cam,
    "Guided Backprop times the upsampled Grad-CAM map.",
    options=(Option("layer", "layer", None, "module or dotted name (None: the last conv layer)"),),
    reference="Selvaraju et al. 2017", requires=RULED_MODULES,
))
