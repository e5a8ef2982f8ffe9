"""Local linear surrogates on coalitions of features: Kernel SHAP and LIME.

Both switch feature groups (``feature_mask``, default each feature alone) between the input
(``z_j = 1``) and the baseline (``z_j = 0``), score the model on the sampled coalitions and fit
a linear model in ``z`` by weighted least squares, solved in float64 with
``torch.linalg.lstsq``. Every feature of a group receives the group's coefficient.
"""
from __future__ import annotations

import itertools
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


def _all_of_size(n_groups: int, size: int) -> torch.Tensor:
    """Every coalition of ``size`` groups, shape ``(C(G, size), G)``."""
    members = torch.tensor(list(itertools.combinations(range(n_groups), size))).view(-1, size)
    coalitions = torch.zeros(len(members), n_groups, dtype=torch.bool)
    return coalitions.scatter_(1, members, True)


def shapley_kernel_coalitions(n_groups: int, n_samples: int,
                              rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``n_samples`` coalitions ``(S, G)`` and their regression weights for Kernel SHAP.

    The Shapley kernel gives a coalition of ``s`` groups the weight
    ``(G - 1) / (C(G, s) s (G - s))`` (Lundberg & Lee 2017, Theorem 2); all coalitions of size
    ``s`` together weigh ``(G - 1) / (s (G - s))``, most at the smallest and largest sizes. As in
    the reference implementation (the ``shap`` package's KernelExplainer), sizes are taken in
    pairs ``(s, G - s)`` from the outside in and enumerated, each coalition at its kernel
    weight, while the budget holds all of them; the remaining sizes are sampled (a size with
    probability proportional to its weight, then its groups uniformly), in complementary
    pairs, sharing the remaining weight equally. With ``2^G - 2 <= n_samples`` every coalition
    but the empty and the full one is enumerated and the regression gives the Shapley values
    exactly.
    """
    def mass(size: int) -> float:
        return (n_groups - 1) / (size * (n_groups - size))

    chosen, weights = [], []
    budget, size = n_samples, 1
    while size <= n_groups - size:
        sizes = (size,) if size == n_groups - size else (size, n_groups - size)
        count = sum(math.comb(n_groups, s) for s in sizes)
        if count > budget:
            break
        for s in sizes:
            chosen.append(_all_of_size(n_groups, s))
            weights.append(torch.full((len(chosen[-1]),), mass(s) / math.comb(n_groups, s),
                                      dtype=torch.float64))
        budget -= count
        size += 1
    remaining = torch.arange(size, max(size, n_groups - size + 1))
    if len(remaining) and budget > 0:
        probabilities = torch.tensor([mass(int(s)) for s in remaining], dtype=torch.float64)
        half = (budget + 1) // 2
        drawn_size = remaining[torch.multinomial(probabilities, half, replacement=True,
                                                 generator=rng)]
        ranks = torch.rand(half, n_groups, generator=rng).argsort(1).argsort(1)
        drawn = ranks < drawn_size[:, None]
        drawn = torch.cat([drawn, ~drawn])[:budget]
        chosen.append(drawn)
        weights.append(torch.full((budget,), float(probabilities.sum()) / budget,
                                  dtype=torch.float64))
    return torch.cat(chosen), torch.cat(weights)


def kernel_shap(model, inputs, target, n_samples, baseline, seed, feature_mask, batch_size):
    """Shapley values of feature groups as the weighted least-squares fit of the target score
    on coalitions, with the Shapley kernel as weights and the efficiency constraint
    ``sum_j phi_j = f(x) - f(baseline)`` imposed exactly (Lundberg & Lee 2017,
    arXiv:1705.07874, section 4.1, Theorem 2). Exact when every coalition fits in
    ``n_samples`` (``2^G - 2`` of them); otherwise the smallest and largest coalitions are
    enumerated and the others sampled from the kernel (``shapley_kernel_coalitions``).
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


def _n_samples(captum_default: int) -> Option:
    return Option("n_samples", "int", 256,
                  f"coalitions evaluated per input (Captum: {captum_default})", minimum=1)


_BATCH_SIZE = Option("batch_size", "int", 256, "perturbed inputs per forward pass", minimum=1)
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
    options=(_n_samples(25), *_SURROGATE_OPTIONS, _BATCH_SIZE),
    reference="Lundberg & Lee 2017",
))
register(Method(
    "lime", lime,
    "Coefficients of a locally weighted linear model of the target score on random "
    "coalitions of features (or groups).",
    options=(
        _n_samples(50), *_SURROGATE_OPTIONS,
        Option("kernel_width", "float", 0.25,
               "width of the exponential kernel on the cosine distance between coalitions "
               "(Captum: width 1 on the inputs' cosine distance, and a Lasso fit)",
               minimum=1e-12),
        _BATCH_SIZE,
    ),
    reference="Ribeiro et al. 2016",
))
