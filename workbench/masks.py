"""Feature masks that group input features, for the methods with a ``feature_mask`` option
(``feature_ablation``, ``kernel_shap``, ``lime``, ``shapley_sampling``)."""
from __future__ import annotations

import numpy as np
import torch


def superpixels(images: torch.Tensor, n_segments: int = 50,
                compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels of each image as an integer mask of shape ``(N, 1, H, W)``.

    The labels of one image run from 0; the mask broadcasts over the channels, so each superpixel
    is one feature group of all channels. SLIC (Achanta et al. 2012) is scikit-image's
    ``segmentation.slic``; LIME uses superpixels as its interpretable features on images
    (Ribeiro et al. 2016, arXiv:1602.04938, section 3.1). The methods group features the same
    way for every input, so use the mask of one image to explain that image.

    Parameters
    ----------
    images:
        Images of shape ``(N, C, H, W)`` (or one image ``(C, H, W)``); channels are combined
        after scaling each image to [0, 1].
    n_segments:
        Approximate number of superpixels per image.
    compactness:
        SLIC's balance of colour against space: higher gives squarer segments.
    """
    from skimage.segmentation import slic

    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError("images must be a floating-point torch.Tensor of shape (N, C, H, W)")
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if isinstance(n_segments, bool) or not isinstance(n_segments, int) or n_segments < 1:
        raise ValueError(f"n_segments must be a positive integer, got {n_segments!r}")
    masks = []
    for image in images.detach().cpu().double().numpy():
        low, high = image.min(), image.max()
        scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
        labels = slic(np.moveaxis(scaled, 0, -1), n_segments=n_segments,
                      compactness=compactness, channel_axis=-1, start_label=0)
        masks.append(torch.as_tensor(labels, dtype=torch.long))
    return torch.stack(masks)[:, None].to(images.device)
