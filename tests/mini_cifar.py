"""A mini CIFAR-10 of symlinks (nothing copied), for tests and benchmarks alike."""

from __future__ import annotations

import os
from pathlib import Path


def make_mini_cifar(cifar10_dir: Path, dest: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """A folder of symlinks to the first images of each CIFAR-10 class (nothing is copied)."""
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in sorted(p.name for p in (cifar10_dir / split).iterdir()):
            folder = dest / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for image in sorted((cifar10_dir / split / cls).iterdir())[:n]:
                os.symlink(image, folder / image.name)
    return dest
