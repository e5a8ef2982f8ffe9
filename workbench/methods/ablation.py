"""Feature ablation and feature permutation: the drop of the target score when one feature
group at a time is set to a baseline, or shuffled across the batch. Forward passes only."""
from __future__ import annotations

import torch

from workbench.arguments import expand_baseline, feature_groups, generator
from workbench.forward import predict, target_scores
from workbench.methods.gradients import BASELINE
from workbench.registry import Method, Option, register

FEATURE_MASK = Option("feature_mask", "mask", None,
                      "integer labels grouping features (None: each alone)")
PERTURBED_BATCH = Option("batch_size", "int", 256, "perturbed inputs per forward pass",
                         minimum=1)


def _group_drops(model, inputs, target, groups, n_groups, replacement, batch_size):
    """``f_t(x) - f_t(x with group g from replacement(g))`` for every group, shape ``(N, G)``.

    ``replacement(g)`` gives the values the features of group ``g`` take, of the inputs' shape.
    """
    sample_shape = inputs.shape[1:]
    n = len(inputs)
    indices, scores = target_scores(model, inputs, target, batch_size)
    member = groups.view(sample_shape)
    drops = []
    per_chunk = max(1, batch_size // n)
    for first in range(0, n_groups, per_chunk):
        chunk = range(first, min(first + per_chunk, n_groups))
        points = torch.cat([torch.where(member == g, replacement(g), inputs) for g in chunk])
        output = predict(model, points, batch_size)
        chosen = output.gather(1, indices.repeat(len(chunk))[:, None]).view(len(chunk), n)
        drops.append(scores[None] - chosen)
    return torch.cat(drops).T


def feature_ablation(model, inputs, target, baseline, feature_mask, batch_size):
    """``f_t(x) - f_t(x with group g at the baseline)`` for each group ``g`` alone, given to
    every feature of the group (Captum's FeatureAblation; Occlusion-1 of Ancona et al. 2018
    with groups for windows)."""
    baseline = expand_baseline(baseline, inputs)
    groups, n_groups = feature_groups(feature_mask, inputs)
    values = _group_drops(model, inputs.detach(), target, groups, n_groups,
                          lambda g: baseline, batch_size)
    return values[:, groups].view(inputs.shape)


def feature_permutation(model, inputs, target, seed, feature_mask, batch_size):
    """``f_t(x) - f_t(x with group g taken from another input of the batch)``: each group's
    features are permuted across the batch by one random permutation (redrawn while it is the
    identity), one group at a time (Breiman 2001, permutation importance; Fisher et al. 2019,
    arXiv:1801.01489; Captum's FeaturePermutation). Needs at least two inputs."""
    if len(inputs) < 2:
        raise ValueError("feature_permutation permutes features across the batch: inputs must "
                         f"hold at least 2 samples, got {len(inputs)}")
    groups, n_groups = feature_groups(feature_mask, inputs)
    rng = generator(seed)
    identity = torch.arange(len(inputs))
    permutations = []
    for _ in range(n_groups):
        order = torch.randperm(len(inputs), generator=rng)
        while torch.equal(order, identity):
            order = torch.randperm(len(inputs), generator=rng)
        permutations.append(order.to(inputs.device))
    x = inputs.detach()
    values = _group_drops(model, x, target, groups, n_groups, lambda g: x[permutations[g]],
                          batch_size)
    return values[:, groups].view(inputs.shape)


register(Method(
    "feature_ablation", feature_ablation,
    "Drop of the target score when one feature group at a time is set to the baseline.",
    options=(BASELINE, FEATURE_MASK, PERTURBED_BATCH),
    reference="Zeiler & Fergus 2014; Ancona et al. 2018",
))
register(Method(
    "feature_permutation", feature_permutation,
    "Drop of the target score when one feature group at a time is shuffled across the batch.",
    options=(
        Option("seed", "seed", None, "random seed (None: fresh permutations)"),
        FEATURE_MASK, PERTURBED_BATCH,
    ),
    reference="Breiman 2001; Fisher et al. 2019",
))
