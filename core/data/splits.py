"""Stored splits: which image of a dataset is for training, validation or testing, chosen once.

A folder's own ``train/``, ``val/`` and ``test/`` folders always win. The splits a dataset under
the data root lacks are carved from its training images once, stratified by class in a seeded
order (:data:`core.data.catalog.SPLIT_SEED`), and stored in the dataset's ``splits.json``: the test share
of each class (:data:`TEST_FRACTION`), then the validation share of the rest
(:data:`VAL_FRACTION`), the same counts :func:`core.data.catalog.held_out` gives a folder carved per run.

Adding images later never moves an image already assigned. New images are assigned when first
seen (on import, creation, an edit in the app, a health check or a training run): per class, in
the seeded order of their paths, they fill what each split lacks of its share of the new total,
so a class stays stratified and the answer depends only on the files, not on who looks first.
Removed images are forgotten. A folder outside the data root is never written to; if it carries a
``splits.json`` (a copied managed dataset), that split is honoured.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.data.catalog import SPLIT_SEED, held_out
from core.data.imagefolder import relative_files, scan
from core.platform.fileio import write_json

SPLITS_FILE = "splits.json"
TEST_FRACTION = 0.2  # of each class, when the dataset has no test/ folder
VAL_FRACTION = 0.1  # of each class's remaining training images, when it has no val/ folder
_MAX_FILE_BYTES = 256 * 2**20  # a bigger splits.json is not ours: ignore it
_LOCK = ".splits.lock"  # hidden: the layout scan never sees it


def missing(parts) -> tuple[str, ...]:
    """The splits a scanned layout lacks as folders, in ("val", "test") order."""
    return tuple(name for name in ("val", "test") if name not in parts)


def carved_part(parts) -> str | None:
    """The part the missing splits come from ("all" or "train"), or None when none is missing."""
    if "all" in parts:
        return "all"
    return "train" if missing(parts) else None


def targets(n: int, lacking: tuple[str, ...]) -> dict[str, int]:
    """How many of a class's ``n`` images each split should hold."""

    test = held_out(n, TEST_FRACTION) if "test" in lacking else 0
    val = held_out(n - test, VAL_FRACTION) if "val" in lacking else 0
    return {"train": n - test - val, "val": val, "test": test}


def order_key(path: str) -> str:
    """The seeded order in which new images are assigned (a hash: no file name sorts first)."""

    return hashlib.sha256(f"{SPLIT_SEED}/{path}".encode()).hexdigest()


def assign(
    files: list[tuple[str, int]], lacking: tuple[str, ...], stored: dict[str, str] | None = None
) -> dict[str, str]:
    """Assign every file to a split, keeping ``stored`` assignments of files still present.

    Args:
        files: ``(path relative to the dataset, label)`` of every image of the carved part.
        lacking: The splits to carve (see :func:`missing`).
        stored: Earlier assignments (path → split); entries of vanished files are dropped.

    Returns:
        path → "train", "val" or "test", for exactly the given files.
    """
    allowed = {"train", *lacking}
    stored = stored or {}
    out: dict[str, str] = {}
    new_by_class: dict[int, list[str]] = defaultdict(list)
    have: dict[int, dict[str, int]] = defaultdict(lambda: {"train": 0, "val": 0, "test": 0})
    total: dict[int, int] = defaultdict(int)
    for path, label in files:
        total[label] += 1
        split = stored.get(path)
        if split in allowed:
            out[path] = split
            have[label][split] += 1
        else:
            new_by_class[label].append(path)
    for label, new in new_by_class.items():
        want = targets(total[label], lacking)
        queue = sorted(new, key=order_key)
        for split in ("test", "val"):
            take = max(0, want[split] - have[label][split])
            for path in queue[:take]:
                out[path] = split
            queue = queue[take:]
        for path in queue:
            out[path] = "train"
    return out


def read(root: Path) -> dict | None:
    """The stored split file's contents, or None when absent, unreadable or not ours."""
    path = Path(root) / SPLITS_FILE
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not isinstance(data.get("lacking"), list):
        return None
    return {
        "lacking": tuple(data["lacking"]),
        "files": {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)},
    }


@contextmanager
def _locked(root: Path) -> Iterator[bool]:
    """Hold the dataset's split lock (read-modify-write by one process at a time); yields
    False when the folder is read-only (then nothing is written)."""
    try:
        fd = os.open(Path(root) / _LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def stored_assignment(
    root: Path, files: list[tuple[str, int]], lacking: tuple[str, ...], store: bool
) -> dict[str, str] | None:
    """The dataset's stored split of ``files``, brought up to date.

    Args:
        root: The dataset folder (``splits.json`` lives there).
        files: ``(path relative to root, label)`` of every image of the carved part.
        lacking: The splits to carve.
        store: Write the file when it is missing or out of date (datasets under the data root).

    Returns:
        path → split for every file, or None when nothing is stored and ``store`` is False
        (then the caller carves per run, as for any folder).
    """
    root = Path(root)
    if not lacking:
        return None
    with _locked(root) if store else _no_lock() as writable:
        data = read(root)
        if data is None and not store:
            return None
        # A layout change (a test/ folder appeared, say) starts over: old entries mean other splits.
        old = data["files"] if data is not None and data["lacking"] == tuple(lacking) else {}
        out = assign(files, tuple(lacking), old)
        if store and writable and out != old:
            try:
                _write(root, lacking, out)
            except OSError:
                pass  # a read-only dataset still gets the same deterministic split, unstored
        return out


def move(root: Path, renames: list[tuple[str, str]]) -> None:
    """Carry stored assignments over renamed folders: ``(old prefix, new prefix)`` pairs of
    paths relative to ``root`` (a renamed class keeps each image's split)."""
    with _locked(root) as writable:
        data = read(root)
        if data is None or not writable:
            return
        moved = {}
        for path, split in data["files"].items():
            for before, after in renames:
                if path.startswith(before):
                    path = after + path[len(before) :]
            moved[path] = split
        _write(root, data["lacking"], moved)


def _write(root: Path, lacking, files: dict[str, str]) -> None:
    write_json(
        Path(root) / SPLITS_FILE,
        {
            "about": "EffNet Lab's split of this dataset: image → train, val or test. Kept across "
            "edits; delete this file to draw the split again.",
            "lacking": list(lacking),
            "test_fraction": TEST_FRACTION,
            "val_fraction": VAL_FRACTION,
            "files": dict(sorted(files.items())),
        },
    )


@contextmanager
def _no_lock() -> Iterator[bool]:
    yield False


def ensure(root: Path) -> dict[str, str] | None:
    """Store (or update) the split of the dataset at ``root``; returns it (None: all folders)."""

    parts, _ = scan(Path(root), strict=False)
    part = carved_part(parts)
    if part is None:
        return None
    return stored_assignment(root, relative_files(root, parts)[part], missing(parts), store=True)


def split_rows(
    assignment: dict[str, str], files: list[tuple[str, int]], kept: np.ndarray
) -> dict[str, np.ndarray]:
    """Split name → the row indices (into the decoded arrays) of its images.

    Args:
        assignment: path → split.
        files: The carved part's ``(path, label)`` list, in scan order.
        kept: For each decoded row, its index into ``files`` (unreadable files have no row).
    """
    names = np.array([assignment[files[i][0]] for i in kept], dtype=object)
    return {split: np.flatnonzero(names == split) for split in ("train", "val", "test")}
