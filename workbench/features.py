"""What a direction of an explanation basis responds to (Dey et al., "Neuron-based explanations of
neural networks sacrifice completeness and interpretability", arXiv 2011.03043, TMLR 2025): the
inputs that activate it most, and an input synthesised to activate it. The same objective serves
neurons and principal components: ``direction_activation``, the projection of the layer's
centred activation onto the direction (``workbench.basis``), and for the non-orthogonal bases
(ICA, NMF, sparse dictionaries) the direction's centred code.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from workbench.basis import Basis, features_last, to_model_device
from workbench.batching import progress_batches
from workbench.model_layers import captured_outputs, find_layer, single_output
from workbench.checks import model_device
from workbench.image_filters import gaussian_blur


def _check_directions(basis: Basis, directions: Sequence[int]) -> list[int]:
    if isinstance(directions, int) or not isinstance(directions, Sequence) or not directions:
        raise ValueError(f"directions must be a non-empty sequence of indices, got {directions!r}")
    for index in directions:
        if not isinstance(index, int) or not 0 <= index < basis.dimension:
            raise ValueError(f"direction index must be an integer in [0, {basis.dimension - 1}] "
                             f"(layer '{basis.layer}'), got {index!r}")
    return list(directions)


def direction_activation(model: nn.Module, inputs: torch.Tensor, basis: Basis,
                         directions: Sequence[int]) -> torch.Tensor:
    """The centred code ``c_i(a) - code_mean_i`` of each input's activation ``a`` for each
    direction i (``Basis.centred_codes``), averaged over the positions of a conv layer; shape
    (N, len(directions)). Differentiable with respect to ``inputs`` (the objective of the
    feature visualisation). For PCA it is ``(a - mean) . v``, ``v`` the direction; for a
    neuron the neuron's activation minus its mean; for ICA, NMF and sparse bases the
    direction's code (unmixed, non-negative least squares, encoder) minus its mean."""
    directions = _check_directions(basis, directions)
    name, module = find_layer(model, basis.layer)
    with captured_outputs(module, name) as outputs:
        model(inputs)
    output = single_output(outputs, name, module)
    channels_last = features_last(output, basis.spatial) if output.dim() > 2 else output[:, None]
    scores = basis.centred_codes(channels_last.double(), directions)
    return scores.flatten(1, -2).mean(1)


@dataclass(frozen=True)
class TopActivating:
    """Per direction (rows), the ``n`` inputs with the highest ``direction_activation``:
    ``scores`` and ``indices`` (position in ``data``) of shape (m, n), ``inputs`` (m, n, ...)."""

    directions: list[int]
    scores: torch.Tensor
    indices: torch.Tensor
    inputs: torch.Tensor


def top_activating(model: nn.Module, data, basis: Basis, directions: Sequence[int],
                   n: int = 8, batch_size: int = 256, progress: bool = True) -> TopActivating:
    """The ``n`` inputs of ``data`` that activate each of ``directions`` of ``basis`` most, in
    one streaming pass (only the current best ``n`` inputs per direction are kept)."""
    directions = _check_directions(basis, directions)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    best_scores = best_indices = best_inputs = None
    seen = 0
    with torch.no_grad():
        for inputs, _ in progress_batches(data, batch_size, progress, "top-activating inputs"):
            scores = direction_activation(model, to_model_device(model, inputs), basis,
                                          directions).T.cpu()                 # (m, B)
            indices = torch.arange(seen, seen + len(inputs)).expand_as(scores)
            candidates = inputs.cpu()[None].expand(len(directions), *inputs.shape)
            if best_scores is not None:
                scores = torch.cat([best_scores, scores], 1)
                indices = torch.cat([best_indices, indices], 1)
                candidates = torch.cat([best_inputs, candidates], 1)
            order = scores.argsort(dim=1, descending=True, stable=True)[:, :n]
            best_scores, best_indices = scores.gather(1, order), indices.gather(1, order)
            best_inputs = torch.stack([candidates[i, order[i]] for i in range(len(directions))])
            seen += len(inputs)
    if best_scores is None:
        raise ValueError("data is empty: no batch reached the model")
    return TopActivating(directions, best_scores, best_indices, best_inputs)


