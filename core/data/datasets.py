"""Managed datasets: folders under the data root that the app and ``python -m core data`` create,
edit and delete, by name.

A managed dataset is ``<data root>/<name>/`` holding one folder per class (or ``train/``, ``val/``
and ``test/`` folders of class folders), plus ``dataset.json`` (who made it, and how) and
``splits.json`` (its stored split, :mod:`core.data.splits`).

Who may change one: every function that changes a dataset takes an ``owner``. ``None`` is the
operator (the command line), who may change any dataset; an owner tag (the app's browser session)
may change only the datasets it created or imported. Datasets without an owner (imported from
the command line, or folders placed in the data root) are therefore read-only in the app.

Every change is atomic step by step: a new dataset is built in a hidden temporary folder and
renamed into place complete; a deleted one is renamed away first, then removed; each image is
written to a temporary file and linked into place under a name no other image has. Names that
come from a browser (classes, files) are cleaned: no path separators, no hidden or dot-only
names, no control characters, bounded length.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.platform import paths

from core.data import splits
from core.data.catalog import (
    _RESERVED_NAMES,
    DATASET_NAME_RE,
    DataError,
    gone_message,
    list_datasets,
)
from core.platform.fileio import write_json
from core.data.imagefolder import IMAGE_EXTENSIONS, relative_files, scan
from core.data.images import ImageError, load_image

META_FILE = "dataset.json"
MAX_CLASS_NAME = 64  # characters
MAX_FILE_NAME = 120  # characters, extension included
# Names are shared by every visitor: a taken one is refused without saying whose it is.
_TAKEN = "{name!r} is not available as a dataset name: choose another name."
MIN_FREE_BYTES = 1 << 30  # refuse to fill the disk: keep at least this much free
# Class names the layout scan reads as split folders, and the dataset's own files.
RESERVED_CLASS_NAMES = {"train", "val", "test", META_FILE, splits.SPLITS_FILE}
_TEMP_PREFIX = ".tmp-"  # hidden: never listed as a dataset, never scanned as a class
_STALE_S = 3600  # a temporary folder this old was left by a killed process
_EXTENSION_OF = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "GIF": ".gif",
    "TIFF": ".tif",
}


class DatasetError(ValueError):
    """A dataset operation that cannot be done; the message says why, in one line."""


@dataclass
class DatasetInfo:
    """What a managed dataset holds.

    Attributes:
        name: Its name (its folder under the data root).
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

    @property
    def images(self) -> int:
        """Number of image files."""
        return sum(self.classes.values())


# ----- names ----------------------------------------------------------------------------------
def check_new_name(name: str) -> str:
    """``name`` stripped, if it can name a new dataset; else DatasetError saying why."""
    name = str(name).strip()
    if not DATASET_NAME_RE.match(name) or name.lower() in _RESERVED_NAMES:
        raise DatasetError(
            f"{name!r} cannot name a dataset: use 1 to 64 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit (and not 'cifar10' or 'weights')."
        )
    if (paths.data_dir() / name).exists():
        raise DatasetError(_TAKEN.format(name=name))
    return name


def clean_component(text: str, what: str, limit: int) -> str:
    """One path component from outside (a browser, a zip): NFC, trimmed, checked.

    Raises:
        DatasetError: it is empty, dot-only, hidden, too long, or holds a separator or a
            control character.
    """
    text = unicodedata.normalize("NFC", str(text)).strip()
    if not text or set(text) <= {"."}:
        raise DatasetError(f"{what} {text!r} is empty or only dots.")
    if "/" in text or "\\" in text or any(unicodedata.category(c)[0] == "C" for c in text):
        raise DatasetError(f"{what} {text!r} holds a path separator or a control character.")
    if text.startswith("."):
        raise DatasetError(f"{what} {text!r} starts with a dot (hidden files are ignored).")
    if len(text) > limit or len(text.encode()) > 255:
        raise DatasetError(f"{what} {text[:40]!r}… is longer than {limit} characters.")
    return text


def clean_class_name(name: str) -> str:
    """A class name from outside, checked (see :func:`clean_component`); split folder names and
    the dataset's own file names are refused."""
    name = clean_component(name, "Class name", MAX_CLASS_NAME)
    if name.lower() in RESERVED_CLASS_NAMES:
        raise DatasetError(
            f"{name!r} cannot name a class: it is reserved for the dataset's "
            "split folders and files."
        )
    return name


