"""Writing a run folder (:mod:`core.training.runs` says what it holds, and reads it back): each
file replaced atomically through :mod:`core.platform.fileio`, so a killed process leaves old files
or new ones, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from core.platform import liveness
from core.platform.errors import UserError
from core.platform.fileio import atomic_path, write_json, write_text

HISTORY_COLUMNS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
    "images_per_s",
    "phase",
)


class RunWriter:
    """Writes one run folder; each method replaces its files atomically."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def reserve(cls, root: str | os.PathLike, name: str | None, base: str) -> RunWriter:
        """Create a new, empty run folder atomically, so no two runs ever share one.

        Args:
            root: The runs folder.
            name: The folder name asked for; taken already → ValueError.
            base: Without a name: the name to use, with ``-2``, ``-3`` … appended if taken.

        Raises:
            ValueError: ``name`` is taken (whatever the folder holds).
        """
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            if name:
                try:
                    (root / name).mkdir()
                except FileExistsError:
                    raise UserError(  # the name only: the folder's path is the server's
                        f"a run named {name!r} already exists: choose another "
                        "name (or delete that run first)."
                    ) from None
                return cls(root / name)
            for i in range(1, 10_000):
                path = root / (base if i == 1 else f"{base}-{i}")
                try:
                    path.mkdir()
                except FileExistsError:
                    continue
                return cls(path)
        except OSError as exc:  # no permission, a read-only disk, a file in the way
            raise UserError(  # not where: the runs folder's path is the server's
                f"cannot create the run's folder in the runs folder: {exc.strerror or exc}"
            ) from exc
        raise UserError(f"could not find a free run name like {base!r}")

    def release(self) -> None:
        """Remove the reserved folder again if nothing was written to it."""
        try:
            self.path.rmdir()
        except OSError:
            pass

    @property
    def started(self) -> bool:
        """True once :meth:`start` wrote the run's files."""
        return (self.path / "config.json").is_file()

    def start(
        self,
        config: dict,
        class_names: list[str],
        preprocessing: dict | None = None,
        owner: str | None = None,
    ) -> None:
        """Write config, classes, preprocessing and a "running" status naming this process."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / "config.json", config)
        write_json(self.path / "classes.json", list(class_names))
        if preprocessing is not None:
            write_json(self.path / "preprocessing.json", preprocessing)
        worker = liveness.identity()
        write_json(
            self.path / "status.json",
            {
                "status": "running",
                "worker": worker,
                "owner": owner,
                "created": time.time(),
                # Where it ran: "local" or "ray", and the Ray node's address or this host's name.
                "executor": worker["executor"],
                "node": worker["node"],
            },
        )
        liveness.beat_also(self.path)  # a Ray worker: hosts other than its own see it alive

    def history(self, rows: list[dict]) -> None:
        """Rewrite ``history.csv`` with all epoch rows so far."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path / "history.csv", buf.getvalue())

    def model(self, model) -> None:
        """Save a Keras model as ``model.keras``."""
        save_model(model, self.path / "model.keras")

    def finish(
        self,
        results: dict,
        confusion: list[list[int]] | None = None,
        predictions: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Write the final results (and confusion matrix, test predictions), then the status."""
        if confusion is not None:
            write_json(self.path / "confusion.json", confusion)
        if predictions is not None:
            with atomic_path(self.path / "predictions.npz", suffix=".npz") as tmp:
                np.savez_compressed(tmp, **predictions)
        write_json(self.path / "results.json", results)
        status = self._status()
        status.update(status=results.get("status", "done"), finished=time.time())
        if results.get("error"):
            status["error"] = results["error"]
        write_json(self.path / "status.json", status)

    def _status(self) -> dict:
        try:
            return json.loads((self.path / "status.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"created": time.time()}


def save_model(model, path: str | os.PathLike) -> None:
    """Save a Keras model atomically (Keras insists on the ``.keras`` suffix, which the temp keeps)."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
