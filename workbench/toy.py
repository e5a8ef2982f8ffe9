"""The linear toy of Kindermans et al. 2018: signal, distractor and noise.

``x = a_s y + a_d eps + noise``: the signal direction ``a_s`` carries the target ``y``, the
distractor direction ``a_d`` carries ``eps`` independent of ``y``. A linear model that predicts
``y`` must cancel the distractor, so its filter ``w`` is orthogonal to ``a_d`` and generally not
parallel to ``a_s``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LinearToy:
    """Samples ``x`` (n, dim), targets ``y`` (n,), and the true directions."""

    x: torch.Tensor
    y: torch.Tensor
    signal_direction: torch.Tensor
    distractor_direction: torch.Tensor
    noise: float

    @property
    def signal(self) -> torch.Tensor:
        """The signal part of each sample, ``a_s y``."""
        return self.y[:, None] * self.signal_direction


def _direction(value, dim: int, rng: torch.Generator, name: str) -> torch.Tensor:
    if value is None:
        vector = torch.randn(dim, generator=rng, dtype=torch.float64)
        return vector / vector.norm()
    vector = torch.as_tensor(value, dtype=torch.float64).flatten()
    if vector.numel() != dim:
        raise ValueError(f"{name} must have {dim} entries (dim), got {vector.numel()}")
    if vector.norm() == 0:
        raise ValueError(f"{name} must not be the zero vector")
    return vector


def make_linear_toy(n: int = 1000, dim: int = 2, signal=None, distractor=None, noise: float = 0.0,
                    distractor_strength: float = 1.0, seed: int = 0) -> LinearToy:
    """Draw ``n`` samples ``x = a_s y + a_d eps + noise`` with ``y, eps ~ N(0, 1)``.

    ``signal`` and ``distractor`` are the directions ``a_s`` and ``a_d`` (random unit vectors if
    None); ``noise`` is the std of isotropic Gaussian noise. Float64 throughout.
    """
    if n < 2 or dim < 1:
        raise ValueError(f"need n >= 2 and dim >= 1, got n={n}, dim={dim}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = torch.Generator().manual_seed(seed)
    a_s = _direction(signal, dim, rng, "signal")
    a_d = _direction(distractor, dim, rng, "distractor")
    y = torch.randn(n, generator=rng, dtype=torch.float64)
    eps = torch.randn(n, generator=rng, dtype=torch.float64) * distractor_strength
    x = y[:, None] * a_s + eps[:, None] * a_d
    if noise:
        x = x + noise * torch.randn(n, dim, generator=rng, dtype=torch.float64)
    return LinearToy(x, y, a_s, a_d, noise)


def fit_linear_model(toy: LinearToy) -> nn.Linear:
    """The least-squares linear model ``y_hat = w^T x + b`` (one output), in float64."""
    design = torch.cat([toy.x, torch.ones(len(toy.x), 1, dtype=toy.x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, toy.y[:, None]).solution[:, 0]
    model = nn.Linear(toy.x.shape[1], 1).double()
    with torch.no_grad():
        model.weight.copy_(solution[:-1][None])
        model.bias.copy_(solution[-1:])
    return model.eval()
