"""Ancona et al. 2018 (a unified view of gradient-based attribution): the six methods side by
side, how alike their maps are, and their Sensitivity-n curves."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

import workbench as wb
from workbench import metrics

#: the paper's six methods (label -> method and options)
SIX_METHODS: dict[str, tuple[str, dict]] = {
    "Saliency": ("gradient", {}),
    "Gradient * Input": ("gradient_x_input", {}),
    "Integrated Gradients": ("integrated_gradients", {"steps": 50}),
    "epsilon-LRP": ("lrp_epsilon", {"epsilon": 1e-6}),
    "DeepLIFT (Rescale)": ("deeplift_rescale", {}),
    "Occlusion-1": ("occlusion", {}),
}


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
