"""Plotly figures and small table helpers for the Train page (presentation only, no training).

Per-epoch rows look like ``{"epoch", "loss", "accuracy", "val_loss", "val_accuracy", ...}`` and
per-batch rows like ``{"epoch", "step", "loss", "accuracy"}``, as logged by ``core.training``
into ``core.platform.progress.Progress`` and saved in a run's ``history.csv``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from components import no_paths

TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
METRICS = (("loss", "Loss"), ("accuracy", "Accuracy"))
MAX_POINTS = 1000  # per smoothed per-batch line


def plotly_text(text) -> str:
    """Plotly renders a few HTML tags in labels: escape user text (class names) to show it literally."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(value) -> float | None:
    """``value`` as a finite float, or None (CSV rows may hold blanks or NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard-style smoothing)."""
    out, avg = [], 0.0
    for i, value in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * value
        out.append(avg / (1 - weight**i))
    return out


def _stride(n: int) -> int:
    """Take every k-th point so that at most about ``MAX_POINTS`` of ``n`` remain."""
    return max(1, math.ceil(n / MAX_POINTS))


def _epoch_offset(epochs: Sequence[dict], batches: Sequence[dict]) -> int:
    """What to add to logged epoch numbers so the first epoch plots as 1 (0- or 1-based logs)."""
    seen = [row["epoch"] for row in [*epochs, *batches] if _number(row.get("epoch")) is not None]
    return 1 - int(min(seen)) if seen else 0


def _batch_x(batches: Sequence[dict], offset: int) -> list[float]:
    """Fractional epoch positions for per-batch rows: epoch 1's batches fall in (0, 1]."""
    first = 1 if min(int(r.get("step", 0)) for r in batches) == 0 else 0  # 0- or 1-based steps
    steps = [int(r.get("step", 0)) + first for r in batches]
    # The largest step seen approximates steps per epoch (exact once an epoch has finished).
    per_epoch = max(steps)
    return [int(r["epoch"]) + offset - 1 + step / per_epoch for r, step in zip(batches, steps)]


def phase_marks(epochs: Sequence[dict]) -> list[dict]:
    """Where a saved run's phase changes (two-phase fine-tuning), as marks like the live job's:
    ``{"epoch": last epoch of the earlier phase, "label": ...}``."""
    marks = []
    for before, row in zip(epochs, epochs[1:]):
        if row.get("phase") and before.get("phase") and row["phase"] != before["phase"]:
            marks.append(
                {
                    "epoch": before["epoch"],
                    "label": "fine-tuning starts"
                    if row["phase"] == "finetune"
                    else f"{row['phase']} starts",
                }
            )
    return marks


