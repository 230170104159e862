"""Datasets as in-memory uint8 arrays: CIFAR-10 (keras.datasets or a local copy) and image folders.

Images are stored at a small *storage size* (32 for CIFAR-10, else 64 or the images' own size
when smaller); resizing to the model's resolution, augmentation and normalisation happen inside
the Keras model, so on the GPU when there is one. Decoding a folder of JPEGs is the slow part, so
the decoded arrays are cached on disk under ``config.cache_dir() / "datasets"``, keyed by the
folder's contents (relative paths, sizes, mtimes) and the storage size: a second load of the
60 000 CIFAR-10 images takes about two seconds.

Folder layouts (one subfolder per class, any depth of images below it):

- ``root/train/<class>/*`` with ``root/test/<class>/*`` (or ``root/val/``): the given split is used;
- ``root/<class>/*`` (or ``root/train/<class>/*`` alone): a stratified split with a fixed seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageOps

from core import config, net
from core.fileio import atomic_path
from core.inference import to_rgb

if TYPE_CHECKING:
    from core.progress import Progress

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# What keras.datasets.cifar10 downloads; we only probe its host to fail fast when offline.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# Bump when the cached arrays' meaning changes (decoding, resizing), so old caches are not reused.
_CACHE_VERSION = 2
_CHUNK = 256  # images per decoding task: progress and stop checks happen between chunks


class DataError(ValueError):
    """A dataset could not be loaded; the message says what failed and how to fix it."""


@dataclass
class Dataset:
    """A classification dataset held in memory.

    Attributes:
        x_train: uint8 images, shape (N, S, S, 3), S the storage size.
        y_train: int64 labels, shape (N,), indices into ``class_names``.
        x_test: uint8 test images (the ``test/``/``val/`` folder, or the held-out part).
        y_test: int64 test labels.
        class_names: class names in label order.
        source: where the data came from, for people (e.g. "keras.datasets.cifar10").
        split: how train and test were formed (e.g. "stratified 80/20 split, seed 0").
        skipped: image files that could not be decoded and were left out.
    """

    x_train: np.ndarray
    y_train: np.ndarray
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
    val_fraction: float = 0.2,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Load ``"cifar10"`` or an image folder, optionally cut to stratified subsets.

    Args:
        spec: ``"cifar10"`` or the path of an image folder.
        storage_size: side of the stored square images (default 32 for CIFAR-10; for a folder
            64, or the images' own size when smaller).
        subset: keep a stratified, seeded subset of this many training images (quick demos).
        test_subset: the same for the test split.
        seed: seed for the stratified split, the shuffle and the subsets.
        val_fraction: share of each class held out for testing when a folder has no test split.
        progress: receives decoding progress; its stop request aborts with ``Stopped``.
        use_cache: read and write the decoded-array cache.

    Raises:
        DataError: with a message saying what failed and how to fix it.
    """
    spec = str(spec).strip()
    if storage_size is not None and int(storage_size) < 1:
        raise DataError(f"storage_size must be a positive number of pixels, got {storage_size}.")
    for name, value in (("subset", subset), ("test_subset", test_subset)):
        if value is not None and int(value) < 1:
            raise DataError(f"{name} must be a positive number of images, got {value}.")
    if spec.lower() == "cifar10":
        ds = _load_cifar10(storage_size or 32, seed, progress, use_cache)
    else:
        ds = load_image_folder(
            spec, storage_size=storage_size, seed=seed, val_fraction=val_fraction,
            progress=progress, use_cache=use_cache,
        )
    if subset is not None and subset < len(ds.y_train):
        ds.x_train, ds.y_train = subsample(ds.x_train, ds.y_train, subset, seed)
        ds.split += f"; train subset of {subset}"
    if test_subset is not None and test_subset < len(ds.y_test):
        ds.x_test, ds.y_test = subsample(ds.x_test, ds.y_test, test_subset, seed)
        ds.split += f"; test subset of {test_subset}"
    return ds


