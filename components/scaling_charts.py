"""Plotly figures for the Scaling page (presentation only): the network against B0, the implied
φ of the released networks, measured cost, and the α, β, γ search.

Labels that come from users (none today: every label here is made from numbers) would be
HTML-escaped, as Plotly renders HTML in hover text.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.experiments.search_result import SearchResult
from core.models import scaling

B0_OUTLINE = "B0 outline"
OUTLINE_STYLE = {"color": "#444", "width": 1.5, "dash": "dash"}
PALETTE = (
    "#440154",
    "#472d7b",
    "#3b528b",
    "#2c728e",
    "#21918c",
    "#28ae80",
    "#5ec962",
    "#addc30",
    "#fde725",
)  # viridis, one colour per stage
IMAGENET_COLOR, SCRATCH_COLOR = "#1f77b4", "#ff7f0e"
_GAP = 0.6  # between stage slots, in layers


def _rect(x0: float, x1: float, y0: float, y1: float) -> tuple[list, list]:
    """A closed rectangle's outline as Scatter coordinates."""
    return [x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0]


def network_figure(
    net: scaling.ScaledNetwork, base: scaling.ScaledNetwork | None = None
) -> go.Figure:
    """The network stage by stage, with B0's outline behind it.

    Top: one block per stage whose length is its layers (depth) and whose height is √channels
    (width; the axis is labelled in channels). Bottom: each stage's input feature-map size
    (resolution). Both share the stage slots, so each scaled stage sits on its B0 outline.

    Args:
        net: The scaled network.
        base: The reference (default B0).
    """
    base = base or scaling.official_network("b0")
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.65, 0.35],
        vertical_spacing=0.06,
        subplot_titles=[
            "width (channels) × depth (layers), per stage",
            "resolution: each stage's input feature map (px)",
        ],
    )
    x = 0.0
    outline = {1: ([], []), 2: ([], [])}
    tick_x, tick_text = [], []
    for i, (row, ref) in enumerate(zip(net.stages, base.stages)):
        slot = max(row.layers, ref.layers)
        tick_x.append(x + slot / 2)
        tick_text.append(str(row.stage))
        for panel, h0 in ((1, ref.channels**0.5), (2, ref.resolution)):
            xs, ys = _rect(x, x + ref.layers, 0, h0)
            outline[panel][0].extend([*xs, None])
            outline[panel][1].extend([*ys, None])
        hover = (
            f"stage {row.stage}: {html.escape(row.operator)}<br>"
            f"channels {row.channels} (B0 {ref.channels})<br>"
            f"layers {row.layers} (B0 {ref.layers})<br>"
            f"input {row.resolution}×{row.resolution} px (B0 {ref.resolution})"
        )
        color = PALETTE[i % len(PALETTE)]
        for panel, h in ((1, row.channels**0.5), (2, row.resolution)):
            xs, ys = _rect(x, x + row.layers, 0, h)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    fill="toself",
                    mode="lines",
                    line={"color": color, "width": 1},
                    fillcolor=color,
                    opacity=0.75,
                    name=f"stage {row.stage}",
                    legendgroup="stages",
                    showlegend=False,
                    hovertext=hover,
                    hoverinfo="text",
                    hoveron="fills",
                ),
                row=panel,
                col=1,
            )
        x += slot + _GAP
    for panel in (1, 2):  # drawn last so the dashed outline stays visible over the blocks
        fig.add_trace(
            go.Scatter(
                x=outline[panel][0],
                y=outline[panel][1],
                mode="lines",
                line=OUTLINE_STYLE,
                name=B0_OUTLINE,
                legendgroup="b0",
                showlegend=panel == 1,
                hoverinfo="skip",
            ),
            row=panel,
            col=1,
        )
    top = max(max(r.channels for r in net.stages), max(r.channels for r in base.stages))
    ticks = [c for c in (8, 32, 128, 512, 2048, 8192) if c <= top * 1.2]
    fig.update_yaxes(
        tickvals=[c**0.5 for c in ticks],
        ticktext=[str(c) for c in ticks],
        title_text="channels",
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text="px", row=2, col=1)
    fig.update_xaxes(
        tickvals=tick_x,
        ticktext=tick_text,
        row=2,
        col=1,
        title_text="stage (block length = layers)",
        title_standoff=8,
    )
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_layout(
        height=540,
        margin={"l": 70, "r": 10, "t": 50, "b": 60},
        legend={"orientation": "h", "y": 1.08, "x": 1, "xanchor": "right"},
    )
    return fig


