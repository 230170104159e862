"""Feature extraction for the fast training paths, with a disk cache.

When everything below some layer is frozen (and runs as at inference, see
:func:`core.training.network.freeze`), its output is a fixed function of each image: we compute it
once, batch by batch with progress, and train only the layers above it.

- frozen mode: the cut is the backbone's pooled output; only the head trains.
- finetune mode without augmentation: the cut is where the frozen prefix ends; the top blocks
  and the head train on the cached feature maps.

The cache lives under ``paths.cache_dir() / "features"``, keyed by the images' bytes and
everything that determines the frozen part's function (weights, resolution, cut, backend, ...).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from core import paths
from core.fileio import atomic_path
from core.progress import Progress
from core.training.network import TrainNetwork, apply_layers
from core.training.options import TrainConfig

CACHE_VERSION = 1


def extract(model, x: np.ndarray, progress: Progress, phase: str, batch_size: int) -> np.ndarray:
    """``model`` applied to ``x`` in batches with progress; a stop request raises Stopped."""
    progress.start(phase, len(x), "img")
    out = None
    for i in range(0, len(x), batch_size):
        progress.check_stop()
        # [:batch]: under TensorFlow's MirroredStrategy, Keras's predict_on_batch runs the whole
        # batch on every replica and returns all the copies (first copy = the right rows).
        part = np.asarray(model.predict_on_batch(x[i:i + batch_size].astype("float32")))
        part = part[:min(batch_size, len(x) - i)]
        if out is None:
            out = np.empty((len(x),) + part.shape[1:], dtype=part.dtype)
        out[i:i + len(part)] = part
        progress.advance(len(part))
    return out


def cached_features(model, x: np.ndarray, key: dict, progress: Progress, phase: str,
                    batch_size: int, use_cache: bool) -> np.ndarray:
    """Extract features, reusing a disk cache keyed by ``key`` and the images' bytes."""
    digest = hashlib.blake2b(np.ascontiguousarray(x).data, digest_size=16)
    digest.update(json.dumps(key, sort_keys=True).encode())
    path = paths.cache_dir() / "features" / f"{digest.hexdigest()}.npy"
    if use_cache and path.is_file():
        try:
            feats = np.load(path, allow_pickle=False)
            if len(feats) == len(x):
                progress.start(f"{phase} (cached)", len(x), "img")
                progress.set_done(len(x))
                return feats
        except (OSError, ValueError):
            pass  # a damaged cache file: extract again and overwrite it
    feats = extract(model, x, progress, phase, batch_size)
    if use_cache:
        try:
            with atomic_path(path, suffix=".npy") as tmp:
                np.save(tmp, feats)
        except OSError:
            pass  # a full disk must not fail the run; the cache is only a speed-up
    return feats


def cache_key(net: TrainNetwork, config: TrainConfig, cut: str, storage_size: int) -> dict:
    """Everything that determines the frozen part's output, besides the images themselves."""
    import keras

    info = net.weights
    stat = Path(info.path).stat() if info.path and Path(info.path).is_file() else None
    return {
        "variant": info.variant, "source": info.source, "weights": info.path,
        "weights_file": [stat.st_size, stat.st_mtime_ns] if stat else None,
        "seed": config.seed if info.path is None else None,  # random init depends on the seed
        "resolution": config.resolution, "storage": storage_size, "cut": cut,
        "keras": keras.__version__, "backend": keras.backend.backend(),
        "policy": keras.config.dtype_policy().name, "version": CACHE_VERSION,
    }


def training_inputs(net: TrainNetwork, config: TrainConfig, ds, progress: Progress, on_gpu: bool):
    """The model that trains, and its train/test inputs (images, or cached features).

    Returns:
        ``(train_model, x_train, x_test)``. ``train_model`` shares its trainable layers with
        ``net.model``, so training it trains the full model.
    """
    import keras

    batch = 512 if on_gpu else 128
    storage = ds.storage_size
    if config.mode == "frozen":
        extractor = keras.Model(net.model.input, net.features)
        cut, features_in = "pooled", keras.Input(net.features.shape[1:], name="features")
        train_model = keras.Model(features_in, apply_layers(net.head, features_in))
    elif not config.augment:
        cut_tensor = net.first_trainable.input
        prefix = keras.Model(net.backbone.input, cut_tensor)
        suffix = keras.Model(cut_tensor, net.backbone.output)
        image = keras.Input((storage, storage, 3), name="image")
        extractor = keras.Model(image, prefix(apply_layers(net.stem, image)))
        cut, maps_in = net.first_trainable.name, keras.Input(cut_tensor.shape[1:], name="feature_maps")
        train_model = keras.Model(maps_in, apply_layers(net.head, suffix(maps_in)))
    else:
        return net.model, ds.x_train, ds.x_test
    key = cache_key(net, config, cut, storage)
    x_train = cached_features(extractor, ds.x_train, key, progress, "Extracting features (train)",
                              batch, config.cache_features)
    x_test = cached_features(extractor, ds.x_test, key, progress, "Extracting features (test)",
                             batch, config.cache_features)
    return train_model, x_train, x_test
