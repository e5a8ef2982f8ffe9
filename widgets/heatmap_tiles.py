"""Heat maps side by side as PNG tiles: an input image, then one map per method.

Each tile is a title, an ``ipywidgets.Image`` and its colour scale with the value range. The
maps are coloured in Python (``workbench.plots.diverging_rgb``: symmetric around 0, so 0 is the
scale's middle colour) and sent as small PNGs: the page needs no plotly.js, and a change sends
only the tiles whose picture changed.

CSS classes for browser tests: ``wb-heatmaps`` (the row), ``wb-heatmap-tile``,
``wb-heatmap-title``, ``wb-heatmap-image``, ``wb-heatmap-scale``.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import plotly.colors

from workbench.plots import diverging_rgb, image_rgb, png_bytes, symmetric_limit

#: the colour scale of the maps (as in ``workbench.plots.heatmap_grid``) and of the input
MAP_COLORSCALE = "RdBu_r"
INPUT_COLORSCALE = "gray"
#: about this many pixels per tile side (each map pixel becomes an integer-sized block)
TILE_PIXELS = 160
_BLANK = (236, 236, 236)  # a column whose method failed


def block_size(shape: tuple[int, ...], tile_pixels: int = TILE_PIXELS) -> int:
    """The integer block size that draws an (H, W) map about ``tile_pixels`` wide."""
    return max(1, round(tile_pixels / max(shape[-2:])))


def _gradient(colorscale: str) -> str:
    """The colour scale as a CSS ``linear-gradient`` (the same stops plotly interpolates)."""
    stops = ", ".join(f"{color} {100 * position:.1f}%"
                      for position, color in plotly.colors.get_colorscale(colorscale))
    return f"linear-gradient(to right, {stops})"


def _scale_html(colorscale: str, width: int, labels: Sequence[str]) -> str:
    """A colour bar ``width`` px wide with ``labels`` spread evenly below it."""
    spans = "".join(f"<span>{html.escape(label)}</span>" for label in labels)
    return (f'<div style="width:{width}px; height:8px; background:{_gradient(colorscale)}">'
            f'</div><div style="width:{width}px; display:flex; justify-content:space-between;'
            f' font-size:10px; line-height:12px">{spans}</div>')


def _number(value: float) -> str:
    return f"{value:.3g}"


class _Tile(widgets.VBox):
    """One title, one PNG image, one colour scale note."""

    def __init__(self) -> None:
        self.title = widgets.HTML()
        self.title.add_class("wb-heatmap-title")
        self.image = widgets.Image(format="png")
        self.image.add_class("wb-heatmap-image")
        self.scale = widgets.HTML()
        self.scale.add_class("wb-heatmap-scale")
        super().__init__([self.title, self.image, self.scale],
                         layout=widgets.Layout(align_items="center", margin="0 8px 4px 0"))
        self.add_class("wb-heatmap-tile")
        self.text = ""

    def close(self) -> None:
        for child in self.children:
            child.close()
        super().close()

    def set(self, title: str, png: bytes, scale: str) -> None:
        # the picture first, the title last: a page showing the new title has the new picture
        self.image.value = png
        self.scale.value = scale
        self.text = title
        self.title.value = f"<b>{html.escape(title)}</b>"


class HeatmapTiles(widgets.HBox):
    """An input image and heat maps side by side, each a PNG with its title and colour scale.

    >>> tiles = HeatmapTiles()                                         # doctest: +SKIP
    >>> tiles.show("input", image, [("gradient", heat), ("ig", None)])  # doctest: +SKIP

    ``titles`` and ``images`` (PNG bytes) give what each tile shows, the input first.
    """

    def __init__(self, colorscale: str = MAP_COLORSCALE,
                 input_colorscale: str = INPUT_COLORSCALE,
                 tile_pixels: int = TILE_PIXELS) -> None:
        super().__init__(layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        self.add_class("wb-heatmaps")
        self.colorscale, self.input_colorscale = colorscale, input_colorscale
        self.tile_pixels = tile_pixels
        self._tiles: list[_Tile] = []

    @property
    def titles(self) -> list[str]:
        """The title of each tile, the input's first."""
        return [tile.text for tile in self._tiles]

    @property
    def images(self) -> list[bytes]:
        """The PNG of each tile, the input's first."""
        return [bytes(tile.image.value) for tile in self._tiles]

    def show(self, input_title: str, image: np.ndarray,
             maps: Sequence[tuple[str, np.ndarray | None]]) -> None:
        """Show the (C, H, W) ``image`` (gray for one channel, RGB for three, else the channel
        sum in gray) and each ``(title, (H, W) map)``; a ``None`` map (a failed method) shows a
        blank tile. Tiles are reused; only changed values are sent."""
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[0] not in (1, 3):
            image = image.sum(axis=0, keepdims=True)
        self._resize(1 + len(maps))
        size = block_size(image.shape, self.tile_pixels)
        width = image.shape[-1] * size
        finite = image[np.isfinite(image)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        self._tiles[0].set(input_title, png_bytes(image_rgb(image, self.input_colorscale), size),
                           _scale_html(self.input_colorscale, width,
                                       [_number(low), _number(high)]))
        for tile, (title, heat) in zip(self._tiles[1:], maps):
            if heat is None:
                blank = np.empty((*image.shape[-2:], 3), dtype=np.uint8)
                blank[:] = _BLANK
                tile.set(f"{title} (failed)", png_bytes(blank, size),
                         '<div style="font-size:10px">no map (see the error below)</div>')
                continue
            heat = np.asarray(heat)
            limit = symmetric_limit(heat)
            labels = ([_number(-limit), "0", _number(limit)] if limit > 0 else ["all 0"])
            nonfinite = int(np.size(heat) - np.isfinite(heat).sum())
            if nonfinite:
                labels[-1] += f" ({nonfinite} not finite: gray)"
            block = block_size(heat.shape, self.tile_pixels)
            tile.set(title, png_bytes(diverging_rgb(heat, self.colorscale, limit), block),
                     _scale_html(self.colorscale, heat.shape[-1] * block, labels))

    def _resize(self, count: int) -> None:
        if len(self._tiles) == count:
            return
        for tile in self._tiles[count:]:
            tile.close()
        self._tiles = self._tiles[:count] + [_Tile() for _ in range(count - len(self._tiles))]
        self.children = tuple(self._tiles)
