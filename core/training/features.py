"""Feature extraction for the fast training paths, with a disk cache.

When everything below some layer is frozen (and runs as at inference, see
:func:`core.training.network.freeze`), its output is a fixed function of each image: we compute it
once, batch by batch with progress, and train only the layers above it.

- frozen mode: the cut is the backbone's pooled output; only the head trains.
- finetune mode without augmentation: the cut is where the frozen prefix ends; the top blocks
  and the head train on the cached feature maps.
- two-phase fine-tuning (``head_epochs``): first the head alone, on pooled features (from the
  cached maps when there are some), see :func:`head_inputs`.

Mirror images (``flip_features``: flip augmentation on cached features; ``flip_tta``: flip
test-time augmentation) get features of their own, cached the same way; the inputs are then
pairs (the images', the mirrors'), see :func:`core.training.fit.as_inputs`.

The cache lives under ``paths.cache_dir() / "features"``, keyed by the images' bytes and
everything that determines the frozen part's function (weights, resolution, cut, backend, ...).

Memory stays bounded: feature maps can be huge (B0 at 224 px cut after its stem is 112×112×32
floats an image, 96 GB for CIFAR-10), so once the first batch shows their size, features larger
than the memory budget (``EFFNET_LAB_FEATURE_MEMORY_GB``, default 40 % of RAM) go to a
disk-backed array in the cache folder, and training reads them a batch at a time; if the disk
cannot hold them either, the run stops with the numbers and what to change
(:mod:`core.training.feature_memory`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from core.platform import cache, paths
from core.platform.fileio import atomic_path
from core.platform.progress import Progress
from core.platform.runtime import feature_policy
from core.training.feature_memory import allocate, discard, memory_budget
from core.training.network import TrainNetwork, apply_layers
from core.training.options import TrainConfig

CACHE_VERSION = 2  # 2: extractors with BatchNorm folded into the convolutions (see fold_batchnorm)


def extract(
    model,
    x: np.ndarray,
    progress: Progress,
    phase: str,
    batch_size: int,
    spill_dir: Path | None = None,
) -> np.ndarray:
    """``model`` applied to ``x`` in batches with progress; a stop request raises Stopped.

    The result is an in-memory array, or a disk-backed ``np.memmap`` in ``spill_dir`` (default:
    the features cache) when it is larger than the memory budget
    (:func:`core.training.feature_memory.memory_budget`).
    """
    progress.start(phase, len(x), "img")
    out = None
    try:
        for i in range(0, len(x), batch_size):
            progress.check_stop()
            # [:batch]: under TensorFlow's MirroredStrategy, Keras's predict_on_batch runs the
            # whole batch on every replica and returns all the copies (first copy = the right rows).
            part = np.asarray(model.predict_on_batch(x[i : i + batch_size].astype("float32")))
            part = part[: min(batch_size, len(x) - i)]
            if out is None:  # the first batch tells the size of everything
                out = allocate(
                    (len(x),) + part.shape[1:],
                    part.dtype,
                    spill_dir or paths.cache_dir() / "features",
                )
            out[i : i + len(part)] = part
            progress.advance(len(part))
    except BaseException:
        discard(out)
        raise
    if isinstance(out, np.memmap):
        out.flush()
    return out


def cached_features(
    model,
    x: np.ndarray,
    key: dict,
    progress: Progress,
    phase: str,
    batch_size: int,
    use_cache: bool,
) -> np.ndarray:
    """Extract features, reusing a disk cache keyed by ``key`` and the images' bytes."""
    digest = hashlib.blake2b(np.ascontiguousarray(x).data, digest_size=16)
    digest.update(json.dumps(key, sort_keys=True).encode())
    path = paths.cache_dir() / "features" / f"{digest.hexdigest()}.npy"
    if use_cache and path.is_file():
        try:
            big = path.stat().st_size > memory_budget()
            feats = np.load(path, mmap_mode="r" if big else None, allow_pickle=False)
            if len(feats) == len(x):
                cache.touch(path)
                progress.start(f"{phase} (cached)", len(x), "img")
                progress.set_done(len(x))
                return feats
        except (OSError, ValueError):
            pass  # a damaged cache file: extract again and overwrite it
    feats = extract(model, x, progress, phase, batch_size)
    if isinstance(feats, np.memmap):  # already on disk: keep it as the cache entry, or not
        if use_cache:
            os.replace(feats.filename, path)
            cache.prune(keep=path)
        else:
            discard(feats)
        return feats
    if use_cache:
        try:
            with atomic_path(path, suffix=".npy") as tmp:
                np.save(tmp, feats)
            cache.prune(keep=path)
        except OSError:
            pass  # a full disk must not fail the run; the cache is only a speed-up
    return feats


