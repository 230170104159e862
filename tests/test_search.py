"""core.experiments.search: candidates on α·β²·γ² ≈ 2, where each starts, the budget, and honest noise."""

from __future__ import annotations

import math

import pytest

from core.experiments import search, search_training
from core.experiments.search_result import CandidateResult, Outcome, Repeat, SearchResult
from core.models import scaling
from core.platform.progress import Progress


def test_grid_solves_alpha_on_the_constraint_surface():
    found = search.grid((1.0, 1.1, 1.2))
    assert (2.0, 1.0, 1.0) in {(c.alpha, c.beta, c.gamma) for c in found}  # depth only
    assert all(abs(c.constraint - 2.0) < 0.02 for c in found)
    assert all(1.0 <= c.alpha <= 2.0 for c in found)
    # β = γ = 1.2 needs α = 0.96 < 1 (shrinking depth), so it is left out.
    assert len(found) == 8 and not any(c.beta == c.gamma == 1.2 for c in found)
    assert search.grid() == [
        search.Candidate(2.0, 1.0, 1.0),
        search.Candidate(1.51, 1.0, 1.15),
        search.Candidate(1.51, 1.15, 1.0),
        search.Candidate(1.14, 1.15, 1.15),
    ]


@pytest.mark.parametrize(
    "steps, message",
    [
        ((0.9,), "search steps must be from 1 to 2"),
        ((float("nan"),), "from 1 to 2"),
        ((1.5, 1.6), "no candidate satisfies"),
        ((1.0, 1.01, 1.02, 1.03, 1.04), "at most 12 fit"),
    ],
)
def test_bad_steps_are_refused(steps, message):
    with pytest.raises(ValueError, match=message):
        search.grid(steps)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"data": "/no/such/folder"}, "does not exist"),
        ({"budget_s": 5}, "budget must be from 30"),
        ({"weights": "file.h5"}, "weights must be one of auto, imagenet, lite0, none"),
        ({"epochs": 0}, "epochs must be a whole number"),
        ({"subset": -1}, "subset"),
    ],
)
def test_bad_settings_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        search.settings({"data": "cifar10", **args})


def outcome(val_accuracy, stderr=0.05, seed=0) -> Outcome:
    return Outcome("done", seed, 20.0, 5.0, 100, 1.0, 0, 10, val_accuracy, stderr, 0.5)


def candidate(index, val_accuracy, stderr=0.05) -> CandidateResult:
    return CandidateResult(
        index,
        2.0,
        1.0,
        1.0,
        2.0,
        2.0,
        1.0,
        32,
        1000,
        10**6,
        "scratch",
        "",
        outcome(val_accuracy, stderr),
    )


def test_noise_sentence_says_when_the_ranking_is_noise():
    close = [candidate(0, 0.52), candidate(1, 0.48)]
    text = search.noise_sentence(close, [Repeat(0, outcome(0.45, seed=1))])
    assert "cannot be told apart" in text and "up to 7.0 points" in text
    apart = [candidate(0, 0.9, 0.01), candidate(1, 0.3, 0.01)]
    assert "more than the noise" in search.noise_sentence(apart, [])
    assert "nothing to rank" in search.noise_sentence(apart[:1], [])


def test_result_json_form_round_trips_and_stays_flat():
    """The result crosses a process boundary as JSON: one flat dict per candidate, skipped
    candidates with no accuracies, the setup's facts at the top level."""
    skipped = CandidateResult(
        1, 1.51, 1.15, 1.0, 2.0, 1.51, 1.15, 32, 900, 9 * 10**5, "scratch", ""
    )
    result = SearchResult(
        data="tiny",
        budget_s=60.0,
        epochs=1,
        batch_size=32,
        lr=1e-3,
        seed=0,
        device="CPU",
        setup=None,
        candidates=(candidate(0, 0.6), skipped),
        repeats=(Repeat(0, outcome(0.55, seed=1)),),
        stopped=False,
        best=0,
        worst=0,
        spread=0.05,
        noise="Fewer than two candidates were tested: there is nothing to rank.",
        wall_s=12.5,
    )
    data = result.to_dict()
    assert "train_images" not in data  # no setup: stopped while the data loaded
    assert data["candidates"][0]["val_accuracy"] == 0.6 and data["candidates"][0]["seed"] == 0
    assert data["candidates"][1]["status"] == "skipped"
    assert data["candidates"][1]["val_accuracy"] is None
    assert data["repeats"] == [{"candidate": 0, **outcome(0.55, seed=1).to_dict()}]
    assert SearchResult.from_dict(data) == result


