"""Where extracted features live (:mod:`core.training.features`): in memory within a budget
(``EFFNET_LAB_FEATURE_MEMORY_GB``, default 40 % of RAM), else in a disk-backed array in the cache
folder; when neither can hold them, a :class:`FeatureMemoryError` with the numbers and what to
change.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from core.platform import paths
from core.platform.errors import UserError


class FeatureMemoryError(UserError):
    """Features would fit neither in the memory budget nor on the cache disk."""


def memory_budget() -> int:
    """Bytes of features kept in memory: ``EFFNET_LAB_FEATURE_MEMORY_GB``, or 40 % of RAM.

    Raises:
        ValueError: The variable is not a positive number.
    """
    gb = paths.positive_number("EFFNET_LAB_FEATURE_MEMORY_GB", None, "gigabytes")
    if gb is not None:
        return int(gb * 1e9)
    try:
        return int(0.4 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 * 10**9


def free_disk_bytes(folder: Path) -> int:
    """Free bytes on the disk holding ``folder``."""
    return shutil.disk_usage(folder).free


def allocate(shape: tuple, dtype, spill_dir: Path) -> np.ndarray:
    """An array for all features: in memory within the budget, else disk-backed in ``spill_dir``.

    Raises:
        FeatureMemoryError: Neither the memory budget nor the disk can hold it.
    """
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    budget = memory_budget()
    if nbytes <= budget:
        return np.empty(shape, dtype=dtype)
    spill_dir.mkdir(parents=True, exist_ok=True)
    free = free_disk_bytes(spill_dir)
    if nbytes > 0.9 * free:
        per_image = " × ".join(map(str, shape[1:]))
        raise FeatureMemoryError(
            f"the cached features would take {nbytes / 1e9:.1f} GB ({shape[0]} images × "
            f"{per_image} {np.dtype(dtype).name}), more than the memory budget "
            f"({budget / 1e9:.1f} GB, EFFNET_LAB_FEATURE_MEMORY_GB) and the {free / 1e9:.1f} GB "
            "free on the cache disk. Fine-tune fewer blocks, lower the resolution, train on a "
            "subset, or turn augmentation on (nothing is cached then)."
        )
    fd, name = tempfile.mkstemp(prefix=".features.", suffix=".tmp.npy", dir=spill_dir)
    os.close(fd)
    return np.lib.format.open_memmap(name, mode="w+", dtype=dtype, shape=shape)


def discard(array) -> None:
    """Delete a disk-backed array's file (it stays readable while mapped)."""
    if isinstance(array, np.memmap) and array.filename:
        Path(array.filename).unlink(missing_ok=True)
