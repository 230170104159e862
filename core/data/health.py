"""Dataset health check: what to fix before training, found by reading every image once.

It reports images per class and the imbalance ratio; unreadable files; exact duplicates (same
bytes: SHA-256) and near duplicates (a perceptual hash, confirmed on a thumbnail); duplicates that
sit in different splits (leaks: the model would be tested on what it trained on); tiny and
extreme-aspect images; and a few sample files per class for a grid.

Bounded time and memory on large datasets: each image is decoded at a reduced scale (JPEG draft
decoding) into a 64-bit difference hash (dHash, 9×8 grey) and a 16×16 grey thumbnail, about
300 bytes kept per image; near duplicates are found from those without comparing all pairs
(:mod:`core.data.duplicates`). Lists in the report (:class:`~core.data.health_report.HealthReport`)
are cut to :data:`LIST_LIMIT` entries; their full counts are given.

Reports are cached on disk (``<cache>/datasets/health-*.json``), keyed by every file's path,
size and modification time, so checking an unchanged dataset again is instant.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from core.data import datasets, splits
from core.data.catalog import DataError, is_managed, resolve
from core.data.duplicates import NEAR_BITS, NEAR_CORRELATION, dhash, near_pairs
from core.data.health_report import CheckSettings, HealthReport, Leak, OddSize, Unreadable
from core.data.imagefolder import map_chunks, relative_files, scan
from core.data.images import MAX_FILE_BYTES, Preprocessing, load_image
from core.platform import cache, paths
from core.platform.fileio import write_json
from core.platform.progress import Stopped

if TYPE_CHECKING:
    from core.platform.progress import Progress

VERSION = 1  # bump when the report's meaning changes, so cached reports are not reused
TINY_SIDE = 32  # shorter side below this: tiny (the smallest resolution a model takes)
EXTREME_ASPECT = 3.0  # longer side over shorter side above this: extreme
MAX_IMAGES = 250_000  # images read per check (a larger dataset is checked in part, with a note)
LIST_LIMIT = 1000
SAMPLES_PER_CLASS = 8


def dataset_root(spec: str, *, managed_only: bool = False) -> Path:
    """The folder a data spec names: a dataset name, a path, or "cifar10" (its local copy).

    Args:
        spec: The data spec.
        managed_only: Only "cifar10" or a dataset under the data root (a job from the app).

    Raises:
        DataError: "cifar10" without a local image copy (the check reads image files), or
            ``managed_only`` and no such dataset.
    """
    target = resolve(spec, managed_only=managed_only)
    if target != "cifar10":
        return Path(target)
    local = paths.cifar10_dir()
    if local is None:
        raise DataError(
            "The health check reads image files, and CIFAR-10 from keras.datasets "
            "has none: set EFFNET_LAB_CIFAR10_DIR to a local CIFAR-10 image folder."
        )
    return local


def check_job(args: dict, progress: Progress) -> dict | None:
    """The "data_check" job (:mod:`core.jobs.runner`): ``args["data"]`` is the spec; returns the
    report's JSON form, or None when a stop request ended it (status "stopped"). From the app
    (``args["managed"]``) the spec is a dataset ref that ``args["user"]`` may use, checked again
    here (:func:`core.data.datasets.managed_job`)."""

    spec = str(args["data"])
    managed = datasets.managed_job(args, spec)
    try:
        report = check(
            spec,
            progress=progress,
            use_cache=bool(args.get("use_cache", True)),
            managed_only=managed,
        )
    except Stopped:
        return None
    return report.to_dict()


def check(
    spec: str,
    *,
    progress: Progress | None = None,
    use_cache: bool = True,
    managed_only: bool = False,
) -> HealthReport:
    """Check a dataset (see the module docstring).

    A dataset under the data root gets its split stored first (:mod:`core.data.splits`), so its
    leaks are those training will meet.

    Args:
        spec: The data spec (:func:`dataset_root`).
        progress: Receives progress; its stop request raises ``Stopped``.
        use_cache: Read and write the cached report.
        managed_only: Only "cifar10" or a dataset under the data root (a job from the app).

    Raises:
        DataError: the folder is missing, unreadable or has a wrong layout.
    """
    started = time.time()
    root = dataset_root(spec, managed_only=managed_only)
    parts, class_names = scan(root, strict=False)
    files = relative_files(root, parts)
    carved = splits.carved_part(parts)
    assignment = carved and splits.stored_assignment(
        root, files[carved], splits.missing(parts), store=is_managed(root)
    )
    entries = []  # (path relative to root, label, split; None: drawn per run, unknown here)
    for part, listed in files.items():
        for path, label in listed:
            if part == carved and assignment:
                where = assignment[path]
            else:  # a folder's own split; train/ keeps its name when validation comes from it
                where = None if part == "all" else part
            entries.append((path, label, where))
    key = _key(root, parts, assignment)
    cached = _cache_file(root, key)
    if use_cache:
        try:
            report = HealthReport.from_dict(json.loads(cached.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged
            pass
        else:
            cache.touch(cached)
            return report.checked(spec, cached=True, seconds=round(time.time() - started, 2))
    report = _report(root, entries, class_names, parts, carved, assignment, progress)
    report = report.checked(spec, cached=False, seconds=round(time.time() - started, 2))
    if use_cache:
        _write_cache(cached, report)
    return report


# ----- reading the images -----------------------------------------------------------------------
def inspect_file(path: str | os.PathLike) -> dict:
    """One image's facts: ``sha`` (hex), ``dhash`` (int), ``thumb`` (16×16 uint8 grey),
    ``size`` (width, height as stored), or ``error`` (why it cannot be read)."""
    try:
        if os.stat(path).st_size > MAX_FILE_BYTES:
            return {"error": f"larger than {MAX_FILE_BYTES // 2**20} MB"}
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        with Image.open(io.BytesIO(data)) as header:
            size = header.size
        grey = load_image(data, min_side=16).convert("L")
    except Exception as exc:  # ImageError, OSError, PIL's many exception types: all "unreadable"
        return {"error": str(exc) or type(exc).__name__}
    return {
        "sha": hashlib.sha256(data).hexdigest(),
        "dhash": dhash(grey),
        "size": size,
        "thumb": np.asarray(grey.resize((16, 16), Image.Resampling.BOX), np.uint8),
    }


class _Facts:
    """Every image's facts in flat arrays (about 300 bytes an image), filled by worker threads."""

    def __init__(self, n: int):
        self.sha = np.zeros((n, 32), np.uint8)
        self.dhash = np.zeros(n, np.uint64)
        self.thumb = np.zeros((n, 16, 16), np.uint8)
        self.size = np.zeros((n, 2), np.int64)
        self.error: dict[int, str] = {}

    def put(self, i: int, facts: dict) -> None:
        if "error" in facts:
            self.error[i] = facts["error"]
            return
        self.sha[i] = np.frombuffer(bytes.fromhex(facts["sha"]), np.uint8)
        self.dhash[i], self.thumb[i], self.size[i] = facts["dhash"], facts["thumb"], facts["size"]


