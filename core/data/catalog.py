"""The data root's catalogue: which names are datasets, what a data spec names, and the errors
every data problem raises. The bottom of :mod:`core.data`: it imports nothing else from it, so the
modules that read folders, splits and arrays can all use it without importing each other."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from core.platform import paths, workspaces
from core.platform.errors import UserError

# Splits carved from the training data do not depend on a run's seed: every run on a dataset
# validates and tests on the same images, so their accuracies compare.
SPLIT_SEED = 0
# A managed dataset's name: a folder directly under the data root.
DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_RESERVED_NAMES = {"weights", "cifar10", workspaces.FOLDER}
# A workspace's dataset as the app and its jobs name it: "w/<tag>/<name>" (its folder relative to
# the data root). The tag is a hash, never the visitor's secret; pages show only the name.
_REF_RE = re.compile(r"^" + workspaces.FOLDER + r"/([0-9a-f]{16})/([^/]+)$")


# A managed dataset's immutable id: 128 random bits in hex, in this file of its folder, written
# once (O_EXCL) by whoever creates the dataset or first lists one made before ids existed. Jobs
# check it in the worker, so a dataset deleted and re-created under the same name is never used
# in place of the one a queued job was started on. The built-in "cifar10" is its own id.
ID_FILE = "dataset.id"
_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class DataError(UserError):
    """A dataset could not be loaded; the message says what failed and how to fix it."""


class DatasetError(UserError):
    """A dataset operation that cannot be done; the message says why, in one line."""


def data_root(owner: str | None = None) -> Path:
    """Where ``owner``'s datasets live: the data root (:func:`core.platform.paths.data_dir`) for
    the operator (None), else the workspace's own folder (:mod:`core.platform.workspaces`)."""
    return paths.data_dir() if owner is None else workspaces.data_root(owner)


def dataset_ref(name: str, owner: str | None = None) -> str:
    """How the app and its jobs name ``owner``'s dataset ``name``: the name itself in the data
    root, ``w/<tag>/<name>`` in a workspace."""
    return name if owner is None else f"{workspaces.FOLDER}/{workspaces.check_tag(owner)}/{name}"


def split_ref(ref: str) -> tuple[str | None, str]:
    """``(owner, name)`` of a dataset ref (owner None: the data root's)."""
    match = _REF_RE.match(str(ref))
    return (match.group(1), match.group(2)) if match else (None, str(ref))


def list_datasets(owner: str | None = None) -> list[str]:
    """Names of the datasets in ``owner``'s data root (:func:`data_root`), sorted."""
    try:
        found = list(data_root(owner).iterdir())
    except OSError:  # an unreadable data root offers nothing (and must not break a page)
        return []
    listed = sorted(
        p.name
        for p in found
        if p.is_dir() and DATASET_NAME_RE.match(p.name) and p.name not in _RESERVED_NAMES
    )
    root = data_root(owner)
    for name in listed:  # migration: a dataset made before ids existed gets one on first listing
        ensure_id(root / name)
    return listed


def ensure_id(folder: str | os.PathLike) -> str | None:
    """The immutable id of the dataset in ``folder``, written now if it has none (the first
    writer wins; every later call reads that one).

    Returns:
        The id, or None when the folder cannot hold one (a read-only folder of the operator's):
        such a dataset is then checked by its name only.
    """
    path = Path(folder) / ID_FILE
    for _ in range(2):
        try:
            with open(path, "rb") as f:
                text = f.read(64).decode("ascii", "replace").strip()
            return text if _ID_RE.match(text) else None
        except FileNotFoundError:
            pass
        except OSError:
            return None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            continue  # another process wrote it first: read theirs
        except OSError:
            return None
        new = uuid.uuid4().hex
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(new)
        return new
    return None


def replaced_message(ref: str) -> str:
    """The one line for a job whose dataset was deleted (or replaced by another of its name)
    after the job was started."""
    name = split_ref(ref)[1]
    return f"The dataset {name[:64]!r} was deleted or replaced since this job was started."


def is_managed(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a dataset directly under the data root or a workspace's data root
    (it may store its split)."""
    folder = Path(folder)
    try:
        parent, root = folder.resolve().parent, paths.data_dir().resolve()
        in_workspace = (
            parent.parent.name == workspaces.FOLDER
            and parent.parent.parent == root
            and workspaces.TAG_RE.match(parent.name) is not None
        )
        return (
            DATASET_NAME_RE.match(folder.name) is not None
            and folder.name not in _RESERVED_NAMES
            and (parent == root or in_workspace)
        )
    except OSError:
        return False


def resolve(spec: str, *, managed_only: bool = False) -> str | Path:
    """What a data spec names: "cifar10", a managed dataset's folder (a name in the data root, or
    a workspace's ``w/<tag>/<name>``), or a folder path.

    A plain name (no slash) that is a dataset under the data root wins over a relative path.

    Args:
        spec: The data spec.
        managed_only: Accept only "cifar10" or an existing dataset under the data root (a shared
            name or a workspace ref), never a path: jobs started from the app, where a deleted
            dataset named like a server folder ("data", "runs") must not fall back to it.

    Raises:
        DataError: ``managed_only`` and ``spec`` is no dataset under the data root.
    """
    spec = str(spec).strip()
    if spec.lower() == "cifar10":
        return "cifar10"
    owner, name = split_ref(spec)
    if owner is not None and DATASET_NAME_RE.match(name) and name not in _RESERVED_NAMES:
        folder = data_root(owner) / name
        if folder.is_dir() or not managed_only:
            return folder
    elif DATASET_NAME_RE.match(spec) and spec not in _RESERVED_NAMES:
        managed = paths.data_dir() / spec
        if managed.is_dir():
            return managed
    if managed_only:
        raise DataError(gone_message(spec))
    return Path(spec).expanduser()


def gone_message(ref: str) -> str:
    """The one line for a dataset a job may not (or no longer) use: the same whether it was
    deleted or is another workspace's, and naming only the dataset (never a workspace's tag), so
    it reveals nothing about other visitors."""
    name = split_ref(ref)[1]
    return f"There is no dataset named {name[:64]!r} (it may have been deleted): pick another."


def describe(folder: str | os.PathLike) -> str:
    """How a message names a data folder: ``dataset 'pets'`` (``dataset 'pets' (train/cat)``)
    for one under the data root or in a workspace's, "the new dataset" for one being built there,
    "cifar10" for the local CIFAR-10 copy; only other folders (given on the command line) by
    their path.

    Messages reach the pages through job errors: a visitor learns which dataset, never where the
    server keeps it (nor the workspace's tag).
    """
    folder = Path(os.path.abspath(folder))
    cifar10 = paths.cifar10_dir()
    named = (
        (Path(os.path.abspath(paths.data_dir())), None),
        (cifar10, "cifar10"),
    )
    for root, label in named:
        if root is None:
            continue
        try:
            parts = folder.relative_to(os.path.abspath(root)).parts
        except ValueError:
            continue
        if label is None:
            if parts[:1] == (
                workspaces.FOLDER,
            ):  # w/<tag>/<name>/...: the tag is nobody's business
                parts = parts[2:]
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
