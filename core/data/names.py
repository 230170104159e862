"""Names from outside (a browser, a zip) for datasets, classes and image files, checked and
cleaned before they touch the disk: no path separators, no hidden or dot-only names, no control
characters, bounded length, and nothing that the layout scan would read as something else (a
split folder, a dataset's own files). Each refusal is a
:class:`~core.data.catalog.DatasetError` saying why.
"""

from __future__ import annotations

import os
import unicodedata

from core.data.catalog import _RESERVED_NAMES, DATASET_NAME_RE, ID_FILE, DatasetError, data_root
from core.data.imagefolder import IMAGE_EXTENSIONS
from core.data.splits import SPLITS_FILE

META_FILE = "dataset.json"  # a dataset's own file: who made it, and how
MAX_CLASS_NAME = 64  # characters
MAX_FILE_NAME = 120  # characters, extension included
# Class names the layout scan reads as split folders, and the dataset's own files.
RESERVED_CLASS_NAMES = {"train", "val", "test", META_FILE, SPLITS_FILE, ID_FILE}
_EXTENSION_OF = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "GIF": ".gif",
    "TIFF": ".tif",
}


def check_new_name(name: str, owner: str | None = None) -> str:
    """``name`` stripped, if it can name a new dataset of ``owner`` (in its data root: another
    workspace's names are neither checked nor told); else DatasetError saying why."""
    name = str(name).strip()
    if not DATASET_NAME_RE.match(name) or name.lower() in _RESERVED_NAMES:
        raise DatasetError(
            f"{name!r} cannot name a dataset: use 1 to 64 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit (and not 'cifar10' or 'weights')."
        )
    if (data_root(owner) / name).exists():
        raise DatasetError(f"A dataset named {name!r} already exists: choose another name.")
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
