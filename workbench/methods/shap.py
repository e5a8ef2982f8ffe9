"""SHAP values from gradients: GradientSHAP (expected gradients) and DeepLIFT SHAP, each an
average over a distribution of baselines (Lundberg & Lee 2017, arXiv:1705.07874, section 4.2;
Erion et al. 2021, arXiv:1906.10670, "expected gradients")."""
from __future__ import annotations

import torch

from workbench.arguments import baseline_samples, generator
from workbench.engine import modified_gradient
from workbench.forward import target_indices
from workbench.methods.gradients import BATCH_SIZE, MULTIPLY_BY_INPUTS, NOISE_HELP, noise_scale
from workbench.methods.rule_based import MAX_POOL, RULED_MODULES, deeplift_rescale
from workbench.registry import Method, Option, register

BASELINES = Option(
    "baselines", "baseline", 0.0,
    "the baseline distribution: a number, one sample, or a tensor (K, ...) of K baseline samples")


def gradient_shap(model, inputs, target, baselines, n_samples, noise, seed, batch_size,
                  multiply_by_inputs):
    """``E[(x' - b) * grad f_t(b + a (x' - b))]`` over baselines ``b`` drawn uniformly from
    ``baselines``, ``a ~ U[0, 1)`` and ``x' = x + N(0, sigma^2)``, estimated from ``n_samples``
    draws per input (Captum's GradientShap; Erion et al. 2021, expected gradients, which
    approximates SHAP values for a model linear near the inputs). ``sigma`` follows SmoothGrad's
    convention (``noise`` times each input's range). With ``multiply_by_inputs`` False: the
    mean gradient alone.
    """
    references = baseline_samples(baselines, inputs)
    indices = target_indices(model, inputs, target)
    rng = generator(seed)
    n_rows = len(inputs) * n_samples  # row i * n_samples + k: draw k of input i
    sample_of_row = torch.arange(len(inputs), device=inputs.device).repeat_interleave(n_samples)
    choice = torch.randint(len(references), (n_rows,), generator=rng).to(inputs.device)
    alpha = torch.rand(n_rows, generator=rng, dtype=inputs.dtype).to(inputs.device)
    sigma = noise_scale(inputs, noise)
    shape = (-1, *[1] * (inputs.dim() - 1))
    total = torch.zeros_like(inputs)
    for rows in torch.arange(n_rows, device=inputs.device).split(batch_size):
        samples = sample_of_row[rows]
        end = inputs.detach()[samples]
        if noise > 0:
            draws = torch.randn(end.shape, generator=rng, dtype=inputs.dtype).to(inputs.device)
            end = end + draws * sigma[samples].view(shape)
        start = references[choice[rows]]
        difference = end - start
        points = start + alpha[rows].view(shape) * difference
        del start, end
        grads = modified_gradient(model, points, indices[samples])
        total.index_add_(0, samples, grads * difference if multiply_by_inputs else grads)
        del points, grads, difference
    return total / n_samples


def deeplift_shap(model, inputs, target, baselines, multiply_by_inputs, max_pool="gradient"):
    """DeepLIFT (Rescale) averaged over the baselines: ``mean_k (x - b_k) * m(x, b_k)`` with
    ``m`` the Rescale multipliers against baseline ``b_k`` (Lundberg & Lee 2017, section 4.2,
    "Deep SHAP"; Captum's DeepLiftShap). With ``multiply_by_inputs`` False: the mean
    multipliers. Each baseline costs one ``deeplift_rescale`` call over all inputs;
    ``max_pool`` is its rule at max pooling.
    """
    references = baseline_samples(baselines, inputs)
    indices = target_indices(model, inputs, target)
    total = torch.zeros_like(inputs)
    for reference in references:
        total += deeplift_rescale(model, inputs, indices, reference[None], multiply_by_inputs,
                                  max_pool)
    return total / len(references)


register(Method(
    "gradient_shap", gradient_shap,
    "Expected gradients: gradient times (input - baseline) at random points between the input "
    "and baselines drawn from a distribution.",
    options=(
        BASELINES,
        Option("n_samples", "int", 50, "random (baseline, point) draws per input (Captum: 5)",
               minimum=1),
        Option("noise", "float", 0.0, NOISE_HELP, minimum=0.0),
        Option("seed", "seed", None, "random seed (None: fresh draws)"),
        BATCH_SIZE,
        MULTIPLY_BY_INPUTS,
    ),
    reference="Lundberg & Lee 2017; Erion et al. 2021",
))
register(Method(
    "deeplift_shap", deeplift_shap,
    "DeepLIFT (Rescale) averaged over a distribution of baselines.",
    options=(BASELINES, MULTIPLY_BY_INPUTS, MAX_POOL),
    reference="Lundberg & Lee 2017; Shrikumar et al. 2017", requires=RULED_MODULES,
))