def clean_file_name(name: str, image_format: str) -> str:
    """An uploaded image's file name: its last path part, cleaned, with an image extension
    (the decoded format's when the name has none), shortened to :data:`MAX_FILE_NAME`."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    base = (
        "".join(c for c in unicodedata.normalize("NFC", base) if unicodedata.category(c)[0] != "C")
        .strip()
        .lstrip(".")
    )
    stem, ext = os.path.splitext(base)
    if ext.lower() not in IMAGE_EXTENSIONS:
        stem, ext = base, _EXTENSION_OF.get(image_format, ".png")
    stem = stem.strip() or "image"
    stem = stem[: MAX_FILE_NAME - len(ext)]
    while len((stem + ext).encode()) > 255:
        stem = stem[:-1]
    return clean_component(stem + ext, "File name", MAX_FILE_NAME)


# ----- reading ----------------------------------------------------------------------------------
def path_of(name: str) -> Path:
    """The folder of the managed dataset ``name``.

    Raises:
        DatasetError: there is no such dataset.
    """
    if name not in list_datasets():
        raise DatasetError(f"No dataset named {name!r} under the data root.")
    return paths.data_dir() / name


def read_meta(folder: Path) -> dict:
    """A dataset's ``dataset.json`` (empty when absent or not ours)."""
    try:
        with open(Path(folder) / META_FILE, "rb") as f:
            data = json.loads(f.read(65536))  # ours are tiny; a bigger one is not ours
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def owner_of(name: str) -> str | None:
    """The owner tag recorded for dataset ``name``, or None."""
    return _owner(read_meta(path_of(name)))


def owners() -> dict[str, str | None]:
    """Every managed dataset's owner tag (None: no owner), by name, in one listing."""
    return {name: _owner(read_meta(paths.data_dir() / name)) for name in list_datasets()}


def _owner(meta: dict) -> str | None:
    owner = meta.get("owner")
    return owner if isinstance(owner, str) and owner else None


def info(name: str) -> DatasetInfo:
    """What dataset ``name`` holds (half-built datasets included: empty classes count 0)."""
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
        name,
        owner_of(name),
        created if isinstance(created, (int, float)) else None,
        str(meta.get("source", "")),
        tuple(_split_dirs(folder)),
        counts,
    )


def list_images(name: str, class_name: str) -> list[str]:
    """Image files of one class, as paths relative to the dataset (all its splits)."""
    folder = path_of(name)
    parts, class_names = scan(folder, strict=False)
    if class_name not in class_names:
        raise DatasetError(f"Dataset {name!r} has no class {class_name!r}.")
    label = class_names.index(class_name)
    return [
        path
        for files in relative_files(folder, parts).values()
        for path, lab in files
        if lab == label
    ]


def can_use(name: str, user: str | None) -> bool:
    """Whether ``user`` may read (train on, check) dataset ``name``: its own, the ownerless
    ones, and every one for the operator (None)."""
    if name not in list_datasets():
        return False
    owner = owner_of(name)
    return user is None or owner is None or owner == user


def check_use(name: str, user: str | None) -> None:
    """Raise unless ``name`` is "cifar10" or a dataset ``user`` may use (:func:`can_use`).

    Raises:
        DatasetError: one line, the same for a deleted and for another visitor's dataset.
    """
    if str(name).strip().lower() == "cifar10":
        return
    if not can_use(str(name), user):
        raise DatasetError(gone_message(name))


def managed_job(args: dict, name: str) -> bool:
    """For a job's ``args``: whether it came from the app (``args["managed"]``), in which case its
    dataset ``name`` is checked again here, in the worker (:func:`check_use` for
    ``args["user"]``), and must be resolved under the data root only
    (:func:`core.data.catalog.resolve` with ``managed_only``). The command line passes paths.

    Raises:
        DatasetError: an app job's dataset is gone or not this visitor's to use.
    """
    if not args.get("managed"):
        return False
    user = args.get("user")
    check_use(name, user if isinstance(user, str) and user else None)
    return True


def can_edit(name: str, owner: str | None) -> bool:
    """Whether ``owner`` may change dataset ``name`` (None, the operator, may change any)."""
    return owner is None or owner_of(name) == owner


