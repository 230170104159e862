"""The Scaling page's figures: the network over B0's outline, implied φ, measured cost, search."""

from __future__ import annotations

import pytest

from components import scaling_charts as charts
from core.models import scaling


def stage_traces(fig, axis: str = "y") -> list:
    return [t for t in fig.data if t.name.startswith("stage ") and t.yaxis == axis]


def box(trace) -> tuple[float, float, float]:
    """(x start, length, height) of a rectangle trace."""
    xs, ys = [v for v in trace.x if v is not None], [v for v in trace.y if v is not None]
    return min(xs), max(xs) - min(xs), max(ys)


@pytest.mark.parametrize(
    "net", [scaling.official_network("b3"), scaling.formula_network(-3)], ids=["b3", "phi-3"]
)
def test_network_figure_draws_each_stage_over_b0s_outline(net):
    b0 = scaling.official_network("b0")
    fig = charts.network_figure(net)
    outlines = [t for t in fig.data if t.name == charts.B0_OUTLINE]
    assert len(outlines) == 2 and outlines[0].line.dash == "dash"  # width×depth, resolution
    assert sum(t.showlegend is not False for t in outlines) == 1
    blocks, sizes = stage_traces(fig, "y"), stage_traces(fig, "y2")
    assert len(blocks) == len(sizes) == len(net.stages) == 9
    for trace, size, row in zip(blocks, sizes, net.stages):
        start, length, height = box(trace)
        assert length == pytest.approx(row.layers)  # depth
        assert height == pytest.approx(row.channels**0.5)  # width, on a √channels axis
        assert box(size) == pytest.approx((start, row.layers, row.resolution))  # same slot
        assert f"channels {row.channels}" in trace.hovertext
    # The outline has one rectangle per stage with B0's numbers, starting where the stage does.
    xs, ys = list(outlines[0].x), list(outlines[0].y)
    rects = [(xs[i : i + 5], ys[i : i + 5]) for i in range(0, len(xs), 6)]
    assert len(rects) == 9
    for (rx, ry), trace, ref in zip(rects, blocks, b0.stages):
        assert min(rx) == box(trace)[0] and max(rx) - min(rx) == pytest.approx(ref.layers)
        assert max(ry) == pytest.approx(ref.channels**0.5)


def test_network_figure_shows_growth_against_b0():
    fig = charts.network_figure(scaling.official_network("b7"))
    b7, b0 = scaling.official_network("b7"), scaling.official_network("b0")
    lengths = [box(t)[1] for t in stage_traces(fig)]
    assert lengths == pytest.approx([r.layers for r in b7.stages])
    assert sum(lengths) > sum(r.layers for r in b0.stages)  # deeper than the outline
    tick_text = list(fig.layout.yaxis.ticktext)
    assert "8" in tick_text and "512" in tick_text  # the √ axis is labelled in channels


def test_implied_phi_figure_has_the_three_coefficients_and_the_formula():
    rows = [scaling.implied_phi(v) for v in scaling.OFFICIAL]
    fig = charts.implied_phi_figure(rows)
    names = [t.name for t in fig.data]
    assert names[0].startswith("the formula") and len(names) == 4
    depth = next(t for t in fig.data if t.name.startswith("depth"))
    assert list(depth.y) == [r.depth for r in rows]


SWEEP = {
    "device": "CPU (2 cores, <x86>)",
    "batch_sizes": [1, 8],
    "points": [
        {"label": "B0", "flops": 390e6, "params": 5.3e6, "ms_per_image": {"1": 20.0, "8": 8.0}},
        {"label": "B1", "flops": 700e6, "params": 7.8e6, "ms_per_image": {"1": 35.0, "8": 14.0}},
    ],
}


def test_cost_figure_plots_latency_against_flops_and_params_and_names_the_device():
    fig = charts.cost_figure(SWEEP)
    assert "CPU (2 cores, &lt;x86&gt;)" in fig.layout.title.text
    by_flops = [t for t in fig.data if t.xaxis == "x"]
    by_params = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.name for t in by_flops] == ["batch 1", "batch 8"]
    assert list(by_flops[0].x) == [390e6, 700e6] and list(by_flops[0].y) == [20.0, 35.0]
    assert list(by_params[1].x) == [5.3e6, 7.8e6] and list(by_params[1].y) == [8.0, 14.0]


def test_search_figure_colours_by_start_and_shows_repeats():
    result = {
        "candidates": [
            {
                "index": 0,
                "alpha": 2.0,
                "beta": 1.0,
                "gamma": 1.0,
                "start": "imagenet",
                "val_accuracy": 0.6,
                "test_accuracy": 0.58,
                "stderr": 0.05,
            },
            {
                "index": 1,
                "alpha": 1.51,
                "beta": 1.15,
                "gamma": 1.0,
                "start": "scratch",
                "val_accuracy": 0.3,
                "test_accuracy": 0.33,
                "stderr": 0.04,
            },
            {
                "index": 2,
                "alpha": 1.14,
                "beta": 1.15,
                "gamma": 1.15,
                "start": "scratch",
                "val_accuracy": None,
                "test_accuracy": None,
                "stderr": None,
            },
        ],  # skipped: not drawn as a bar
        "repeats": [{"candidate": 0, "val_accuracy": 0.55, "test_accuracy": 0.5}],
    }
    fig = charts.search_figure(result)
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert list(bars["from B0's ImageNet weights"].y) == [60.0]
    assert list(bars["from scratch"].x) == ["α 1.51 · β 1.15 · γ 1"]
    assert list(bars["from scratch"].error_y.array) == [4.0]
    [repeat] = [t for t in fig.data if t.type == "scatter"]
    assert list(repeat.x) == ["α 2 · β 1 · γ 1"] and list(repeat.y) == pytest.approx([55.0])
