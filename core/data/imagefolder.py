"""Reading an image folder: its layout, its images decoded to uint8 arrays, and a disk cache.

Layouts (one subfolder per class, any depth of images below it):

- ``root/train/<class>/*`` with ``root/val/<class>/*`` and/or ``root/test/<class>/*``: the given
  splits (a missing one is carved from train/ by :func:`core.data.loading.load_image_folder`);
- ``root/<class>/*`` (or ``root/train/<class>/*`` alone): all images, split later.

Decoding a folder of JPEGs is the slow part, so the decoded arrays are cached on disk under
``paths.cache_dir() / "datasets"``, keyed by the folder's contents (relative paths, sizes, mtimes)
and the storage size: a second load of the 60 000 CIFAR-10 images takes about two seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from core.data.catalog import DataError, describe
from core.data.images import Preprocessing, decode_file
from core.platform import cache, paths
from core.platform.fileio import atomic_path

if TYPE_CHECKING:
    from core.platform.progress import Progress

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Bump when the cached arrays' meaning changes (decoding, resizing), so old caches are not reused.
_CACHE_VERSION = 5  # 5: photos decode as the plain resize, reduced only when 16 × larger
_CHUNK = 256  # images per decoding task: progress and stop checks happen between chunks
_TINY_FILE_BYTES = 16 * 1024  # files smaller than this on average decode fastest on one thread


@dataclass
class FolderArrays:
    """A folder's images as arrays, per part of its layout.

    Attributes:
        parts: Part name ("train", "val", "test" or "all") → the folder it came from.
        arrays: ``x_<part>`` uint8 (N, S, S, 3) and ``y_<part>`` int64 labels for each part, and
            ``k_<part>``: the rows' indices into ``files[part]`` (unreadable files have none).
        class_names: Class names in label order.
        skipped: Image files that could not be decoded and were left out.
        how: "decoded", "decoded, cached" or "cache hit".
        files: Part name → every image file found, as ``(path relative to the root, label)``.
    """

    parts: dict[str, Path]
    arrays: dict[str, np.ndarray]
    class_names: list[str]
    skipped: int
    how: str
    files: dict[str, list[tuple[str, int]]]


def read_folder(
    root: Path, storage_size: int | None, progress: Progress | None, use_cache: bool
) -> FolderArrays:
    """Scan ``root``'s layout and decode (or load from the cache) every image in it.

    Raises:
        DataError: The folder is missing, unreadable or has a wrong layout, or a class has no
            readable image.
    """
    parts, class_names = scan(root)
    storage_size = int(storage_size or _default_storage_size(parts))
    key = _cache_key(root, parts, storage_size)
    cache_file = _cache_file(root, storage_size, key)

    arrays, skipped, how = None, 0, "decoded"
    if use_cache and cache_file.exists():
        try:
            with np.load(cache_file, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files if name != "meta"}
                skipped = int(json.loads(str(npz["meta"]))["skipped"])
            how = "cache hit"
            cache.touch(cache_file)
        except Exception:  # a damaged cache file is not an error: decode again and rewrite it
            arrays = None
    if arrays is None:
        arrays, skipped = _decode_parts(parts, class_names, storage_size, progress)
        if use_cache:
            how = "decoded, cached" if _write_cache(cache_file, arrays, skipped) else how

    for name, (folder, _) in parts.items():  # every class must keep at least one readable image
        counts = np.bincount(arrays[f"y_{name}"], minlength=len(class_names))
        if not counts.all():
            empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
            raise DataError(
                f"No readable image in class folder(s) {', '.join(map(repr, empty))} under "
                f"{describe(folder)}: every file there failed to decode. Replace or remove those files."
            )
    return FolderArrays(
        {name: folder for name, (folder, _) in parts.items()},
        arrays,
        class_names,
        skipped,
        how,
        relative_files(root, parts),
    )


def relative_files(root: Path, parts: dict) -> dict[str, list[tuple[str, int]]]:
    """Part name → ``(path relative to root, label)`` of each file :func:`scan` listed."""
    start = len(os.path.join(str(root), ""))  # every entry.path begins with root + separator
    return {
        name: [(entry.path[start:], label) for label, entry in files]
        for name, (_, files) in parts.items()
    }


# ----- folder scanning ----------------------------------------------------------------------------
def scan(root: Path, strict: bool = True) -> tuple[dict[str, tuple[Path, list]], list[str]]:
    """Find ``root``'s layout and list its image files (nothing is decoded).

    Args:
        root: The dataset folder.
        strict: Raise for what training cannot use (an empty class, a single class, no image);
            False lists such a half-built dataset as it is (the health check reports it).

    Returns:
        ``(parts, class_names)``: part name ("train", "val", "test" or "all") → ``(folder,
        [(label, os.DirEntry)])``, and the class names in label order.

    Raises:
        DataError: The folder is missing or unreadable, or has a wrong layout.
    """
    try:
        return _scan_layout(root, strict)
    except OSError as exc:  # no permission, a vanished folder, an I/O error
        where = exc.filename or root
        raise DataError(f"cannot read {describe(where)}: {exc.strerror or exc}") from exc


def _scan_layout(root: Path, strict: bool = True) -> tuple[dict[str, tuple[Path, list]], list[str]]:
    """Find the layout and list the image files; raise DataError for a wrong layout."""
    if not root.exists():
        raise DataError(
            f"Dataset folder not found: {describe(root)}. Give an existing folder with one subfolder per "
            "class (or train/ and test/ subfolders that each have one subfolder per class)."
        )
    if not root.is_dir():
        raise DataError(
            f"{describe(root)} is a file, not a folder: give a folder with one subfolder per class."
        )
    train = root / "train"
    given = {name: root / name for name in ("val", "test") if (root / name).is_dir()}
    if train.is_dir() and given:
        train_files, class_names = _scan_classes(train, strict)
        parts = {"train": (train, train_files)}
        for name, folder in given.items():
            files, names = _scan_classes(folder, strict)
            if names != class_names:
                missing = sorted(set(class_names) - set(names))
                extra = sorted(set(names) - set(class_names))
                raise DataError(
                    f"The {name}/ split in {describe(root)} has different classes from train/ (missing in "
                    f"{name}/: {missing or 'none'}; not in train/: {extra or 'none'}). Every split "
                    "needs the same class subfolders."
                )
            parts[name] = (folder, files)
        return parts, class_names
    # A lone train/ of class folders is the whole dataset; otherwise the root holds the classes.
    folder = train if train.is_dir() and _subdirs(train) else root
    files, class_names = _scan_classes(folder, strict)
    return {"all": (folder, files)}, class_names


def _default_storage_size(parts: dict, cap: int = 64) -> int:
    """``cap``, or the largest short side among each class's first image when that is smaller."""
    firsts, seen = [], set()
    for _, files in parts.values():
        for label, entry in files:
            if label not in seen:
                seen.add(label)
                firsts.append(entry.path)
    sides = []
    for path in firsts:
        try:
            with Image.open(path) as im:  # reads the header only
                sides.append(min(im.size))
        except Exception:  # an unreadable sample says nothing about the size
            pass
    return min(cap, max(sides, default=cap))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_classes(
    folder: Path, strict: bool = True
) -> tuple[list[tuple[int, os.DirEntry]], list[str]]:
    """List (label, file entry) for every image below each class subfolder of ``folder``."""
    exts = "/".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    class_dirs = _subdirs(folder)
    if not strict:
        return [
            (label, entry) for label, d in enumerate(class_dirs) for entry in _walk_images(d)
        ], [d.name for d in class_dirs]
    if not class_dirs:
        loose = any(_is_image(p.name) for p in folder.iterdir())
        raise DataError(
            f"{describe(folder)} holds images but no class subfolders: put each class's images "
            "in its own subfolder (e.g. cat/*.jpg)."
            if loose
            else f"No images found in {describe(folder)}: expected one subfolder per class, each holding image "
            f"files ({exts})."
        )
    files, empty = [], []
    for label, class_dir in enumerate(class_dirs):
        found = _walk_images(class_dir)
        if not found:
            empty.append(class_dir.name)
        files.extend((label, entry) for entry in found)
    if not files:
        raise DataError(
            f"No images found in {describe(folder)}: its class subfolders hold no image files ({exts})."
        )
    if empty:
        raise DataError(
            f"Class folder(s) {', '.join(map(repr, empty))} in {describe(folder)} contain no "
            "images "
            f"({exts}); add images or remove the folder(s)."
        )
    if len(class_dirs) < 2:
        raise DataError(
            f"Only one class ({class_dirs[0].name!r}) found in {describe(folder)}: a classifier needs at "
            "least two class subfolders."
        )
    return files, [d.name for d in class_dirs]


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _walk_images(folder: Path) -> list[os.DirEntry]:
    """Image files below ``folder`` (recursively), in a stable sorted order."""
    found, dirs = [], []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_dir() and not entry.name.startswith("."):
                dirs.append(entry.path)
            elif entry.is_file() and _is_image(entry.name):
                found.append(entry)
    found.sort(key=lambda e: e.name)
    for sub in sorted(dirs):
        found.extend(_walk_images(Path(sub)))
    return found


