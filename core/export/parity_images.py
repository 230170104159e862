"""Held-out images for checking an export against its Keras model: at least 200 inputs that
the model did not train on, prepared exactly as the model takes them.

A run uses its dataset's test split (a seeded sample when larger; mirrored and zoomed views of its
images added when smaller). The ImageNet model has only the sample photos
(:func:`core.platform.paths.imagenet_samples_dir`), so it uses views of them: each photo at the model's
crop, mirrored, then at smaller central crops. Every source says in words what it used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.images import EXTENSIONS, ImageError, Preprocessing, load_image
from core.platform import paths
from core.platform.progress import Stopped
from core.training import TrainConfig, runs
from core.training.run import load_data

# Extra views when there are fewer held-out images than asked for: (crop of the source, flip).
_CROPS = (1.0, 0.75, 0.6, 0.5, 0.4)


def views(images: list, preprocessing: Preprocessing, n: int) -> np.ndarray:
    """Up to ``n`` inputs from PIL images: every image at ``preprocessing``, then mirrored, then
    zoomed to smaller central crops (each mirrored), in that order."""
    from PIL import ImageOps

    out = []
    for crop in _crops(preprocessing):
        prep = Preprocessing(preprocessing.size, crop, preprocessing.resample)
        for flip in (False, True):
            for image in images:
                if len(out) == n:
                    return np.stack(out)
                out.append(prep.apply(ImageOps.mirror(image) if flip else image))
    return np.stack(out)


def _crops(preprocessing: Preprocessing) -> list[float]:
    return [preprocessing.crop] + [c for c in _CROPS if c != preprocessing.crop]


def _view_text(n: int, count: int, preprocessing: Preprocessing) -> str:
    """Which views :func:`views` made of ``count`` images to reach ``n``."""
    kinds = -(-n // count)
    text = "each as prepared for the model" + (", mirrored" if kinds > 1 else "")
    if kinds > 2:
        crops = _crops(preprocessing)[1 : (kinds + 1) // 2]
        text += (
            f", then central crops of {', '.join(f'{c:g}' for c in crops)} x the shorter "
            "side, each also mirrored"
        )
    return text


def sample_photo_inputs(preprocessing: Preprocessing, n: int) -> tuple[np.ndarray, str]:
    """``n`` views of the ImageNet sample photos (:func:`core.platform.paths.imagenet_samples_dir`).

    Raises:
        ValueError: No sample photos, or too few for ``n`` views.
    """

    folder = paths.imagenet_samples_dir()
    files = []
    if folder and folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.suffix.lower().lstrip(".") in EXTENSIONS)
    photos = _readable(files)
    per = 2 * len(_crops(preprocessing))
    if len(photos) * per < n:
        raise ValueError(
            f"not enough held-out images to verify the export: {len(photos)} photos "
            f"in {folder or 'EFFNET_LAB_IMAGENET_SAMPLES (unset)'} give at most "
            f"{len(photos) * per} views, {n} are needed"
        )
    return views(photos, preprocessing, n), (
        f"{n} views of {len(photos)} ImageNet sample photos "
        f"({_view_text(n, len(photos), preprocessing)})"
    )


def run_dataset(run_path: Path, preprocessing: Preprocessing, progress):
    """A run's dataset as stored at the size its model takes: (the Dataset, "") or (None, why
    not). :func:`run_inputs` and :func:`calibration_inputs` both take this, so an export loads
    the dataset once."""

    cfg = runs.load_run(run_path).config or {}
    if not cfg.get("data"):
        return None, "the run records no dataset"
    try:
        ds = load_data(TrainConfig.from_dict(cfg), progress)
    except Stopped:
        raise
    except Exception as exc:
        return None, f"its dataset {cfg['data']!r} could not be loaded ({exc})"
    if ds.storage_size != preprocessing.size:
        return None, (
            f"its dataset is stored at {ds.storage_size} px, the model takes {preprocessing.size}"
        )
    return ds, ""


def run_inputs(
    data: tuple, preprocessing: Preprocessing, n: int
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``n`` held-out inputs for a run, from ``data`` (:func:`run_dataset`): its test split (a
    seeded sample when larger; mirrored and zoomed views added when smaller). Falls back to the
    ImageNet sample photos when the run's dataset is not available, and says why."""
    from PIL import Image

    ds, reason = data
    if ds is not None:
        x, y = ds.x_test, ds.y_test
        if len(y) >= n:
            keep = np.sort(np.random.default_rng(0).permutation(len(y))[:n])
            return x[keep], y[keep], f"{n} images of the run's test split ({len(y)} images)"
        stored = Preprocessing(preprocessing.size, 1.0, preprocessing.resample)
        return (
            views([Image.fromarray(a) for a in x], stored, n),
            np.resize(y, n),
            f"{n} views of the run's {len(y)} test images ({_view_text(n, len(y), stored)})",
        )
    x, text = sample_photo_inputs(preprocessing, n)
    return x, None, f"{text}; not the run's own test split: {reason}"


CALIBRATION_IMAGES = 256


def calibration_inputs(
    data: tuple, preprocessing: Preprocessing, n: int = CALIBRATION_IMAGES
) -> tuple[np.ndarray | None, str]:
    """Images for choosing which layers of an int8 export stay float32 (:mod:`core.export.quantize`),
    never the ones the parity check uses.

    ``data`` is a run's :func:`run_dataset`, or (None, "") for the ImageNet model. A run: a
    seeded sample of its validation images, topped up with training images when there are too
    few (the parity check uses its test split). Without a run's dataset: CIFAR-10 training
    images, prepared at the model's crop and size. Returns (None, why) when neither is there.
    """
    ds, why = data
    if ds is not None:
        # Validation images first: the model is surer of the images it trained on, so they
        # would promise more agreement than held-out images get. Training images top up.
        own_val = ds.x_val if len(ds.x_val) and ds.x_val is not ds.x_test else ds.x_val[:0]
        rng = np.random.default_rng(1)
        from_val = np.sort(rng.permutation(len(own_val))[:n])
        from_train = np.sort(rng.permutation(len(ds.x_train))[: n - len(from_val)])
        chosen = np.concatenate([own_val[from_val], ds.x_train[from_train]])
        what = " and ".join(
            f"{k} {name}"
            for k, name in ((len(from_val), "validation"), (len(from_train), "training"))
            if k
        )
        return chosen, f"{what} images of the run"
    images = [preprocessing.apply(image) for image in _readable(_cifar10_train_files(n))]
    why = f"not the run's own images: {why}" if why else ""
    if not images:
        return None, (
            "no calibration images (no readable CIFAR-10 training folder"
            + (f"; {why}" if why else "")
            + "): every layer is int8"
        )
    return np.stack(images), (
        f"{len(images)} CIFAR-10 training images" + (f" ({why})" if why else "")
    )


def _readable(files: list[Path]) -> list:
    """The files that open as images (PIL), in order; damaged or non-image files are skipped."""

    images = []
    for file in files:
        try:
            images.append(load_image(file))
        except ImageError:
            continue
    return images


def _cifar10_train_files(n: int) -> list[Path]:
    """Up to ``n`` CIFAR-10 training files, the same share from every class (sorted names)."""
    root = paths.cifar10_dir()
    train = root / "train" if root else None
    if not train or not train.is_dir():
        return []
    classes = sorted(p for p in train.iterdir() if p.is_dir())
    per = -(-n // max(len(classes), 1))
    files = [f for c in classes for f in sorted(c.iterdir())[:per]]
    return files[:n]