def cache_key(
    net: TrainNetwork, config: TrainConfig, cut: str, storage_size: int, policy: str
) -> dict:
    """Everything that determines the frozen part's output, besides the images themselves
    (``policy``: the dtype policy the extractor computes under)."""
    import keras

    info = net.weights
    stat = Path(info.path).stat() if info.path and Path(info.path).is_file() else None
    return {
        "variant": info.variant,
        "source": info.source,
        "weights": info.path,
        "weights_file": [stat.st_size, stat.st_mtime_ns] if stat else None,
        "seed": config.seed if info.path is None else None,  # random init depends on the seed
        "resolution": config.resolution,
        "storage": storage_size,
        "cut": cut,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "policy": keras.config.dtype_policy().name,
        "extractor_policy": policy,
        "multiscale": bool(config.multiscale) and config.mode == "frozen",
        "version": CACHE_VERSION,
    }


def training_inputs(
    net: TrainNetwork,
    config: TrainConfig,
    ds,
    progress: Progress,
    on_gpu: bool,
    train_only: bool = False,
):
    """The model that trains, and its train/test inputs (images, or cached features).

    Args:
        train_only: Prepare the training inputs only (``x_val`` and ``x_test`` come back None),
            e.g. for the learning-rate finder.

    Returns:
        ``(train_model, x_train, x_val, x_test)``. ``train_model`` shares its trainable layers
        with ``net.model``, so training it trains the full model.
    """
    import keras

    batch = 512 if on_gpu else 128
    storage = ds.storage_size
    if config.mode == "frozen":
        frozen, cut, train_model = net.backbone, "pooled", head_model(net)
    elif not config.augment:
        cut_tensor = net.first_trainable.input
        frozen = keras.Model(net.backbone.input, cut_tensor)  # the prefix below the trained top
        suffix = keras.Model(cut_tensor, net.backbone.output)
        cut, maps_in = (
            net.first_trainable.name,
            keras.Input(cut_tensor.shape[1:], name="feature_maps"),
        )
        train_model = keras.Model(maps_in, apply_layers(net.head, suffix(maps_in)))
    else:
        if train_only:
            return net.model, ds.x_train, None, None
        return (net.model, ds.x_train) + _evaluation_pair(ds, config, lambda x, name: x)
    policy = extractor_policy(config)

    def through_cache(policy):
        extractor = frozen_extractor(net, frozen, storage, policy)
        key = cache_key(net, config, cut, storage, policy)
        return _features_through_cache(extractor, key, config, progress, batch)

    features = through_cache(policy)
    x_train = _with_mirror(features, ds.x_train, "train", config.flip_features)
    if train_only:
        return train_model, x_train, None, None
    # The test split is measured as the saved model computes: in float32.
    test_features = features if policy == "float32" else through_cache("float32")
    return (train_model, x_train) + _evaluation_pair(ds, config, features, test_features)


def _features_through_cache(extractor, key: dict, config: TrainConfig, progress, batch: int):
    """``features(images, name)``: ``extractor`` applied to the images through the features
    cache under ``key`` (when ``config.cache_features``), as phase "Extracting features (name)"."""

    def features(x, name):
        return cached_features(
            extractor,
            x,
            key,
            progress,
            f"Extracting features ({name})",
            batch,
            config.cache_features,
        )

    return features


def _evaluation_pair(ds, config: TrainConfig, features, test_features=None) -> tuple:
    """``(x_val, x_test)`` through ``features(images, name)`` (see :func:`_with_mirror`);
    ``test_features`` (default ``features``) for the test split. Under the blog's protocol the
    test split validates: its inputs serve both."""
    test_features = test_features or features
    if ds.x_val is ds.x_test:
        x_test = _with_mirror(test_features, ds.x_test, "test", config.flip_tta)
        return x_test, x_test
    return (
        _with_mirror(features, ds.x_val, "validation", config.flip_tta),
        _with_mirror(test_features, ds.x_test, "test", config.flip_tta),
    )


def _with_mirror(features, x, name: str, mirrored: bool):
    """``features(x)``; with ``mirrored`` (flip augmentation, flip test-time augmentation) the
    pair (those of the images, those of their mirror images)."""
    plain = features(x, name)
    if not mirrored:
        return plain
    return plain, features(np.ascontiguousarray(x[:, :, ::-1]), f"{name}, mirrored")


def head_model(net: TrainNetwork):
    """pooled features → class: the head alone (its layers shared with ``net.model``)."""
    import keras

    features_in = keras.Input(net.features.shape[1:], name="features")
    return keras.Model(features_in, apply_layers(net.head, features_in))


