"""Train EfficientNet classifiers on an image dataset, fast enough for a 2-core CPU.

The trained network always takes raw 0..255 pixels at the dataset's storage size::

    image → [augmentation, finetune only] → [Resizing to `resolution`] → backbone (avg pool)
          → BatchNormalization → [Dropout] → Dense softmax

Two modes, and where their speed comes from:

- **frozen**: the backbone is frozen and called in inference mode, so its pooled features are a
  fixed function of each image. We compute them once (batched, with progress), cache them on disk,
  and train only the head on them; then the full image → class model is assembled from the same
  layer objects and saved. Training the whole network with the backbone inside the loop (the
  blog's way, :func:`fit_blog_way`) gives the same model, epoch after epoch; tests prove it.
  (Inference mode means frozen BatchNormalization *and* no stochastic depth: see :func:`_freeze`.)
- **finetune**: the top ``finetune_blocks`` MBConv blocks of the backbone (plus its top conv)
  train; BatchNormalization stays frozen (inference mode) and the frozen blocks run without
  stochastic depth. With ``augment`` on, flips and shifts happen inside the model, so every step runs the
  whole network. With ``augment`` off, the frozen *prefix* (stem … last frozen block) is again a
  fixed function: we cache its feature maps once and train only the top blocks and the head.

Every run is written to a run folder (see :mod:`core.runs`). Progress, per-batch and per-epoch
metrics go to a :class:`core.progress.Progress`; a stop request ends training at the end of the
current batch and keeps the best model so far.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from core import config as app_config
from core.fileio import atomic_path
from core.progress import Progress, Stopped
from core.runs import RunWriter

MODES = ("frozen", "finetune")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
_BLOCK_RE = re.compile(r"^(block\d+[a-z])_")  # Keras names layers block1a_…, block6d_…
# Points logged per epoch at most: enough for a smooth per-batch curve, small enough for snapshots.
_BATCH_POINTS_PER_EPOCH = 100
_MISCLASSIFIED_KEEP = 36
_HEAD_STEPS_PER_EXECUTION = 32


# ----- configuration ----------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        data: "cifar10" or the path of an image folder (see :func:`core.data.load_dataset`).
        backbone: A key of :data:`core.models.VARIANTS`.
        weights: "auto", "imagenet", "lite0", "none" or a weights file path. Offline, "auto"
            gives the Lite0 backbone whatever ``backbone`` says (the run records what was used).
        mode: "frozen" or "finetune".
        resolution: Input size the backbone sees; images are upscaled inside the model.
        epochs: Training epochs.
        batch_size: Images per step.
        lr: Peak learning rate.
        optimizer: "adam", "adamw" or "sgd" (momentum 0.9, Nesterov).
        seed: Seeds the head's initialisation, the batch order, subsets and augmentation.
        subset: Train on a stratified subset of this many images (quick demos).
        test_subset: Evaluate on a stratified subset of the test split.
        finetune_blocks: finetune mode: number of top MBConv blocks to train (B0 and Lite0 have
            16: block1a … block7a; more than the backbone has trains them all).
        augment: finetune mode: random flip and small translation inside the model.
        schedule: "constant" or "cosine" (decay to 0 over all steps).
        name: Run folder name (default: time and settings).
        dropout: Dropout before the classifier; None means 0 for frozen (the blog's head), 0.2
            for finetune.
        cache_features: Keep extracted features on disk under the cache folder and reuse them.
    """

    data: str = "cifar10"
    backbone: str = "b0"
    weights: str = "auto"
    mode: str = "frozen"
    resolution: int = 32
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0
    subset: int | None = None
    test_subset: int | None = None
    finetune_blocks: int = 2
    augment: bool = True
    schedule: str = "cosine"
    name: str | None = None
    dropout: float | None = None
    cache_features: bool = True

    def validate(self) -> None:
        """Check every value.

        Raises:
            ValueError: With a sentence naming the bad value and what is allowed.
        """
        from core.models import VARIANTS
        from core.weights import SOURCES

        if not isinstance(self.data, str) or not self.data.strip():
            raise ValueError("data must be 'cifar10' or the path of an image folder.")
        if self.data.strip().lower() != "cifar10" and not Path(self.data).expanduser().is_dir():
            raise ValueError(f"data folder {self.data!r} does not exist: give 'cifar10' or the path "
                             "of a folder with one subfolder per class.")
        if not isinstance(self.backbone, str) or self.backbone.lower() not in VARIANTS:
            raise ValueError(f"Unknown backbone {self.backbone!r}: choose one of {', '.join(VARIANTS)}.")
        if not isinstance(self.weights, str) or (
                self.weights not in SOURCES and not Path(self.weights).expanduser().is_file()):
            raise ValueError(f"weights must be one of {', '.join(SOURCES)} or the path of an "
                             f"existing .h5 weights file, not {self.weights!r}.")
        _check_choice("mode", self.mode, MODES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_int("resolution", self.resolution, 32, 1024, "pixels")
        _check_int("epochs", self.epochs, 1, 10_000)
        _check_int("batch_size", self.batch_size, 1, 8192)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_int("finetune_blocks", self.finetune_blocks, 1, 100, "blocks")
        for name in ("subset", "test_subset"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1, 10**9, "images")
        if not _is_number(self.lr) or not 0 < self.lr <= 10:
            raise ValueError(f"lr (learning rate) must be a number above 0 and at most 10, got {self.lr!r}.")
        if self.dropout is not None and (not _is_number(self.dropout) or not 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be at least 0 and below 1, got {self.dropout!r}.")
        for name in ("augment", "cache_features"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}.")
        if self.name is not None and (not isinstance(self.name, str) or not _NAME_RE.match(self.name)):
            raise ValueError(f"run name {self.name!r} must be 1–100 letters, digits, '.', '_', '+' "
                             "or '-', starting with a letter or digit.")

    def to_dict(self) -> dict:
        """The configuration as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build a config from a dict (e.g. a run's ``config.json``), ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def head_dropout(self) -> float:
        """The dropout rate actually used before the classifier."""
        if self.dropout is not None:
            return float(self.dropout)
        return 0.0 if self.mode == "frozen" else 0.2


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")


def _check_int(name: str, value, low: int, high: int, unit: str = "") -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
        unit = f" {unit}" if unit else ""
        raise ValueError(f"{name} must be a whole number from {low} to {high}{unit}, got {value!r}.")


# Presets: partial configs applied over TrainConfig's defaults (see preset_config).
PRESETS: dict[str, dict] = {
    # Tiny: a few seconds of training on CPU, to see the app work end to end.
    "quick demo": dict(mode="frozen", resolution=32, epochs=2, batch_size=32, lr=1e-3,
                       optimizer="adam", schedule="constant", subset=1000, test_subset=500),
    # The blog's protocol: frozen ImageNet B0 at 32×32, BN + Dense head, Adam 1e-3, batch 64,
    # 50 epochs, test split as validation. Our frozen path makes it ~20× faster than the blog's.
    "blog": dict(backbone="b0", weights="auto", mode="frozen", resolution=32, epochs=50,
                 batch_size=64, lr=1e-3, optimizer="adam", schedule="constant"),
    # The best recipe found for a 2-core CPU within 30 minutes (see docs/benchmarks.md).
    # Lite0 at 96×96, its top 3 blocks (block6c, 6d, 7a) fine-tuned on cached feature maps.
    "best (CPU, 30 min)": dict(backbone="lite0", weights="auto", mode="finetune", resolution=96,
                               finetune_blocks=3, augment=False, epochs=5, batch_size=64,
                               lr=1e-3, optimizer="adam", schedule="cosine"),
    # For a GPU: fine-tune the whole of B0 at its native 224×224 with augmentation, mixed
    # precision (about 15 minutes on one recent GPU). Not measured here (no GPU).
    "best (GPU, 15 min)": dict(backbone="b0", weights="auto", mode="finetune", resolution=224,
                               finetune_blocks=16, augment=True, epochs=10, batch_size=128,
                               lr=5e-4, optimizer="adamw", schedule="cosine"),
}


def preset_config(name: str, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from a preset of :data:`PRESETS`, with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}: choose one of {', '.join(PRESETS)}.")
    return TrainConfig(**{**PRESETS[name], **overrides})


# ----- results and jobs -------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a finished (or stopped) run produced.

    Attributes:
        run_dir: The run folder.
        test_accuracy: Test accuracy of the saved model; None when stopped before training.
        epochs: Epochs completed (a stopped partial epoch counts).
        wall_s: Seconds from start to saved files, data loading included.
        device: :func:`describe_device` text.
        weights: Which weights the backbone started from (e.g. ``lite0: ImageNet (offline ...)``).
        stopped: True when a stop request ended the run early.
    """

    run_dir: Path
    test_accuracy: float | None
    epochs: int
    wall_s: float
    device: str
    weights: str
    stopped: bool

    def to_dict(self) -> dict:
        """JSON-ready dict (the path as a string)."""
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        return out


class Busy(RuntimeError):
    """A training job is already running in this process."""


class TrainingJobs:
    """Runs one training job at a time in a worker thread.

    The UI starts a job, polls its :class:`Progress` and may stop it; whatever happens in the
    worker ends up in the progress object (result or error), never as an uncaught exception.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._progress: Progress | None = None

    def start(self, config: TrainConfig, runs_root: Path | None = None) -> Progress:
        """Validate ``config`` and start training it in a worker thread.

        Raises:
            ValueError: A bad configuration value (nothing is started).
            Busy: Another job is still running.
        """
        config.validate()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise Busy("A training run is already in progress: wait for it to finish or stop it.")
            progress = Progress()
            progress.message("Starting")
            thread = threading.Thread(target=self._work, args=(config, progress, runs_root),
                                      name="effnet-lab-training", daemon=True)
            self._progress, self._thread = progress, thread
            thread.start()
        return progress

    @staticmethod
    def _work(config: TrainConfig, progress: Progress, runs_root: Path | None) -> None:
        try:
            train(config, progress, runs_root)
        except ValueError:  # bad input: the message in the progress object says it all
            pass
        except Exception:  # already in the progress object; keep the traceback for debugging
            logging.getLogger(__name__).exception("training failed")

    def progress(self) -> Progress | None:
        """The current or last job's progress, or None if nothing was started."""
        return self._progress

    def stop(self) -> None:
        """Ask the current job to stop at the end of its current batch."""
        if self._progress is not None:
            self._progress.request_stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the current job; True when no job is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    @property
    def busy(self) -> bool:
        """True while a job's thread is alive."""
        return self._thread is not None and self._thread.is_alive()


JOBS = TrainingJobs()


# ----- device -----------------------------------------------------------------------------------
def _gpus() -> list[str]:
    from core.runtime import devices

    return devices()


def _backend() -> str:
    import keras

    return keras.backend.backend()


def describe_device() -> str:
    """The device training uses, e.g. ``CPU (2 cores)`` or ``GPU: NVIDIA H100 ×1 (mixed precision)``."""
    gpus = _gpus()
    if not gpus:
        return f"CPU ({os.cpu_count()} cores)"
    names = sorted({g.removeprefix("GPU: ") for g in gpus})
    extra = ", MirroredStrategy" if len(gpus) > 1 and _backend() == "tensorflow" else ""
    return f"GPU: {', '.join(names)} ×{len(gpus)} (mixed precision{extra})"


@contextlib.contextmanager
def _device_context(on_gpu: bool):
    """Mixed precision on GPU and all local GPUs through MirroredStrategy (TensorFlow only).

    Keras keeps its dtype policy per thread, so a training thread's mixed precision does not
    leak into other threads; the previous policy is restored on exit.
    """
    import keras

    old = keras.config.dtype_policy()
    with contextlib.ExitStack() as stack:
        if on_gpu:
            keras.config.set_dtype_policy("mixed_float16")
            stack.callback(keras.config.set_dtype_policy, old)
            if len(_gpus()) > 1 and _backend() == "tensorflow":
                import tensorflow as tf

                stack.enter_context(tf.distribute.MirroredStrategy().scope())
        yield


def _jit_compile(on_gpu: bool):
    # XLA on a CPU is many times slower for these models; JAX always compiles.
    return "auto" if on_gpu or _backend() != "tensorflow" else False


# ----- the network ------------------------------------------------------------------------------
@dataclass
class Network:
    """A classifier and the parts the fast paths need.

    Attributes:
        model: The full image → class model (what is saved).
        backbone: The nested EfficientNet (pooling "avg", no top).
        stem: Layers between the image and the backbone (augmentation, resizing).
        head: Layers after the pooled features (BatchNormalization, Dropout, Dense).
        features: The backbone's output tensor in ``model``'s graph.
        weights: :class:`core.weights.WeightsInfo` of the backbone.
        first_trainable: finetune: the first trainable layer of the backbone (where the frozen
            prefix ends), else None.
    """

    model: Any
    backbone: Any
    stem: list
    head: list
    features: Any
    weights: Any
    first_trainable: Any = None


def _apply(layers_, x):
    for layer in layers_:
        x = layer(x)
    return x


def _freeze(backbone, n_blocks: int):
    """Freeze the backbone except its top ``n_blocks`` blocks and top conv; BatchNorm stays frozen.

    Frozen layers run as at inference: BatchNormalization does when not trainable, and we set
    the frozen blocks' stochastic-depth Dropout rates to 0 (Keras 3 functional models pass the
    outer ``training`` flag to nested models, so ``backbone(x, training=False)`` would not stop
    them). The frozen part is then a fixed function of the image, and its output can be cached.

    Args:
        backbone: The EfficientNet from :func:`core.weights.load_backbone`.
        n_blocks: Top blocks to train; 0 freezes everything (frozen mode).

    Returns:
        The first trainable layer (where the frozen prefix ends), or None when all is frozen.
    """
    from keras import layers

    def block(layer):
        match = _BLOCK_RE.match(layer.name)
        return match.group(1) if match else None

    blocks = list(dict.fromkeys(b for b in map(block, backbone.layers) if b))  # in network order
    trainable = set(blocks[len(blocks) - min(n_blocks, len(blocks)):]) if n_blocks > 0 else set()
    backbone.trainable = bool(trainable)
    first_layer = None
    for layer in backbone.layers:
        top = bool(trainable) and (block(layer) in trainable or layer.name.startswith("top_"))
        if top and first_layer is None:
            first_layer = layer
        layer.trainable = top and not isinstance(layer, layers.BatchNormalization)
        if not top and isinstance(layer, layers.Dropout):
            layer.rate = 0.0
    return first_layer


def build_network(config: TrainConfig, num_classes: int, storage_size: int) -> Network:
    """Build the classifier for ``config`` (seeded, so two builds start from the same weights).

    Call inside :func:`_device_context` so GPU runs get mixed precision and all GPUs.
    """
    import keras
    from keras import layers

    from core.weights import load_backbone

    keras.utils.set_random_seed(config.seed)
    size = config.resolution
    backbone, info = load_backbone(config.backbone, config.weights, input_shape=(size, size, 3),
                                   include_top=False, pooling="avg")
    frozen = config.mode == "frozen"
    first = _freeze(backbone, 0 if frozen else config.finetune_blocks)
    stem = []
    if not frozen and config.augment:
        stem += [layers.RandomFlip("horizontal", seed=config.seed, name="augment_flip"),
                 layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=config.seed,
                                          name="augment_shift")]
    if size != storage_size:
        stem.append(layers.Resizing(size, size, interpolation="bilinear", name="upscale"))
    head = [layers.BatchNormalization(name="head_bn")]
    if config.head_dropout > 0:
        head.append(layers.Dropout(config.head_dropout, seed=config.seed, name="head_dropout"))
    # float32 softmax: under mixed precision, probabilities and the loss stay accurate.
    # Seeded explicitly: the head's start must not depend on what else drew random numbers
    # before (e.g. a one-off weights conversion), so two builds of one config are identical.
    head.append(layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions",
                             kernel_initializer=keras.initializers.GlorotUniform(seed=config.seed)))

    inputs = keras.Input((storage_size, storage_size, 3), name="image")
    x = _apply(stem, inputs)
    features = backbone(x)  # frozen parts run as at inference (see _freeze)
    model = keras.Model(inputs, _apply(head, features), name=f"{info.variant}_classifier")
    return Network(model, backbone, stem, head, features, info, first)