def load_image_folder(
    path: str | os.PathLike,
    *,
    storage_size: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Load a folder with one subfolder per class (see the module docstring for the layouts).

    Args:
        path: the dataset folder.
        storage_size: side S of the stored S×S images (shorter side resized to S, centre crop).
            Default: 64, or less when the images are smaller (32 for a CIFAR-10 folder), so
            small images are never upscaled in storage.
        seed: seed for the stratified split (when there is no test folder) and the shuffle.
        val_fraction: share of each class held out for testing when there is no test folder.
        progress: receives decoding progress; its stop request aborts with ``Stopped``.
        use_cache: read and write the decoded-array cache.

    Raises:
        DataError: the folder is missing or has a wrong layout, or a class has no readable image.
    """
    root = Path(path).expanduser()
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}.")
    if storage_size is not None and int(storage_size) < 1:
        raise DataError(f"storage_size must be a positive number of pixels, got {storage_size}.")
    parts, class_names = _scan_layout(root)  # parts: {"train"/"test"/"all": (dir, [(class, file)])}
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
                f"{folder}: every file there failed to decode. Replace or remove those files."
            )

    rng = np.random.default_rng(seed)
    if "all" in parts:
        x, y = arrays["x_all"], arrays["y_all"]
        train_idx, test_idx = _stratified_split(y, val_fraction, rng)
        pct = round(val_fraction * 100)
        where = "" if parts["all"][0] == root else f" of {parts['all'][0].name}/"
        split = f"stratified {100 - pct}/{pct} split{where}, seed {seed}"
        x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    else:
        split = f"folder train/{parts['test'][0].name}"
        x_train, y_train = arrays["x_train"], arrays["y_train"]
        x_test, y_test = arrays["x_test"], arrays["y_test"]
        # Folder order is class by class; shuffle once so no consumer sees sorted labels.
        p, q = rng.permutation(len(y_train)), rng.permutation(len(y_test))
        x_train, y_train, x_test, y_test = x_train[p], y_train[p], x_test[q], y_test[q]
    return Dataset(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        class_names=class_names, source=f"image folder {root} ({how})", split=split,
        skipped=skipped,
    )


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
    idx = np.concatenate([
        rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c, k in zip(classes, take)
    ])
    idx = rng.permutation(idx)
    return x[idx], y[idx]


# ----- CIFAR-10 -----------------------------------------------------------------------------------
def _load_cifar10(
    storage_size: int, seed: int, progress: Progress | None, use_cache: bool
) -> Dataset:
    """keras.datasets if cached or reachable, else the local copy, else a DataError saying both."""
    try:
        x_train, y_train, x_test, y_test, how = _keras_cifar10()
    except Exception as exc:  # keras raises bare Exception for fetch failures
        download_error = f"{type(exc).__name__}: {exc}"
    else:
        if storage_size != 32:
            x_train, x_test = (_resize_array(a, storage_size, progress) for a in (x_train, x_test))
        return Dataset(
            x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
            class_names=list(CIFAR10_CLASSES), source=f"keras.datasets.cifar10 ({how})",
            split="standard 50000/10000 train/test", skipped=0,
        )

    local = config.cifar10_dir()
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
        ds = load_image_folder(local, storage_size=storage_size, seed=seed, progress=progress,
                               use_cache=use_cache)
    except DataError as exc:
        raise DataError(
            f"Could not load CIFAR-10: the keras.datasets download failed ({download_error}) and "
            f"the local copy at {local} (EFFNET_LAB_CIFAR10_DIR) is unusable: {exc} {fix}"
        ) from exc
    ds.source = (f"local CIFAR-10 copy: {ds.source}; keras.datasets was unavailable "
                 f"({download_error})")
    return ds


def _keras_cifar10() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """CIFAR-10 from keras.datasets, failing fast (not hanging) when it would need a download."""
    cached = _keras_cifar10_cached()
    if not cached:
        _check_reachable(CIFAR10_URL, config.download_timeout())
    from keras.datasets import cifar10  # imported late: it pulls in the Keras backend

    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    # keras gives uint8 (N, 32, 32, 3) images and (N, 1) uint8 labels.
    return (np.ascontiguousarray(x_train, dtype=np.uint8), y_train.reshape(-1).astype(np.int64),
            np.ascontiguousarray(x_test, dtype=np.uint8), y_test.reshape(-1).astype(np.int64),
            "Keras cache" if cached else "downloaded")


def _keras_cifar10_cached() -> bool:
    """Whether keras.datasets already holds the CIFAR-10 archive (so no network is needed)."""
    home = os.environ.get("KERAS_HOME")
    homes = [Path(home)] if home else [Path.home() / ".keras", Path("/tmp/.keras")]
    return any((h / "datasets" / "cifar-10-batches-py-target_archive").is_file() for h in homes)


def _check_reachable(url: str, timeout: float) -> None:
    """Raise ``OSError`` unless ``url``'s host answers within ``timeout`` seconds."""
    reason = net.unreachable_reason(url, timeout)
    if reason:
        raise OSError(f"cannot reach {urlsplit(url).hostname}: {reason}")


# ----- folder scanning ----------------------------------------------------------------------------
def _scan_layout(root: Path) -> tuple[dict[str, tuple[Path, list]], list[str]]:
    """Find the layout and list the image files; raise DataError for a wrong layout."""
    if not root.exists():
        raise DataError(
            f"Dataset folder not found: {root}. Give an existing folder with one subfolder per "
            "class (or train/ and test/ subfolders that each have one subfolder per class)."
        )
    if not root.is_dir():
        raise DataError(
            f"{root} is a file, not a folder: give a folder with one subfolder per class."
        )
    train = root / "train"
    test = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if train.is_dir() and test is not None:
        train_files, class_names = _scan_classes(train)
        test_files, test_names = _scan_classes(test)
        if test_names != class_names:
            missing = sorted(set(class_names) - set(test_names))
            extra = sorted(set(test_names) - set(class_names))
            raise DataError(
                f"The {test.name}/ split in {root} has different classes from train/ (missing in "
                f"{test.name}/: {missing or 'none'}; not in train/: {extra or 'none'}). Both need "
                "the same class subfolders."
            )
        return {"train": (train, train_files), "test": (test, test_files)}, class_names
    # A lone train/ of class folders is the whole dataset; otherwise the root holds the classes.
    folder = train if train.is_dir() and _subdirs(train) else root
    files, class_names = _scan_classes(folder)
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


def _scan_classes(folder: Path) -> tuple[list[tuple[int, os.DirEntry]], list[str]]:
    """List (label, file entry) for every image below each class subfolder of ``folder``."""
    exts = "/".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    class_dirs = _subdirs(folder)
    if not class_dirs:
        loose = any(_is_image(p.name) for p in folder.iterdir())
        raise DataError(
            f"{folder} holds images but no class subfolders: put each class's images in its own "
            f"subfolder (e.g. {folder / 'cat'}/*.jpg)." if loose else
            f"No images found in {folder}: expected one subfolder per class, each holding image "
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
            f"No images found in {folder}: its class subfolders hold no image files ({exts})."
        )
    if empty:
        raise DataError(
            f"Class folder(s) {', '.join(map(repr, empty))} in {folder} contain no images "
            f"({exts}); add images or remove the folder(s)."
        )
    if len(class_dirs) < 2:
        raise DataError(
            f"Only one class ({class_dirs[0].name!r}) found in {folder}: a classifier needs at "
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
    return config.cache_dir() / "datasets" / f"{tag}-s{storage_size}-{key[:24]}.npz"


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
        return True
    except OSError:  # a full or read-only disk costs speed next time, not this load
        return False


# ----- decoding -----------------------------------------------------------------------------------
def decode_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode one image file to uint8 (size, size, 3): RGB, shorter side to ``size``, centre crop.

    Raises:
        OSError, ValueError (or another PIL error): the file is not a readable image.
    """
    with Image.open(path) as im:
        if min(im.size) > size:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale ≥ size, much faster
        if "exif" in im.info:
            im = ImageOps.exif_transpose(im)  # phone photos store their rotation in EXIF
        im = to_rgb(im)  # the same mode handling as classification (alpha on white, 16-bit, ...)
        if im.size != (size, size):
            im = ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def _decode_parts(
    parts: dict, class_names: list[str], size: int, progress: Progress | None
) -> tuple[dict[str, np.ndarray], int]:
    """Decode every part's files in a thread pool; unreadable files are dropped and counted."""
    total = sum(len(files) for _, files in parts.values())
    if progress is not None:
        progress.start("Decoding images", total, "img")
    arrays, skipped = {}, 0
    # PIL releases the GIL while decoding and resizing, so threads pay off for photos; for tiny
    # CIFAR JPEGs Python-side parsing dominates and threads merely keep pace with one core.
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
        for name, (_, files) in parts.items():
            x = np.empty((len(files), size, size, 3), np.uint8)
            ok = np.zeros(len(files), bool)
            chunks = [range(i, min(i + _CHUNK, len(files))) for i in range(0, len(files), _CHUNK)]

            def work(rows: range) -> None:
                for i in rows:
                    try:
                        x[i] = decode_image(files[i][1].path, size)
                        ok[i] = True
                    except Exception:  # PIL raises many types for broken files; all mean "skip"
                        pass

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
            labels = np.fromiter((label for label, _ in files), np.int64, len(files))
            arrays[f"x_{name}"], arrays[f"y_{name}"] = x[ok], labels[ok]
            skipped += int((~ok).sum())
    return arrays, skipped


def _resize_array(x: np.ndarray, size: int, progress: Progress | None) -> np.ndarray:
    """Resize a uint8 image batch to size×size with PIL (for a non-default CIFAR storage size)."""
    if progress is not None:
        progress.start(f"Resizing images to {size}×{size}", len(x), "img")
    out = np.empty((len(x), size, size, 3), np.uint8)
    for i, img in enumerate(x):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))
        if progress is not None and (i + 1) % 1000 == 0:
            progress.set_done(i + 1)
            progress.check_stop()
    if progress is not None:
        progress.set_done(len(x))
    return out


def _stratified_split(y: np.ndarray, val_fraction: float, rng: np.random.Generator):
    """Seeded per-class split; each class with ≥2 images keeps at least one on each side."""
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * val_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