def head_inputs(
    net: TrainNetwork,
    config: TrainConfig,
    ds,
    progress: Progress,
    on_gpu: bool,
    maps: tuple | None = None,
):
    """The head-only model and its pooled train and validation features: the first phase of
    two-phase fine-tuning (``config.head_epochs``), while the top blocks still hold their
    ImageNet weights.

    Args:
        maps: ``(x_train, x_val)``: the fine-tuning path's cached feature maps, when it has them;
            the pooled features then come from applying the (still frozen) top blocks to the maps,
            not from running the whole backbone on the images again.

    Returns:
        ``(head_model, f_train, f_val)``.
    """
    import keras

    batch = 512 if on_gpu else 128
    if maps is not None:
        cut_tensor = net.first_trainable.input
        top = keras.Model(cut_tensor, net.backbone.output)

        def pooled(x, name):
            if isinstance(x, tuple):  # flip TTA: the maps of the images and of their mirrors
                return tuple(pooled(part, f"{name}, {i + 1}/2") for i, part in enumerate(x))
            return extract(top, x, progress, f"Pooling the top blocks' output ({name})", batch)

        return head_model(net), pooled(maps[0], "train"), pooled(maps[1], "validation")
    # The same function (and cache entries) as frozen mode's features.
    extractor = frozen_extractor(net, net.backbone, ds.storage_size)
    key = cache_key(net, config, "pooled", ds.storage_size, "float32")
    features = _features_through_cache(extractor, key, config, progress, batch)
    f_train = _with_mirror(features, ds.x_train, "train", config.flip_features)
    return head_model(net), f_train, _with_mirror(features, ds.x_val, "validation", config.flip_tta)


def extractor_policy(config: TrainConfig) -> str:
    """The dtype policy of the cached paths' feature extractors (frozen mode, and finetune
    without augmentation): ``feature_precision``, resolved by
    :func:`core.platform.runtime.feature_policy`; float32 for the path that extracts nothing."""
    cached = config.mode == "frozen" or not config.augment
    return feature_policy(config.feature_precision) if cached else "float32"


def frozen_extractor(net: TrainNetwork, frozen, storage: int, policy: str = "float32"):
    """image → ``frozen``'s output (the whole backbone's pooled features, or the prefix's
    feature maps below the fine-tuned top), BatchNorm folded; computed under ``policy``
    ("mixed_bfloat16": see :func:`in_policy`), returned in float32."""
    import keras

    image = keras.Input((storage, storage, 3), name="image")
    part = fold_batchnorm(frozen)
    if policy != "float32":
        part = in_policy(part, policy)
    return keras.Model(image, keras.ops.cast(part(apply_layers(net.stem, image)), "float32"))


def in_policy(model, policy: str):
    """A copy of ``model`` (a functional model of plain layers) that computes under the Keras
    dtype ``policy``, e.g. "mixed_bfloat16": bfloat16 arithmetic on float32 weights. For frozen
    extraction only: training and the saved model keep their own policy."""
    import keras

    def copy(layer):
        config = {**layer.get_config(), "dtype": policy}
        twin = type(layer).from_config(config)
        if layer.weights:
            twin.build(layer.input.shape)
            twin.set_weights(layer.get_weights())
            # Normalization keeps mean/variance as constants that set_weights leaves stale
            # (see core.models.efficientnet.set_input_normalization)
            if isinstance(twin, keras.layers.Normalization):
                twin.finalize_state()
        return twin

    return keras.models.clone_model(model, clone_function=copy)


def fold_batchnorm(model):
    """The same function as ``model`` at inference, faster: each convolution followed only by a
    BatchNormalization becomes one convolution with the normalisation folded into its kernel and
    bias (measured ~40 % more images/s for Lite0's prefix at 160 px on this CPU; outputs agree
    to ~3e-6 relative). Only for frozen, inference-only parts (e.g. feature extraction); layers
    not folded are shared with ``model``.
    """
    import keras
    from keras import layers

    # Who reads each tensor (public API: every layer of a built model has .input and .output).
    readers: dict[int, list] = {}
    for layer in model.layers:
        if not isinstance(layer, layers.InputLayer):
            for tensor in keras.tree.flatten(layer.input):
                readers.setdefault(id(tensor), []).append(layer)
    producers = {id(layer.output): layer for layer in model.layers}
    folded, dropped = {}, set()
    for bn in model.layers:
        if not isinstance(bn, layers.BatchNormalization) or not (bn.center and bn.scale):
            continue
        conv = producers.get(id(bn.input))
        if (
            not isinstance(conv, (layers.Conv2D, layers.DepthwiseConv2D))
            or readers.get(id(conv.output)) != [bn]
            or conv.get_config().get("activation") != "linear"
            or bn.axis not in (-1, 3, [-1], [3])
        ):
            continue
        gamma, beta, mean, var = (np.asarray(w, dtype="float64") for w in bn.get_weights())
        scale = gamma / np.sqrt(var + bn.epsilon)
        bias = np.asarray(conv.bias, dtype="float64") if conv.use_bias else np.zeros_like(mean)
        merged = type(conv).from_config(
            {**conv.get_config(), "use_bias": True, "name": f"{conv.name}_bnfold"}
        )
        merged.build(conv.input.shape)
        depthwise = isinstance(conv, layers.DepthwiseConv2D)  # kernel (h, w, channels, 1)
        kernel = np.asarray(conv.kernel, dtype="float64") * (scale[:, None] if depthwise else scale)
        merged.set_weights(
            [kernel.astype("float32"), ((bias - mean) * scale + beta).astype("float32")]
        )
        folded[conv.name] = merged
        dropped.add(bn.name)

    def call(layer, *args, **kwargs):
        if layer.name in dropped:  # already inside the folded convolution
            return args[0]
        return folded.get(layer.name, layer)(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
