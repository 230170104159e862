"""Datasets as in-memory uint8 arrays: CIFAR-10 (keras.datasets or a local copy), datasets by name
under the data root, and image folders (read by :mod:`core.data.imagefolder`).

Images are stored at a small *storage size* (32 for CIFAR-10, else 64 or the images' own size
when smaller); resizing to the model's resolution, augmentation and normalisation happen inside
the Keras model, so on the GPU when there is one.

Every dataset has three splits: **train** (what the model learns from), **validation** (picks the
best epoch and drives early stopping) and **test** (evaluated once, at the end). A dataset's own
``val/`` and ``test/`` folders are used when present; a missing split is carved out of the
training images, stratified by class, with a fixed seed (:data:`SPLIT_SEED`), so every run on a
dataset sees the same validation and test images whatever its own seed. A dataset under the data
root stores the split it was given once (:mod:`core.data.splits`), so images added later never move
the ones already split. CIFAR-10's standard test split is kept; its validation split comes from
the 50 000 training images.

Folder layouts (one subfolder per class, any depth of images below it):

- ``root/train/<class>/*`` with ``root/val/<class>/*`` and/or ``root/test/<class>/*``;
- ``root/<class>/*`` (or ``root/train/<class>/*`` alone): everything is split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.data import cifar10, splits
from core.data.catalog import (
    SPLIT_SEED,
    DataError,
    describe,
    held_out,
    is_managed,
    resolve,
)
from core.data.imagefolder import read_folder
from core.platform import paths

if TYPE_CHECKING:
    from core.platform.progress import Progress


@dataclass
class Dataset:
    """A classification dataset held in memory.

    Attributes:
        x_train: uint8 images, shape (N, S, S, 3), S the storage size.
        y_train: int64 labels, shape (N,), indices into ``class_names``.
        x_val: uint8 validation images (the ``val/`` folder, or carved from train; may be empty
            when no validation split was asked for).
        y_val: int64 validation labels.
        x_test: uint8 test images (the ``test/`` folder, or the held-out part).
        y_test: int64 test labels.
        class_names: class names in label order.
        source: where the data came from, for people (e.g. "keras.datasets.cifar10").
        split: how the splits were formed (e.g. "folder train/test; validation: stratified 10 %
            of train").
        skipped: image files that could not be decoded and were left out.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str
    split: str
    skipped: int = 0

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def storage_size(self) -> int:
        """Side length S of the stored S×S images."""
        return int(self.x_train.shape[1])


# ----- public entry points ------------------------------------------------------------------------
def load_dataset(
    spec: str = "cifar10",
    *,
    storage_size: int | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    progress: Progress | None = None,
    use_cache: bool = True,
    managed_only: bool = False,
) -> Dataset:
    """Load a dataset with train, validation and test splits, optionally cut to subsets.

    Args:
        spec: ``"cifar10"``, the name of a dataset under the data root, or the path of an image
            folder (see :func:`resolve`).
        storage_size: side of the stored square images (default 32 for CIFAR-10; for a folder
            64, or the images' own size when smaller).
        subset: keep a stratified, seeded subset of this many training images (quick demos); the
            validation split is cut to the same proportion.
        test_subset: a stratified, seeded subset of the test split.
        seed: seed for the subsets.
        val_fraction: share of each class's training images held out for validation when the
            dataset has no ``val/`` folder; 0 for none (e.g. when the test split validates).
        test_fraction: share of each class held out for testing when a folder has no ``test/``.
        progress: receives decoding progress; its stop request aborts with ``Stopped``.
        use_cache: read and write the decoded-array cache.
        managed_only: ``spec`` must be "cifar10" or a dataset under the data root, never a path
            (jobs from the app; see :func:`core.data.catalog.resolve`).

    Raises:
        DataError: with a message saying what failed and how to fix it.
    """
    target = resolve(spec, managed_only=managed_only)
    if storage_size is not None and int(storage_size) < 1:
        raise DataError(f"storage_size must be a positive number of pixels, got {storage_size}.")
    for name, value in (("subset", subset), ("test_subset", test_subset)):
        if value is not None and int(value) < 1:
            raise DataError(f"{name} must be a positive number of images, got {value}.")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise DataError(f"{name} must be at least 0 and below 1, got {value}.")
    if target == "cifar10":
        ds = _load_cifar10(storage_size or 32, val_fraction, progress, use_cache)
    else:
        ds = load_image_folder(
            target,
            storage_size=storage_size,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            progress=progress,
            use_cache=use_cache,
        )
    if subset is not None and subset < len(ds.y_train):
        n_val = len(ds.y_val)
        if n_val:  # keep validation in proportion, so a quick demo validates quickly too
            keep = max(ds.num_classes, round(n_val * subset / len(ds.y_train)))
            ds.x_val, ds.y_val = subsample(ds.x_val, ds.y_val, keep, seed)
        ds.x_train, ds.y_train = subsample(ds.x_train, ds.y_train, subset, seed)
        ds.split += f"; train subset of {subset}" + (
            f", validation {len(ds.y_val)}" if n_val else ""
        )
    if test_subset is not None and test_subset < len(ds.y_test):
        ds.x_test, ds.y_test = subsample(ds.x_test, ds.y_test, test_subset, seed)
        ds.split += f"; test subset of {test_subset}"
    return ds


def load_image_folder(
    path: str | os.PathLike,
    *,
    storage_size: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Load a folder with one subfolder per class (see the module docstring for the layouts).

    Args:
        path: the dataset folder.
        storage_size: side S of the stored S×S images (shorter side resized to S, centre crop).
            Default: 64, or less when the images are smaller (32 for a CIFAR-10 folder), so
            small images are never upscaled in storage.
        val_fraction: share of each class's training images held out for validation when there
            is no ``val/`` folder (0: none).
        test_fraction: share of each class held out for testing when there is no ``test/``.
        progress: receives decoding progress; its stop request aborts with ``Stopped``.
        use_cache: read and write the decoded-array cache.

    Raises:
        DataError: the folder is missing or has a wrong layout, or a class has no readable image.
    """

    root = Path(path).expanduser()
    if storage_size is not None and int(storage_size) < 1:
        raise DataError(f"storage_size must be a positive number of pixels, got {storage_size}.")
    folder = read_folder(root, storage_size, progress, use_cache)
    parts, arrays, class_names = folder.parts, folder.arrays, folder.class_names
    rng = np.random.default_rng(SPLIT_SEED)
    notes = []
    carved = splits.carved_part(parts)
    stored = carved and splits.stored_assignment(
        root, folder.files[carved], splits.missing(parts), store=is_managed(root)
    )
    if stored:
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = _stored_split(
            folder, carved, stored, rng, notes
        )
    else:
        if "all" in parts:
            x, y = arrays["x_all"], arrays["y_all"]
            if not 0 < test_fraction < 1:
                raise DataError(
                    f"{describe(root)} has no test/ folder, so test_fraction must be above 0."
                )
            train_idx, test_idx = _stratified_split(y, test_fraction, rng)
            x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
            where = "" if parts["all"] == root else f" of {parts['all'].name}/"
            notes.append(f"test: stratified {round(test_fraction * 100)} %{where}")
        else:
            x_train, y_train = _shuffled(arrays["x_train"], arrays["y_train"], rng)
            if "test" in parts:
                x_test, y_test = _shuffled(arrays["x_test"], arrays["y_test"], rng)
                notes.append("test: the test/ folder")
            else:
                train_idx, test_idx = _stratified_split(y_train, test_fraction, rng)
                x_test, y_test = x_train[test_idx], y_train[test_idx]
                x_train, y_train = x_train[train_idx], y_train[train_idx]
                notes.append(f"test: stratified {round(test_fraction * 100)} % of train/")
        if "val" in parts:
            x_val, y_val = _shuffled(arrays["x_val"], arrays["y_val"], rng)
            notes.append("validation: the val/ folder")
        else:
            x_train, y_train, x_val, y_val = _carve_validation(x_train, y_train, val_fraction, rng)
            if val_fraction:
                notes.append(
                    f"validation: stratified {round(val_fraction * 100)} % of the training images"
                )
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        class_names=class_names,
        source=f"image folder {describe(root)} ({folder.how})",
        split=f"{len(y_train)}/{len(y_val)}/{len(y_test)} train/validation/test; "
        + "; ".join(notes)
        + f" (split seed {SPLIT_SEED})",
        skipped=folder.skipped,
    )


def _stored_split(
    folder, carved: str, stored: dict[str, str], rng: np.random.Generator, notes: list[str]
):
    """``((x, y) train, validation, test)``: folder parts as they are, the rest as stored."""

    rows = splits.split_rows(stored, folder.files[carved], folder.arrays[f"k_{carved}"])
    x, y = folder.arrays[f"x_{carved}"], folder.arrays[f"y_{carved}"]
    out = {}
    for name in ("train", "test", "val"):
        if name in folder.parts and name != carved:
            out[name] = _shuffled(folder.arrays[f"x_{name}"], folder.arrays[f"y_{name}"], rng)
            if name != "train":
                notes.append(f"{'validation' if name == 'val' else name}: the {name}/ folder")
            continue
        out[name] = _shuffled(x[rows[name]], y[rows[name]], rng)
        if name == "test":
            notes.append(
                f"test: stored split, {round(splits.TEST_FRACTION * 100)} % ({splits.SPLITS_FILE})"
            )
        elif name == "val":
            notes.append(
                f"validation: stored split, {round(splits.VAL_FRACTION * 100)} % of "
                f"the training images ({splits.SPLITS_FILE})"
            )
    return out["train"], out["val"], out["test"]


def _shuffled(x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
    """Folder order is class by class: shuffle once so no consumer sees sorted labels."""
    order = rng.permutation(len(y))
    return x[order], y[order]


def _carve_validation(x: np.ndarray, y: np.ndarray, val_fraction: float, rng: np.random.Generator):
    """``(x_train, y_train, x_val, y_val)``: a stratified share of each class held out."""
    if not val_fraction:
        return x, y, x[:0], y[:0]
    train_idx, val_idx = _stratified_split(y, val_fraction, rng)
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def subsample(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, deterministic subset of ``n`` samples, in a seeded random order.

    Each class gets a share proportional to its size (largest-remainder rounding, so the shares
    sum to exactly ``n``). If ``n`` is at least ``len(y)`` the arrays come back unchanged.
    """
    n = int(n)
    if n < 1:
        raise DataError(f"A subset must have at least one image, got {n}.")
    if n >= len(y):
        return x, y
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n / counts.sum()
    take = np.floor(quota).astype(int)
    # Hand the leftover images to the classes with the largest fractional parts (stable ties).
    leftover = n - take.sum()
    take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c, k in zip(classes, take)]
    )
    idx = rng.permutation(idx)
    return x[idx], y[idx]


