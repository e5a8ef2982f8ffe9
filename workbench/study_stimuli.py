"""The images of an interpretability study (``workbench.study``), from fitted bases.

For each direction of each basis, every image of a pool is scored by the direction's centred
code (``workbench.features.direction_activation``: for a neuron its activation, for a PC the
projection). Following Borowski et al. (ICLR 2021) the ``references`` are the most activating
images, the strong queries (``positives``) the next ones in the ranking, and the weak queries
(``negatives``) the least activating; no image is in two roles. The same pool and ranking rule
serve every basis, so bases differ only in their directions.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from workbench.basis import Basis
from workbench.features import direction_activation
from workbench.plots import image_grid
from workbench.study import DirectionStimuli


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """Images ``(N, C, H, W)`` (or ``(N, H, W)``) as uint8 arrays for display, each scaled from
    its own min-max range to 0..255 (grey for a constant image)."""
    array = images.detach().cpu().double()
    if array.dim() == 4:
        array = array.permute(0, 2, 3, 1)
        if array.shape[-1] == 1:
            array = array[..., 0]
    pictures = []
    for image in array:
        low, high = image.min(), image.max()
        scaled = (image - low) / (high - low) if high > low else torch.full_like(image, 0.5)
        pictures.append((scaled * 255).round().to(torch.uint8).numpy())
    return pictures


@torch.no_grad()
def direction_scores(model: nn.Module, pool: torch.Tensor, basis: Basis, directions: list[int],
                     batch_size: int = 256) -> torch.Tensor:
    """``(len(directions), N)``: each direction's score on each image of ``pool``."""
    scores = [direction_activation(model, batch, basis, directions).T.cpu()
              for batch in pool.split(batch_size)]
    return torch.cat(scores, dim=1)


def stimuli_from_bases(model: nn.Module, pool: torch.Tensor, bases: Mapping[str, Basis],
                       directions_per_basis: int = 4, references: int = 6, queries: int = 4,
                       display: Callable[[torch.Tensor], list[np.ndarray]] = to_uint8,
                       ) -> list[DirectionStimuli]:
    """Study stimuli for the top ``directions_per_basis`` directions of each basis: per
    direction ``references`` reference images, ``queries`` strong and ``queries`` weak query
    images from ``pool`` (``display`` turns images into uint8 arrays)."""
    needed = references + 2 * queries
    if len(pool) < needed:
        raise ValueError(f"pool must hold at least references + 2 * queries = {needed} images, "
                         f"got {len(pool)}")
    if directions_per_basis < 1 or references < 1 or queries < 1:
        raise ValueError("directions_per_basis, references and queries must be positive")
    pictures = display(pool)
    stimuli = []
    for name, basis in bases.items():
        chosen = list(range(min(directions_per_basis, basis.dimension)))
        scores = direction_scores(model, pool, basis, chosen)
        for direction, row in zip(chosen, scores):
            order = torch.argsort(row, descending=True, stable=True).tolist()
            stimuli.append(DirectionStimuli(
                name, direction, [pictures[i] for i in order[:references]],
                [pictures[i] for i in order[references:references + queries]],
                [pictures[i] for i in order[-queries:]]))
    return stimuli


def stimuli_figure(stimuli: Sequence[DirectionStimuli], title: str = "") -> go.Figure:
    """What participants will see, per direction (rows): the references, then one strong and
    one weak query image."""
    rows, titles = [], []
    for s in stimuli:
        pictures = [*s.references, s.positives[0], s.negatives[0]]
        rows.append([_chw(p) for p in pictures])
        titles.append([*(f"{s.basis} {s.direction}" if i == 0 else "" for i in
                         range(len(s.references))), "strong", "weak"])
    return image_grid(rows, titles, title=title or "Study stimuli: references, then a strong "
                                                   "and a weak query per direction")


def _chw(picture: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.asarray(picture, dtype=np.float32))
    return tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)