def _read_all(root: Path, entries: list, progress: Progress | None) -> _Facts:
    facts = _Facts(len(entries))
    if progress is not None:
        progress.start("Checking images", len(entries), "img")

    def work(rows: range) -> None:
        for i in rows:
            facts.put(i, inspect_file(root / entries[i][0]))

    # PIL releases the GIL while decoding: a few threads keep the cores busy.
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
        map_chunks(pool, work, len(entries), progress)
    return facts


# ----- the report -------------------------------------------------------------------------------
def _report(root, entries, class_names, parts, carved, assignment, progress) -> HealthReport:
    notes, problems = [], []
    if len(entries) > MAX_IMAGES:
        notes.append(f"Only the first {MAX_IMAGES} of {len(entries)} images were checked.")
        entries = entries[:MAX_IMAGES]
    facts = _read_all(root, entries, progress)
    ok = [i for i in range(len(entries)) if i not in facts.error]
    name = [e[0] for e in entries]
    split = [e[2] for e in entries]

    classes = {c: 0 for c in class_names}
    per_split: dict[str, dict[str, int]] = {}
    for _path, label, where in entries:
        classes[class_names[label]] += 1
        bucket = per_split.setdefault(where or "all (split per run)", dict.fromkeys(class_names, 0))
        bucket[class_names[label]] += 1
    empty = [c for c, n in classes.items() if n == 0]
    if empty:
        problems.append(f"Class(es) with no images: {', '.join(empty)}.")
    if len(class_names) < 2:
        problems.append("A classifier needs at least two classes.")
    if assignment:
        notes.append(
            f"The splits this dataset has no folder for are stored with it "
            f"({splits.SPLITS_FILE}): every run uses them, whatever its validation share."
        )
    if carved and not assignment:
        notes.append(
            "This folder stores no split: validation and test images are drawn from it per run, "
            "so duplicates in it may land in different splits (not listed as leaks)."
            if carved == "all"
            else "This folder stores no split: validation images are drawn from train/ per run, so "
            "leaks into validation are not listed; those between split folders are."
        )

    unreadable = [Unreadable(name[i], why) for i, why in sorted(facts.error.items())]
    groups: dict[bytes, list[int]] = {}
    for i in ok:
        groups.setdefault(facts.sha[i].tobytes(), []).append(i)
    exact = [(g[0], j) for g in groups.values() if len(g) > 1 for j in g[1:]]
    same = {frozenset(p) for p in exact}
    near, note = near_pairs(facts.dhash[ok], facts.thumb[ok])
    if note:
        notes.append(note)
    near = [(ok[a], ok[b]) for a, b in near if frozenset((ok[a], ok[b])) not in same]
    leaks = [
        Leak(name[a], name[b], (split[a], split[b]), kind)
        for kind, pairs in (("exact", exact), ("near", near))
        for a, b in pairs
        if split[a] and split[b] and split[a] != split[b]
    ]

    sizes = {i: tuple(int(v) for v in facts.size[i]) for i in ok}
    tiny = [i for i in ok if min(sizes[i]) < TINY_SIDE]
    extreme = [i for i in ok if max(sizes[i]) > EXTREME_ASPECT * max(1, min(sizes[i]))]
    counts = list(classes.values())
    samples = {}
    for label, c in enumerate(class_names):
        mine = [i for i in ok if entries[i][1] == label]
        picks = (
            sorted({round(k) for k in np.linspace(0, len(mine) - 1, SAMPLES_PER_CLASS)})
            if mine
            else []
        )
        samples[c] = tuple(name[mine[k]] for k in picks)

    def cut(items) -> tuple:
        return tuple(items[:LIST_LIMIT])

    def odd(indices) -> tuple[OddSize, ...]:
        return cut([OddSize(name[i], *sizes[i]) for i in indices])

    order = {"train": 0, "val": 1, "test": 2}
    return HealthReport(
        version=VERSION,
        layout=_layout(parts),
        splits=dict(sorted(per_split.items(), key=lambda kv: order.get(kv[0], 3))),
        classes=classes,
        images=len(entries),
        readable=len(ok),
        unreadable=cut(unreadable),
        unreadable_count=len(unreadable),
        duplicates=cut([(name[a], name[b]) for a, b in exact]),
        duplicates_count=len(exact),
        near_duplicates=cut([(name[a], name[b]) for a, b in near]),
        near_duplicates_count=len(near),
        leaks=cut(leaks),
        leaks_count=len(leaks),
        imbalance=round(max(counts) / min(counts), 2) if counts and min(counts) else None,
        tiny=odd(tiny),
        tiny_count=len(tiny),
        extreme_aspect=odd(extreme),
        extreme_aspect_count=len(extreme),
        samples=samples,
        problems=tuple(problems),
        notes=tuple(notes),
        settings=CheckSettings(NEAR_BITS, NEAR_CORRELATION, TINY_SIDE, EXTREME_ASPECT),
    )


