"""Managed datasets: folders under the data root that the app and ``python -m core data`` create,
edit and delete, by name.

A managed dataset is ``<data root>/<name>/`` holding one folder per class (or ``train/``, ``val/``
and ``test/`` folders of class folders), plus ``dataset.json`` (who made it, and how) and
``splits.json`` (its stored split, :mod:`core.data.splits`).

Where: the operator's datasets (the command line's, or folders placed there) sit directly in
the data root; a workspace's (:mod:`core.platform.workspaces`) in its own ``<data root>/w/<tag>/``,
so one workspace never meets another's names. Functions take a dataset *ref*: the name for the
data root, ``w/<tag>/<name>`` for a workspace's (:func:`core.data.catalog.dataset_ref`); new
datasets go to the data root of the ``owner`` who makes them.

Who may change one: every function that changes a dataset takes an ``owner``. ``None`` is the
operator (the command line), who may change any dataset; an owner tag (the app's workspace)
may change only the datasets it created or imported. Datasets without an owner (imported from
the command line, or folders placed in the data root) are therefore read-only in the app.

Every change is atomic step by step: a new dataset is built in a hidden temporary folder and
renamed into place complete; a deleted one is renamed away first, then removed; each image is
written to a temporary file and linked into place under a name no other image has. Names that
come from a browser (classes, files) are cleaned first (:mod:`core.data.names`). The atomic
building blocks (temporary folder, publish, image writes, free-space check) are in
:mod:`core.data.storage`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.data import splits
from core.data.catalog import (
    DataError,
    DatasetError,
    data_root,
    ensure_id,
    gone_message,
    list_datasets,
    replaced_message,
    split_ref,
)
from core.data.imagefolder import IMAGE_EXTENSIONS, relative_files, scan
from core.data.images import ImageError, load_image
from core.data.names import META_FILE, check_new_name, clean_class_name, clean_file_name
from core.data.storage import (  # re-exported: the zip import and tests use them from here
    _TEMP_PREFIX,
    MIN_FREE_BYTES,  # noqa: F401
    _write_new,
    publish,
    require_space,
    temp_dir,
    write_meta,
)
from core.platform import paths


@dataclass
class DatasetInfo:
    """What a managed dataset holds.

    Attributes:
        name: Its name (its folder in its data root).
        owner: The owner tag of the app session that made it, or None (read-only in the app).
        created: When it was made (seconds since the epoch), if known.
        source: How it was made ("created in the app", "zip photos.zip", ...), if known.
        splits: The split folders it has (empty: one folder per class at the top).
        classes: Class name → number of image files (all splits together).
    """

    name: str
    owner: str | None
    created: float | None
    source: str
    splits: tuple[str, ...]
    classes: dict[str, int] = field(default_factory=dict)
    ref: str = ""  # how functions name it: the name, or "w/<tag>/<name>" in a workspace

    @property
    def images(self) -> int:
        """Number of image files."""
        return sum(self.classes.values())


# ----- reading ----------------------------------------------------------------------------------
def path_of(ref: str) -> Path:
    """The folder of the managed dataset ``ref`` (a name, or ``w/<tag>/<name>``).

    Raises:
        DatasetError: there is no such dataset.
    """
    owner, name = split_ref(ref)
    if name not in list_datasets(owner):
        raise DatasetError(f"No dataset named {name!r}.")
    return data_root(owner) / name


def shown_name(ref: str) -> str:
    """A dataset ref's name, for people (never the workspace part)."""
    return split_ref(ref)[1]


def read_meta(folder: Path) -> dict:
    """A dataset's ``dataset.json`` (empty when absent or not ours)."""
    try:
        with open(Path(folder) / META_FILE, "rb") as f:
            data = json.loads(f.read(65536))  # ours are tiny; a bigger one is not ours
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def owner_of(ref: str) -> str | None:
    """The owner tag of dataset ``ref``: its workspace's, or the one recorded in the data root
    (None: no owner)."""
    folder = path_of(ref)
    return split_ref(ref)[0] or _owner(read_meta(folder))


def owners() -> dict[str, str | None]:
    """Every dataset in the data root (not the workspaces') with its owner tag (None: no
    owner), by name, in one listing."""
    return {name: _owner(read_meta(paths.data_dir() / name)) for name in list_datasets()}


def _owner(meta: dict) -> str | None:
    owner = meta.get("owner")
    return owner if isinstance(owner, str) and owner else None