def implied_phi_figure(rows: list[scaling.ImpliedPhi]) -> go.Figure:
    """Implied φ (depth, width, resolution) of each released network against its name's φ."""
    fig = go.Figure()
    names = [r.variant.upper() for r in rows]
    formula = [r.formula for r in rows]
    fig.add_trace(
        go.Scatter(
            x=formula,
            y=formula,
            mode="lines",
            name="the formula (φ = name)",
            line={"color": "gray", "dash": "dot"},
        )
    )
    for key, label, color in (
        ("depth", "depth: ln d / ln α", PALETTE[1]),
        ("width", "width: ln w / ln β", PALETTE[4]),
        ("resolution", "resolution: ln(r/r₀) / ln γ", PALETTE[7]),
    ):
        fig.add_trace(
            go.Scatter(
                x=formula,
                y=[getattr(r, key) for r in rows],
                text=names,
                mode="lines+markers",
                name=label,
                line={"color": color},
                hovertemplate="%{text}: φ = %{y:.2f}<extra>" + key + "</extra>",
            )
        )
    fig.update_layout(
        height=340,
        xaxis={
            "title": "the variant's number (B0 = 0 … B7 = 7)",
            "tickvals": formula,
            "ticktext": names,
        },
        yaxis_title="implied φ",
        margin={"t": 20, "b": 40},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def cost_figure(result: dict) -> go.Figure:
    """Measured milliseconds per image against FLOPs and against parameters (a sweep's result),
    one line per batch size; the title names the device."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        subplot_titles=["against FLOPs (multiply-adds per image)", "against parameters"],
    )
    points = result.get("points", [])
    for i, batch in enumerate(result.get("batch_sizes", [])):
        timed = [p for p in points if str(batch) in p["ms_per_image"]]
        for col, key in ((1, "flops"), (2, "params")):
            fig.add_trace(
                go.Scatter(
                    x=[p[key] for p in timed],
                    y=[p["ms_per_image"][str(batch)] for p in timed],
                    text=[html.escape(p["label"]) for p in timed],
                    mode="lines+markers+text",
                    textposition="top center",
                    name=f"batch {batch}",
                    legendgroup=f"b{batch}",
                    showlegend=col == 1,
                    line={"color": PALETTE[(2 + 3 * i) % len(PALETTE)]},
                    hovertemplate="%{text}: %{y:.2f} ms per image<extra>batch "
                    + str(batch)
                    + "</extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(type="log")
    fig.update_yaxes(title_text="ms per image (median)", rangemode="tozero", row=1, col=1)
    fig.update_layout(
        height=380,
        title=f"Measured on {html.escape(str(result.get('device', '?')))}",
        margin={"t": 70, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def search_figure(result: SearchResult) -> go.Figure:
    """Validation accuracy per candidate with ±1 standard error, coloured by where it started, and
    the repeats with another seed as diamonds."""
    fig = go.Figure()
    tested = [c for c in result.candidates if c.val_accuracy is not None]
    for start, color, name in (
        ("imagenet", IMAGENET_COLOR, "from B0's ImageNet weights"),
        ("scratch", SCRATCH_COLOR, "from scratch"),
    ):
        group = [c for c in tested if c.start == start]
        if group:
            fig.add_trace(
                go.Bar(
                    x=[c.label for c in group],
                    y=[100 * c.val_accuracy for c in group],
                    error_y={"type": "data", "array": [100 * c.stderr for c in group]},
                    marker_color=color,
                    name=name,
                )
            )
    labels = {c.index: c.label for c in result.candidates}
    repeats = [r for r in result.repeats if r.val_accuracy is not None]
    if repeats:
        fig.add_trace(
            go.Scatter(
                x=[labels[r.candidate] for r in repeats],
                y=[100 * r.val_accuracy for r in repeats],
                mode="markers",
                marker={"symbol": "diamond", "size": 12, "color": "black"},
                name="same candidate, another seed",
            )
        )
    fig.update_layout(
        height=380,
        barmode="group",
        yaxis={"title": "validation accuracy (%)", "rangemode": "tozero"},
        xaxis={"categoryorder": "array", "categoryarray": list(labels.values())},
        margin={"t": 20, "b": 40},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig
