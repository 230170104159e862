"""Saved training runs: one folder per run, every file written atomically.

A run folder holds::

    status.json        {"status": "running", "worker": {pid, start, boot, ...}, "owner": ...,
                       "created": ..., "executor": "local"|"ray", "node": host or Ray node address}
                       at start, then the final status
    heartbeat          refreshed every few seconds while a Ray worker trains it (see
                       core.platform.liveness): how other hosts know it still runs
    config.json        the TrainConfig as a dict
    classes.json       class names in label order
    preprocessing.json how an image becomes the model's input (core.data.images.Preprocessing)
    history.csv        one row per finished epoch (rewritten after every epoch)
    model.keras        the best model so far (rewritten each time it improves, so a killed run
                       still leaves one): a full image → class network taking 0..255 pixels
    confusion.json     test confusion matrix, rows = true class, columns = predicted class
    results.json       validation and test accuracy, how they were chosen (protocol), epochs, wall
                       time, device, weights, status, per-class precision/recall/F1 and macro averages…
    predictions.npz    every test image's true and predicted class and probabilities, and a bounded
                       selection of the test images (see core.training.evaluation); runs saved before it
                       have misclassified.npz (a few mistakes) instead

Writers use :class:`~core.training.run_writer.RunWriter`; readers use :func:`list_runs`, :func:`load_run`,
:func:`load_run_model`, :func:`predictions` and :func:`misclassified`. Every write goes through :mod:`core.platform.fileio`
(temp file + rename), so a killed process leaves old files or new ones, never half of one; a
run whose process died reads as "interrupted" (its PID is checked together with the process start
time and boot id, so a reused PID does not keep it "running"), and its stale temp files are
removed when it is listed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.imagefolder import storage_preprocessing
from core.data.images import Preprocessing
from core.models.efficientnet import float32_model
from core.platform import liveness, paths
from core.platform.errors import UserError
from core.platform.runtime import accelerators, allow_jit
from core.training.evaluation import Predictions

STATUSES = ("running", "done", "stopped", "interrupted", "error")
_TEXT_COLUMNS = ("phase",)  # two-phase fine-tuning: "head", then "finetune"


@dataclass
class RunInfo:
    """What a run folder says about one training run.

    Attributes:
        path: The run folder.
        name: Folder name.
        status: "running", "done", "stopped", "interrupted" (its process died while running;
            the best model so far is kept) or "error".
        config: The training configuration (``TrainConfig.to_dict()``).
        test_accuracy: Accuracy of the saved model on the test split, if training got that far.
        created: Start time (seconds since the epoch).
        class_names: Class names in label order.
        history: Per-epoch rows (epoch, loss, accuracy, val_loss, val_accuracy, lr, seconds,
            images_per_s) as floats (epoch as int), and the phase ("head", "finetune") of
            two-phase fine-tuning.
        confusion: Test confusion matrix (rows true, columns predicted), if saved.
        results: The whole ``results.json`` (empty while running).
        error: Why the run failed, for status "error".
        owner: The owner tag of the app session that started it (None: started elsewhere,
            e.g. from the command line).
        executor: Where its worker ran: "local" (a process beside the app) or "ray" (a Ray
            cluster node); None for runs saved before it was recorded.
        node: The Ray node's address, or the host's name, of its worker (None: not recorded).
    """

    path: Path
    name: str
    status: str
    config: dict
    test_accuracy: float | None
    created: float
    class_names: list[str]
    history: list[dict]
    confusion: list[list[int]] | None
    results: dict = field(default_factory=dict)
    error: str | None = None
    owner: str | None = None
    executor: str | None = None
    node: str | None = None

    @property
    def has_model(self) -> bool:
        """True when the run saved a model file."""
        return (self.path / "model.keras").is_file()


# ----- reading ----------------------------------------------------------------------------------
def _read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            clean = {}
            for key, value in row.items():
                if value in ("", None):
                    continue
                if key in _TEXT_COLUMNS:
                    clean[key] = value
                else:
                    clean[key] = int(float(value)) if key == "epoch" else float(value)
            rows.append(clean)
    return rows


def _worker_alive(status: dict, path: Path) -> bool:
    worker = status.get("worker")
    if worker is None and status.get("pid") is not None:  # runs written before identities
        worker = {"pid": status.get("pid")}
    return liveness.alive(worker, path)


def clean_temp_files(path: Path) -> int:
    """Remove the temp files an interrupted write left in a run folder; returns how many."""
    removed = 0
    for tmp in path.glob(".*.tmp*"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def load_run(path: str | os.PathLike) -> RunInfo:
    """Read a run folder.

    Raises:
        ValueError: ``path`` is not a run folder (no ``config.json``) or its files are unreadable.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a training run folder (it has no config.json).")
    try:
        cfg = _read_json(path / "config.json")
        status = _read_json(path / "status.json", {}) or {}
        results = _read_json(path / "results.json", {}) or {}
        classes = _read_json(path / "classes.json", []) or []
        confusion = _read_json(path / "confusion.json")
        history = _read_history(path / "history.csv")
    except (OSError, ValueError) as exc:
        raise UserError(f"run folder {path} is damaged: {exc}") from exc
    state = results.get("status") or status.get("status") or "running"
    error = results.get("error") or status.get("error")
    if state == "running" and not _worker_alive(status, path):
        state = "interrupted"
        error = (
            "the process running this training ended before it finished; the best model "
            "saved so far is kept"
            if (path / "model.keras").is_file()
            else "the process running this training ended before any model was saved"
        )
        clean_temp_files(path)
    created = status.get("created") or path.stat().st_mtime
    accuracy = results.get("test_accuracy")
    return RunInfo(
        path=path,
        name=path.name,
        status=state,
        config=cfg,
        created=float(created),
        test_accuracy=None if accuracy is None else float(accuracy),
        class_names=list(classes),
        history=history,
        confusion=confusion,
        results=results,
        error=error,
        owner=status.get("owner"),
        executor=status.get("executor"),
        node=status.get("node"),
    )


def list_runs(root: str | os.PathLike | None = None) -> list[RunInfo]:
    """All runs under ``root`` (default :func:`core.platform.paths.runs_dir`), newest first.

    Folders that are not runs, or whose files cannot be read, are skipped.
    """
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return []
    runs = []
    for child in root.iterdir():
        if child.is_dir() and not child.name.startswith("."):
            try:
                runs.append(load_run(child))
            except (ValueError, OSError):
                continue
    runs.sort(key=lambda r: r.created, reverse=True)
    return runs


def delete_run(path: str | os.PathLike) -> None:
    """Delete a run folder.

    Raises:
        ValueError: ``path`` is not a run folder, or its training is still running.
    """
    info = load_run(path)
    if info.status == "running":
        raise UserError(f"run {info.name} is still training: stop it before deleting it.")
    shutil.rmtree(info.path)


def load_run_model(path: str | os.PathLike):
    """Load a run's saved model.

    Returns:
        ``(model, class_names, preprocessing)``: the model takes float RGB pixels in 0..255 of
        shape (size, size, 3) and returns class probabilities; ``preprocessing``
        (:class:`core.data.images.Preprocessing`) is how the run prepared its images, so
        classification feeds the model exactly what training did.

    Raises:
        ValueError: The run has no saved model (it failed or was stopped before training).
    """
    import keras

    path = Path(path)
    # A run folder, or a .keras file directly (its classes.json beside it, if any).
    model_file = path if path.suffix == ".keras" else path / "model.keras"
    if not model_file.is_file():
        raise UserError(
            f"run {path.name} has no saved model (it failed or was stopped before "
            "training started)."
        )
    model = keras.saving.load_model(model_file, compile=False)

    if not accelerators():  # a GPU-trained (mixed_float16) run computes in float32 on a CPU
        model = float32_model(model)
    allow_jit(model)  # a finetune run holds RandomTranslation: on JAX, predict would run eagerly
    classes = list(_read_json(model_file.parent / "classes.json", []) or [])
    outputs = int(model.output_shape[-1])
    if len(classes) != outputs:
        classes = [f"class {i}" for i in range(outputs)]
    size = int(model.input_shape[1])
    saved = _read_json(model_file.parent / "preprocessing.json")
    # Runs saved before preprocessing.json existed stored images exactly this way.
    preprocessing = Preprocessing.from_dict(saved) if saved else storage_preprocessing(size)
    if preprocessing.size != size:
        raise UserError(
            f"preprocessing.json says {preprocessing.size} px but the model takes {size} px"
        )
    return model, classes, preprocessing


def predictions(path: str | os.PathLike):
    """A run's saved test predictions (:class:`core.training.evaluation.Predictions`), or None when it
    has none (unfinished, or saved before predictions were kept)."""

    path = Path(path)
    file = path / "predictions.npz"
    if not file.is_file():
        return None
    classes = _read_json(path / "classes.json", []) or []
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("true", "pred", "prob", "true_prob", "kept", "images")}
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"run {path.name} has a damaged predictions.npz: {exc}") from exc
    return Predictions(**arrays, class_names=list(classes))


def misclassified(path: str | os.PathLike, limit: int = 36) -> list[dict]:
    """Misclassified test images saved with a run, most confident mistakes first.

    Returns:
        Up to ``limit`` dicts: ``image`` (uint8 H×W×3), ``true`` and ``pred`` (class names),
        ``prob`` (the model's probability for ``pred``); from ``predictions.npz``, or for runs
        saved before it, ``misclassified.npz``.
    """
    path = Path(path)
    saved = predictions(path)
    if saved is not None:
        return saved.mistakes(limit)
    file = path / "misclassified.npz"
    if not file.is_file():
        return []
    classes = _read_json(path / "classes.json", []) or []
    with np.load(file, allow_pickle=False) as npz:
        images, true, pred, prob = npz["images"], npz["true"], npz["pred"], npz["prob"]
    name = lambda i: classes[i] if 0 <= i < len(classes) else str(i)  # noqa: E731
    return [
        {
            "image": images[i],
            "true": name(int(true[i])),
            "pred": name(int(pred[i])),
            "prob": float(prob[i]),
        }
        for i in range(min(limit, len(images)))
    ]