@pytest.mark.parametrize(
    "left, trainings, compile_s, all_of_them, expected",
    [
        (600, 6, 30, False, 70),  # one compile plus an equal share each
        (600, 6, 30, True, 70),
        (100, 3, 30, False, 20),  # three don't fit (3.3 s each): plan two
        (100, 3, 30, True, 0),  # ... unless all of them must fit
        (35, 2, 30, False, 0),  # not even one compile plus 10 s
        (40, 1, 30, False, 10),
    ],
)
def test_training_share_plans_compiles_and_drops_what_does_not_fit(
    left, trainings, compile_s, all_of_them, expected
):
    assert search.training_share(
        left, trainings, compile_s, all_of_them=all_of_them
    ) == pytest.approx(expected)


@pytest.mark.slow
def test_width_one_candidates_copy_b0s_blocks_by_name():
    """Depth only adds blocks: every B0 layer is copied; the new blocks are not."""
    import keras

    from core.models.efficientnet import build_efficientnet

    b0 = build_efficientnet("b0", include_top=False, pooling="avg", input_shape=(32, 32, 3))
    by_name = {layer.name: layer.get_weights() for layer in b0.layers if layer.weights}
    norm = next(la for la in b0.layers if isinstance(la, keras.layers.Normalization)).get_weights()
    deeper = build_efficientnet(
        "b0", depth=1.51, include_top=False, pooling="avg", input_shape=(37, 37, 3)
    )
    copied, total = search_training.copy_matching(deeper, by_name, norm, imagenet=True)
    assert copied == len(by_name) - 1  # all but B0's own stem normalisation (copied apart)
    assert total > copied  # the extra blocks (block2c, …) start random
    assert deeper.get_layer("block2b_dwconv").get_weights()[0] == pytest.approx(
        b0.get_layer("block2b_dwconv").get_weights()[0]
    )
    wider = build_efficientnet(
        "b0", width=1.15, include_top=False, pooling="avg", input_shape=(32, 32, 3)
    )
    assert search_training.copy_matching(wider, by_name, norm, imagenet=False)[0] == 0
    keras.backend.clear_session()


def test_stop_request_ends_the_search_before_any_training(tiny_cifar):
    progress = Progress()
    progress.request_stop()
    result = search.search({"data": str(tiny_cifar), "budget_s": 60, "weights": "none"}, progress)
    assert result.stopped
    assert all(c.status == "skipped" and c.outcome is None for c in result.candidates)
    assert result.repeats == () and result.best is None


@pytest.mark.slow
def test_search_on_a_tiny_subset_within_a_tiny_budget(tiny_cifar):
    """Candidates satisfy the constraint, say where they started, and fit the budget."""
    progress = Progress()
    result = search.search(
        {
            "data": str(tiny_cifar),
            "budget_s": 150,
            "steps": [1.0, 1.2],
            "epochs": 1,
            "subset": 60,
            "test_subset": 30,
            "weights": "lite0",
        },
        progress,
    ).to_dict()  # its JSON form, as the page and the command line read it
    rows = result["candidates"]
    assert [(c["alpha"], c["beta"], c["gamma"]) for c in rows] == [
        (2.0, 1.0, 1.0),
        (1.39, 1.0, 1.2),
        (1.39, 1.2, 1.0),
    ]
    assert all(abs(c["constraint"] - 2) < 0.02 for c in rows)
    assert [c["start"] for c in rows] == ["imagenet", "imagenet", "scratch"]
    assert "Lite0" in rows[0]["start_detail"] and "scratch" in rows[2]["start_detail"]
    assert result["family"] == "lite0" and "lite0" in result["weights"]
    assert [c["resolution"] for c in rows] == [
        32,
        scaling.multipliers(1, 1.39, 1.0, 1.2, 32).resolution,
        32,
    ]
    first = rows[0]
    assert first["status"] in ("done", "budget") and 0 <= first["test_accuracy"] <= 1
    # Ranked on validation (held out of the training data), the test split measured once.
    assert result["test_images"] == 30 and 0 < result["val_images"] <= 30
    assert result["train_images"] == 60
    assert first["stderr"] == pytest.approx(
        math.sqrt(first["val_accuracy"] * (1 - first["val_accuracy"]) / result["val_images"])
    )
    scored = [c for c in rows if c["val_accuracy"] is not None]
    assert result["best"] == max(scored, key=lambda c: c["val_accuracy"])["index"]
    assert first["copied_layers"] > 0 and first["images_seen"] > 0
    assert {c["status"] for c in rows} <= {"done", "budget", "skipped"}
    assert result["noise"] and result["best"] is not None
    # The budget holds, up to the compile time of the last training started.
    slowest = max(
        [c.get("compile_s", 0) for c in rows] + [r["compile_s"] for r in result["repeats"]]
    )
    assert result["wall_s"] <= 150 + slowest + 30
