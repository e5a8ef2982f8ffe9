"""The computations behind notebook 02: Ancona et al., "Towards better understanding of
gradient-based attribution methods for deep neural networks", ICLR 2018, arXiv 1711.06104. The
six methods side by side and how alike their maps are (section 3), their Sensitivity-n curves
(section 4), and how epsilon-LRP's epsilon and Integrated Gradients' steps change the sum of the
attributions."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

import workbench as wb
from workbench import data as datasets
from workbench import metrics, models
from workbench.forward import target_indices

#: the paper's six methods (label -> method and options)
SIX_METHODS: dict[str, tuple[str, dict]] = {
    "Saliency": ("gradient", {}),
    "Gradient * Input": ("gradient_x_input", {}),
    "Integrated Gradients": ("integrated_gradients", {"steps": 50}),
    "epsilon-LRP": ("lrp_epsilon", {"epsilon": 1e-6}),
    "DeepLIFT (Rescale)": ("deeplift_rescale", {}),
    "Occlusion-1": ("occlusion", {}),
}


def networks(relu_model: str = "digits_cnn_relu", tanh_model: str = "digits_cnn_tanh",
             mnist_root: str = "", epochs: int = 10, progress: bool = True,
             ) -> tuple[dict[str, tuple[nn.Module, dict[str, Any]]], datasets.ImageData]:
    """The ReLU and the Tanh net (``{"ReLU": (model, info), "Tanh": ...}``) and their data: the
    zoo models ``relu_model`` and ``tanh_model`` on their data, or, when ``mnist_root`` names a
    folder with MNIST's idx files, the same CNN with each activation trained (and cached) on
    MNIST for ``epochs`` epochs."""
    if mnist_root:
        nets = {label: models.trained("cnn", "mnist", root=mnist_root, activation=activation,
                                      epochs=epochs, progress=progress)
                for label, activation in (("ReLU", "relu"), ("Tanh", "tanh"))}
        return nets, models.DATASETS["mnist"](mnist_root)
    nets = {"ReLU": models.zoo(relu_model, progress=progress),
            "Tanh": models.zoo(tanh_model, progress=progress)}
    return nets, models.zoo_data(relu_model)


def attributions(model: nn.Module, inputs: torch.Tensor, target,
                 methods: Mapping[str, tuple[str, dict]] = SIX_METHODS) -> dict[str, torch.Tensor]:
    """Every method's attribution of the same inputs and targets."""
    return {label: wb.attribute(model, inputs, name, target=target, **options)
            for label, (name, options) in methods.items()}


def map_correlations(maps: Mapping[str, torch.Tensor]) -> tuple[list[str], torch.Tensor]:
    """Pearson correlation between every pair of methods' maps, per sample, averaged."""
    labels = list(maps)
    flat = torch.stack([maps[k].flatten(1).double() for k in labels])      # (M, N, D)
    centred = flat - flat.mean(dim=2, keepdim=True)
    normed = centred / centred.norm(dim=2, keepdim=True).clamp(min=1e-300)
    matrix = torch.einsum("and,bnd->abn", normed, normed).mean(dim=2)
    return labels, matrix


def pair_correlations(labels: Sequence[str], matrix: torch.Tensor,
                      pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    """``"A vs B": matrix[A, B]`` for each pair of method labels (rows and columns of ``matrix``
    in the order of ``labels``, as ``map_correlations`` returns them)."""
    labels = list(labels)
    unknown = sorted({name for pair in pairs for name in pair} - set(labels))
    if unknown:
        raise ValueError(f"pairs name unknown methods {unknown}; known: {labels}")
    return {f"{a} vs {b}": float(matrix[labels.index(a), labels.index(b)]) for a, b in pairs}


def log_spaced_sizes(n_features: int, points: int = 12, fraction: float = 0.8) -> list[int]:
    """Subset sizes from 1 to ``fraction`` of the features, log-spaced, distinct."""
    top = max(1, int(fraction * n_features))
    sizes = {max(1, round(math.exp(math.log(top) * i / (points - 1)))) for i in range(points)}
    return sorted(sizes)


def sensitivity_curves(model: nn.Module, inputs: torch.Tensor, target,
                       maps: Mapping[str, torch.Tensor], sizes: Sequence[int],
                       n_subsets: int = 100, seed: int = 0) -> dict[str, list[float]]:
    """Mean Sensitivity-n over the inputs for each method and subset size."""
    return {label: metrics.sensitivity_n(model, inputs, attribution, list(sizes), target=target,
                                         n_subsets=n_subsets, seed=seed).mean().tolist()
            for label, attribution in maps.items()}


def target_outputs(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    """``f_t(x)`` per sample: the output of each sample's target class."""
    indices = target_indices(model, inputs, target)
    with torch.no_grad():
        return model(inputs).gather(1, indices[:, None])[:, 0]


def epsilon_effect(model: nn.Module, inputs: torch.Tensor, target,
                   epsilons: Sequence[float]) -> dict[float, float]:
    r"""For each ``epsilon``, epsilon-LRP's share of the output it explains, averaged over the
    inputs: :math:`\frac{1}{N} \sum_n \sum_i R_i(x_n) / f_t(x_n)`. On a ReLU net without
    biases the share is 1 as epsilon goes to 0 (conservation); a larger epsilon absorbs
    relevance in every layer's stabiliser, so the share shrinks (for one linear layer without
    bias it is :math:`|z| / (|z| + \epsilon)`, ``z`` the output)."""
    indices = target_indices(model, inputs, target)
    output = target_outputs(model, inputs, indices)
    effect = {}
    for epsilon in epsilons:
        relevance = wb.attribute(model, inputs, "lrp_epsilon", target=indices,
                                 epsilon=float(epsilon))
        effect[float(epsilon)] = float((relevance.flatten(1).sum(1) / output).mean())
    return effect


def completeness_error(model: nn.Module, inputs: torch.Tensor, target, steps: Sequence[int],
                       quadrature: str = "riemann_right") -> dict[int, float]:
    r"""For each number of ``steps``, how far Integrated Gradients (zero baseline) is from
    completeness, averaged over the inputs:
    :math:`\frac{1}{N} \sum_n |\sum_i IG_i(x_n) - (f_t(x_n) - f_t(0))|` (Sundararajan et al.
    2017, arXiv 1703.01365, section 3). The exact path integral gives 0; a Riemann sum's error
    shrinks like ``1 / steps`` on a smooth model and is 0 at any ``steps`` on a linear one."""
    indices = target_indices(model, inputs, target)
    delta = (target_outputs(model, inputs, indices)
             - target_outputs(model, torch.zeros_like(inputs), indices))
    error = {}
    for count in steps:
        integrated = wb.attribute(model, inputs, "integrated_gradients", target=indices,
                                  steps=int(count), quadrature=quadrature)
        error[int(count)] = float((integrated.flatten(1).sum(1) - delta).abs().mean())
    return error