def curves_figure(
    epochs: Sequence[dict],
    batches: Sequence[dict] = (),
    title: str = "",
    marks: Sequence[dict] = (),
    val_name: str = "validation",
) -> go.Figure:
    """Loss and accuracy side by side: per-epoch train/validation points and smoothed batches.

    Args:
        epochs: Per-epoch rows.
        batches: Per-batch rows (optional); drawn as a thin smoothed training line.
        title: Figure title.
        marks: ``{"epoch", "label"}`` points on the epoch axis (e.g. where fine-tuning begins),
            drawn as labelled vertical lines.
        val_name: What the validation curve is called (under the blog's protocol it is the
            test split).
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=[label for _, label in METRICS])
    offset = _epoch_offset(epochs, batches)
    for col, (metric, _) in enumerate(METRICS, start=1):
        rows = [r for r in batches if _number(r.get(metric)) is not None]
        if rows:
            xs, ys = _batch_x(rows, offset), smooth([float(r[metric]) for r in rows])
            # Long runs log tens of thousands of batches: send the browser at most ~MAX_POINTS.
            keep = slice((len(xs) - 1) % _stride(len(xs)), None, _stride(len(xs)))
            fig.add_trace(
                go.Scatter(
                    x=xs[keep],
                    y=ys[keep],
                    mode="lines",
                    name="train (per batch, smoothed)",
                    legendgroup="batch",
                    showlegend=col == 1,
                    line={"color": TRAIN_COLOR, "width": 1},
                    opacity=0.45,
                ),
                row=1,
                col=col,
            )
        for key, name, color in (
            (metric, "train", TRAIN_COLOR),
            (f"val_{metric}", val_name, VAL_COLOR),
        ):
            points = [(int(r["epoch"]) + offset, _number(r.get(key))) for r in epochs]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                fig.add_trace(
                    go.Scatter(
                        x=[x for x, _ in points],
                        y=[y for _, y in points],
                        mode="lines+markers",
                        name=f"{name} (per epoch)",
                        legendgroup=name,
                        showlegend=col == 1,
                        line={"color": color},
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text="epoch", rangemode="tozero", row=1, col=col)
        for mark in marks:
            x = _number(mark.get("epoch"))
            if x is not None:
                fig.add_vline(
                    x=x + offset,
                    line_dash="dash",
                    line_color="#888",
                    row=1,
                    col=col,
                    annotation_text=plotly_text(mark.get("label", "")),
                    annotation_position="top left",
                    annotation_font_size=11,
                )
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(
        title=title or None,
        height=360,
        margin={"t": 60, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def lr_figure(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float] = (),
    suggested: float | None = None,
) -> go.Figure:
    """The learning-rate finder's curve: loss against a log-scaled learning rate, the raw loss
    faint, the smoothed one bold, and the suggestion as a dashed vertical line."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=list(lrs),
            y=list(losses),
            mode="lines",
            name="loss (per batch)",
            line={"color": TRAIN_COLOR, "width": 1},
            opacity=0.35,
        )
    )
    if smoothed:
        fig.add_trace(
            go.Scatter(
                x=list(lrs),
                y=list(smoothed),
                mode="lines",
                name="smoothed",
                line={"color": TRAIN_COLOR, "width": 2},
            )
        )
    if suggested:
        fig.add_vline(
            x=suggested,
            line_dash="dash",
            line_color=VAL_COLOR,
            annotation_text=f"suggested {suggested:.2g}",
            annotation_position="top",
        )
    finite = [v for v in smoothed or losses if _number(v) is not None]
    top = min(max(finite), 3 * finite[0]) if finite else None  # the diverged tail off the chart
    fig.update_layout(
        height=320,
        margin={"t": 30, "b": 40},
        legend={"orientation": "h", "y": -0.3},
        xaxis={"type": "log", "title": "learning rate"},
        yaxis={"title": "loss", **({"range": [0, top * 1.05]} if top else {})},
    )
    return fig


