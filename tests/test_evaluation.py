"""Error analysis (core/training/evaluation.py): metrics from the confusion matrix, the most-confused pairs,
the bounded selection of kept test images, and reading them back by cell."""

from __future__ import annotations

import numpy as np
import pytest

from core.training import evaluation
from core.training.evaluation import Predictions, class_metrics, keep_indices, most_confused

NAMES = ["cat", "dog", "bird"]
# rows true, columns predicted
CONFUSION = [
    [5, 3, 2],
    [1, 8, 1],
    [0, 0, 0],
]  # no bird in the test split, never predicted correctly either


def test_precision_recall_f1_and_macro_by_hand():
    m = class_metrics(CONFUSION, NAMES)
    cat, dog, bird = m["per_class"]
    assert cat == {
        "class": "cat",
        "precision": pytest.approx(5 / 6),
        "recall": pytest.approx(0.5),
        "f1": pytest.approx(2 * (5 / 6) * 0.5 / (5 / 6 + 0.5)),
        "support": 10,
    }
    assert dog["precision"] == pytest.approx(8 / 11) and dog["recall"] == pytest.approx(0.8)
    # bird: predicted 3 times, never right; no support → recall 0 (zero_division=0)
    assert (bird["precision"], bird["recall"], bird["f1"], bird["support"]) == (0, 0, 0, 0)
    assert m["macro"]["precision"] == pytest.approx((5 / 6 + 8 / 11 + 0) / 3)
    assert m["macro"]["recall"] == pytest.approx((0.5 + 0.8) / 3)
    assert m["macro"]["f1"] == pytest.approx((cat["f1"] + dog["f1"]) / 3)
    assert m["accuracy"] == pytest.approx(13 / 20)


def test_most_confused_pairs_largest_first_without_the_diagonal():
    pairs = most_confused(CONFUSION, NAMES)
    assert [(p["true"], p["pred"], p["count"]) for p in pairs] == [
        ("cat", "dog", 3),
        ("cat", "bird", 2),
        ("dog", "cat", 1),
        ("dog", "bird", 1),
    ]
    assert pairs[0]["share"] == pytest.approx(0.3)
    assert len(most_confused(CONFUSION, NAMES, top=2)) == 2
    assert most_confused([[4, 0], [0, 4]], ["a", "b"]) == []


def test_kept_images_are_bounded_and_favour_confident_mistakes():
    rng = np.random.default_rng(0)
    n, k = 10_000, 10
    true = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.8, true, rng.integers(0, k, n))
    prob = rng.random(n).astype("float32")
    kept = keep_indices(true, pred, prob)
    assert len(kept) <= evaluation.MAX_KEPT and np.all(np.diff(kept) > 0)
    wrong = np.flatnonzero(true != pred)
    top = wrong[np.argsort(-prob[wrong])][: evaluation.TOP_MISTAKES]
    assert set(top) <= set(kept)
    for t, p in [(0, 0), (3, 5)]:  # every cell keeps its most confident images
        cell = np.flatnonzero((true == t) & (pred == p))
        best = cell[np.argsort(-prob[cell])][: min(len(cell), 8)]
        assert set(best) <= set(kept)
    small = keep_indices(true, pred, prob, max_kept=300)
    assert len(small) <= 300 and set(top) <= set(small)


def test_evaluate_and_read_back_a_cell():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=60).astype("float32")
    true = rng.integers(0, 3, 60)
    images = rng.integers(0, 256, (60, 4, 4, 3), dtype=np.uint8)
    scores = evaluation.evaluate(probs, true, images, NAMES)
    pred = probs.argmax(1)
    assert scores["accuracy"] == pytest.approx((pred == true).mean())
    assert np.array(scores["confusion"]).sum() == 60
    arrays = scores["predictions"]
    saved = Predictions(
        **{k: arrays[k] for k in ("true", "pred", "prob", "true_prob", "kept", "images")},
        class_names=NAMES,
    )
    items, total = saved.cell(0, 1, limit=3)
    members = np.flatnonzero((true == 0) & (pred == 1))
    assert total == len(members) and len(items) == min(3, total)
    assert [i["prob"] for i in items] == sorted((i["prob"] for i in items), reverse=True)
    for item in items:
        assert (item["true"], item["pred"]) == ("cat", "dog")
        assert np.array_equal(item["image"], images[item["index"]])
        assert item["true_prob"] == pytest.approx(probs[item["index"], 0])
    mistakes = saved.mistakes()
    assert all(m["true"] != m["pred"] for m in mistakes)
    assert len(mistakes) == min(evaluation.TOP_MISTAKES, int((pred != true).sum()))
