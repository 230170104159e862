"""CIFAR-10 from ``keras.datasets``: its arrays, offline-aware, and resized for another storage
size. :func:`core.data.loading.load_dataset` uses these, falling back to a local image copy
(``EFFNET_LAB_CIFAR10_DIR``) when keras.datasets is neither cached nor reachable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from core.platform import paths, reachability

if TYPE_CHECKING:
    from core.platform.progress import Progress

CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
# What keras.datasets.cifar10 downloads; we only probe its host to fail fast when offline.
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def keras_cifar10() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """CIFAR-10 from keras.datasets, failing fast (not hanging) when it would need a download."""
    cached = keras_cached()
    if not cached:
        _check_reachable(URL, paths.download_timeout())
    from keras.datasets import cifar10  # imported late: it pulls in the Keras backend

    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    # keras gives uint8 (N, 32, 32, 3) images and (N, 1) uint8 labels.
    return (
        np.ascontiguousarray(x_train, dtype=np.uint8),
        y_train.reshape(-1).astype(np.int64),
        np.ascontiguousarray(x_test, dtype=np.uint8),
        y_test.reshape(-1).astype(np.int64),
        "Keras cache" if cached else "downloaded",
    )


def keras_cached() -> bool:
    """Whether keras.datasets already holds the CIFAR-10 archive (so no network is needed)."""
    home = os.environ.get("KERAS_HOME")
    homes = [Path(home)] if home else [Path.home() / ".keras", Path("/tmp/.keras")]
    return any((h / "datasets" / "cifar-10-batches-py-target_archive").is_file() for h in homes)


def _check_reachable(url: str, timeout: float) -> None:
    """Raise ``OSError`` unless ``url``'s host answers within ``timeout`` seconds."""
    reason = reachability.unreachable_reason(url, timeout)
    if reason:
        raise OSError(f"cannot reach {urlsplit(url).hostname}: {reason}")


def resize_array(x: np.ndarray, size: int, progress: Progress | None) -> np.ndarray:
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
