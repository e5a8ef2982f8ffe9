"""NoiseTunnel: any method averaged over noisy copies of the input, as SmoothGrad
(Smilkov et al. 2017, arXiv:1706.03825), SmoothGrad-squared and VarGrad (Adebayo et al. 2018,
arXiv:1810.03307, section 3; Hooker et al. 2019, arXiv:1806.10758, section 4)."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from workbench.arguments import generator
from workbench.forward import target_indices
from workbench.methods.gradients import NOISE_HELP, noise_scale
from workbench.registry import Method, Option, get_method, methods, register

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


def _inner(method: str, options: Mapping | None):
    spec = get_method(method)
    if options is None:
        options = {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise TypeError("option 'inner_options' of noise_tunnel must be a dict of the options "
                        f"of {method} by name, got {type(options).__name__}")
    return spec, spec.bind(options)


def noise_tunnel(model, inputs, target, inner_method, kind, n_samples, noise, seed,
                 inner_options):
    """``a_k = A(x + e_k)`` for ``n_samples`` draws ``e_k ~ N(0, sigma^2)`` of ``inner_method``'s
    attributions ``A``; returns ``mean_k a_k`` (smoothgrad), ``mean_k a_k^2`` (smoothgrad_sq)
    or ``mean_k a_k^2 - (mean_k a_k)^2`` (vargrad), as Captum's NoiseTunnel.

    ``sigma = noise * (max(x) - min(x))`` per input (SmoothGrad's convention); the target is
    resolved once on the noise-free inputs. ``inner_options`` go to ``inner_method`` on every
    noisy copy (a seed there gives every copy the same inner randomness). One call of the inner
    method per draw, over all inputs.
    """
    spec, values = _inner(inner_method, inner_options)
    indices = target_indices(model, inputs, target)
    sigma = noise_scale(inputs, noise).view(-1, *[1] * (inputs.dim() - 1))
    rng = generator(seed)
    total = torch.zeros_like(inputs)
    total_sq = torch.zeros_like(inputs)
    for _ in range(n_samples):
        draws = torch.randn(inputs.shape, generator=rng, dtype=inputs.dtype).to(inputs.device)
        noisy = inputs.detach() + draws * sigma
        del draws
        attribution = spec.run(model, noisy, indices, **values).detach()
        attribution = attribution.to(dtype=inputs.dtype, device=inputs.device)
        total += attribution
        total_sq += attribution * attribution
    mean, mean_sq = total / n_samples, total_sq / n_samples
    if kind == "smoothgrad":
        return mean
    if kind == "smoothgrad_sq":
        return mean_sq
    return mean_sq - mean * mean


register(Method(
    "noise_tunnel", noise_tunnel,
    "Any method's attributions averaged over noisy copies of the input (SmoothGrad), or their "
    "mean square (SmoothGrad-squared) or variance (VarGrad).",
    options=(
        Option("inner_method", "choice", "gradient", "the method run on every noisy copy",
               choices=tuple(name for name in methods() if name != "noise_tunnel")),
        Option("kind", "choice", "smoothgrad", "how the copies' attributions are combined",
               choices=KINDS),
        Option("n_samples", "int", 50, "noisy copies per input (Captum: 5)", minimum=1),
        Option("noise", "float", 0.15, NOISE_HELP, minimum=0.0),
        Option("seed", "seed", None, "random seed of the noise (None: fresh noise)"),
        Option("inner_options", "object", None,
               "options of the inner method, as a dict, e.g. {'steps': 8}"),
    ),
    reference="Smilkov et al. 2017; Adebayo et al. 2018",
))
