"""How alike two explanations are: the similarity metrics of the sanity checks (Adebayo et al.,
"Sanity checks for saliency maps", NeurIPS 2018, arXiv 1810.03292, section 3), and the edge-detector
baseline they compare explanations with.

Every metric takes two batches of maps of the same shape and returns one value per sample (a
float64 CPU tensor of shape ``(N,)``). Maps are ``(N, C, H, W)`` attributions or ``(N, H, W)``
heat maps; they are reduced to one 2-D map per sample first (``to_2d``):

- ``absolute=True`` (``spearman(absolute=True)``, ``ssim``, ``hog_similarity``): the sum of the
  absolute values over the channels, ``sum_c |R_c|``, as the paper's grayscale visualisation
  does (the paper's code also clips at the 99th percentile; we do not);
- ``absolute=False`` (``spearman(absolute=False)``): the signed sum over the channels.

SSIM and HOG then scale each 2-D map to [0, 1] by its own minimum and maximum (a constant map
becomes all zeros), so they compare shapes, not magnitudes, as the paper's normalised maps do.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_2d(maps: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """One 2-D float64 CPU map per sample: ``(N, C, H, W)`` summed over the channels (of the
    absolute values when ``absolute``), ``(N, H, W)`` kept (made absolute when ``absolute``)."""
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a torch.Tensor, got {type(maps).__name__}")
    if maps.dim() not in (3, 4):
        raise ValueError(f"maps must have shape (N, C, H, W) or (N, H, W), got shape "
                         f"{tuple(maps.shape)}")
    maps = maps.detach().to(device="cpu", dtype=torch.float64)
    if absolute:
        maps = maps.abs()
    return maps.sum(dim=1) if maps.dim() == 4 else maps


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Each ``(H, W)`` map of ``(N, H, W)`` scaled to [0, 1] by its minimum and maximum; a
    constant map becomes zeros."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low)
    return torch.where(span > 0, (maps - low) / span.clamp(min=torch.finfo(maps.dtype).tiny),
                       torch.zeros_like(maps))


def _pair(a: torch.Tensor, b: torch.Tensor, absolute: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError("a and b must be torch.Tensors of the same shape")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return to_2d(a, absolute), to_2d(b, absolute)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the rows of two ``(N, D)`` tensors, in float64; NaN where a row is
    constant."""
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    norms = a.norm(dim=1) * b.norm(dim=1)
    correlation = (a * b).sum(dim=1) / norms
    return correlation.clamp(-1.0, 1.0).masked_fill(norms == 0, float("nan"))


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..D along the last dimension of ``(N, D)`` values, ties given the mean of the
    ranks they span (``scipy.stats.rankdata(method="average")``), in float64."""
    order = values.argsort(dim=1, stable=True)
    ordered = values.gather(1, order)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.cumsum(dim=1) - 1                      # tie group of each sorted value
    positions = torch.arange(1, values.shape[1] + 1, dtype=torch.float64).expand_as(ordered)
    totals = torch.zeros_like(positions).scatter_add_(1, group, positions)
    counts = torch.zeros_like(positions).scatter_add_(1, group, torch.ones_like(positions))
    mean_rank = (totals / counts.clamp(min=1)).gather(1, group)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: torch.Tensor, b: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """Spearman rank correlation between the maps of each sample: the Pearson correlation of
    their ranks, ties given their average rank (as ``scipy.stats.spearmanr``).

    ``absolute=True`` ranks ``sum_c |R_c|`` (how important a pixel is), ``absolute=False`` the
    signed ``sum_c R_c`` (the paper reports both). NaN where a map is constant.
    """
    a, b = _pair(a, b, absolute)
    return pearson(average_ranks(a.flatten(1)), average_ranks(b.flatten(1)))


def ssim(a: torch.Tensor, b: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    r"""Structural similarity (Wang et al. 2004) of each pair of maps, as
    ``skimage.metrics.structural_similarity(x, y, data_range=1)`` computes it.

    The maps are reduced to ``sum_c |R_c|`` and scaled to [0, 1] (see the module docstring),
    hence ``data_range = 1``: ``C1 = (0.01)^2``, ``C2 = (0.03)^2``. Local means, variances
    (sample, ``n/(n-1)``) and the covariance come from a uniform ``win_size`` square window;

    .. math:: \mathrm{SSIM} = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                                   {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}

    averaged over the windows that lie inside the map (skimage crops the border the same way).
    Maps must be at least ``win_size`` pixels high and wide.
    """
    if not isinstance(win_size, int) or isinstance(win_size, bool) or win_size < 3 or (
            win_size % 2 == 0):
        raise ValueError(f"win_size must be an odd int >= 3, got {win_size!r}")
    a, b = _pair(a, b, absolute=True)
    if min(a.shape[-2:]) < win_size:
        raise ValueError(f"ssim needs maps of at least {win_size}x{win_size} pixels (win_size), "
                         f"got {tuple(a.shape[-2:])}")
    x, y = normalize(a)[:, None], normalize(b)[:, None]

    def mean(image: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(image, win_size, stride=1)

    covariance_norm = win_size ** 2 / (win_size ** 2 - 1)
    mu_x, mu_y = mean(x), mean(y)
    var_x = covariance_norm * (mean(x * x) - mu_x * mu_x)
    var_y = covariance_norm * (mean(y * y) - mu_y * mu_y)
    cov_xy = covariance_norm * (mean(x * y) - mu_x * mu_y)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
         / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
    return s.flatten(1).mean(dim=1)


def hog_features(maps: torch.Tensor, orientations: int = 9,
                 pixels_per_cell: tuple[int, int] | None = None,
                 cells_per_block: tuple[int, int] = (2, 2)) -> torch.Tensor:
    """Histogram of oriented gradients (Dalal & Triggs 2005) of each map, reduced to
    ``sum_c |R_c|`` and scaled to [0, 1]; shape ``(N, features)``, float64.

    The computation of ``skimage.feature.hog(map, orientations, pixels_per_cell,
    cells_per_block, block_norm="L2-Hys")``, batched: central differences (zero on the border
    rows and columns), magnitude-weighted votes into ``orientations`` unsigned bins over
    [0, 180) degrees, the mean per cell, and each block of cells normalised by L2-Hys (L2,
    clipped at 0.2, L2 again; epsilon 1e-5); pixels beyond the last whole cell are ignored.
    ``pixels_per_cell=None`` takes square cells of ``max(2, min(H, W) // 8)`` pixels (8 cells
    across a square map of 16 pixels or more; 8x8 digits get 2x2-pixel cells).
    """
    images = normalize(to_2d(maps, absolute=True))
    n, height, width = images.shape
    if pixels_per_cell is None:
        side = max(2, min(height, width) // 8)
        pixels_per_cell = (side, side)
    (cell_rows, cell_cols), (block_rows, block_cols) = pixels_per_cell, cells_per_block
    cells = (height // cell_rows, width // cell_cols)
    if cells[0] < block_rows or cells[1] < block_cols:
        raise ValueError(
            f"maps of {(height, width)} pixels hold {list(cells)} cells of {pixels_per_cell} "
            f"pixels, fewer than one block of {cells_per_block} cells; choose smaller "
            "pixels_per_cell or cells_per_block")
    gradient_rows = torch.zeros_like(images)
    gradient_rows[:, 1:-1] = images[:, 2:] - images[:, :-2]
    gradient_cols = torch.zeros_like(images)
    gradient_cols[:, :, 1:-1] = images[:, :, 2:] - images[:, :, :-2]
    magnitude = torch.hypot(gradient_cols, gradient_rows)
    angle = torch.atan2(gradient_rows, gradient_cols) * (180 / np.pi) % 180
    bins = (angle / (180 / orientations)).floor().long().clamp(0, orientations - 1)
    votes = F.one_hot(bins, orientations) * magnitude[..., None]            # (N, H, W, O)
    votes = votes[:, :cells[0] * cell_rows, :cells[1] * cell_cols]
    histogram = votes.reshape(n, cells[0], cell_rows, cells[1], cell_cols, orientations)
    histogram = histogram.sum(dim=(2, 4)) / (cell_rows * cell_cols)        # (N, R, C, O)
    blocks = histogram.unfold(1, block_rows, 1).unfold(2, block_cols, 1)   # (N, r, c, O, b, b)
    blocks = blocks.permute(0, 1, 2, 4, 5, 3).flatten(3)                   # (N, r, c, b*b*O)
    eps = 1e-5
    blocks = blocks / (blocks.pow(2).sum(-1, keepdim=True) + eps ** 2).sqrt()
    blocks = blocks.clamp(max=0.2)
    blocks = blocks / (blocks.pow(2).sum(-1, keepdim=True) + eps ** 2).sqrt()
    return blocks.flatten(1)


def hog_similarity(a: torch.Tensor, b: torch.Tensor, **hog_options) -> torch.Tensor:
    """Pearson correlation between the HOG features (``hog_features``, options passed on) of
    each pair of maps: do the maps have edges of the same orientation in the same places? NaN
    where a map has no gradient at all."""
    _pair(a, b, absolute=True)
    return pearson(hog_features(a, **hog_options), hog_features(b, **hog_options))


def edge_map(inputs: torch.Tensor) -> torch.Tensor:
    r"""The edge-detector baseline: the Sobel gradient magnitude of each channel of ``(N, C, H,
    W)`` images, :math:`\sqrt{(G_x^2 + G_y^2) / 2}` with the kernels ``[1, 2, 1]/4`` (smoothing)
    times ``[1, 0, -1]`` (derivative) and the edge pixel repeated at the border, as
    ``skimage.filters.sobel`` per channel. Same shape, dtype and device as ``inputs``, so it is
    compared with attributions like any other map; it needs neither a model nor training data.
    """
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ValueError("inputs must be images, a tensor of shape (N, C, H, W)")
    n, channels, height, width = inputs.shape
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=inputs.dtype, device=inputs.device) / 4
    derivative = torch.tensor([1.0, 0.0, -1.0], dtype=inputs.dtype, device=inputs.device)
    kernels = torch.stack([torch.outer(derivative, smooth), torch.outer(smooth, derivative)])
    padded = F.pad(inputs.reshape(n * channels, 1, height, width), (1, 1, 1, 1),
                   mode="replicate")
    gradients = F.conv2d(padded, kernels[:, None])
    magnitude = gradients.pow(2).sum(dim=1).div(2).sqrt()
    return magnitude.view(n, channels, height, width)


#: the paper's four similarity metrics by name (used by ``workbench.sanity_check``)
SIMILARITIES = {
    "spearman_abs": lambda a, b: spearman(a, b, absolute=True),
    "spearman": lambda a, b: spearman(a, b, absolute=False),
    "ssim": ssim,
    "hog": hog_similarity,
}