# ----- changing ---------------------------------------------------------------------------------
def create(name: str, owner: str | None, classes=(), source: str = "created in the app") -> Path:
    """Create an empty dataset, optionally with (empty) class folders; returns its folder."""
    name = check_new_name(name)
    class_names = [clean_class_name(c) for c in classes]
    tmp = temp_dir(name)
    try:
        for class_name in class_names:
            (tmp / class_name).mkdir()
        write_meta(tmp, owner, source)
        return publish(tmp, name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def delete(name: str, owner: str | None) -> None:
    """Delete dataset ``name`` and all its files (it vanishes at once, then is removed)."""
    folder = _editable(name, owner)
    gone = paths.data_dir() / f"{_TEMP_PREFIX}deleted-{name}-{uuid.uuid4().hex[:8]}"
    os.rename(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)


def add_class(name: str, class_name: str, owner: str | None) -> None:
    """Add an empty class folder (in every split folder the dataset has)."""
    folder = _editable(name, owner)
    class_name = clean_class_name(class_name)
    dirs = _class_dirs(folder, class_name)
    if any(d.exists() for d in dirs):
        raise DatasetError(f"Dataset {name!r} already has a class {class_name!r}.")
    for d in dirs:
        d.mkdir(parents=True)


def rename_class(name: str, old: str, new: str, owner: str | None) -> None:
    """Rename a class (its folder in every split); its images keep their split."""
    folder = _editable(name, owner)
    new = clean_class_name(new)
    olds = [d for d in _class_dirs(folder, old) if d.is_dir()]
    if not olds:
        raise DatasetError(f"Dataset {name!r} has no class {old!r}.")
    if any(d.exists() for d in _class_dirs(folder, new)):
        raise DatasetError(f"Dataset {name!r} already has a class {new!r}.")
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
        raise DatasetError(f"Dataset {name!r} has no class {class_name!r}.")
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
        raise DatasetError(f"Dataset {name!r} has no class {class_name!r}.")
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
            raise DatasetError(f"{rel!r} is not an image of dataset {name!r}.")
        try:
            path.unlink()
            count += 1
        except FileNotFoundError:
            pass
    _refresh_splits(folder)
    return count


# ----- building blocks (also used by the zip import) ---------------------------------------------
def temp_dir(name: str) -> Path:
    """A new hidden folder in the data root to build dataset ``name`` in (same file system, so
    :func:`publish` is one rename); stale ones left by killed processes are removed first."""
    root = paths.data_dir()
    _remove_stale(root)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{name}-", dir=root))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a dataset is an ordinary folder
    return tmp


def write_meta(folder: Path, owner: str | None, source: str) -> None:
    """Write ``dataset.json``: owner tag (None: read-only in the app), time and source."""
    write_json(
        Path(folder) / META_FILE, {"owner": owner, "created": time.time(), "source": source[:200]}
    )


def publish(tmp: Path, name: str) -> Path:
    """Rename a fully built ``tmp`` folder to dataset ``name``, atomically; never replaces one.

    Raises:
        DatasetError: the name was taken meanwhile.
    """
    final = paths.data_dir() / name
    if final.exists():
        raise DatasetError(_TAKEN.format(name=name))
    try:
        os.rename(tmp, final)  # onto an existing non-empty folder this fails: never a merge
    except OSError as exc:
        raise DatasetError(f"Could not create dataset {name!r}: {exc.strerror or exc}.") from exc
    return final


def _remove_stale(root: Path) -> None:
    now = time.time()
    for entry in root.glob(f"{_TEMP_PREFIX}*"):
        try:
            if entry.is_dir() and now - entry.stat().st_mtime > _STALE_S:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _editable(name: str, owner: str | None) -> Path:
    folder = path_of(name)
    if not can_edit(name, owner):
        raise DatasetError(
            f"Dataset {name!r} can only be changed by the browser session that created it "
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


def require_space(nbytes: int) -> None:
    """Raise DatasetError unless writing ``nbytes`` leaves :data:`MIN_FREE_BYTES` free."""
    free = shutil.disk_usage(paths.data_dir()).free
    if free - nbytes < MIN_FREE_BYTES:
        raise DatasetError(
            f"The data disk is almost full ({free / 2**30:.1f} GB free): nothing was written."
        )


def _write_new(folder: Path, file_name: str, data: bytes) -> Path:
    """Write ``data`` under ``file_name`` in ``folder``, or ``stem-2.ext``… if that is taken."""
    fd, tmp = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        stem, ext = os.path.splitext(file_name)
        for i in range(1, 10_000):
            final = folder / (file_name if i == 1 else f"{stem}-{i}{ext}")
            try:
                os.link(tmp, final)  # fails if the name exists: never overwrites an image
                return final
            except FileExistsError:
                continue
        raise DatasetError(f"Too many images named like {file_name!r}.")
    finally:
        os.unlink(tmp)


def _refresh_splits(folder: Path) -> None:
    """Assign new images, forget removed ones (best effort: a broken layout is reported by the
    health check, not here)."""
    try:
        splits.ensure(folder)
    except DataError:
        pass
