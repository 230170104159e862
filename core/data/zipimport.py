"""Importing a zip of images as a new managed dataset, safely, whatever the zip holds.

The zip holds one folder per class (or ``train/``, ``val/``, ``test/`` folders of class folders),
optionally inside one wrapper folder. What makes the import safe:

- **No entry is written outside the dataset**: names with ``..``, absolute paths, drive letters,
  backslashes or control characters are refused; every path component is cleaned like a name
  from a browser (:func:`core.data.names.clean_component`), and files are created with
  ``O_EXCL | O_NOFOLLOW`` inside a folder this import made.
- **Symlinks and special files** (per the entry's Unix mode) are skipped, never created.
- **Junk** (``__MACOSX``, hidden files, non-images, encrypted entries) is skipped and listed.
- **Bounded size**: the entry count and the central directory are checked from the zip's own
  end record *before* ``zipfile`` parses anything (:func:`directory_size`); the declared sizes
  are capped per entry and in total; extraction is streamed in 1 MiB pieces and counts the bytes
  it actually gets, since a zip can lie about them.
- **Every image is decoded** (:func:`core.data.images.load_image`, with its pixel limits); files that
  fail are removed and listed.
- **Atomic**: everything is extracted into a hidden folder in the data root and renamed into
  place at the end; a failed (or stopped) import removes that folder and leaves nothing behind.

The app runs an import as a job (kind ``zip_import``, :func:`import_job`) in a worker process:
the page saves the upload as a hidden *staging file* in the workspace's data folder
(:func:`stage_upload`, after the quota check; it counts against the quota while it exists), and
the job consumes and deletes it, reporting entries done of the total (and the bytes written),
and stops at the next entry on Stop. The command line calls :func:`import_zip` directly (it is
already a process of its own).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO

from core.data import datasets, names, splits
from core.data.catalog import DataError, DatasetError, data_root
from core.data.imagefolder import IMAGE_EXTENSIONS, scan
from core.data.images import MAX_FILE_BYTES, ImageError, load_image
from core.data.storage import _TEMP_PREFIX
from core.platform import workspaces
from core.platform.progress import Stopped

MAX_ENTRIES = 100_000  # files and folders in one zip
MAX_ENTRY_BYTES = MAX_FILE_BYTES  # uncompressed, per image (the image decoder's own limit)
MAX_TOTAL_BYTES = 4 * 2**30  # uncompressed, all images together
MAX_DEPTH = 8  # folders deep
_MAX_RECORD_BYTES = 600  # central directory per allowed entry: 46 bytes + name (+ extra)
_CHUNK = 1 << 20
_REPORT_LIMIT = 500  # skipped / invalid entries listed in the report (all are counted)
_SPLITS = ("train", "val", "test")
_DRIVE = re.compile(r"^[A-Za-z]:")
# A staging file: hidden (never listed as a dataset), named by a random id, never by a path.
_STAGING_PREFIX = f"{_TEMP_PREFIX}upload-"
_STAGING_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# Job folders are pruned after a day (core.jobs.queue), so a staging file older than that has no
# job left to consume it: an abandoned upload, removed like the other stale temporary files.
_STAGING_STALE_S = 86400


class ZipImportError(DatasetError):
    """The zip cannot be imported (nothing was written); the message says why."""


def import_zip(
    source: str | os.PathLike | IO[bytes],
    name: str,
    owner: str | None,
    *,
    label: str | None = None,
    progress=None,
    room: Callable[[int], None] | None = None,
) -> dict:
    """Import a zip as the new dataset ``name``.

    Args:
        source: The zip's path, or a seekable binary file object (a browser upload).
        name: The new dataset's name (:func:`core.data.names.check_new_name`).
        owner: The owner tag to record (None: read-only in the app; see :mod:`core.data.datasets`).
        label: How to name the zip in the dataset's record (default: its file name).
        progress: Optional :class:`core.platform.progress.Progress` (units: entries); a stop
            request ends the import at the next entry (:class:`~core.platform.progress.Stopped`,
            nothing kept).
        room: Called with the images' declared uncompressed bytes before anything is written
            (a workspace's quota check, which raises to refuse).

    Returns:
        A JSON-ready report: ``name``, ``classes`` ({name: images}), ``images``,
        ``split_folders`` (the zip's train/val/test folders, kept), ``stored_split`` (images per
        split stored in splits.json for the splits it lacks), ``skipped`` and ``invalid``
        (lists of {entry, reason}, the first few hundred) with their counts, and ``bytes``.

    Raises:
        ZipImportError: not a zip, too many entries, too big, no usable class folders, ...
        DatasetError: a bad or taken name.
    """
    name = names.check_new_name(name, owner)
    label = label or (Path(source).name if isinstance(source, (str, os.PathLike)) else "upload")
    # closed in `finally`; a file object the caller passed stays theirs to close
    opened = open(source, "rb") if isinstance(source, (str, os.PathLike)) else None  # noqa: SIM115
    f = opened or source
    try:
        entries = directory_size(f)
        if entries > MAX_ENTRIES:
            raise ZipImportError(f"The zip has {entries} entries; the limit is {MAX_ENTRIES}.")
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
            raise ZipImportError(f"Not a readable zip file: {exc}.") from exc
        with zf:
            plan, skipped = _plan(zf.infolist())
            return _extract(zf, plan, skipped, name, owner, label, progress, room)
    except OSError as exc:
        raise ZipImportError(f"Could not read the zip: {exc.strerror or exc}.") from exc
    finally:
        if opened is not None:
            opened.close()


# ----- reading the zip's directory without trusting it ---------------------------------------
def directory_size(f: IO[bytes]) -> int:
    """Count the zip's central-directory records, reading them one by one.

    ``zipfile`` builds an object for every record before anyone can count them, so a small zip
    with millions of empty entries would exhaust memory; this walk needs one record at a time.
    It reads the end records exactly as ``zipfile`` will (the ZIP64 record wins whenever its
    locator is there, whatever the classic record says), so the directory it bounds and walks
    is the one ``zipfile`` would parse.

    Raises:
        ZipImportError: no end record, end records that disagree, a directory larger than the
            file or than :data:`MAX_ENTRIES` entries can need, or one that does not add up.
    """
    f.seek(0, os.SEEK_END)
    size = f.tell()
    eocd, count, cd_size = _end_record(f, size)
    end = eocd
    zip64 = _zip64_record(f, eocd)
    if zip64 is not None:
        count64, cd_size64 = zip64
        # A classic field is either saturated (its ZIP64 twin holds the real number) or equal to
        # it; anything else is a zip that tells two stories, and zipfile would believe the bigger.
        if (count not in (0xFFFF, count64)) or (cd_size not in (0xFFFFFFFF, cd_size64)):
            raise ZipImportError("Not a valid zip file (its end records disagree).")
        count, cd_size, end = count64, cd_size64, eocd - 20 - 56
    if count > MAX_ENTRIES or cd_size > MAX_ENTRIES * _MAX_RECORD_BYTES:
        raise ZipImportError(
            f"The zip's directory is too large (more than {MAX_ENTRIES} "
            "entries, or names too long)."
        )
    start = end - cd_size
    if start < 0 or cd_size > size:
        raise ZipImportError("Not a valid zip file (directory out of bounds).")
    f.seek(start)
    records, pos = 0, 0
    while pos < cd_size:
        header = f.read(46)
        if len(header) < 46 or header[:4] != b"PK\x01\x02":
            raise ZipImportError("Not a valid zip file (damaged directory).")
        name_len, extra_len, comment_len = struct.unpack("<3H", header[28:34])
        skip = name_len + extra_len + comment_len
        f.seek(skip, os.SEEK_CUR)
        pos += 46 + skip
        records += 1
        if records > MAX_ENTRIES:
            break
    f.seek(0)
    return records


def _end_record(f: IO[bytes], size: int) -> tuple[int, int, int]:
    """``(offset, entries, directory bytes)`` of the classic end record, found as ``zipfile``
    finds it (the last 22 bytes when the zip has no comment, else the last signature)."""
    tail_len = min(size, 22 + 65535)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    last = tail[-22:]
    if len(last) == 22 and last[:4] == b"PK\x05\x06" and last[-2:] == b"\0\0":
        at = len(tail) - 22
    else:
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ZipImportError("Not a zip file (no end-of-directory record).")
    _, _, _, _, count, cd_size, _, _ = struct.unpack("<4s4H2LH", tail[at : at + 22])
    return size - tail_len + at, count, cd_size


def _zip64_record(f: IO[bytes], eocd: int) -> tuple[int, int] | None:
    """``(entries, directory bytes)`` from the ZIP64 end record, when ``zipfile`` would use one:
    its locator right before the classic record, and the record right before the locator."""
    if eocd < 20:
        return None
    f.seek(eocd - 20)
    locator = f.read(20)
    if locator[:4] != b"PK\x06\x07":
        return None
    _, disk, _, disks = struct.unpack("<4sLQL", locator)
    if disk != 0 or disks > 1:
        raise ZipImportError("Zip files split over several disks are not supported.")
    if eocd < 20 + 56:
        return None
    f.seek(eocd - 20 - 56)
    record = f.read(56)
    if record[:4] != b"PK\x06\x06":
        return None
    count_here, count, cd_size = struct.unpack("<3Q", record[24:48])
    return max(count_here, count), cd_size


# ----- deciding what to extract ---------------------------------------------------------------
def _entry_problem(info: zipfile.ZipInfo) -> tuple[str | None, list[str]]:
    """``(why it is skipped, or None; its path components)`` for one entry."""
    name = info.filename
    if "\x00" in name or "\\" in name:
        return "unsafe name (backslash or NUL)", []
    if name.startswith("/") or _DRIVE.match(name):
        return "unsafe name (absolute path)", []
    parts = name.rstrip("/").split("/") if info.is_dir() else name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "unsafe name (empty, '.' or '..' component)", []
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return "junk (hidden file or macOS metadata)", []
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symlink (never followed)", []
    if info.is_dir():
        return "", parts  # folders are made as needed; nothing to report
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return "special file (not a regular file)", []
    if info.flag_bits & 0x1:
        return "encrypted", []
    if not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
        return "not an image file", []
    if len(parts) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} folders", []
    if info.file_size > MAX_ENTRY_BYTES:
        return f"larger than {MAX_ENTRY_BYTES // 2**20} MB uncompressed", []
    try:
        parts = [names.clean_component(p, "Name", 255) for p in parts]
    except DatasetError as exc:
        return f"unsafe name ({exc})", []
    return None, parts


def _plan(infos: list[zipfile.ZipInfo]) -> tuple[list[tuple[zipfile.ZipInfo, list[str]]], list]:
    """The entries to extract with their target paths (wrapper folder removed, layout checked),
    and the skipped ones with reasons."""
    keep, skipped = [], []
    for info in infos:
        problem, parts = _entry_problem(info)
        if problem is None:
            keep.append((info, parts))
        elif problem:
            skipped.append({"entry": info.filename[:300], "reason": problem})
    # One wrapper folder around everything ("photos/cat/1.jpg"): drop it.
    while keep and all(len(p) >= 3 for _, p in keep) and len({p[0] for _, p in keep}) == 1:
        keep = [(info, parts[1:]) for info, parts in keep]
    tops = {parts[0] for _, parts in keep}
    split_layout = "train" in tops and tops <= set(_SPLITS)
    depth = 3 if split_layout else 2  # split/class/file or class/file
    planned = []
    for info, parts in keep:
        if len(parts) < depth:
            skipped.append({"entry": info.filename[:300], "reason": "not inside a class folder"})
            continue
        try:
            names.clean_class_name(parts[depth - 2])
        except DatasetError as exc:
            skipped.append({"entry": info.filename[:300], "reason": str(exc)})
            continue
        planned.append((info, parts))
    declared = sum(info.file_size for info, _ in planned)
    if declared > MAX_TOTAL_BYTES:
        raise ZipImportError(
            f"The zip's images would take {declared / 2**30:.1f} GB "
            f"uncompressed; the limit is {MAX_TOTAL_BYTES / 2**30:.0f} GB."
        )
    return planned, skipped


# ----- extracting -----------------------------------------------------------------------------
def _extract(
    zf: zipfile.ZipFile,
    plan,
    skipped: list,
    name: str,
    owner: str | None,
    label: str,
    progress,
    room: Callable[[int], None] | None = None,
) -> dict:
    if not plan:
        raise ZipImportError(
            "The zip holds no images in class folders (expected "
            "<class>/<image> or train/<class>/<image>)."
        )
    declared = sum(info.file_size for info, _ in plan)
    if room is not None:
        room(declared)  # the quota, before a byte is written
    datasets.require_space(declared)
    tmp = datasets.temp_dir(name)
    invalid, total = [], 0
    if progress is not None:
        progress.start("Importing images", len(plan), "img")
    try:
        for info, parts in plan:
            target = tmp.joinpath(*parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError:  # "a.png" and "a.png/b.png": a file where a folder should be
                invalid.append({"entry": info.filename[:300], "reason": "conflicting path"})
                continue
            written, problem = _stream(zf, info, target, MAX_TOTAL_BYTES - total)
            total += written
            if problem is None:
                try:
                    load_image(target, min_side=32)
                except ImageError as exc:
                    problem = f"not a usable image: {exc}"
            if problem is not None:
                target.unlink(missing_ok=True)
                invalid.append({"entry": info.filename[:300], "reason": problem})
            if progress is not None:
                progress.advance(1)
                progress.message(f"{total / 1e6:.1f} MB written")
                progress.check_stop()  # Stop: at the next entry, and the finally removes tmp
        kept_splits = _drop_empty(tmp)
        classes = _check_layout(tmp)
        datasets.write_meta(tmp, owner, f"zip {label}")
        stored = splits.ensure(tmp)
        datasets.publish(tmp, name, owner)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after publish; after a failure, all of it
    return {
        "name": name,
        "classes": classes,
        "images": sum(classes.values()),
        "split_folders": kept_splits,
        "stored_split": dict(Counter((stored or {}).values())),
        "skipped": skipped[:_REPORT_LIMIT],
        "skipped_count": len(skipped),
        "invalid": invalid[:_REPORT_LIMIT],
        "invalid_count": len(invalid),
        "bytes": total,
    }


def _stream(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int
) -> tuple[int, str | None]:
    """Copy one entry to a new file, counting bytes; returns ``(bytes, problem or None)``.

    Raises:
        ZipImportError: the zip expands beyond the total limit (a bomb lying in its headers).
    """
    limit = min(MAX_ENTRY_BYTES, max(info.file_size, 0))
    written = 0
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return 0, "duplicate entry name"
    try:
        with os.fdopen(fd, "wb") as out, zf.open(info) as src:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > budget:
                    raise ZipImportError(
                        f"The zip expands beyond {MAX_TOTAL_BYTES / 2**30:.0f} GB uncompressed "
                        "(it claims less in its headers): refused."
                    )
                if written > limit:
                    return written, "expands beyond its declared size (refused)"
                out.write(chunk)
    except ZipImportError:
        raise
    except (
        zipfile.BadZipFile,
        EOFError,
        NotImplementedError,
        RuntimeError,
        ValueError,
        OSError,
    ) as exc:  # CRC mismatch, unsupported method, truncated data, zlib errors
        return written, f"damaged in the zip: {exc}"
    except Exception as exc:  # zlib.error and lzma/bz2 errors have no common base
        return written, f"damaged in the zip: {type(exc).__name__}: {exc}"
    return written, None


def _drop_empty(tmp: Path) -> list[str]:
    """Remove folders left empty by invalid images; returns the split folders kept."""
    for folder in sorted((p for p in tmp.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()
    return [s for s in _SPLITS if (tmp / s).is_dir()] if (tmp / "train").is_dir() else []


def _check_layout(tmp: Path) -> dict[str, int]:
    """Class → images, after the layout scan training uses accepted the folder."""
    try:
        parts, class_names = scan(tmp)
    except DataError as exc:  # the message names the temp folder: say the dataset instead
        text = str(exc).replace(f"{tmp}{os.sep}", "").replace(str(tmp), "the zip")
        raise ZipImportError(text) from None
    counts = Counter(class_names[label] for _, files in parts.values() for label, _ in files)
    return {c: counts[c] for c in class_names}


# ----- the import as a job (the app's) -------------------------------------------------------
def staging_path(owner: str | None, staging_id: str) -> Path:
    """The staging file ``staging_id`` of ``owner`` (None: the operator's data root): always a
    hidden file directly in that data folder, whatever ``staging_id`` holds.

    Raises:
        ZipImportError: ``staging_id`` is not a staging id.
    """
    if not isinstance(staging_id, str) or not _STAGING_ID_RE.match(staging_id):
        raise ZipImportError("The uploaded zip is not known here: upload it again.")
    root = data_root(None if owner is None else workspaces.check_tag(owner))
    return root / f"{_STAGING_PREFIX}{staging_id}.zip"


def stage_upload(upload: IO[bytes], owner: str | None) -> str:
    """Save a browser upload as a staging file in ``owner``'s data folder, for a ``zip_import``
    job to consume; the caller checked the quota first. Abandoned staging files (older than a
    day) are removed first.

    Returns:
        The staging id (the job's argument; never a path).
    """
    staging_id = uuid.uuid4().hex
    target = staging_path(owner, staging_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target.parent)
    upload.seek(0)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(upload, out, _CHUNK)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return staging_id


def discard_staged(owner: str | None, staging_id: str) -> None:
    """Remove a staging file whose job was never submitted (the queue refused it)."""
    staging_path(owner, staging_id).unlink(missing_ok=True)


def remove_stale_staging(folder: Path, max_age_s: float = _STAGING_STALE_S) -> int:
    """Remove staging files in ``folder`` older than ``max_age_s``; returns how many."""
    removed, now = 0, time.time()
    for entry in Path(folder).glob(f"{_STAGING_PREFIX}*.zip"):
        try:
            if entry.is_file() and now - entry.stat().st_mtime > max_age_s:
                entry.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def import_job(args: dict, progress) -> dict | None:
    """The ``zip_import`` job: import the staging file ``args["staging"]`` of ``args["owner"]``
    as dataset ``args["name"]``, then delete the staging file, whatever happened.

    Runs in a worker process (:mod:`core.jobs.worker`). The hostile-zip checks of
    :func:`import_zip` all run here; the workspace's quota is checked again against the images'
    declared size (less the staging file, which goes away) before anything is written.

    Returns:
        The import report (:func:`import_zip`), or None when stopped (nothing kept).
    """
    owner = args.get("owner")
    path = staging_path(owner, args.get("staging"))
    try:
        progress.begin()
        try:
            staged = path.stat().st_size
        except OSError:
            raise ZipImportError("The uploaded zip is gone: upload it again.") from None

        def room(nbytes: int) -> None:
            if owner is not None:
                workspaces.require_room(owner, max(0, nbytes - staged), "this zip's images")

        return import_zip(
            path,
            str(args.get("name", "")),
            owner,
            label=str(args.get("label") or "upload"),
            progress=progress,
            room=room,
        )
    except Stopped:
        return None  # import_zip removed its temporary folder: nothing is kept
    finally:
        path.unlink(missing_ok=True)
