"""Figures of attributions: plotly figures, and heat maps as PNG images for the apps.

Display only: no attribution logic lives here.
"""
from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots


def to_map(attribution: torch.Tensor) -> torch.Tensor:
    """One 2-D heat map per sample: the channel sum of an (N, C, H, W) or (N, H, W) tensor."""
    if attribution.dim() == 4:
        return attribution.sum(dim=1)
    if attribution.dim() == 3:
        return attribution
    raise ValueError(f"expected image attributions (N, C, H, W) or (N, H, W), got shape "
                     f"{tuple(attribution.shape)}")


def _image(image: torch.Tensor) -> torch.Tensor:
    """(H, W) gray or (H, W, 3) colour in [0, 1] for display."""
    image = image.detach().float().cpu()
    image = (image - image.min()) / (image.max() - image.min() + 1e-12)
    return image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)


# --- heat maps as images (the Explorer's tiles): colour mapping and PNG encoding ------------

#: colour of NaN and infinite values in a heat map image (a gray that no diverging scale has)
NAN_COLOR = (160, 160, 160)
_LOOKUP_SIZE = 1025  # odd: the scale's middle (0.5) is an exact entry


@functools.lru_cache(maxsize=16)
def _lookup_table(colorscale: str) -> np.ndarray:
    """``_LOOKUP_SIZE`` colours sampled evenly from plotly's named ``colorscale``, (n, 3) uint8."""
    try:
        samples = plotly.colors.sample_colorscale(
            colorscale, list(np.linspace(0.0, 1.0, _LOOKUP_SIZE)), colortype="tuple")
    except Exception as error:  # plotly raises PlotlyError or ValueError for unknown names
        raise ValueError(f"colorscale must be a plotly colour scale name such as 'RdBu_r', "
                         f"got {colorscale!r}") from error
    # tuples are fractions of 255
    table = np.rint(np.asarray(samples, dtype=np.float64) * 255.0).astype(np.uint8)
    table.setflags(write=False)
    return table


