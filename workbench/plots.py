"""Plotly figures of attributions. Figures only: no numerical logic lives here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def toy_directions(result) -> go.Figure:
    """The 2-D toy: samples, the signal and distractor directions, the filter (= gradient)
    and the learned patterns, as arrows from the origin."""
    toy = result.toy
    if toy.x.shape[1] != 2:
        raise ValueError("the direction plot needs a 2-D toy (dim=2)")
    figure = go.Figure()
    shown = toy.x[:400].numpy()
    figure.add_trace(go.Scatter(x=shown[:, 0], y=shown[:, 1], mode="markers", name="samples x",
                                marker=dict(size=4, color=toy.y[:400].numpy(),
                                            colorscale="Viridis", opacity=0.5)))
    arrows = {"signal a_s": (toy.signal_direction, "#2ca02c"),
              "distractor a_d": (toy.distractor_direction, "#d62728"),
              "filter w = gradient": (result.filter, "#1f77b4"),
              "pattern S_a": (result.patterns["a"], "#ff7f0e"),
              "pattern S_a+- (a+)": (result.patterns["a+-"], "#9467bd")}
    for label, (vector, colour) in arrows.items():
        v = vector.detach().double()
        figure.add_trace(go.Scatter(x=[0, float(v[0])], y=[0, float(v[1])], mode="lines+markers",
                                    name=label, line=dict(color=colour, width=4),
                                    marker=dict(symbol="arrow", angleref="previous", size=14)))
    figure.update_yaxes(scaleanchor="x")
    figure.update_layout(title="Linear toy: the filter cancels the distractor; the pattern is "
                         "the signal", width=650, height=550)
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