def _layout(parts) -> str:
    if "all" in parts:
        return "one folder per class"
    return " and ".join(f"{p}/" for p in ("train", "val", "test") if p in parts) + " folders"


# ----- pictures for the pages -----------------------------------------------------------------
def load_samples(root: Path, files: list[str], size: int = 96) -> list[np.ndarray]:
    """Square thumbnails of files given relative to ``root`` (files outside it are refused)."""

    base = Path(root).resolve()
    out = []
    for rel in files:
        path = (base / rel).resolve()
        if base not in path.parents:
            continue
        try:
            out.append(Preprocessing(size).apply(load_image(path, min_side=size)))
        except Exception:  # vanished or changed since the check: leave it out
            continue
    return out


# ----- the report cache -----------------------------------------------------------------------
def _key(root: Path, parts: dict, assignment: dict | None) -> str:
    h = hashlib.sha256(f"health v{VERSION} {NEAR_BITS} {NEAR_CORRELATION}\n".encode())
    start = len(os.path.join(str(root), ""))
    for name, (_, listed) in parts.items():
        for label, entry in listed:
            try:
                st = entry.stat()
            except OSError:
                continue
            h.update(
                f"{name}\t{label}\t{entry.path[start:]}\t{st.st_size}\t{st.st_mtime_ns}\n".encode()
            )
    h.update(json.dumps(assignment or {}, sort_keys=True).encode())
    return h.hexdigest()


def _cache_file(root: Path, key: str) -> Path:
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    return paths.cache_dir() / "datasets" / f"health-{tag}-{key[:24]}.json"


def _write_cache(path: Path, report: HealthReport) -> None:
    try:
        write_json(path, report.to_dict())
        prefix = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(prefix + "*.json"):
            if old != path:
                old.unlink(missing_ok=True)
        cache.prune(keep=path)
    except OSError:
        pass  # only a speed-up
