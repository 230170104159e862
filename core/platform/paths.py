"""Where EffNet Lab keeps things on disk, each overridable by an environment variable.

- ``EFFNET_LAB_CACHE``: converted weights and decoded-dataset caches (default ``~/.cache/effnet-lab``).
- ``EFFNET_LAB_RUNS``: saved training runs (default ``<project>/runs``).
- ``EFFNET_LAB_DATA``: the data root: datasets the app manages (one folder each) and, under
  ``weights/``, weights files people may pick (default ``<project>/data``). The web app reads data
  and weights only from here, the CIFAR-10 location and the cache.
- ``EFFNET_LAB_CIFAR10_DIR``: a local CIFAR-10 image folder used when ``keras.datasets`` cannot
  download (``train/<class>/*.jpg`` and ``test/<class>/*.jpg``); default
  ``<project>/../shared/datasets/cifar10`` if it exists.
- ``EFFNET_LAB_IMAGENET_SAMPLES``: a folder of ImageNet photos, the held-out images that verify
  exports of the ImageNet model (default ``<project>/../shared/datasets/imagenet-samples``).
- ``EFFNET_LAB_DOWNLOAD_TIMEOUT``: seconds to wait for an online download before falling back
  (default 10).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # core/platform/paths.py → the project


def cache_dir() -> Path:
    """Directory for converted weights and dataset caches (created on demand)."""
    path = Path(os.environ.get("EFFNET_LAB_CACHE", Path.home() / ".cache" / "effnet-lab"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Directory holding one sub-folder per training run (created on demand)."""
    path = Path(os.environ.get("EFFNET_LAB_RUNS", PROJECT_ROOT / "runs"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """The data root: one folder per managed dataset, plus ``weights/`` (created on demand)."""
    path = Path(os.environ.get("EFFNET_LAB_DATA", PROJECT_ROOT / "data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_dir() -> Path:
    """Weights files the app may offer (``<data root>/weights``; created on demand)."""
    path = data_dir() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cifar10_dir() -> Path | None:
    """The local CIFAR-10 image folder: ``EFFNET_LAB_CIFAR10_DIR`` if set, else
    ``<project>/../shared/datasets/cifar10`` when that exists (the offline copy beside a checkout)."""
    value = os.environ.get("EFFNET_LAB_CIFAR10_DIR")
    if value:
        return Path(value)
    beside = PROJECT_ROOT.parent / "shared" / "datasets" / "cifar10"
    return beside if beside.is_dir() else None


def imagenet_samples_dir() -> Path | None:
    """ImageNet sample photos: ``EFFNET_LAB_IMAGENET_SAMPLES`` if set, else
    ``<project>/../shared/datasets/imagenet-samples`` when that exists."""
    value = os.environ.get("EFFNET_LAB_IMAGENET_SAMPLES")
    if value:
        return Path(value)
    beside = PROJECT_ROOT.parent / "shared" / "datasets" / "imagenet-samples"
    return beside if beside.is_dir() else None


def positive_number(name: str, default: float | None, unit: str) -> float | None:
    """The environment variable ``name`` as a positive number (``default`` when it is unset).

    Raises:
        ValueError: The variable is set but is not a positive number; the message names it.
    """
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of {unit}, got {value!r}") from None
    if not number > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return number


def download_timeout() -> float:
    """Seconds an online download may take to start before we fall back to offline sources."""
    return positive_number("EFFNET_LAB_DOWNLOAD_TIMEOUT", 10.0, "seconds")
