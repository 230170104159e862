"""The data root's catalogue: which names are datasets, what a data spec names, and the error
every data problem raises. The bottom of :mod:`core.data`: it imports nothing else from it, so the
modules that read folders, splits and arrays can all use it without importing each other."""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.platform import paths

# Splits carved from the training data do not depend on a run's seed: every run on a dataset
# validates and tests on the same images, so their accuracies compare.
SPLIT_SEED = 0
# A managed dataset's name: a folder directly under the data root.
DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_RESERVED_NAMES = {"weights", "cifar10"}


class DataError(ValueError):
    """A dataset could not be loaded; the message says what failed and how to fix it."""


def list_datasets() -> list[str]:
    """Names of the datasets under the data root (:func:`core.platform.paths.data_dir`), sorted."""
    try:
        found = list(paths.data_dir().iterdir())
    except OSError:  # an unreadable data root offers nothing (and must not break a page)
        return []
    return sorted(
        p.name
        for p in found
        if p.is_dir() and DATASET_NAME_RE.match(p.name) and p.name not in _RESERVED_NAMES
    )


def is_managed(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a dataset directly under the data root (it may store its split)."""
    folder = Path(folder)
    try:
        return (
            DATASET_NAME_RE.match(folder.name) is not None
            and folder.name not in _RESERVED_NAMES
            and folder.resolve().parent == paths.data_dir().resolve()
        )
    except OSError:
        return False


def resolve(spec: str, *, managed_only: bool = False) -> str | Path:
    """What a data spec names: "cifar10", a managed dataset's folder, or a folder path.

    A plain name (no slash) that is a dataset under the data root wins over a relative path.

    Args:
        spec: The data spec.
        managed_only: Accept only "cifar10" or a dataset under the data root, never a path (jobs
            started from the app: a deleted dataset named like a server folder, "data" or
            "runs", must not fall back to that folder).

    Raises:
        DataError: ``managed_only`` and ``spec`` is no dataset under the data root.
    """
    spec = str(spec).strip()
    if spec.lower() == "cifar10":
        return "cifar10"
    if DATASET_NAME_RE.match(spec) and spec not in _RESERVED_NAMES:
        managed = paths.data_dir() / spec
        if managed.is_dir():
            return managed
    if managed_only:
        raise DataError(gone_message(spec))
    return Path(spec).expanduser()


def gone_message(name: str) -> str:
    """The one line for a dataset a job may not (or no longer) use: the same whether it was
    deleted or belongs to someone else, so it reveals nothing about other visitors."""
    return f"There is no dataset named {str(name)[:64]!r} (it may have been deleted): pick another."


def describe(folder: str | os.PathLike) -> str:
    """How a message names a data folder: ``dataset 'pets'`` (``dataset 'pets' (train/cat)``)
    for one under the data root, "the new dataset" for one being built there, "cifar10" for the
    local CIFAR-10 copy; only other folders (given on the command line) by their path.

    Messages reach the pages through job errors: a visitor learns which dataset, never where the
    server keeps it.
    """
    folder = Path(os.path.abspath(folder))
    named = (
        (Path(os.path.abspath(paths.data_dir())), None),
        (paths.cifar10_dir(), "cifar10"),
    )
    for root, label in named:
        if root is None:
            continue
        try:
            rel = folder.relative_to(os.path.abspath(root))
        except ValueError:
            continue
        parts = rel.parts
        if label is None:
            if not parts:
                return "the data folder"
            label = "the new dataset" if parts[0].startswith(".") else f"dataset {parts[0]!r}"
            parts = parts[1:]
        return label + (f" ({'/'.join(parts)})" if parts else "")
    return str(folder)


def held_out(n: int, fraction: float) -> int:
    """How many of a class's ``n`` images a ``fraction`` holds out: rounded, and at least one
    on each side when the class has two or more."""
    if not fraction:
        return 0
    k = round(n * fraction)
    return min(max(k, 1), n - 1) if n >= 2 else k