@dataclass(frozen=True)
class FeatureVisualisation:
    """Synthesised inputs (m, ...) for ``directions``, and ``direction_activation`` of each
    at the start of the optimisation and at its end."""

    directions: list[int]
    inputs: torch.Tensor
    start_objective: torch.Tensor
    objective: torch.Tensor


# More than ten parameters: the optimiser's and the regularisers' settings are the knobs of
# activation maximisation that a reader of Olah et al. varies one at a time; as keyword defaults
# they read as the recipe, where an options object would hide them behind one more name.
def feature_visualisation(  # noqa: PLR0913 (see above)
        model: nn.Module, basis: Basis, directions: Sequence[int], start: torch.Tensor,
        steps: int = 256, learning_rate: float = 0.05, l2: float = 1e-3, jitter: int = 1,
        blur_every: int = 4, blur_sigma: float = 0.5,
        value_range: tuple[float, float] | None = None, radius: float | None = None,
        noise: float = 0.01, seed: int = 0) -> FeatureVisualisation:
    """Activation maximisation (Erhan et al. 2009; Olah et al. 2017) of each direction.

    From ``start`` (one input, e.g. the data mean, without batch dimension) plus seeded noise
    of scale ``noise``, Adam ascends ``direction_activation(x) - l2 * mean((x - start)^2)``
    for ``steps`` steps; images (C, H, W) are shifted by up to ``jitter`` pixels at random
    each step and blurred (``blur_sigma``) every ``blur_every`` steps; values are clipped to
    ``value_range`` and the distance ``||x - start||`` to ``radius`` if given (e.g. the data's
    typical distance from their mean: without it a ReLU net's activations grow with the
    input's scale and the optimum saturates every pixel). The same objective serves neurons
    and PCs: for a PC it is the projection onto the direction. Seeded on the CPU: a seed gives
    the same images anywhere. A direction with no gradient at the start (a ReLU neuron that is
    off there) stays put: start from an input that activates it, or take the layer before the
    ReLU.
    """
    directions = _check_directions(basis, directions)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    generator = torch.Generator().manual_seed(seed)
    device = model_device(model) or torch.device("cpu")
    start = start.detach().to(device)
    noise_draw = torch.randn((len(directions), *start.shape), generator=generator) * noise
    images = (start + noise_draw.to(device=device, dtype=start.dtype)).requires_grad_()
    is_image = start.dim() == 3
    optimizer = torch.optim.Adam([images], lr=learning_rate)
    diagonal = torch.arange(len(directions))

    def objective(x: torch.Tensor) -> torch.Tensor:
        return direction_activation(model, x, basis, directions)[diagonal, diagonal]

    with torch.no_grad():
        start_objective = objective(images).cpu()
    for step in range(steps):
        shifted = images
        if is_image and jitter > 0:
            dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
            shifted = images.roll((dy, dx), dims=(2, 3))
        penalty = l2 * ((images - start) ** 2).flatten(1).mean(1)
        loss = (penalty - objective(shifted)).sum()
        (gradient,) = torch.autograd.grad(loss, images)
        images.grad = gradient
        optimizer.step()
        with torch.no_grad():
            if is_image and blur_every and (step + 1) % blur_every == 0 and blur_sigma > 0:
                images.copy_(gaussian_blur(images, blur_sigma))
            if radius is not None:
                offset = images - start
                norms = offset.flatten(1).norm(dim=1).clamp(min=1e-12)
                scale = (radius / norms).clamp(max=1).view(-1, *[1] * start.dim())
                images.copy_(start + offset * scale)
            if value_range is not None:
                images.clamp_(*value_range)
    with torch.no_grad():
        final = objective(images).cpu()
    return FeatureVisualisation(directions, images.detach(), start_objective, final)
