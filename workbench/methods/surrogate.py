"""Local linear surrogates on coalitions of features: Kernel SHAP and LIME.

Both switch feature groups (``feature_mask``, default each feature alone) between the input
(``z_j = 1``) and the baseline (``z_j = 0``), score the model on the sampled coalitions and fit
a linear model in ``z`` by weighted least squares, solved in float64 with
``torch.linalg.lstsq``. Every feature of a group receives the group's coefficient.
"""
from __future__ import annotations

import math

import torch

from workbench.arguments import expand_baseline, feature_groups, generator
from workbench.forward import predict, target_scores
from workbench.methods.gradients import BASELINE
from workbench.registry import Method, Option, register


def coalition_scores(model, inputs, baseline, groups, coalitions, indices, batch_size):
    """Target scores of every input with the groups of each coalition at the input and the
    others at the baseline, shape ``(N, S)`` for ``coalitions`` of shape ``(S, G)``."""
    n, sample_shape = len(inputs), inputs.shape[1:]
    scores = []
    for chunk in coalitions.split(max(1, batch_size // n)):
        on = chunk.to(inputs.device)[:, groups].view(len(chunk), 1, *sample_shape)
        points = torch.where(on, inputs[None], baseline[None]).reshape(-1, *sample_shape)
        output = predict(model, points, batch_size)
        scores.append(output.gather(1, indices.repeat(len(chunk))[:, None]).view(len(chunk), n))
    return torch.cat(scores).T


def weighted_least_squares(design: torch.Tensor, targets: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """``argmin_c sum_s w_s ||design_s c - targets_s||^2`` for each column of ``targets``
    (float64, CPU; the minimum-norm solution when the design is rank deficient)."""
    root = weights.sqrt()[:, None]
    return torch.linalg.lstsq(design * root, targets * root, driver="gelsd").solution


def shapley_kernel_coalitions(n_groups: int, n_samples: int,
                              rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalitions ``(S, G)`` and their regression weights for Kernel SHAP.

    When ``2^G - 2 <= n_samples``, every coalition but the empty and the full one, weighted by
    the Shapley kernel ``(G - 1) / (C(G, |z|) |z| (G - |z|))`` (Lundberg & Lee 2017, Theorem 2):
    the regression then gives the Shapley values exactly. Otherwise ``n_samples`` coalitions
    drawn from the kernel (a size ``s`` with probability proportional to ``1 / (s (G - s))``,
    then ``s`` groups uniformly), in complementary pairs, each of weight 1.
    """
    if 2 ** min(n_groups, 62) - 2 <= n_samples:
        codes = torch.arange(1, 2 ** n_groups - 1)
        coalitions = (codes[:, None] >> torch.arange(n_groups)) & 1 == 1
        sizes = coalitions.sum(1).tolist()
        weights = [(n_groups - 1) / (math.comb(n_groups, s) * s * (n_groups - s)) for s in sizes]
        return coalitions, torch.tensor(weights, dtype=torch.float64)
    sizes = torch.arange(1, n_groups, dtype=torch.float64)
    probabilities = 1 / (sizes * (n_groups - sizes))
    half = (n_samples + 1) // 2
    size = torch.multinomial(probabilities, half, replacement=True, generator=rng) + 1
    ranks = torch.rand(half, n_groups, generator=rng).argsort(1).argsort(1)
    drawn = ranks < size[:, None]
    coalitions = torch.cat([drawn, ~drawn])[:n_samples]
    return coalitions, torch.ones(len(coalitions), dtype=torch.float64)


def kernel_shap(model, inputs, target, n_samples, baseline, seed, feature_mask, batch_size):
    """Shapley values of feature groups as the weighted least-squares fit of the target score
    on coalitions, with the Shapley kernel as weights and the efficiency constraint
    ``sum_j phi_j = f(x) - f(baseline)`` imposed exactly (Lundberg & Lee 2017,
    arXiv:1705.07874, section 4.1, Theorem 2). Exact when every coalition fits in
    ``n_samples`` (``2^G - 2`` of them); otherwise coalitions are sampled from the kernel.
    """
    baseline = expand_baseline(baseline, inputs)
    groups, n_groups = feature_groups(feature_mask, inputs)
    indices, end = target_scores(model, inputs, target, batch_size)
    _, start = target_scores(model, baseline, indices, batch_size)
    gap = (end - start).double().cpu()
    if n_groups == 1:
        values = gap[:, None]
    else:
        coalitions, weights = shapley_kernel_coalitions(n_groups, n_samples, generator(seed))
        scores = coalition_scores(model, inputs, baseline, groups, coalitions, indices,
                                  batch_size).double().cpu()
        # phi_G = gap - sum_{j<G} phi_j: regress on z_j - z_G for j < G
        z = coalitions.double()
        design = z[:, :-1] - z[:, -1:]
        targets = (scores - start.double().cpu()[:, None]).T - z[:, -1:] * gap
        rest = weighted_least_squares(design, targets, weights)
        values = torch.cat([rest, (gap - rest.sum(0))[None]]).T
    values = values.to(dtype=inputs.dtype, device=inputs.device)
    return values[:, groups].view(inputs.shape)


def lime(model, inputs, target, n_samples, baseline, seed, feature_mask, kernel_width,
         batch_size):
    """Coefficients of a linear model of the target score on ``n_samples`` random coalitions
    (each group on with probability 1/2), fitted with an intercept by weighted least squares
    with LIME's kernel ``exp(-D(z)^2 / width^2)``, ``D`` the cosine distance of ``z`` to the
    all-on coalition: ``1 - sqrt(|z| / G)`` (Ribeiro et al. 2016, arXiv:1602.04938, sections
    3.3-3.4, with its image and text distance).
    """
    baseline = expand_baseline(baseline, inputs)
    groups, n_groups = feature_groups(feature_mask, inputs)
    indices, _ = target_scores(model, inputs, target, batch_size)
    coalitions = torch.rand(n_samples, n_groups, generator=generator(seed)) < 0.5
    scores = coalition_scores(model, inputs, baseline, groups, coalitions, indices, batch_size)
    z = coalitions.double()
    distance = 1 - (z.sum(1) / n_groups).sqrt()
    weights = torch.exp(-distance ** 2 / kernel_width ** 2)
    design = torch.cat([torch.ones(n_samples, 1, dtype=torch.float64), z], dim=1)
    coefficients = weighted_least_squares(design, scores.double().cpu().T, weights)[1:].T
    values = coefficients.to(dtype=inputs.dtype, device=inputs.device)
    return values[:, groups].view(inputs.shape)


_SURROGATE_OPTIONS = (
    BASELINE,
    Option("seed", "seed", None, "random seed (None: fresh coalitions)"),
    Option("feature_mask", "mask", None,
           "integer labels grouping features (None: each alone), e.g. workbench.masks."
           "superpixels"),
)

register(Method(
    "kernel_shap", kernel_shap,
    "Shapley values of features (or groups) from a Shapley-kernel weighted linear fit on "
    "coalitions; exact when all coalitions fit in n_samples.",
    options=(
        Option("n_samples", "int", 256, "coalitions evaluated per input (Captum: 25)",
               minimum=1),
        *_SURROGATE_OPTIONS,
        Option("batch_size", "int", 256, "perturbed inputs per forward pass", minimum=1),
    ),
    reference="Lundberg & Lee 2017",
))
register(Method(
    "lime", lime,
    "Coefficients of a locally weighted linear model of the target score on random "
    "coalitions of features (or groups).",
    options=(
        Option("n_samples", "int", 256, "coalitions evaluated per input (Captum: 50)",
               minimum=1),
        *_SURROGATE_OPTIONS,
        Option("kernel_width", "float", 0.25,
               "width of the exponential kernel on the cosine distance between coalitions "
               "(Captum: width 1 on the inputs' cosine distance, and a Lasso fit)",
               minimum=1e-12),
        Option("batch_size", "int", 256, "perturbed inputs per forward pass", minimum=1),
    ),
    reference="Ribeiro et al. 2016",
))
