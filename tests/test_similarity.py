"""The sanity checks' similarity metrics and edge baseline against scipy and scikit-image on the
same inputs, and their invariances."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, rankdata, spearmanr
from skimage.feature import hog
from skimage.filters import sobel
from skimage.metrics import structural_similarity

from workbench import similarity


def _maps(seed: int, shape=(4, 3, 16, 12), ties: bool = True):
    rng = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=rng)
    b = 0.7 * a + torch.randn(shape, generator=rng)
    if ties:  # ReLU-like maps: a block of exact zeros in both
        a[:, :, :5] = 0
        b[:, :, 2:6] = 0
    return a, b


def _abs_sum(m: torch.Tensor) -> np.ndarray:
    """The documented reduction: sum over the channels of the absolute values."""
    return m.double().abs().sum(dim=1).numpy()


def _unit(image: np.ndarray) -> np.ndarray:
    return (image - image.min()) / (image.max() - image.min())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_agrees_with_scipy_after_the_channel_reduction(seed):
    a, b = _maps(seed)
    signed_a, signed_b = a.double().sum(1).numpy(), b.double().sum(1).numpy()
    for absolute, (x, y) in ((True, (_abs_sum(a), _abs_sum(b))), (False, (signed_a, signed_b))):
        ours = similarity.spearman(a, b, absolute=absolute)
        theirs = [spearmanr(x[i].ravel(), y[i].ravel()).statistic for i in range(len(a))]
        assert ours.shape == (len(a),) and ours.dtype == torch.float64
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("win_size", [7, 5])
def test_ssim_agrees_with_scikit_image_on_the_normalised_maps(seed, win_size):
    a, b = _maps(seed)
    ours = similarity.ssim(a, b, win_size=win_size)
    theirs = [structural_similarity(_unit(_abs_sum(a)[i]), _unit(_abs_sum(b)[i]), data_range=1.0,
                                    win_size=win_size) for i in range(len(a))]
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cells", [None, ((4, 4), (2, 2)), ((2, 3), (3, 2))])
def test_hog_similarity_is_pearson_of_scikit_image_hog(seed, cells):
    a, b = _maps(seed, shape=(3, 2, 24, 24))
    options = {} if cells is None else {"pixels_per_cell": cells[0],
                                        "cells_per_block": cells[1]}
    ours = similarity.hog_similarity(a, b, **options)
    # the documented default: square cells of max(2, min(H, W) // 8) pixels, 2x2 blocks
    pixels, block = cells or ((3, 3), (2, 2))
    theirs = [pearsonr(hog(_unit(_abs_sum(a)[i]), pixels_per_cell=pixels, cells_per_block=block),
                       hog(_unit(_abs_sum(b)[i]), pixels_per_cell=pixels, cells_per_block=block)
                       ).statistic for i in range(len(a))]
    # scikit-image sums each cell's votes in float32: agreement to float32 round-off
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-6, atol=1e-7)


def test_hog_features_are_scikit_image_hog_even_for_ragged_and_odd_cells():
    a, _ = _maps(8, shape=(2, 1, 19, 23))   # cells of 3x2 pixels leave rows and columns over
    ours = similarity.hog_features(a, orientations=8, pixels_per_cell=(3, 2),
                                   cells_per_block=(2, 3))
    theirs = np.stack([hog(_unit(_abs_sum(a)[i]), orientations=8, pixels_per_cell=(3, 2),
                           cells_per_block=(2, 3), block_norm="L2-Hys") for i in range(2)])
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, atol=1e-6)


def test_average_ranks_match_scipy_with_many_ties():
    values = torch.randint(0, 5, (6, 40), generator=torch.Generator().manual_seed(0)).double()
    np.testing.assert_array_equal(similarity.average_ranks(values).numpy(),
                                  rankdata(values.numpy(), axis=1))


def test_edge_map_is_scikit_image_sobel_per_channel():
    x = torch.rand(2, 3, 9, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = similarity.edge_map(x)
    theirs = np.stack([[sobel(x[i, c].numpy()) for c in range(3)] for i in range(2)])
    assert ours.shape == x.shape and ours.dtype == x.dtype
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-12, atol=1e-14)


def test_identical_maps_score_one_and_positive_scaling_changes_nothing():
    a, b = _maps(3)
    for name, metric in similarity.SIMILARITIES.items():
        torch.testing.assert_close(metric(a, a), torch.ones(len(a), dtype=torch.float64),
                                   msg=name)
        torch.testing.assert_close(metric(a, 5.0 * b), metric(a, b), msg=name)


def test_signs_matter_only_without_absolute_values():
    a, _ = _maps(4)
    torch.testing.assert_close(similarity.spearman(a, -a, absolute=False),
                               -torch.ones(len(a), dtype=torch.float64))
    for metric in (similarity.ssim, similarity.hog_similarity,
                   lambda x, y: similarity.spearman(x, y, absolute=True)):
        torch.testing.assert_close(metric(a, -a), torch.ones(len(a), dtype=torch.float64))


def test_heat_maps_without_channels_are_accepted_as_they_are():
    a, b = _maps(5)
    torch.testing.assert_close(similarity.ssim(a.abs().sum(1), b.abs().sum(1)),
                               similarity.ssim(a, b))
    torch.testing.assert_close(similarity.spearman(a.sum(1), b.sum(1), absolute=False),
                               similarity.spearman(a, b, absolute=False))


def test_a_constant_map_gives_nan_where_undefined():
    a, b = _maps(6)
    b[1] = 0.0
    correlation = similarity.spearman(a, b)
    assert torch.isnan(correlation[1]) and not torch.isnan(correlation[0])
    assert torch.isnan(similarity.hog_similarity(a, b)[1])
    assert torch.isfinite(similarity.ssim(a, b)).all()  # defined: the zero map is structureless


def test_bad_arguments_are_named():
    a, b = _maps(7)
    with pytest.raises(ValueError, match="same shape"):
        similarity.spearman(a, b[:, :2])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(N, H, W\)"):
        similarity.ssim(a.flatten(1), b.flatten(1))
    with pytest.raises(ValueError, match="at least 7x7"):
        similarity.ssim(a[..., :6], b[..., :6])
    with pytest.raises(ValueError, match="win_size"):
        similarity.ssim(a, b, win_size=4)
    with pytest.raises(ValueError, match="fewer than one block"):
        similarity.hog_similarity(a, b, pixels_per_cell=(8, 8), cells_per_block=(3, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        similarity.spearman(a.numpy(), b.numpy())


def test_independent_noise_maps_score_about_zero():
    """Maps with no relation to each other: every metric's mean over many pairs is near 0 (the
    other anchor of the sanity checks' scale, identical maps being 1). HOG features are
    non-negative and normalised block by block, so unrelated maps keep a small positive
    correlation (about 0.06 here; scikit-image's HOG gives the same, see the tests above)."""
    rng = torch.Generator().manual_seed(7)
    a, b = torch.randn(64, 3, 32, 32, generator=rng), torch.randn(64, 3, 32, 32, generator=rng)
    for name, metric in similarity.SIMILARITIES.items():
        values = metric(a, b)
        low, high = (0.0, 0.1) if name == "hog" else (-0.03, 0.03)
        assert low < float(values.mean()) < high, name
        assert float(values.abs().max()) < 0.3, name