def symmetric_limit(values: np.ndarray) -> float:
    """``max |v|`` over the finite values (0.0 when there are none)."""
    finite = np.abs(np.asarray(values, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size else 0.0


def colorize(values: np.ndarray, colorscale: str, low: float, high: float,
             nan_color: tuple[int, int, int] = NAN_COLOR) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 colours: ``low`` .. ``high`` map linearly onto the
    colour scale (clipped outside), NaN and infinities to ``nan_color``; ``low == high`` maps
    everything finite to the scale's middle."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-D heat map (H, W), got shape {values.shape}")
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"low and high must be finite with low <= high, got {low}, {high}")
    table = _lookup_table(colorscale)
    finite = np.isfinite(values)
    position = np.full(values.shape, 0.5)
    if high > low:
        position = (np.where(finite, values, low) - low) / (high - low)
    index = np.rint(np.clip(position, 0.0, 1.0) * (len(table) - 1)).astype(np.intp)
    rgb = table[index]
    rgb[~finite] = nan_color
    return rgb


def diverging_rgb(values: np.ndarray, colorscale: str = "RdBu_r",
                  limit: float | None = None) -> np.ndarray:
    """A heat map as (H, W, 3) uint8 colours on a range symmetric around 0: ``-limit .. limit``
    (default ``max |v|``), so 0 is the scale's middle colour; an all-zero map is all middle."""
    limit = symmetric_limit(values) if limit is None else float(limit)
    if not math.isfinite(limit) or limit < 0:
        raise ValueError(f"limit must be a finite number >= 0, got {limit}")
    return colorize(values, colorscale, -limit, limit)


def image_rgb(image: np.ndarray, colorscale: str = "gray") -> np.ndarray:
    """A (C, H, W) input image as (H, W, 3) uint8: one channel through ``colorscale``, three as
    RGB; each scaled from its minimum to its maximum."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be (C, H, W) with 1 or 3 channels, got {image.shape}")
    finite = image[np.isfinite(image)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if image.shape[0] == 1:
        return colorize(image[0], colorscale, low, high)
    scaled = (np.nan_to_num(image, nan=low) - low) / ((high - low) or 1.0)
    return np.rint(np.clip(scaled, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def png_bytes(rgb: np.ndarray, scale: int = 1) -> bytes:
    """(H, W, 3) uint8 colours as a PNG, each pixel drawn as a ``scale`` x ``scale`` block."""
    from PIL import Image  # Pillow, installed with scikit-image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if scale > 1:
        rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG")
    return buffer.getvalue()


def heatmap_grid(images: torch.Tensor, attributions: Mapping[str, torch.Tensor],
                 row_titles: Sequence[str] | None = None, title: str = "") -> go.Figure:
    """Rows of samples; the input, then one symmetric red-blue heat map per method."""
    names = list(attributions)
    n_rows, n_cols = len(images), len(names) + 1
    figure = make_subplots(rows=n_rows, cols=n_cols, column_titles=["input", *names],
                           row_titles=list(row_titles) if row_titles else None,
                           horizontal_spacing=0.01, vertical_spacing=0.02)
    maps = {name: to_map(a.detach().float().cpu()) for name, a in attributions.items()}
    for row in range(n_rows):
        image = _image(images[row])
        if image.dim() == 2:
            figure.add_trace(go.Heatmap(z=image.flip(0).numpy(), colorscale="gray",
                                        showscale=False), row=row + 1, col=1)
        else:
            figure.add_trace(go.Image(z=(image * 255).byte().numpy()), row=row + 1, col=1)
        for col, name in enumerate(names, start=2):
            heat = maps[name][row]
            limit = float(heat.abs().max()) or 1.0
            figure.add_trace(go.Heatmap(z=heat.flip(0).numpy(), colorscale="RdBu_r", zmin=-limit,
                                        zmax=limit, showscale=False,
                                        hovertemplate=f"{name}: %{{z:.3g}}<extra></extra>"),
                             row=row + 1, col=col)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, scaleanchor="x")
    figure.update_layout(title=title, height=150 * n_rows + 80, width=130 * n_cols + 80,
                         margin=dict(l=20, r=20, t=80, b=20))
    return figure


#: colours of the toy's arrows, in order
ARROW_COLOURS = ("#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b")


def toy_directions(samples: torch.Tensor, labels: torch.Tensor,
                   arrows: Mapping[str, torch.Tensor], title: str = "",
                   max_samples: int = 400) -> go.Figure:
    """A 2-D scatter of ``samples`` (N, 2) coloured by ``labels`` (N,), and each named 2-vector
    of ``arrows`` drawn from the origin (e.g. the linear toy's signal and distractor directions,
    the filter and the learned patterns)."""
    if samples.dim() != 2 or samples.shape[1] != 2:
        raise ValueError(f"samples must be 2-D points of shape (N, 2), got shape "
                         f"{tuple(samples.shape)}")
    figure = go.Figure()
    shown = samples[:max_samples].detach().cpu().numpy()
    figure.add_trace(go.Scatter(x=shown[:, 0], y=shown[:, 1], mode="markers", name="samples x",
                                marker=dict(size=4, color=labels[:max_samples].detach().cpu()
                                            .numpy(), colorscale="Viridis", opacity=0.5)))
    for index, (label, vector) in enumerate(arrows.items()):
        v = vector.detach().double().cpu().flatten()
        if v.numel() != 2:
            raise ValueError(f"arrow '{label}' must be a 2-vector, got {v.numel()} values")
        colour = ARROW_COLOURS[index % len(ARROW_COLOURS)]
        figure.add_trace(go.Scatter(x=[0, float(v[0])], y=[0, float(v[1])], mode="lines+markers",
                                    name=label, line=dict(color=colour, width=4),
                                    marker=dict(symbol="arrow", angleref="previous", size=14)))
    figure.update_yaxes(scaleanchor="x")
    figure.update_layout(title=title, width=650, height=550)
    return figure


def signal_quality_per_layer(quality: dict[str, dict[str, float]], labels=None) -> go.Figure:
    """``rho`` against the layer, one line per estimator (the paper's Figure 3)."""
    figure = go.Figure()
    for estimator, per_layer in quality.items():
        name = (labels or {}).get(estimator, estimator)
        figure.add_trace(go.Scatter(x=list(per_layer), y=list(per_layer.values()),
                                    mode="lines+markers", name=name))
    figure.update_layout(title="Signal quality rho(S) per layer (1 = no signal left in the "
                         "distractor)", xaxis_title="layer", yaxis_title="rho",
                         yaxis_range=[-0.05, 1.05], width=800, height=450)
    return figure


def curves(x, series: dict[str, Sequence[float]], title: str, x_title: str,
           y_title: str) -> go.Figure:
    """One line per named series over the same x values."""
    figure = go.Figure()
    for name, values in series.items():
        figure.add_trace(go.Scatter(x=list(x), y=list(values), mode="lines+markers", name=name))
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, width=800,
                         height=450)
    return figure


def correlation_matrix(labels: Sequence[str], matrix, title: str) -> go.Figure:
    """A labelled heat map of a symmetric correlation matrix in [-1, 1]."""
    values = [[float(v) for v in row] for row in matrix]
    figure = go.Figure(go.Heatmap(z=values, x=list(labels), y=list(labels), zmin=-1, zmax=1,
                                  colorscale="RdBu_r", text=[[f"{v:.2f}" for v in row]
                                                             for row in values],
                                  texttemplate="%{text}"))
    figure.update_layout(title=title, width=650, height=550, yaxis_autorange="reversed")
    return figure


def panels(content: Mapping[str, Mapping[str, tuple[Sequence, Sequence]]], title: str,
           x_title: str, y_title: str, log_x: bool = False, y_range=None,
           reference: float | None = None, columns: int = 3) -> go.Figure:
    """One subplot per panel (e.g. per layer), one line per series ``name: (x, y)``; a series
    keeps its colour in every panel; ``reference`` draws a dotted horizontal line."""
    names = list(content)
    rows = math.ceil(len(names) / columns)
    figure = make_subplots(rows=rows, cols=min(columns, len(names)), subplot_titles=names,
                           horizontal_spacing=0.06, vertical_spacing=0.12)
    colours = {}
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
    for i, name in enumerate(names):
        row, col = i // columns + 1, i % columns + 1
        for series, (x, y) in content[name].items():
            first = series not in colours
            colours.setdefault(series, palette[len(colours) % len(palette)])
            figure.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=series,
                                        legendgroup=series, showlegend=first,
                                        marker=dict(size=4), line=dict(color=colours[series])),
                             row=row, col=col)
        if reference is not None:
            figure.add_hline(y=reference, line_dash="dot", line_color="gray", row=row, col=col)
    figure.update_xaxes(title_text=x_title, type="log" if log_x else "linear")
    figure.update_yaxes(title_text=y_title, range=y_range)
    figure.update_layout(title=title, height=320 * rows + 100, width=1000)
    return figure