def compare_figure(histories: dict[str, Sequence[dict]]) -> go.Figure:
    """Validation accuracy and loss per epoch for several runs on shared axes.

    Args:
        histories: Run name → per-epoch rows. Runs without validation metrics fall back to
            their training metrics (the legend says which).
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=["Validation accuracy", "Validation loss"])
    for name, rows in histories.items():
        offset = _epoch_offset(rows, ())
        for col, metric in enumerate(("accuracy", "loss"), start=1):
            has_val = any(_number(r.get(f"val_{metric}")) is not None for r in rows)
            key = f"val_{metric}" if has_val else metric
            points = [(int(r["epoch"]) + offset, _number(r.get(key))) for r in rows]
            points = [(x, y) for x, y in points if y is not None]
            fig.add_trace(
                go.Scatter(
                    x=[x for x, _ in points],
                    y=[y for _, y in points],
                    mode="lines+markers",
                    name=name if key.startswith("val_") else f"{name} (train)",
                    legendgroup=name,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=360, margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.2})
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> go.Figure:
    """A confusion-matrix heatmap: rows are true classes, columns predicted classes.

    Heatmap cells do not report clicks, so an invisible square marker sits on each cell; its
    ``customdata`` is ``[true, predicted]`` (see :func:`selected_cell`).
    """
    names = [plotly_text(n) for n in class_names] or [str(i) for i in range(len(confusion))]
    k = len(names)
    fig = go.Figure(
        go.Heatmap(
            z=confusion,
            x=names,
            y=names,
            colorscale="Blues",
            texttemplate="%{z}",
            hoverinfo="skip",
        )
    )
    cells = [(i, j) for i in range(k) for j in range(k)]
    fig.add_trace(
        go.Scatter(
            x=[names[j] for _, j in cells],
            y=[names[i] for i, _ in cells],
            mode="markers",
            marker={
                "symbol": "square",
                "size": max(8, 360 // max(k, 1)),
                "opacity": 0.01,
                "color": "#000",
            },
            customdata=[[i, j, confusion[i][j]] for i, j in cells],
            showlegend=False,
            hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata[2]} images"
            "<br>click to see them<extra></extra>",
        )
    )
    fig.update_layout(
        height=460,
        margin={"t": 30, "b": 40},
        clickmode="event+select",
        xaxis={"title": "predicted"},
        yaxis={"title": "true", "autorange": "reversed"},
    )
    return fig


def selected_cell(event) -> tuple[int, int] | None:
    """The ``(true, predicted)`` cell clicked in :func:`confusion_figure`, from the chart's
    selection state; None when nothing is selected."""
    try:
        points = event["selection"]["points"]
        true, pred = points[0]["customdata"][:2]
        return int(true), int(pred)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def class_metrics_rows(metrics: dict) -> list[dict]:
    """The per-class precision/recall/F1 table (``core.training.evaluation.class_metrics``), with the
    macro averages as a last row."""
    rows = [dict(row) for row in metrics["per_class"]]
    macro = metrics["macro"]
    rows.append(
        {
            "class": "macro average",
            "precision": macro["precision"],
            "recall": macro["recall"],
            "f1": macro["f1"],
            "support": sum(r["support"] for r in metrics["per_class"]),
        }
    )
    return rows


def runs_rows(runs) -> list[dict]:
    """The runs table: one row per ``core.training.runs.RunInfo`` (newest first, as given)."""
    rows = []
    for run in runs:
        cfg = run.config or {}
        rows.append(
            {
                "run": run.name,
                "status": run.status,
                "val accuracy": run.results.get("val_accuracy"),
                "test accuracy": run.test_accuracy,
                # Under the blog's protocol the test split also picked the epoch: say so per row.
                "chosen on": "test (blog)" if cfg.get("validation") == "test" else "validation",
                "backbone": cfg.get("backbone"),
                # used, else requested; a weights file's path shows as its name
                "weights": no_paths(run.results.get("weights") or cfg.get("weights") or ""),
                "mode": cfg.get("mode"),
                "resolution": cfg.get("resolution"),
                "epochs": len(run.history),
                "subset": cfg.get("subset"),
                # Where its worker ran: the Ray node's address; a local run names no host.
                "ran on": f"ray ({run.node})" if run.executor == "ray" else "local",
                "created": datetime.fromtimestamp(run.created) if run.created else None,
            }
        )
    return rows


# ----- accuracy against cost (issue 12) ----------------------------------------------------------
COST_AXES = (
    ("wall_s", "training wall time (s)"),
    ("latency_ms", "per-image latency (ms, batch 1)"),
)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For ``(cost, accuracy)`` pairs: True where no other point is as cheap and as accurate
    and strictly better in one of the two (lower cost is better, higher accuracy is better)."""
    return [
        not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in points) for c, a in points
    ]


def accuracy_cost_figure(runs) -> go.Figure:
    """Test accuracy against training time and against per-image latency, one point per run
    (``core.training.runs.RunInfo``) that has both numbers, with each panel's Pareto front marked."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        subplot_titles=[f"against {label}" for _, label in COST_AXES],
    )
    for col, (key, label) in enumerate(COST_AXES, start=1):
        rows = [(run.name, _number(run.results.get(key)), run.test_accuracy) for run in runs]
        rows = [
            (name, cost, acc)
            for name, cost, acc in rows
            if cost is not None and _number(acc) is not None
        ]
        front = pareto_front([(cost, acc) for _, cost, acc in rows])
        for on_front, trace_name, marker in (
            (False, "run", {"size": 9, "color": "#9aa5b1"}),
            (True, "Pareto front", {"size": 13, "color": VAL_COLOR, "symbol": "star"}),
        ):
            chosen = sorted((r for r, f in zip(rows, front) if f == on_front), key=lambda r: r[1])
            fig.add_trace(
                go.Scatter(
                    x=[cost for _, cost, _ in chosen],
                    y=[100 * acc for _, _, acc in chosen],
                    text=[html.escape(name) for name, _, _ in chosen],  # run names are user text
                    mode="lines+markers" if on_front else "markers",
                    marker=marker,
                    line={"color": VAL_COLOR, "dash": "dot"},
                    name=trace_name,
                    legendgroup=trace_name,
                    showlegend=col == 1,
                    hovertemplate="%{text}<br>%{y:.2f} %, %{x:.3g}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text=label, type="log", row=1, col=col)
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=1)
    fig.update_layout(
        height=380, margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.25}
    )
    return fig