def info(name: str) -> DatasetInfo:
    """What dataset ``name`` (a ref) holds (half-built datasets included: empty classes count 0)."""
    folder = path_of(name)
    meta = read_meta(folder)
    try:
        parts, class_names = scan(folder, strict=False)
    except DataError:
        parts, class_names = {}, []
    counts = dict.fromkeys(class_names, 0)
    for _, files in parts.values():
        for label, _ in files:
            counts[class_names[label]] += 1
    created = meta.get("created")
    return DatasetInfo(
        shown_name(name),
        owner_of(name),
        created if isinstance(created, (int, float)) else None,
        str(meta.get("source", "")),
        tuple(_split_dirs(folder)),
        counts,
        ref=name,
    )


def list_images(name: str, class_name: str) -> list[str]:
    """Image files of one class, as paths relative to the dataset (all its splits)."""
    folder = path_of(name)
    parts, class_names = scan(folder, strict=False)
    if class_name not in class_names:
        raise DatasetError(f"Dataset {shown_name(name)!r} has no class {class_name!r}.")
    label = class_names.index(class_name)
    return [
        path
        for files in relative_files(folder, parts).values()
        for path, lab in files
        if lab == label
    ]


def can_use(ref: str, user: str | None) -> bool:
    """Whether ``user`` (a workspace's owner tag; None: the operator, who may use any) may read
    (train on, check) dataset ``ref``: one in its own workspace, or a shared one (in the data
    root, without an owner), the rule of the app's dataset pickers."""
    owner, name = split_ref(ref)
    if name not in list_datasets(owner):
        return False
    if user is None:
        return True
    if owner is not None:
        return owner == user
    return _owner(read_meta(paths.data_dir() / name)) is None


def check_use(ref: str, user: str | None) -> None:
    """Raise unless ``ref`` is "cifar10" or a dataset ``user`` may use (:func:`can_use`).

    Raises:
        DatasetError: one line, the same for a deleted and for another workspace's dataset.
    """
    if str(ref).strip().lower() == "cifar10":
        return
    if not can_use(str(ref), user):
        raise DatasetError(gone_message(str(ref)))


def dataset_id(ref: str) -> str | None:
    """The immutable id of dataset ``ref`` ("cifar10" for the built-in one), or None when there
    is no such dataset (or it cannot hold an id)."""
    if str(ref).strip().lower() == "cifar10":
        return "cifar10"
    owner, name = split_ref(ref)
    if name not in list_datasets(owner):
        return None
    return ensure_id(data_root(owner) / name)


def managed_job(args: dict, ref: str) -> bool:
    """For a job's ``args``: whether it came from the app (``args["managed"]``), in which case its
    dataset ``ref`` (a shared name or ``w/<tag>/<name>``) is checked again here, in the worker,
    against the job's workspace (:func:`check_use` for ``args["user"]``), and must be resolved
    under the data root only (:func:`core.data.catalog.resolve` with ``managed_only``). The
    command line passes paths.

    The job also carries the dataset's immutable id (``args["dataset_id"]``, recorded when it
    was submitted): the folder the ref names now must still hold that id, so a dataset deleted
    and re-created under the same name is refused, never used instead.

    Raises:
        DatasetError: an app job's dataset is gone, replaced, or not this workspace's to use.
    """
    if not args.get("managed"):
        return False
    user = args.get("user")
    check_use(ref, user if isinstance(user, str) and user else None)
    wanted = args.get("dataset_id")
    if wanted and dataset_id(ref) != wanted:
        raise DatasetError(replaced_message(ref))
    return True


def can_edit(name: str, owner: str | None) -> bool:
    """Whether ``owner`` may change dataset ``name`` (None, the operator, may change any)."""
    return owner is None or owner_of(name) == owner


# ----- changing ---------------------------------------------------------------------------------
def create(name: str, owner: str | None, classes=(), source: str = "created in the app") -> Path:
    """Create an empty dataset in ``owner``'s data root, optionally with (empty) class folders;
    returns its folder."""
    name = check_new_name(name, owner)
    class_names = [clean_class_name(c) for c in classes]
    tmp = temp_dir(name)
    try:
        for class_name in class_names:
            (tmp / class_name).mkdir()
        write_meta(tmp, owner, source)
        return publish(tmp, name, owner)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def delete(name: str, owner: str | None) -> None:
    """Delete dataset ``name`` and all its files (it vanishes at once, then is removed)."""
    folder = _editable(name, owner)
    gone = paths.data_dir() / f"{_TEMP_PREFIX}deleted-{uuid.uuid4().hex}"
    os.rename(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)


def add_class(name: str, class_name: str, owner: str | None) -> None:
    """Add an empty class folder (in every split folder the dataset has)."""
    folder = _editable(name, owner)
    class_name = clean_class_name(class_name)
    dirs = _class_dirs(folder, class_name)
    if any(d.exists() for d in dirs):
        raise DatasetError(f"Dataset {shown_name(name)!r} already has a class {class_name!r}.")
    for d in dirs:
        d.mkdir(parents=True)