def table(columns: Sequence[str], rows: Sequence[Sequence], title: str = "") -> go.Figure:
    """A plain table."""
    cells = [[row[i] for row in rows] for i in range(len(columns))]
    figure = go.Figure(go.Table(header=dict(values=list(columns)), cells=dict(values=cells)))
    figure.update_layout(title=title, height=60 * len(rows) + 160, width=800)
    return figure


def _image_trace(image: torch.Tensor):
    """A gray heat map or a colour image trace of one (C, H, W) image, scaled to its range."""
    shown = _image(image)
    if shown.dim() == 2:
        return go.Heatmap(z=shown.flip(0).numpy(), colorscale="gray", showscale=False)
    return go.Image(z=(shown * 255).byte().numpy())


def image_grid(images: Sequence[Sequence[torch.Tensor | None]],
               titles: Sequence[Sequence[str]] | None = None, title: str = "",
               size: int = 90) -> go.Figure:
    """A grid of (C, H, W) images (rows of equal length; ``None`` leaves a cell empty), each
    scaled to its own range, with an optional title per cell (same nesting as ``images``)."""
    n_rows, n_cols = len(images), len(images[0])
    figure = make_subplots(rows=n_rows, cols=n_cols,
                           subplot_titles=[t for row in titles for t in row] if titles else None,
                           horizontal_spacing=0.005, vertical_spacing=0.25 / n_rows)
    for r, row in enumerate(images, start=1):
        for c, image in enumerate(row, start=1):
            if image is not None:
                figure.add_trace(_image_trace(image), row=r, col=c)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, scaleanchor="x")
    figure.update_layout(title=title, height=(size + 25) * n_rows + 100,
                         width=size * n_cols + 60, margin=dict(l=20, r=20, t=100, b=20))
    figure.update_annotations(font_size=10)
    return figure


