"""Accuracy against cost on the Train page: the Pareto front, the chart from hand-made runs, the
page section, and the latency a finished training run records."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_session import open_page
from conftest import make_run

from components import charts
from core.training import runs

# name: (accuracy, training wall s, latency ms). By wall time the front is fast (cheapest),
# mid (more accurate than fast), best (most accurate); "slow" is beaten by mid on both, "tied"
# costs as much as mid and is less accurate. By latency, "fast" is beaten by "slow" (as quick,
# more accurate) and the front is slow, mid, best.
RUNS = {
    "fast": (0.50, 10.0, 2.0),
    "mid": (0.70, 60.0, 5.0),
    "slow": (0.60, 300.0, 2.0),
    "best": (0.80, 900.0, 9.0),
    "tied": (0.65, 60.0, 12.0),
}


@pytest.mark.parametrize(
    "points, expected",
    [
        ([], []),
        ([(1.0, 0.5)], [True]),
        ([(1.0, 0.5), (2.0, 0.4)], [True, False]),  # dearer and worse
        ([(1.0, 0.5), (2.0, 0.6)], [True, True]),  # a trade-off
        ([(1.0, 0.5), (1.0, 0.5)], [True, True]),  # identical points do not beat each other
        ([(1.0, 0.5), (1.0, 0.6)], [False, True]),  # same cost, more accurate
        ([(1.0, 0.5), (0.5, 0.5)], [False, True]),  # same accuracy, cheaper
    ],
)
def test_pareto_front(points, expected):
    assert charts.pareto_front(points) == expected


@pytest.fixture
def costed_runs(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(root))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    for i, (name, (acc, wall, latency)) in enumerate(RUNS.items()):
        make_run(
            root,
            name,
            created=1000 + i,
            accuracy=acc,
            results={"wall_s": wall, "latency_ms": latency},
        )
    make_run(root, "old", created=999, accuracy=0.99)  # before latency was recorded: no costs
    return root


def front_names(fig, col: int) -> set[str]:
    axis = "x" if col == 1 else f"x{col}"
    [trace] = [t for t in fig.data if t.name == "Pareto front" and t.xaxis == axis]
    return set(trace.text)


def test_chart_marks_the_pareto_front_of_each_cost(costed_runs):
    fig = charts.accuracy_cost_figure(runs.list_runs(costed_runs))
    assert front_names(fig, 1) == {"fast", "mid", "best"}  # against training time
    assert front_names(fig, 2) == {"slow", "mid", "best"}  # against latency
    everything = {name for t in fig.data for name in t.text}
    assert "old" not in everything and everything == set(RUNS)
    [time_front] = [t for t in fig.data if t.name == "Pareto front" and t.xaxis == "x"]
    assert list(time_front.x) == sorted(time_front.x)  # drawn as a line, cheapest first
    assert list(time_front.y) == [50.0, 70.0, 80.0]


def test_run_names_are_escaped_in_hover_text(tmp_path):
    make_run(tmp_path, "a<b>", accuracy=0.5, results={"wall_s": 1.0, "latency_ms": 1.0})
    make_run(tmp_path, "c", accuracy=0.6, results={"wall_s": 2.0, "latency_ms": 2.0})
    fig = charts.accuracy_cost_figure(runs.list_runs(tmp_path))
    assert "a&lt;b&gt;" in {name for t in fig.data for name in t.text}


def test_train_page_shows_the_accuracy_cost_chart(costed_runs):
    at = open_page("train").run()
    assert not at.exception
    assert any(
        "Pareto front" in c.value and "1 older or stopped run" in c.value for c in at.caption
    )


@pytest.mark.slow  # builds and times a Keras model
def test_latency_helper_times_a_model_and_never_fails():
    import keras

    from core.models.timing import per_image_latency_ms

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D()])
    ms = per_image_latency_ms(model)
    assert isinstance(ms, float) and ms > 0
    assert per_image_latency_ms(model, skip=True) is None
    assert per_image_latency_ms(object()) is None  # not a model: None, not an exception


@pytest.mark.slow
def test_training_records_per_image_latency(tiny_cifar, tmp_path):
    """A finished run's results.json holds latency_ms, and the chart can use it."""
    from core.training import TrainConfig, train

    result = train(
        TrainConfig(
            data=str(tiny_cifar), weights="none", epochs=1, batch_size=32, cache_features=False
        ),
        runs_root=tmp_path,
    )
    info = runs.load_run(result.run_dir)
    assert 0 < info.results["latency_ms"] < 10_000
    assert info.results["wall_s"] > 0
