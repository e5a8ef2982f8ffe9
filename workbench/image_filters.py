"""Image filters the metrics and feature visualisation share."""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of ``(N, C, H, W)`` images convolved with a normalised Gaussian of standard
    deviation ``sigma`` pixels, radius ``round(3 sigma)``, reflected edges (``d c b | a b c d``,
    ``scipy.ndimage.gaussian_filter(mode="mirror", truncate=3)``)."""
    if not isinstance(sigma, numbers.Real) or isinstance(sigma, bool) or not sigma > 0:
        raise ValueError(f"blur_sigma must be a positive number, got {sigma!r}")
    radius = int(3 * sigma + 0.5)
    height, width = images.shape[-2:]
    if radius >= min(height, width):
        raise ValueError(
            f"blur_sigma={sigma} needs a kernel radius {radius} smaller than the image size "
            f"{(height, width)}")
    if radius == 0:
        return images.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
