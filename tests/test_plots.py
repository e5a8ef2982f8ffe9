"""Figures (``workbench/plots.py``): heat maps as images (colour mapping and PNG encoding), and
the figures drawn from plain tensors and tables.

The expected colours come from plotly's own sampling of the colour scale, so the tiles and the
plotly figures use the same colours for the same values.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import plotly.colors
import pytest
from PIL import Image

from workbench import plots


def scale_color(colorscale: str, position: float) -> np.ndarray:
    """The colour plotly gives ``position`` in [0, 1] of ``colorscale``, as uint8 RGB."""
    (color,) = plotly.colors.sample_colorscale(colorscale, [position], colortype="tuple")
    return np.rint(np.asarray(color) * 255).astype(np.uint8)


@pytest.mark.parametrize("colorscale", ["RdBu_r", "RdBu", "Picnic"])
def test_zero_maps_to_the_middle_colour_and_the_range_is_symmetric(colorscale):
    heat = np.array([[-1.0, 0.0, 2.0], [0.5, -2.0, 1.0]])
    rgb = plots.diverging_rgb(heat, colorscale)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert plots.symmetric_limit(heat) == 2.0
    np.testing.assert_array_equal(rgb[0, 1], scale_color(colorscale, 0.5))  # 0: the middle
    np.testing.assert_array_equal(rgb[0, 2], scale_color(colorscale, 1.0))  # +max|v|: the top
    np.testing.assert_array_equal(rgb[1, 1], scale_color(colorscale, 0.0))  # -max|v|: bottom
    # -1 sits a quarter of the way up the range [-2, 2], +1 three quarters; +-0.5 likewise
    for (row, col), position in {(0, 0): 0.25, (1, 2): 0.75, (1, 0): 0.625}.items():
        np.testing.assert_allclose(rgb[row, col].astype(int),
                                   scale_color(colorscale, position).astype(int), atol=1)


def test_the_range_is_symmetric_even_when_all_values_have_one_sign():
    rgb = plots.diverging_rgb(np.array([[0.0, 1.0, 4.0]]))
    np.testing.assert_array_equal(rgb[0, 0], scale_color("RdBu_r", 0.5))
    np.testing.assert_array_equal(rgb[0, 2], scale_color("RdBu_r", 1.0))
    np.testing.assert_allclose(rgb[0, 1].astype(int), scale_color("RdBu_r", 0.625).astype(int),
                               atol=1)
    # a given limit: values beyond it are clipped to the ends
    rgb = plots.diverging_rgb(np.array([[-10.0, 0.5, 10.0]]), limit=1.0)
    np.testing.assert_array_equal(rgb[0, 0], scale_color("RdBu_r", 0.0))
    np.testing.assert_array_equal(rgb[0, 2], scale_color("RdBu_r", 1.0))
    np.testing.assert_allclose(rgb[0, 1].astype(int), scale_color("RdBu_r", 0.75).astype(int),
                               atol=1)


def test_nan_and_constant_maps_are_handled_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zeros = plots.diverging_rgb(np.zeros((4, 4)))
        assert (zeros == scale_color("RdBu_r", 0.5)).all()
        positive = plots.diverging_rgb(np.full((4, 4), 3.0))
        assert (positive == scale_color("RdBu_r", 1.0)).all()
        negative = plots.diverging_rgb(np.full((4, 4), -3.0))
        assert (negative == scale_color("RdBu_r", 0.0)).all()
        nan = plots.diverging_rgb(np.full((4, 4), np.nan))
        assert (nan == plots.NAN_COLOR).all()
        mixed = plots.diverging_rgb(np.array([[np.nan, np.inf, -np.inf, 1.0, -1.0]]))
        assert plots.symmetric_limit(np.array([[np.nan, np.inf, 1.0, -1.0]])) == 1.0
    np.testing.assert_array_equal(mixed[0, :3], [plots.NAN_COLOR] * 3)
    np.testing.assert_array_equal(mixed[0, 3], scale_color("RdBu_r", 1.0))
    np.testing.assert_array_equal(mixed[0, 4], scale_color("RdBu_r", 0.0))


def test_input_images_are_scaled_to_their_range():
    image = np.array([[[0.0, 0.5], [1.0, 0.25]]]) * 4 + 1  # one channel in [1, 5]
    rgb = plots.image_rgb(image)
    np.testing.assert_array_equal(rgb[0, 0], scale_color("gray", 0.0))
    np.testing.assert_array_equal(rgb[1, 0], scale_color("gray", 1.0))
    colour = plots.image_rgb(np.stack([np.zeros((2, 2)), np.ones((2, 2)), np.full((2, 2), .5)]))
    np.testing.assert_array_equal(colour[0, 0], [0, 255, 128])
    assert (plots.image_rgb(np.ones((1, 3, 3))) == scale_color("gray", 0.5)).all()


def test_png_is_valid_with_each_pixel_drawn_as_a_block():
    rgb = plots.diverging_rgb(np.arange(12.0).reshape(3, 4) - 6)
    data = plots.png_bytes(rgb, scale=5)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "PNG" and picture.size == (20, 15) and picture.mode == "RGB"
        decoded = np.asarray(picture)
    np.testing.assert_array_equal(decoded, np.repeat(np.repeat(rgb, 5, axis=0), 5, axis=1))
    with Image.open(io.BytesIO(plots.png_bytes(rgb))) as picture:
        assert picture.size == (4, 3)


def test_bad_arguments_name_what_is_accepted():
    with pytest.raises(ValueError, match="2-D heat map"):
        plots.diverging_rgb(np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="colour scale name"):
        plots.diverging_rgb(np.zeros((2, 2)), "no_such_scale")
    with pytest.raises(ValueError, match="limit"):
        plots.diverging_rgb(np.zeros((2, 2)), limit=-1.0)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        plots.image_rgb(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="uint8"):
        plots.png_bytes(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="scale"):
        plots.png_bytes(np.zeros((2, 2, 3), dtype=np.uint8), scale=0)


# --- figures from plain arrays and tables ----------------------------------------------------


def test_toy_directions_draws_each_arrow_from_the_origin():
    import torch

    samples, labels = torch.randn(50, 2), torch.randn(50)
    arrows = {"a": torch.tensor([1.0, 0.5]), "b": torch.tensor([-2.0, 3.0])}
    figure = plots.toy_directions(samples, labels, arrows, title="t", max_samples=20)
    assert len(figure.data[0].x) == 20
    np.testing.assert_allclose(figure.data[0].y, samples[:20, 1].numpy())
    drawn = {trace.name: (list(trace.x), list(trace.y)) for trace in figure.data[1:]}
    assert drawn == {"a": ([0, 1.0], [0, 0.5]), "b": ([0, -2.0], [0, 3.0])}
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        plots.toy_directions(torch.zeros(5, 3), labels, arrows)
    with pytest.raises(ValueError, match="arrow 'c' must be a 2-vector"):
        plots.toy_directions(samples, labels, {"c": torch.zeros(3)})


def test_direction_gallery_lays_out_ranks_as_rows_and_galleries_side_by_side():
    import torch

    visualisations = [torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)]
    top_inputs = [torch.rand(2, 3, 1, 4, 4), torch.rand(2, 3, 1, 4, 4)]
    top_scores = [torch.tensor([[3.0, 2.0, 1.0], [0.5, 0.25, 0.125]]), torch.ones(2, 3)]
    figure = plots.direction_gallery([["PC 1", "PC 2"], ["neuron 7", "neuron 2"]],
                                     visualisations, top_inputs, top_scores, "layer")
    titles = [a.text for a in figure.layout.annotations]
    assert titles[:8] == ["PC 1", "3", "2", "1", "neuron 7", "1", "1", "1"]
    assert titles[8:10] == ["PC 2", "0.5"]
    assert len(figure.data) == 2 * 2 * 4
    # row 1, column 1: the first visualisation (gray, flipped for display, scaled to [0, 1])
    shown = visualisations[0][0, 0]
    expected = ((shown - shown.min()) / (shown.max() - shown.min() + 1e-12)).flip(0)
    np.testing.assert_allclose(figure.data[0].z, expected.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="one entry per gallery"):
        plots.direction_gallery([["PC 1"]], visualisations, top_inputs, top_scores)


def test_similarity_curves_band_is_the_mean_plus_and_minus_the_spread():
    import pandas as pd

    table = pd.DataFrame({"when": ["a", "b", "c"] * 2, "who": ["x"] * 3 + ["y"] * 3,
                          "what": ["m"] * 6, "avg": [1.0, 0.5, 0.0, 0.2, 0.4, 0.6],
                          "sd": [0.1, 0.2, np.nan, 0.0, 0.1, 0.1]})
    figure = plots.similarity_curves(table, x="when", line="who", panel="what", mean="avg",
                                     spread="sd", panel_titles={"m": "Metric M"})
    band, line = figure.data[0], figure.data[1]
    assert list(line.x) == ["a", "b", "c"] and list(line.y) == [1.0, 0.5, 0.0]
    assert list(band.x) == ["a", "b", "c", "c", "b", "a"]
    np.testing.assert_allclose(band.y, [1.1, 0.7, 0.0, 0.0, 0.3, 0.9])  # NaN spread: no band
    assert [t.name for t in figure.data if t.showlegend] == ["x", "y"]
    assert figure.layout.annotations[0].text == "Metric M"
    with pytest.raises(ValueError, match=r"no column\(s\) \['stage'\]"):
        plots.similarity_curves(table, x="stage", line="who", panel="what", mean="avg",
                                spread="sd")


def test_bars_mark_the_highlighted_ones():
    figure = plots.bars(["p1", "p2", "p3"], [1.0, 2.0, 3.0], [False, True, False], "t", "s")
    assert list(figure.data[0].x) == ["p1", "p2", "p3"]
    assert list(figure.data[0].marker.color) == ["#1f77b4", "#d62728", "#1f77b4"]
