"""The disk cache's size cap: the least recently used entries go first.

Decoded datasets (``datasets/``) and extracted features (``features/``) are only speed-ups, and a
feature file of a large run can take gigabytes, so the cache folder is capped
(``EFFNET_LAB_CACHE_MAX_GB``, default 10). Readers :func:`touch` an entry on every hit, writers
call :func:`prune` after adding one; pruning removes the entries used longest ago until the
cache fits. The converted ImageNet weights (``weights/``) are small and never pruned.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from core.platform import paths

PRUNABLE = ("datasets", "features")
DEFAULT_MAX_GB = 10.0


def max_bytes() -> int:
    """The cap in bytes, from ``EFFNET_LAB_CACHE_MAX_GB`` (a positive number of gigabytes).

    Raises:
        ValueError: The variable is not a positive number.
    """
    return int(paths.positive_number("EFFNET_LAB_CACHE_MAX_GB", DEFAULT_MAX_GB, "gigabytes") * 1e9)


def touch(path: str | os.PathLike) -> None:
    """Mark a cache entry as just used (its modification time is its last use)."""
    try:
        os.utime(path)
    except OSError:
        pass  # read-only cache: it is only a speed-up


def entries() -> list[tuple[float, int, Path]]:
    """``(last use, size in bytes, path)`` of every prunable entry, least recently used first."""
    found = []
    for folder in PRUNABLE:
        root = paths.cache_dir() / folder
        if not root.is_dir():
            continue
        for path in root.iterdir():
            try:
                st = path.stat()
            except OSError:
                continue
            if path.is_file():
                found.append((st.st_mtime, st.st_size, path))
    return sorted(found, key=lambda e: e[0])


def prune(keep: str | os.PathLike | None = None, limit: int | None = None) -> list[Path]:
    """Remove least recently used entries until the cache fits ``limit`` (default :func:`max_bytes`).

    Args:
        keep: An entry never removed (the one just written).
        limit: Bytes allowed.

    Returns:
        The removed paths.
    """
    limit = max_bytes() if limit is None else limit
    found = entries()
    total = sum(size for _, size, _ in found)
    keep = Path(keep).resolve() if keep is not None else None
    removed = []
    for _, size, path in found:
        if total <= limit:
            break
        if keep is not None and path.resolve() == keep:
            continue
        # A temp file younger than a minute may still be being written by another process.
        if ".tmp" in path.name and time.time() - path.stat().st_mtime < 60:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed.append(path)
    return removed