def direction_gallery(labels: Sequence[Sequence[str]], visualisations: Sequence[torch.Tensor],
                      top_inputs: Sequence[torch.Tensor], top_scores: Sequence[torch.Tensor],
                      title: str = "") -> go.Figure:
    """Galleries of directions side by side, one per entry of each argument (e.g. the PCs and
    the neurons of one layer). A gallery has ``k`` directions: their ``labels``, their
    ``visualisations`` (k, C, H, W), their ``top_inputs`` (k, n, C, H, W) and ``top_scores``
    (k, n). Per rank a row: for each gallery the direction's visualisation (titled with its
    label), then its top inputs (titled with their score); an empty cell between galleries."""
    sides = len(labels)
    if not sides or not (len(visualisations) == len(top_inputs) == len(top_scores) == sides):
        raise ValueError(f"labels, visualisations, top_inputs and top_scores need one entry per "
                         f"gallery, got {len(labels)}, {len(visualisations)}, "
                         f"{len(top_inputs)}, {len(top_scores)}")
    rows, titles = [], []
    for i in range(min(len(side) for side in labels)):
        row, row_titles = [], []
        for side in range(sides):
            if side:
                row.append(None)
                row_titles.append("")
            row += [visualisations[side][i], *top_inputs[side][i]]
            row_titles += [labels[side][i], *(f"{float(s):.3g}" for s in top_scores[side][i])]
        rows.append(row)
        titles.append(row_titles)
    return image_grid(rows, titles, title)


# --- sanity checks (Adebayo et al. 2018) -----------------------------------------------------


def randomization_grid(image: torch.Tensor, stage_maps: Mapping[str, Mapping[str, torch.Tensor]],
                       edges: torch.Tensor | None = None, title: str = "",
                       size: int = 90) -> go.Figure:
    """The cascading (or independent) randomization figure for one input: a row per method, a
    column per stage (``stage_maps[stage][method]``, one sample's ``(C, H, W)`` map), after the
    input and, if given, its edge map. Maps are shown as the paper shows them: ``sum_c |R_c|``
    scaled to [0, 1] per map (``similarity.to_2d``, ``similarity.normalize``), in gray."""
    from workbench.similarity import normalize, to_2d

    stages = list(stage_maps)
    methods = list(next(iter(stage_maps.values())))
    first = ["input"] + (["edge detector"] if edges is not None else [])
    n_rows, n_cols = len(methods), len(first) + len(stages)
    figure = make_subplots(rows=n_rows, cols=n_cols, column_titles=first + stages,
                           row_titles=methods, horizontal_spacing=0.005, vertical_spacing=0.01)
    figure.add_trace(_image_trace(image), row=1, col=1)

    def gray(single_map: torch.Tensor, name: str) -> go.Heatmap:
        shown = normalize(to_2d(single_map[None], absolute=True))[0]
        return go.Heatmap(z=shown.flip(0).numpy(), colorscale="gray", zmin=0, zmax=1,
                          showscale=False, hovertemplate=f"{name}: %{{z:.2f}}<extra></extra>")

    if edges is not None:
        figure.add_trace(gray(edges, "edges"), row=1, col=2)
    for row, method in enumerate(methods, start=1):
        for col, stage in enumerate(stages, start=len(first) + 1):
            figure.add_trace(gray(stage_maps[stage][method], f"{method}, {stage}"),
                             row=row, col=col)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, scaleanchor="x")
    figure.update_layout(title=title, height=size * n_rows + 140, width=size * n_cols + 200,
                         margin={"l": 20, "r": 160, "t": 120, "b": 20}, font={"size": 10})
    figure.update_annotations(font_size=10)
    return figure


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = plotly.colors.hex_to_rgb(colour)
    return f"rgba({red}, {green}, {blue}, {alpha})"


def similarity_curves(table, x: str = "stage", line: str = "method", panel: str = "metric",
                      mean: str = "mean", spread: str = "std",
                      panel_titles: Mapping[str, str] | None = None, y_range=(-1.05, 1.05),
                      title: str = "") -> go.Figure:
    """Mean and spread against ``x``: one panel per value of column ``panel``, one line per value
    of column ``line`` with a band of ``spread`` either side of ``mean`` (NaN spread: no band).
    ``table`` is a pandas DataFrame in long form, its rows in the order of ``x`` to draw;
    ``panel_titles`` maps a panel's value to its title. With the defaults it draws
    ``workbench.randomization.summarize``'s columns (similarity per stage, method and metric)."""
    if table.empty:
        raise ValueError("table has no rows to draw")
    missing = [c for c in (x, line, panel, mean, spread) if c not in table.columns]
    if missing:
        raise ValueError(f"table has no column(s) {missing}; it has {list(table.columns)}")
    panels_ = list(dict.fromkeys(table[panel]))
    n_cols = 2 if len(panels_) > 1 else 1
    n_rows = math.ceil(len(panels_) / n_cols)
    figure = make_subplots(rows=n_rows, cols=n_cols,
                           subplot_titles=[(panel_titles or {}).get(p, str(p)) for p in panels_],
                           vertical_spacing=0.2, horizontal_spacing=0.08)
    palette = plotly.colors.qualitative.Plotly
    lines = list(dict.fromkeys(table[line]))
    for k, value in enumerate(panels_):
        row, col = k // n_cols + 1, k % n_cols + 1
        for j, name in enumerate(lines):
            part = table[(table[panel] == value) & (table[line] == name)]
            xs, means = list(part[x]), part[mean].to_numpy(dtype=float)
            spreads = np.nan_to_num(part[spread].to_numpy(dtype=float))
            colour = palette[j % len(palette)]
            figure.add_trace(go.Scatter(
                x=xs + xs[::-1], y=np.concatenate([means + spreads, (means - spreads)[::-1]]),
                mode="lines", fill="toself", fillcolor=_rgba(colour, 0.15), line={"width": 0},
                hoverinfo="skip", showlegend=False, legendgroup=str(name)), row=row, col=col)
            figure.add_trace(go.Scatter(
                x=xs, y=means, mode="lines+markers", name=str(name), legendgroup=str(name),
                line={"color": colour}, showlegend=k == 0), row=row, col=col)
        figure.update_yaxes(range=list(y_range) if y_range is not None else None,
                            row=row, col=col)
        figure.update_xaxes(tickangle=-45, row=row, col=col)
    figure.update_layout(title=title, width=1000, height=420 * n_rows + 80)
    return figure


def bars(labels: Sequence, values: Sequence[float], highlighted: Sequence[bool] | None = None,
         title: str = "", y_title: str = "") -> go.Figure:
    """One bar per label; bars whose ``highlighted`` entry is true are drawn red."""
    colours = ["#d62728" if flag else "#1f77b4"
               for flag in (highlighted if highlighted is not None else [False] * len(labels))]
    figure = go.Figure(go.Bar(x=[str(label) for label in labels], y=list(values),
                              marker_color=colours))
    return figure.update_layout(title=title, yaxis_title=y_title, height=400)