# ----- cache --------------------------------------------------------------------------------------
def _cache_key(root: Path, parts: dict, storage_size: int) -> str:
    """Hash of every image's relative path, size and mtime, plus the storage size."""
    h = hashlib.sha256(f"v{_CACHE_VERSION} size={storage_size}\n".encode())
    start = len(os.path.join(str(root), ""))  # every entry.path begins with root + separator
    lines = []
    for name, (_, files) in parts.items():
        for label, entry in files:
            st = entry.stat()
            lines.append(f"{name}\t{label}\t{entry.path[start:]}\t{st.st_size}\t{st.st_mtime_ns}\n")
    h.update("".join(lines).encode())
    return h.hexdigest()


def _cache_file(root: Path, storage_size: int, key: str) -> Path:
    """Cache path: a tag of the folder's location (to prune stale versions) plus the content key."""
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    return paths.cache_dir() / "datasets" / f"{tag}-s{storage_size}-{key[:24]}.npz"


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray], skipped: int) -> bool:
    """Write the arrays atomically and drop older caches of the same folder; False if it failed."""
    try:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as f:
            # Uncompressed on purpose: loading must be disk-speed, not zlib-speed.
            np.savez(f, meta=np.array(json.dumps({"skipped": skipped})), **arrays)
        prefix = cache_file.name.rsplit("-", 1)[0] + "-"
        for old in cache_file.parent.glob(prefix + "*.npz"):
            if old != cache_file:
                old.unlink(missing_ok=True)
        cache.prune(keep=cache_file)
        return True
    except OSError:  # a full or read-only disk costs speed next time, not this load
        return False


