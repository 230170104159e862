"""AppTest for the Train page's error analysis: per-class metrics, most-confused pairs, the images
of a confusion cell (picked by pair, by row or by clicking the matrix) and the misclassified
gallery with Grad-CAM heatmaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from app_session import open_page
from conftest import make_run, texts
from streamlit.testing.v1 import AppTest


@pytest.fixture
def runs_root(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    return tmp_path / "runs"


def images_shown(at: AppTest) -> int:
    return sum(len(img.proto.imgs) for img in at.get("image"))


def test_metrics_pairs_and_cell_images(runs_root):
    make_run(runs_root, "r")  # six test images, one mistake: cat → dog at 90 %
    at = open_page("train").run()
    assert not at.exception and not at.error
    table = at.dataframe[1].value  # after the runs table
    assert list(table["class"]) == ["cat", "dog", "bird", "macro average"]
    assert table["precision"][1] == pytest.approx(2 / 3) and table["recall"][0] == pytest.approx(
        0.5
    )
    assert table["support"][3] == 6
    assert "Macro averages" in texts(at.caption)
    pairs = at.dataframe(key="train_pairs").value
    assert list(zip(pairs["true"], pairs["pred"], pairs["count"])) == [("cat", "dog", 1)]
    # The pickers start on the most-confused pair: its one image, in the cell and the gallery.
    assert (
        at.selectbox(key="train_cell_true").value,
        at.selectbox(key="train_cell_pred").value,
    ) == ("cat", "dog")
    assert "1 test image(s) are true cat, predicted dog" in texts(at.caption)
    assert images_shown(at) == 2  # the cell's image and the misclassified gallery's
    at.selectbox(key="train_cell_true").set_value("dog")
    at.selectbox(key="train_cell_pred").set_value("dog").run()
    assert "2 test image(s) are correctly classified as dog" in texts(at.caption)
    assert images_shown(at) == 3


def test_clicking_a_matrix_cell_picks_it(runs_root):
    make_run(runs_root, "r")
    at = open_page("train").run()
    # What the browser sends when a cell's marker is clicked (customdata: [true, pred, count]).
    at.session_state["train_confusion"] = {
        "selection": {
            "points": [{"customdata": [2, 2, 2]}],
            "point_indices": [8],
            "box": [],
            "lasso": [],
        }
    }
    at.run()
    assert not at.exception
    assert (
        at.selectbox(key="train_cell_true").value,
        at.selectbox(key="train_cell_pred").value,
    ) == ("bird", "bird")
    # A later pick in the selectboxes is not undone by the old click.
    at.selectbox(key="train_cell_pred").set_value("cat").run()
    assert at.selectbox(key="train_cell_pred").value == "cat"
    assert "0 test image(s) are true bird, predicted cat" in texts(at.caption)


@pytest.mark.slow
def test_gallery_heatmaps_for_a_trained_run(runs_root, mini_cifar):
    from core.training import TrainConfig, train

    config = TrainConfig(
        data=str(mini_cifar),
        backbone="lite0",
        weights="lite0",
        epochs=1,
        batch_size=32,
        cache_features=False,
    )
    result = train(config, runs_root=runs_root)
    at = open_page("train", 120).run()
    assert not at.exception and not at.error
    before = [img.proto.imgs for img in at.get("image")]
    at.toggle(key="train_gallery_cam").set_value(True).run()
    assert not at.exception and not at.error, texts(at.error)
    after = [img.proto.imgs for img in at.get("image")]
    assert len(after) == len(before) and after != before  # the same images, now with heat
    wrong = round((1 - result.test_accuracy) * 100)
    assert sum(len(i) for i in after[-1:]) == min(36, wrong)
    assert np.isfinite(result.test_accuracy)
