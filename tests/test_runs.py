"""Run folders: writing atomically, listing, loading, deleting (small hand-made runs, no training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import RUN_CLASSES as CLASSES
from conftest import make_run as _make_run
from conftest import no_temp_files as _no_temp_files
from conftest import tiny_model as _tiny_model

from core.platform import procs
from core.training import runs
from core.training.run_writer import RunWriter


def test_written_run_reads_back(tmp_path):
    path = _make_run(tmp_path, "r1")
    info = runs.load_run(path)
    assert info.name == "r1" and info.status == "done"
    assert info.test_accuracy == 0.5
    assert info.class_names == CLASSES
    assert info.config == {"mode": "frozen", "epochs": 2}
    assert [row["epoch"] for row in info.history] == [1, 2]
    assert info.history[1]["val_accuracy"] == pytest.approx(0.5)
    assert info.confusion == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert not info.has_model
    assert _no_temp_files(path)


def test_list_runs_newest_first_and_skips_broken(tmp_path):
    _make_run(tmp_path, "old", created=1000.0)
    _make_run(tmp_path, "new", created=2000.0)
    (tmp_path / "not-a-run").mkdir()  # no config.json
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert [r.name for r in runs.list_runs(tmp_path)] == ["new", "old"]
    assert runs.list_runs(tmp_path / "missing") == []


def test_list_runs_defaults_to_runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path))
    _make_run(tmp_path, "only")
    assert [r.name for r in runs.list_runs()] == ["only"]


def _set_worker(path, worker) -> None:
    data = json.loads((path / "status.json").read_text())
    data["worker"] = worker
    (path / "status.json").write_text(json.dumps(data))


def test_running_run_of_a_dead_process_reads_as_interrupted(tmp_path):
    path = _make_run(tmp_path, "live", status="running")
    assert runs.load_run(path).status == "running"  # our own process is alive
    with pytest.raises(ValueError, match="still training"):
        runs.delete_run(path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    _set_worker(path, {"pid": int(dead.stdout), "start": 1, "boot": procs.boot_id()})
    (path / ".model.abc.tmp.keras").write_bytes(b"half a model")  # what a kill -9 leaves
    info = runs.load_run(path)
    assert info.status == "interrupted" and "ended before" in info.error
    assert _no_temp_files(path)  # stale temp files are cleaned up
    runs.delete_run(path)
    assert not path.exists()


def test_a_reused_pid_does_not_keep_a_dead_run_running(tmp_path):
    """The PID is alive (it is this process), but it is not the process that wrote the run."""
    path = _make_run(tmp_path, "reused", status="running")
    me = procs.identity()
    _set_worker(path, {**me, "start": me["start"] - 1})
    assert runs.load_run(path).status == "interrupted"
    _set_worker(path, {**me, "boot": "another-boot"})
    assert runs.load_run(path).status == "interrupted"
    _set_worker(path, me)
    assert runs.load_run(path).status == "running"


def test_run_folders_are_reserved_atomically(tmp_path):
    first = RunWriter.reserve(tmp_path, "mine", "unused")
    assert first.path == tmp_path / "mine" and first.path.is_dir() and not first.started
    with pytest.raises(ValueError, match="already exists") as taken:
        RunWriter.reserve(tmp_path, "mine", "unused")
    assert str(tmp_path) not in str(taken.value)  # the name only, never the server's folder
    auto = [RunWriter.reserve(tmp_path, None, "base").path.name for _ in range(3)]
    assert auto == ["base", "base-2", "base-3"]
    first.release()
    assert not (tmp_path / "mine").exists()
    _make_run(tmp_path, "kept")
    RunWriter(tmp_path / "kept").release()  # never removes a folder with files
    assert (tmp_path / "kept" / "config.json").exists()


def test_owner_is_recorded(tmp_path):
    assert runs.load_run(_make_run(tmp_path, "cli")).owner is None
    assert runs.load_run(_make_run(tmp_path, "app", owner="abc123")).owner == "abc123"


def test_delete_run_refuses_other_folders(tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a training run"):
        runs.delete_run(folder)
    assert (folder / "notes.txt").exists()
    path = _make_run(tmp_path, "gone")
    runs.delete_run(path)
    assert not path.exists()


def test_misclassified(tmp_path):
    path = _make_run(tmp_path, "m")
    items = runs.misclassified(path)
    assert [(i["true"], i["pred"]) for i in items] == [("cat", "dog")]
    assert items[0]["image"].dtype == np.uint8 and items[0]["image"].shape == (8, 8, 3)
    assert items[0]["prob"] == pytest.approx(0.9)
    saved = runs.predictions(path)
    assert np.array_equal(items[0]["image"], saved.images[list(saved.kept).index(1)])
    assert runs.misclassified(path, limit=0) == []
    (path / "predictions.npz").unlink()
    assert runs.misclassified(path) == [] and runs.predictions(path) is None


def test_runs_saved_before_predictions_still_show_their_mistakes(tmp_path):
    path = _make_run(tmp_path, "old")
    (path / "predictions.npz").unlink()
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    np.savez_compressed(
        path / "misclassified.npz",
        images=images,
        true=np.array([0, 2]),
        pred=np.array([1, 0]),
        prob=np.array([0.9, 0.6], dtype="float32"),
    )
    items = runs.misclassified(path)
    assert [(i["true"], i["pred"], round(i["prob"], 2)) for i in items] == [
        ("cat", "dog", 0.9),
        ("bird", "cat", 0.6),
    ]
    assert len(runs.misclassified(path, limit=1)) == 1


def test_model_save_and_load(tmp_path):
    model = _tiny_model()
    path = _make_run(tmp_path, "with-model", model=model)
    loaded, classes, prep = runs.load_run_model(path)
    assert classes == CLASSES and prep.size == 8 and (prep.crop, prep.resample) == (1.0, "bicubic")
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert runs.load_run(path).has_model
    # The model file alone loads too, with the classes.json beside it.
    _, classes, _ = runs.load_run_model(path / "model.keras")
    assert classes == CLASSES
    with pytest.raises(ValueError, match="no saved model"):
        runs.load_run_model(_make_run(tmp_path, "no-model"))


class _FailingModel:
    """Writes half a file, then fails: what a crash during ``model.save`` looks like."""

    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"half a model")
        raise OSError("disk full")


def test_failed_writes_keep_the_old_file(tmp_path):
    path = _make_run(tmp_path, "atomic", model=_tiny_model())
    before = (path / "model.keras").read_bytes()
    with pytest.raises(OSError, match="disk full"):
        RunWriter(path).model(_FailingModel())
    assert (path / "model.keras").read_bytes() == before
    results_before = (path / "results.json").read_text()
    with pytest.raises(TypeError):  # an unserialisable value: the write fails part-way
        RunWriter(path).finish({"status": "done", "bad": object()})
    assert (path / "results.json").read_text() == results_before
    assert _no_temp_files(path)
    assert sorted(os.listdir(path)) == sorted(
        [
            "classes.json",
            "config.json",
            "confusion.json",
            "history.csv",
            "model.keras",
            "predictions.npz",
            "results.json",
            "status.json",
        ]
    )