# ----- decoding -----------------------------------------------------------------------------------
def storage_preprocessing(size: int) -> Preprocessing:
    """How dataset images become stored size×size arrays: the largest central square, bicubic.

    Saved with every run, so classification prepares images exactly as training stored them.
    """
    return Preprocessing(int(size), 1.0, "bicubic")


def map_chunks(pool: ThreadPoolExecutor, work, n: int, progress: Progress | None = None) -> None:
    """Run ``work(rows)`` on ``pool`` over ``range(n)`` in chunks of :data:`_CHUNK` rows.

    Chunks finish in order for ``progress`` (advanced after each, then a stop request raises
    :class:`~core.platform.progress.Stopped`); on a stop or an error, the chunks not yet started are
    cancelled before the exception goes on.
    """
    chunks = [range(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]
    futures = [pool.submit(work, rows) for rows in chunks]
    try:
        for future, rows in zip(futures, chunks):
            future.result()
            if progress is not None:
                progress.advance(len(rows))
                progress.check_stop()
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _decode_threads(parts: dict, sample: int = 64) -> int:
    """Threads for decoding ``parts``' files: several for photos, one for tiny files.

    PIL releases the GIL while it decodes and resizes, so threads pay off for photos. For tiny
    files (CIFAR-10's 32×32 JPEGs are ~1 KB) the Python-side work per file dominates and the
    threads fight over the GIL: on this 2-core machine 60 000 CIFAR JPEGs decode at ~4 100 img/s
    with 3 threads against ~7 000 img/s with one.
    """
    files = [entry for _, entries in parts.values() for _, entry in entries[:sample]]
    try:
        sizes = [entry.stat().st_size for entry in files[:sample]]
    except OSError:
        sizes = []
    if sizes and sum(sizes) / len(sizes) < _TINY_FILE_BYTES:
        return 1
    return min(4, (os.cpu_count() or 1) + 1)


def _decode_parts(
    parts: dict, class_names: list[str], size: int, progress: Progress | None
) -> tuple[dict[str, np.ndarray], int]:
    """Decode every part's files in a thread pool; unreadable files are dropped and counted."""
    total = sum(len(files) for _, files in parts.values())
    if progress is not None:
        progress.start("Decoding images", total, "img")
    arrays, skipped = {}, 0
    preprocessing = storage_preprocessing(size)
    with ThreadPoolExecutor(max_workers=_decode_threads(parts)) as pool:
        for name, (_, files) in parts.items():
            x = np.empty((len(files), size, size, 3), np.uint8)
            ok = np.zeros(len(files), bool)

            def work(rows: range, x=x, files=files, ok=ok) -> None:
                for i in rows:
                    try:
                        x[i] = decode_file(files[i][1].path, preprocessing)
                        ok[i] = True
                    except Exception:  # PIL raises many types for broken files; all mean "skip"
                        pass

            map_chunks(pool, work, len(files), progress)
            labels = np.fromiter((label for label, _ in files), np.int64, len(files))
            arrays[f"x_{name}"], arrays[f"y_{name}"] = x[ok], labels[ok]
            arrays[f"k_{name}"] = np.flatnonzero(ok)
            skipped += int((~ok).sum())
    return arrays, skipped