# ----- feature extraction -----------------------------------------------------------------------
def _extract(model, x: np.ndarray, progress: Progress, phase: str, batch_size: int) -> np.ndarray:
    """``model`` applied to ``x`` in batches with progress; a stop request raises Stopped."""
    progress.start(phase, len(x), "img")
    out = None
    for i in range(0, len(x), batch_size):
        progress.check_stop()
        part = np.asarray(model.predict_on_batch(x[i:i + batch_size].astype("float32")))
        if out is None:
            out = np.empty((len(x),) + part.shape[1:], dtype=part.dtype)
        out[i:i + len(part)] = part
        progress.advance(len(part))
    return out


def _features(model, x: np.ndarray, key: dict, progress: Progress, phase: str,
              batch_size: int, use_cache: bool) -> np.ndarray:
    """Extract features, reusing a disk cache keyed by ``key`` and the images' bytes."""
    digest = hashlib.blake2b(np.ascontiguousarray(x).data, digest_size=16)
    digest.update(json.dumps(key, sort_keys=True).encode())
    path = app_config.cache_dir() / "features" / f"{digest.hexdigest()}.npy"
    if use_cache and path.is_file():
        try:
            feats = np.load(path, allow_pickle=False)
            if len(feats) == len(x):
                progress.start(f"{phase} (cached)", len(x), "img")
                progress.set_done(len(x))
                return feats
        except (OSError, ValueError):
            pass  # a damaged cache file: extract again and overwrite it
    feats = _extract(model, x, progress, phase, batch_size)
    if use_cache:
        try:
            with atomic_path(path, suffix=".npy") as tmp:
                np.save(tmp, feats)
        except OSError:
            pass  # a full disk must not fail the run; the cache is only a speed-up
    return feats