# ----- CIFAR-10 (keras.datasets or the local copy) -----------------------------------------------------------------------------------
def _load_cifar10(
    storage_size: int, val_fraction: float, progress: Progress | None, use_cache: bool
) -> Dataset:
    """keras.datasets if cached or reachable, else the local copy, else a DataError saying both."""
    try:
        x_train, y_train, x_test, y_test, how = cifar10.keras_cifar10()
    except Exception as exc:  # keras raises bare Exception for fetch failures
        download_error = f"{type(exc).__name__}: {exc}"
    else:
        if storage_size != 32:
            x_train, x_test = (
                cifar10.resize_array(a, storage_size, progress) for a in (x_train, x_test)
            )
        rng = np.random.default_rng(SPLIT_SEED)
        x_train, y_train, x_val, y_val = _carve_validation(x_train, y_train, val_fraction, rng)
        return Dataset(
            x_train=x_train,
            y_train=y_train,
            x_val=x_val,
            y_val=y_val,
            x_test=x_test,
            y_test=y_test,
            class_names=list(cifar10.CLASSES),
            source=f"keras.datasets.cifar10 ({how})",
            split=f"{len(y_train)}/{len(y_val)}/{len(y_test)} train/validation/test; the "
            f"standard test split; validation: stratified {round(val_fraction * 100)} % "
            f"of train (split seed {SPLIT_SEED})",
            skipped=0,
        )

    local = paths.cifar10_dir()
    fix = (
        "To fix it: connect to the internet, or set EFFNET_LAB_CIFAR10_DIR to a local CIFAR-10 "
        "image folder (train/<class>/*.jpg and test/<class>/*.jpg), or pass such a folder's path "
        "instead of 'cifar10'."
    )
    if local is None:
        raise DataError(
            f"Could not load CIFAR-10: the keras.datasets download failed ({download_error}) and "
            f"no local copy is configured. {fix}"
        )
    try:
        ds = load_image_folder(
            local,
            storage_size=storage_size,
            val_fraction=val_fraction,
            progress=progress,
            use_cache=use_cache,
        )
    except DataError as exc:
        raise DataError(
            f"Could not load CIFAR-10: the keras.datasets download failed ({download_error}) and "
            f"the local copy at {local} (EFFNET_LAB_CIFAR10_DIR) is unusable: {exc} {fix}"
        ) from exc
    ds.source = (
        f"local CIFAR-10 copy: {ds.source}; keras.datasets was unavailable ({download_error})"
    )
    return ds


def _stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator):
    """Seeded per-class split; each class with ≥2 images keeps at least one on each side."""
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = held_out(len(idx), fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
