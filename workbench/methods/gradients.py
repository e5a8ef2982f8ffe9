"""Methods built from plain gradients: saliency, Gradient x Input, Integrated Gradients,
SmoothGrad."""
from __future__ import annotations

import functools

import numpy as np
import torch

from workbench.arguments import compact_baseline, generator
from workbench.engine import modified_gradient
from workbench.forward import target_indices
from workbench.layout import batch_like, fast_format
from workbench.registry import Method, Option, register
from workbench.sample_rows import rows_of

BASELINE = Option("baseline", "baseline", 0.0, "reference input: a number or a tensor")
BATCH_SIZE = Option("batch_size", "int", 256, "samples per forward/backward pass (memory bound)",
                    minimum=1)
MULTIPLY_BY_INPUTS = Option(
    "multiply_by_inputs", "bool", True,
    "multiply by (input - baseline): local attributions; False gives the averaged (modified) "
    "gradient alone, Captum's 'global' attributions")
#: SmoothGrad's noise convention, shared by every method that adds input noise
NOISE_HELP = ("noise std as a fraction of each input's max-min range (Smilkov et al.); Captum's "
              "stdevs is an absolute std")


def gradient(model, inputs, target):
    """Saliency: ``d f_t / d x`` (Simonyan et al. 2014)."""
    return modified_gradient(model, inputs, target)


def gradient_x_input(model, inputs, target):
    """``x * d f_t / d x`` (Shrikumar et al. 2016)."""
    return inputs * modified_gradient(model, inputs, target)


def path_points(steps: int, quadrature: str) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights of a quadrature of ``int_0^1 g(alpha) d alpha``."""
    if quadrature == "gausslegendre":
        nodes, weights = _gauss_legendre(steps)
        return (nodes + 1) / 2, weights / 2
    if quadrature == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("option 'steps' must be >= 2 for the trapezoid rule")
        weights = np.full(steps, 1 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[quadrature]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1 / steps)


@functools.lru_cache(maxsize=64)
def _gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1] (an eigenvalue problem: computed once per
    number of steps; callers get new arrays from them)."""
    return np.polynomial.legendre.leggauss(steps)


def integrated_gradients(model, inputs, target, baseline, steps, batch_size, quadrature,
                         multiply_by_inputs=True):
    """``(x - x0) * int_0^1 grad f_t(x0 + a (x - x0)) da`` (Sundararajan et al. 2017), or the
    integral alone when ``multiply_by_inputs`` is False (Captum's ``multiply_by_inputs``).

    The path points of all samples are processed ``batch_size`` at a time.
    """
    baseline = compact_baseline(baseline, inputs)  # one row when shared by all inputs
    indices = target_indices(model, inputs, target)
    alphas, weights = path_points(steps, quadrature)
    n_samples = len(inputs)
    # rows ordered (step, sample); chunk them to bound memory
    alphas_per_row = torch.as_tensor(alphas, dtype=inputs.dtype, device=inputs.device)
    alphas_per_row = alphas_per_row.repeat_interleave(n_samples)
    weights_per_row = torch.as_tensor(weights, dtype=inputs.dtype, device=inputs.device)
    weights_per_row = weights_per_row.repeat_interleave(n_samples)
    sample_of_row = torch.arange(n_samples, device=inputs.device).repeat(steps)
    total = torch.zeros_like(inputs)
    shape = (-1, *[1] * (inputs.dim() - 1))
    layout = fast_format(model, inputs)
    for rows in torch.arange(steps * n_samples, device=inputs.device).split(batch_size):
        samples = sample_of_row[rows]
        alpha = alphas_per_row[rows].view(shape)
        start = (baseline if len(baseline) == 1 else baseline[samples]).detach()
        # x0 + a (x - x0), in place, built in the layout the model runs fastest in (no copy)
        points = torch.sub(inputs.detach()[samples], start,
                           out=batch_like(inputs, len(rows), layout))
        points.mul_(alpha).add_(start)
        del start  # not kept alive through the forward and backward pass
        with rows_of(samples):
            grads = modified_gradient(model, points, indices[samples])
        total.index_add_(0, samples, grads.mul_(weights_per_row[rows].view(shape)))
        del points, grads  # not alive while the next chunk's are built
    return (inputs - baseline) * total if multiply_by_inputs else total


def noise_scale(inputs: torch.Tensor, noise: float) -> torch.Tensor:
    """SmoothGrad's noise std per sample, ``noise * (max(x) - min(x))`` (Smilkov et al. 2017,
    arXiv:1706.03825, section 3: "noise level" as a fraction of the input's range), shape
    ``(N,)``."""
    flat = inputs.detach().flatten(1)
    return noise * (flat.max(dim=1).values - flat.min(dim=1).values)


def smoothgrad(model, inputs, target, n_samples, noise, seed, batch_size):
    """Mean gradient over ``x + N(0, sigma^2)``, ``sigma = noise * (max(x) - min(x))`` per sample
    (Smilkov et al. 2017)."""
    indices = target_indices(model, inputs, target)
    sigma = noise_scale(inputs, noise)
    rng = generator(seed)
    total = torch.zeros_like(inputs)
    shape = (-1, *[1] * (inputs.dim() - 1))
    rows = torch.arange(len(inputs), device=inputs.device).repeat(n_samples)
    layout = fast_format(model, inputs)
    for chunk in rows.split(batch_size):
        draws = torch.randn((len(chunk), *inputs.shape[1:]), generator=rng, dtype=inputs.dtype)
        draws = draws.to(inputs.device).mul_(sigma[chunk].view(shape))
        points = torch.add(inputs.detach()[chunk], draws,
                           out=batch_like(inputs, len(chunk), layout))
        del draws
        with rows_of(chunk):
            total.index_add_(0, chunk, modified_gradient(model, points, indices[chunk]))
        del points
    return total / n_samples


register(Method("gradient", gradient,
                "Gradient of the target score (saliency), signed: Captum's Saliency takes its "
                "absolute value by default (abs=True); take .abs() for that.",
                reference="Simonyan et al. 2014", rows_by_sample=True))
register(Method("gradient_x_input", gradient_x_input, "Input times the gradient.",
                reference="Shrikumar et al. 2016; Ancona et al. 2018", rows_by_sample=True))
register(Method(
    "integrated_gradients", integrated_gradients,
    "Input minus baseline times the gradient averaged along the straight path.",
    options=(
        BASELINE,
        Option("steps", "int", 50, "points on the path", minimum=1, maximum=10_000),
        BATCH_SIZE,
        Option("quadrature", "choice", "gausslegendre", "rule for the path integral",
               choices=("gausslegendre", "riemann_right", "riemann_left", "riemann_middle",
                        "riemann_trapezoid")),
        MULTIPLY_BY_INPUTS,
    ),
    reference="Sundararajan et al. 2017",
    rows_by_sample=True,
))
register(Method(
    "smoothgrad", smoothgrad, "Gradient averaged over noisy copies of the input.",
    options=(
        Option("n_samples", "int", 50, "noisy copies per input", minimum=1),
        Option("noise", "float", 0.15, NOISE_HELP, minimum=0.0),
        Option("seed", "seed", None, "random seed (None: fresh noise)"),
        BATCH_SIZE,
    ),
    reference="Smilkov et al. 2017",
    rows_by_sample=True,
))
