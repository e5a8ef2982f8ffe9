"""Superpixel feature masks (workbench.masks) and their use as feature groups."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from conftest import cnn


def two_regions(edge: int, n: int = 2):
    """Images dark left of column ``edge`` and bright from it, in every channel."""
    images = torch.zeros(n, 3, 16, 16)
    images[..., edge:] = 1.0
    return images + 0.01 * torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def crossing(mask: torch.Tensor, edge: int) -> int:
    """Superpixels with pixels on both sides of the edge."""
    return sum(1 for label in mask.unique()
               if (mask[:, :edge] == label).any() and (mask[:, edge:] == label).any())


@pytest.mark.parametrize("edge", [3, 7])
def test_superpixels_follow_the_image_and_label_from_zero(edge):
    mask = wb.masks.superpixels(two_regions(edge), n_segments=9)
    assert mask.shape == (2, 1, 16, 16) and mask.dtype == torch.long
    for image_mask in mask[:, 0]:
        labels = image_mask.unique()
        assert torch.equal(labels, torch.arange(len(labels))) and len(labels) > 2
        assert crossing(image_mask, edge) == 0
    # near-square segments (SLIC's spatial term dominating) cut across the same edge
    grid = wb.masks.superpixels(two_regions(edge), n_segments=9, compactness=1000.0)
    assert crossing(grid[0, 0], edge) > 0


def test_superpixels_group_features_for_the_surrogates():
    model = cnn(nn.ReLU).eval()
    x = torch.randn(1, 3, 8, 8)
    mask = wb.masks.superpixels(x, n_segments=4)
    attr = wb.attribute(model, x, "kernel_shap", target=0, feature_mask=mask, seed=0)
    for label in mask.unique():  # one value per superpixel, shared by its pixels and channels
        assert len(attr[mask.expand_as(attr) == label].unique()) == 1


def test_a_single_grey_image_is_accepted():
    mask = wb.masks.superpixels(torch.rand(1, 12, 12), n_segments=4)
    assert mask.shape == (1, 1, 12, 12)


@pytest.mark.parametrize("images, n_segments, error, message", [
    (torch.zeros(2, 3, 8, 8, dtype=torch.long), 4, TypeError, "floating-point"),
    (torch.zeros(8, 8), 4, ValueError, r"\(N, C, H, W\)"),
    (torch.zeros(1, 3, 8, 8), 0, ValueError, "n_segments must be a positive integer"),
])
def test_bad_arguments_are_named(images, n_segments, error, message):
    with pytest.raises(error, match=message):
        wb.masks.superpixels(images, n_segments)