def rename_class(name: str, old: str, new: str, owner: str | None) -> None:
    """Rename a class (its folder in every split); its images keep their split."""
    folder = _editable(name, owner)
    new = clean_class_name(new)
    olds = [d for d in _class_dirs(folder, old) if d.is_dir()]
    if not olds:
        raise DatasetError(f"Dataset {shown_name(name)!r} has no class {old!r}.")
    if any(d.exists() for d in _class_dirs(folder, new)):
        raise DatasetError(f"Dataset {shown_name(name)!r} already has a class {new!r}.")
    for d in olds:
        d.rename(d.with_name(new))
    splits.move(
        folder,
        [
            (
                d.relative_to(folder).as_posix() + "/",
                d.with_name(new).relative_to(folder).as_posix() + "/",
            )
            for d in olds
        ],
    )
    _refresh_splits(folder)


def delete_class(name: str, class_name: str, owner: str | None) -> None:
    """Delete a class and its images (in every split)."""
    folder = _editable(name, owner)
    dirs = [d for d in _class_dirs(folder, class_name) if d.is_dir()]
    if not dirs:
        raise DatasetError(f"Dataset {shown_name(name)!r} has no class {class_name!r}.")
    for d in dirs:
        gone = d.with_name(f"{_TEMP_PREFIX}deleted-{uuid.uuid4().hex[:8]}")
        d.rename(gone)
        shutil.rmtree(gone, ignore_errors=True)
    _refresh_splits(folder)


def add_images(name: str, class_name: str, uploads, owner: str | None) -> dict:
    """Add images to a class (its training folder), each validated by decoding it.

    Args:
        name: The dataset.
        class_name: An existing class.
        uploads: ``(file name, bytes)`` pairs, e.g. from a browser.
        owner: Who asks (see the module docstring).

    Returns:
        ``{"added": [paths relative to the dataset], "rejected": [{"file", "reason"}]}``.
    """
    folder = _editable(name, owner)
    target = _class_dirs(folder, class_name)[0]
    if not target.is_dir():
        raise DatasetError(f"Dataset {shown_name(name)!r} has no class {class_name!r}.")
    added, rejected = [], []
    for file_name, data in uploads:
        try:
            load_image(bytes(data), min_side=32)  # raises for anything that is not a usable image
            image_format = _format_of(data)
            clean = clean_file_name(file_name, image_format)
            require_space(len(data))
            final = _write_new(target, clean, bytes(data))
        except (ImageError, DatasetError) as exc:
            rejected.append({"file": str(file_name)[:200], "reason": str(exc)})
            continue
        added.append(final.relative_to(folder).as_posix())
    if added:
        _refresh_splits(folder)
    return {"added": added, "rejected": rejected}


def delete_images(name: str, files, owner: str | None) -> int:
    """Delete image files given as paths relative to the dataset; returns how many went."""
    folder = _editable(name, owner)
    root = folder.resolve()
    count = 0
    for rel in files:
        path = (folder / str(rel)).resolve()
        if root not in path.parents or not path.name.lower().endswith(IMAGE_EXTENSIONS):
            raise DatasetError(f"{rel!r} is not an image of dataset {shown_name(name)!r}.")
        try:
            path.unlink()
            count += 1
        except FileNotFoundError:
            pass
    _refresh_splits(folder)
    return count


# ----- helpers ----------------------------------------------------------------------------------
def _editable(name: str, owner: str | None) -> Path:
    folder = path_of(name)
    if not can_edit(name, owner):
        raise DatasetError(
            f"Dataset {shown_name(name)!r} can only be changed in the workspace that created it "
            "(datasets from the command line or the data folder are read-only in the app)."
        )
    return folder


def _split_dirs(folder: Path) -> list[str]:
    """The split folders a dataset is organised in (none: classes at the top)."""
    if not (folder / "train").is_dir():
        return []
    return [s for s in ("train", "val", "test") if (folder / s).is_dir()]


def _class_dirs(folder: Path, class_name: str) -> list[Path]:
    """Where a class lives: its folder in each split (training first), or at the top."""
    class_name = str(class_name)
    if "/" in class_name or class_name in ("", ".", ".."):
        raise DatasetError(f"{class_name!r} is not a class name.")
    return [folder / s / class_name for s in _split_dirs(folder)] or [folder / class_name]


def _format_of(data: bytes) -> str:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return str(im.format)


def _refresh_splits(folder: Path) -> None:
    """Assign new images, forget removed ones (best effort: a broken layout is reported by the
    health check, not here)."""
    try:
        splits.ensure(folder)
    except DataError:
        pass
