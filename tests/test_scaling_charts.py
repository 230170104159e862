"""The Scaling page's figures: the network over B0's outline, implied φ, measured cost, search."""

from __future__ import annotations

import pytest

from components import scaling_charts as charts
from core.experiments.search_result import SearchResult
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
    def candidate(index, alpha, beta, gamma, start, val, stderr):
        trained = val is not None
        return {
            "index": index,
            "alpha": alpha,
            "beta": beta,
            "gamma": gamma,
            "constraint": 2.0,
            "depth": alpha,
            "width": beta,
            "resolution": 32,
            "params": 10**6,
            "flops": 10**7,
            "start": start,
            "start_detail": "",
            "status": "done" if trained else "skipped",  # skipped: not drawn as a bar
            "val_accuracy": val,
            "test_accuracy": val,
            "stderr": stderr,
            **(dict(seed=0, train_s=9.0, compile_s=5.0, images_seen=60) if trained else {}),
            **(dict(epochs_done=1.0, copied_layers=0, layers_with_weights=9) if trained else {}),
        }

    result = SearchResult.from_dict(
        {
            "data": "tiny",
            "budget_s": 60.0,
            "epochs": 1,
            "batch_size": 32,
            "lr": 0.001,
            "seed": 0,
            "device": "CPU",
            "stopped": False,
            "best": 0,
            "worst": 1,
            "spread": 0.05,
            "noise": "",
            "wall_s": 50.0,
            "candidates": [
                candidate(0, 2.0, 1.0, 1.0, "imagenet", 0.6, 0.05),
                candidate(1, 1.51, 1.15, 1.0, "scratch", 0.3, 0.04),
                candidate(2, 1.14, 1.15, 1.15, "scratch", None, None),
            ],
            "repeats": [
                {
                    "candidate": 0,
                    "status": "done",
                    "seed": 1,
                    "train_s": 9.0,
                    "compile_s": 5.0,
                    "images_seen": 60,
                    "epochs_done": 1.0,
                    "copied_layers": 0,
                    "layers_with_weights": 9,
                    "val_accuracy": 0.55,
                    "test_accuracy": 0.5,
                    "stderr": 0.05,
                }
            ],
        }
    )
    fig = charts.search_figure(result)
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert list(bars["from B0's ImageNet weights"].y) == [60.0]
    assert list(bars["from scratch"].x) == ["α 1.51 · β 1.15 · γ 1"]
    assert list(bars["from scratch"].error_y.array) == [4.0]
    [repeat] = [t for t in fig.data if t.type == "scatter"]
    assert list(repeat.x) == ["α 2 · β 1 · γ 1"] and list(repeat.y) == pytest.approx([55.0])
