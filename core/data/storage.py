"""Building a managed dataset on disk, atomically (used by :mod:`core.data.datasets` and the zip
import, :mod:`core.data.zipimport`).

A new dataset is built in a hidden temporary folder in the data root (same file system) and
renamed into place complete, never onto an existing one; each image is written to a temporary
file and linked into place under a name no other image has; nothing is written that would leave
less than :data:`MIN_FREE_BYTES` free.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from core.data.catalog import DatasetError, data_root, ensure_id
from core.data.names import META_FILE
from core.platform import paths
from core.platform.fileio import write_json

MIN_FREE_BYTES = 1 << 30  # refuse to fill the disk: keep at least this much free
_TEMP_PREFIX = ".tmp-"  # hidden: never listed as a dataset, never scanned as a class
_STALE_S = 3600  # a temporary folder this old was left by a killed process


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
    """Write ``dataset.json``: owner tag (None: read-only in the app), time and source; and give
    the new dataset its immutable id (:func:`core.data.catalog.ensure_id`)."""
    write_json(
        Path(folder) / META_FILE, {"owner": owner, "created": time.time(), "source": source[:200]}
    )
    ensure_id(folder)


def publish(tmp: Path, name: str, owner: str | None = None) -> Path:
    """Rename a fully built ``tmp`` folder to ``owner``'s dataset ``name``, atomically; never
    replaces one.

    Raises:
        DatasetError: the name was taken meanwhile.
    """
    final = data_root(owner) / name
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        raise DatasetError(f"A dataset named {name!r} already exists: choose another name.")
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