def _cache_key(net: Network, config: TrainConfig, cut: str, storage_size: int) -> dict:
    import keras

    info = net.weights
    stat = Path(info.path).stat() if info.path and Path(info.path).is_file() else None
    return {
        "variant": info.variant, "source": info.source, "weights": info.path,
        "weights_file": [stat.st_size, stat.st_mtime_ns] if stat else None,
        "seed": config.seed if info.path is None else None,  # random init depends on the seed
        "resolution": config.resolution, "storage": storage_size, "cut": cut,
        "keras": keras.__version__, "backend": _backend(),
        "policy": keras.config.dtype_policy().name, "version": 1,
    }


# ----- the training loop ------------------------------------------------------------------------
def _optimizer(config: TrainConfig, total_steps: int):
    import keras

    lr = config.lr
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=max(total_steps, 1))
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=1e-4)
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)


@functools.cache
def _callback_class():
    """The Keras callback class (defined lazily so importing this module does not import Keras)."""
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        """Counts images, logs batches and turns a stop request into ``stop_training``."""

        def __init__(self, progress: Progress, n: int, batch_size: int):
            super().__init__()
            self.progress, self.n, self.batch_size = progress, n, batch_size
            steps = math.ceil(n / batch_size)
            self.log_every = max(1, math.ceil(steps / _BATCH_POINTS_PER_EPOCH))
            self.epoch = self.seen = 0
            self.logged = -1
            self.t_begin = self.t_last = time.time()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.seen, self.logged = epoch, 0, -1
            self.t_begin = self.t_last = time.time()

        def on_train_batch_end(self, batch, logs=None):
            # ``batch`` is the last step done: with steps_per_execution > 1, Keras calls this
            # once per group of steps, so count images from the step index.
            done = min(self.n, (batch + 1) * self.batch_size)
            self.progress.advance(done - self.seen)
            self.seen, self.t_last = done, time.time()
            if logs and (batch // self.log_every != self.logged or done == self.n):
                self.logged = batch // self.log_every
                self.progress.log_batch(epoch=self.epoch + 1, step=batch + 1,
                                        loss=float(logs.get("loss", float("nan"))),
                                        accuracy=float(logs.get("accuracy", float("nan"))))
            if self.progress.stop_requested:
                self.model.stop_training = True

        @property
        def images_per_s(self) -> float:
            elapsed = self.t_last - self.t_begin
            return self.seen / elapsed if elapsed > 0 else 0.0

    return ProgressCallback


def _compile(model, config: TrainConfig, n: int, epochs: int, on_gpu: bool,
             steps_per_execution: int = 1) -> None:
    model.compile(optimizer=_optimizer(config, math.ceil(n / config.batch_size) * epochs),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=_jit_compile(on_gpu), steps_per_execution=steps_per_execution)


def _fit(model, x: np.ndarray, y: np.ndarray, val: tuple, config: TrainConfig, progress: Progress,
         *, on_gpu: bool, epochs: int | None = None, on_epoch=None, compile: bool = True,
         steps_per_execution: int = 1) -> tuple[list[dict], int | None]:
    """Train ``model`` epoch by epoch in a seeded batch order; keep the best validation weights.

    The order of epoch ``e`` is ``default_rng([seed, e]).permutation(n)``, so any two paths
    trained from the same weights on the same inputs see exactly the same batches.

    Returns:
        ``(rows, best_epoch)``: one metrics dict per epoch, and the epoch whose weights the model
        now holds (None if no epoch finished).
    """
    import keras

    epochs = epochs or config.epochs
    n, batch = len(y), config.batch_size
    if compile:
        _compile(model, config, n, epochs, on_gpu, steps_per_execution)
    callback = _callback_class()(progress, n, batch)
    progress.start("Training", n * epochs, "img")
    rows: list[dict] = []
    best, best_weights, best_epoch = -math.inf, None, None
    for epoch in range(epochs):
        order = np.random.default_rng([config.seed, epoch]).permutation(n)
        started = time.time()
        history = model.fit(x[order], y[order], batch_size=batch, epochs=epoch + 1,
                            initial_epoch=epoch, shuffle=False, validation_data=val,
                            callbacks=[callback], verbose=0).history
        last = {k: float(v[-1]) for k, v in history.items() if v}
        row = {
            "epoch": epoch + 1, "loss": last.get("loss"), "accuracy": last.get("accuracy"),
            "val_loss": last.get("val_loss"), "val_accuracy": last.get("val_accuracy"),
            "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
            "seconds": round(time.time() - started, 3),
            "images_per_s": round(callback.images_per_s, 1),
        }
        rows.append(row)
        progress.log_epoch(**row)
        if on_epoch is not None:
            on_epoch(rows)
        score = row["val_accuracy"] if row["val_accuracy"] is not None else -row["loss"]
        if score > best:
            best, best_weights, best_epoch = score, model.get_weights(), epoch + 1
        if progress.stop_requested:
            break
    if best_weights is not None:
        model.set_weights(best_weights)
    return rows, best_epoch


# ----- one run ----------------------------------------------------------------------------------
def _data_label(data: str) -> str:
    if data.strip().lower() == "cifar10":
        return "cifar10"
    name = re.sub(r"[^A-Za-z0-9_.+-]", "-", Path(data).expanduser().resolve().name)
    return name.strip(".-") or "data"


def _new_run_dir(config: TrainConfig, runs_root) -> Path:
    root = Path(runs_root) if runs_root is not None else app_config.runs_dir()
    if config.name:
        path = root / config.name
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(f"run folder {path} already exists and is not empty: choose another name.")
        return path
    base = (f"{time.strftime('%Y%m%d-%H%M%S')}-{_data_label(config.data)}-{config.backbone}-"
            f"{config.mode}-{config.resolution}px")
    path, i = root / base, 2
    while path.exists():
        path, i = root / f"{base}-{i}", i + 1
    return path


def _load_data(config: TrainConfig, progress: Progress):
    from core.data import load_dataset

    progress.message("Loading data")
    return load_dataset(config.data, subset=config.subset, test_subset=config.test_subset,
                        seed=config.seed, progress=progress)


def _training_inputs(net: Network, config: TrainConfig, ds, progress: Progress, on_gpu: bool):
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
        train_model = keras.Model(features_in, _apply(net.head, features_in))
    elif not config.augment:
        cut_tensor = net.first_trainable.input
        prefix = keras.Model(net.backbone.input, cut_tensor)
        suffix = keras.Model(cut_tensor, net.backbone.output)
        image = keras.Input((storage, storage, 3), name="image")
        extractor = keras.Model(image, prefix(_apply(net.stem, image)))
        cut, maps_in = net.first_trainable.name, keras.Input(cut_tensor.shape[1:], name="feature_maps")
        train_model = keras.Model(maps_in, _apply(net.head, suffix(maps_in)))
    else:
        return net.model, ds.x_train, ds.x_test
    key = _cache_key(net, config, cut, storage)
    x_train = _features(extractor, ds.x_train, key, progress, "Extracting features (train)",
                        batch, config.cache_features)
    x_test = _features(extractor, ds.x_test, key, progress, "Extracting features (test)",
                       batch, config.cache_features)
    return train_model, x_train, x_test


def _evaluate(model, x_test, ds, batch_size: int) -> dict:
    """Test accuracy, confusion matrix, per-class accuracy and the worst mistakes."""
    probs = np.asarray(model.predict(x_test, batch_size=max(batch_size, 256), verbose=0))
    pred = probs.argmax(axis=1)
    y = ds.y_test
    k = ds.num_classes
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    totals = confusion.sum(axis=1)
    per_class = {name: (float(confusion[i, i] / totals[i]) if totals[i] else None)
                 for i, name in enumerate(ds.class_names)}
    wrong = np.flatnonzero(pred != y)
    confidence = probs[wrong, pred[wrong]]
    keep = wrong[np.argsort(-confidence, kind="stable")][:_MISCLASSIFIED_KEEP]
    return {
        "accuracy": float((pred == y).mean()),
        "confusion": confusion.tolist(),
        "per_class": per_class,
        "misclassified": {"images": ds.x_test[keep], "true": y[keep], "pred": pred[keep],
                          "prob": probs[keep, pred[keep]].astype("float32")},
    }


def train(config: TrainConfig, progress: Progress | None = None,
          runs_root: Path | None = None) -> RunResult:
    """Train one classifier and save it as a run.

    Args:
        config: The run's settings (validated here).
        progress: Receives phases, per-batch/per-epoch metrics and the final result; its stop
            request ends the run at the end of the current batch.
        runs_root: Parent folder of the run (default :func:`core.config.runs_dir`).

    Returns:
        The :class:`RunResult` (also passed to ``progress.finish`` as a dict).

    Raises:
        ValueError: Bad configuration, or a data problem (``core.data.DataError``). Nothing is
            written for errors found before training starts.
        core.weights.WeightsError: The requested weights are unavailable.
    """
    progress = progress if progress is not None else Progress()
    started = time.time()
    writer: RunWriter | None = None
    try:
        config.validate()
        device = describe_device()
        progress.begin(device=device)
        writer = RunWriter(_new_run_dir(config, runs_root))
        on_gpu = bool(_gpus())
        with _device_context(on_gpu):
            result = _run(config, progress, writer, device, on_gpu, started)
    except Exception as exc:
        message = _error_message(exc)
        if writer is not None and (writer.path / "config.json").is_file():
            try:  # the run folder exists: record why it failed
                writer.finish({"status": "error", "error": message, "test_accuracy": None,
                               "wall_s": round(time.time() - started, 2)})
            except OSError:
                pass
        progress.finish(error=message)
        raise
    progress.finish(result=result.to_dict())
    return result


def _run(config: TrainConfig, progress: Progress, writer: RunWriter, device: str, on_gpu: bool,
         started: float) -> RunResult:
    """The body of :func:`train` (inside the device context)."""
    timings: dict[str, float] = {}
    try:
        ds = _load_data(config, progress)
        progress.check_stop()  # no point building a model for a run already stopped
    except Stopped:
        writer.start(config.to_dict(), [])
        return _stopped_early(writer, config.weights, device, started, timings)
    timings["load_s"] = round(time.time() - started, 2)
    progress.message("Building the model")
    net = build_network(config, ds.num_classes, ds.storage_size)
    writer.start(config.to_dict(), ds.class_names)
    t = time.time()
    try:
        train_model, x_train, x_test = _training_inputs(net, config, ds, progress, on_gpu)
    except Stopped:
        return _stopped_early(writer, net.weights.label, device, started, timings)
    timings["features_s"] = round(time.time() - t, 2)
    t = time.time()
    # A head on cached features takes ~1 ms a step, so Keras's per-step overhead dominates:
    # run steps in groups (progress and stop requests then act every group, ~0.1 s).
    group = _HEAD_STEPS_PER_EXECUTION if config.mode == "frozen" else 1
    rows, best_epoch = _fit(train_model, x_train, ds.y_train, (x_test, ds.y_test), config,
                            progress, on_gpu=on_gpu, on_epoch=writer.history,
                            steps_per_execution=group)
    timings["train_s"] = round(time.time() - t, 2)
    progress.message("Evaluating and saving")
    scores = _evaluate(train_model, x_test, ds, config.batch_size)
    writer.model(net.model)
    stopped = progress.stop_requested
    wall = round(time.time() - started, 2)
    writer.finish({
        "status": "stopped" if stopped else "done", "test_accuracy": scores["accuracy"],
        "epochs": len(rows), "best_epoch": best_epoch,
        "last_epoch_val_accuracy": rows[-1]["val_accuracy"] if rows else None,
        "per_class_accuracy": scores["per_class"], "wall_s": wall, "timings": timings,
        "device": device, "backend": _backend(), "weights": net.weights.label,
        "weights_detail": net.weights.detail, "data_source": ds.source, "split": ds.split,
        "skipped": ds.skipped, "train_images": len(ds.y_train), "test_images": len(ds.y_test),
    }, scores["confusion"], scores["misclassified"])
    return RunResult(writer.path, scores["accuracy"], len(rows), wall, device, net.weights.label,
                     stopped)


def _stopped_early(writer: RunWriter, weights: str, device: str, started: float,
                   timings: dict) -> RunResult:
    """Record a run stopped before training began (nothing trained, so no model)."""
    wall = round(time.time() - started, 2)
    writer.finish({"status": "stopped", "test_accuracy": None, "epochs": 0, "wall_s": wall,
                   "device": device, "weights": weights, "timings": timings})
    return RunResult(writer.path, None, 0, wall, device, weights, True)


def _error_message(exc: Exception) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if isinstance(exc, (ValueError, RuntimeError)) else f"{exc.__class__.__name__}: {text}"


# ----- the blog's way (for the benchmark and the equivalence test) ------------------------------
def fit_blog_way(config: TrainConfig, *, dataset=None, epochs: int | None = None,
                 progress: Progress | None = None, warmup: bool = False):
    """Train the full network with the backbone inside every step, as the blog does.

    Same seeded model, batch order and optimizer as :func:`train`, but no cached features: every
    step runs the images through the backbone. Nothing is saved.

    Args:
        config: As for :func:`train` (typically frozen mode).
        dataset: A loaded :class:`core.data.Dataset` (default: load ``config.data``).
        epochs: Epochs to train (default ``config.epochs``); the learning-rate schedule still
            spans ``config.epochs``.
        progress: Receives progress; stop works as in :func:`train`.
        warmup: First trace the train and test steps on two batches, so epoch timings measure
            steady-state speed (for the benchmark; it changes the weights slightly).

    Returns:
        ``(model, rows)``: the trained full model and its per-epoch metrics rows.
    """
    config.validate()
    progress = progress if progress is not None else Progress()
    ds = dataset if dataset is not None else _load_data(config, progress)
    on_gpu = bool(_gpus())
    with _device_context(on_gpu):
        net = build_network(config, ds.num_classes, ds.storage_size)
        _compile(net.model, config, len(ds.y_train), config.epochs, on_gpu)
        if warmup:
            k = 2 * config.batch_size
            net.model.fit(ds.x_train[:k], ds.y_train[:k], batch_size=config.batch_size,
                          validation_data=(ds.x_test[:k], ds.y_test[:k]), verbose=0)
        rows, _ = _fit(net.model, ds.x_train, ds.y_train, (ds.x_test, ds.y_test), config, progress,
                       on_gpu=on_gpu, epochs=epochs, compile=False)
    return net.model, rows
