"""Evaluation on the test split and error analysis: accuracy, the confusion matrix, per-class
precision, recall and F1 with their macro averages, the most-confused pairs, and the test
predictions a run keeps so its mistakes can be looked at.

What a run keeps (``predictions.npz``, see :func:`predictions_file`): for **every** test image its
true class, predicted class and the two classes' probabilities (a few bytes each), and the
**images** of a bounded selection: up to :data:`PER_CELL` per confusion-matrix cell (the most
confident first) plus the :data:`TOP_MISTAKES` most confident mistakes overall, at most
:data:`MAX_KEPT` images in all (the per-cell quota shrinks to fit). At CIFAR-10's 32×32 storage
that is at most 6 MB before compression, whatever the test split's size; keeping all 10 000 test
images would be 30 MB a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PER_CELL = 16  # images kept for each (true, predicted) cell
TOP_MISTAKES = 36  # the most confident mistakes, kept whichever cell they are in
MAX_KEPT = 2000  # images kept in all


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes × num_classes): rows are true classes, columns predicted ones."""
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return out


def class_metrics(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> dict:
    """Per-class precision, recall, F1 and support, and their unweighted (macro) averages.

    A class never predicted has precision 0, one with no test image recall 0 (scikit-learn's
    ``zero_division=0``), so the macro averages always cover every class.

    Returns:
        ``{"per_class": [{"class", "precision", "recall", "f1", "support"}, ...],
        "macro": {"precision", "recall", "f1"}, "accuracy": float}``.
    """
    m = np.asarray(confusion, dtype=np.float64)
    names = list(class_names) or [str(i) for i in range(len(m))]
    hits, support, predicted = np.diag(m), m.sum(axis=1), m.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    rows = [
        {
            "class": name,
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for name, p, r, f, s in zip(names, precision, recall, f1, support)
    ]
    return {
        "per_class": rows,
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "accuracy": float(hits.sum() / m.sum()) if m.sum() else 0.0,
    }


def most_confused(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], top: int = 10
) -> list[dict]:
    """The off-diagonal cells with the most images, largest first.

    Returns:
        Up to ``top`` dicts: ``true``, ``pred`` (class names), ``count``, and ``share``: the
        count as a share of the true class's test images.
    """
    m = np.asarray(confusion, dtype=np.int64)
    names = list(class_names) or [str(i) for i in range(len(m))]
    off = m.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    rows = []
    for flat in order:
        i, j = divmod(int(flat), len(m))
        if off[i, j] == 0:
            break
        rows.append(
            {
                "true": names[i],
                "pred": names[j],
                "count": int(off[i, j]),
                "share": float(off[i, j] / m[i].sum()),
            }
        )
    return rows


def keep_indices(
    true: np.ndarray,
    pred: np.ndarray,
    prob: np.ndarray,
    *,
    per_cell: int = PER_CELL,
    top_mistakes: int = TOP_MISTAKES,
    max_kept: int = MAX_KEPT,
) -> np.ndarray:
    """Which test images to keep (sorted indices): the ``top_mistakes`` most confident mistakes,
    then up to ``per_cell`` of each cell, most confident first, the quota lowered until at most
    ``max_kept`` are kept."""
    true, pred, prob = np.asarray(true), np.asarray(pred), np.asarray(prob)
    wrong = np.flatnonzero(true != pred)
    first = wrong[np.argsort(-prob[wrong], kind="stable")][: min(top_mistakes, max_kept)]
    # Each cell's images, most confident first: sort by (cell, -prob), cut where the cell changes.
    cell = true.astype(np.int64) * (max(true.max(initial=0), pred.max(initial=0)) + 1) + pred
    order = np.lexsort((-prob, cell))
    cells = np.split(order, np.flatnonzero(np.diff(cell[order])) + 1) if len(order) else []
    room = max_kept - len(first)
    quota = per_cell
    while quota > 0 and sum(min(len(c), quota) for c in cells) > room:
        quota -= 1
    chosen = [first] + [c[:quota] for c in cells]
    return np.unique(np.concatenate(chosen)).astype(np.int64)


def evaluate(
    probs: np.ndarray, true: np.ndarray, images: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Score test-split probabilities and pick what to keep for error analysis.

    Args:
        probs: The model's class probabilities (N, classes).
        true: True labels (N,).
        images: The test images (N, S, S, 3) uint8, in the same order.
        class_names: Class names in label order.

    Returns:
        ``accuracy``, ``confusion`` (lists), ``metrics`` (:func:`class_metrics`),
        ``per_class`` (name → recall, or None for a class without test images) and
        ``predictions``: the arrays for ``predictions.npz``.
    """
    pred = probs.argmax(axis=1)
    true = np.asarray(true, dtype=np.int64)
    rows = np.arange(len(true))
    confusion = confusion_matrix(true, pred, len(class_names))
    metrics = class_metrics(confusion, class_names)
    prob = probs[rows, pred].astype("float32")
    kept = keep_indices(true, pred, prob)
    return {
        "accuracy": float((pred == true).mean()) if len(true) else 0.0,
        "confusion": confusion.tolist(),
        "metrics": metrics,
        "per_class": {
            r["class"]: (r["recall"] if r["support"] else None) for r in metrics["per_class"]
        },
        "predictions": {
            "true": true.astype("int32"),
            "pred": pred.astype("int32"),
            "prob": prob,
            "true_prob": probs[rows, true].astype("float32"),
            "kept": kept.astype("int32"),
            "images": images[kept],
        },
    }


@dataclass
class Predictions:
    """A run's saved test predictions (see the module docstring).

    Attributes:
        true, pred: Labels of every test image.
        prob: The probability of the predicted class; ``true_prob``: of the true class.
        kept: Indices (into the test split) of the images kept, sorted.
        images: Those images, uint8 (len(kept), S, S, 3).
        class_names: Class names in label order.
    """

    true: np.ndarray
    pred: np.ndarray
    prob: np.ndarray
    true_prob: np.ndarray
    kept: np.ndarray
    images: np.ndarray
    class_names: list[str]

    def name(self, label: int) -> str:
        """A label's class name (its number when the names are missing)."""
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)

    def _items(self, indices: np.ndarray) -> list[dict]:
        where = np.searchsorted(self.kept, indices)
        return [
            {
                "index": int(i),
                "image": self.images[w],
                "true": self.name(int(self.true[i])),
                "pred": self.name(int(self.pred[i])),
                "prob": float(self.prob[i]),
                "true_prob": float(self.true_prob[i]),
            }
            for i, w in zip(indices, where)
        ]

    def _with_image(self, indices: np.ndarray) -> np.ndarray:
        return indices[np.isin(indices, self.kept)]

    def cell(self, true: int, pred: int, limit: int = PER_CELL) -> tuple[list[dict], int]:
        """The kept images of one confusion-matrix cell, most confident first, and how many
        test images the cell holds in all."""
        members = np.flatnonzero((self.true == true) & (self.pred == pred))
        members = members[np.argsort(-self.prob[members], kind="stable")]
        return self._items(self._with_image(members)[:limit]), len(members)

    def mistakes(self, limit: int = TOP_MISTAKES) -> list[dict]:
        """The most confident mistakes that have their image kept, most confident first."""
        wrong = np.flatnonzero(self.true != self.pred)
        wrong = wrong[np.argsort(-self.prob[wrong], kind="stable")]
        return self._items(self._with_image(wrong)[:limit])
