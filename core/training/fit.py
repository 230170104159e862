"""The training loop: optimizer and schedule, a progress callback, and seeded epochs that keep the
best weights (by validation accuracy)."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable

import numpy as np

from core.platform.progress import Progress
from core.platform.runtime import batch_multiple, jit_compile
from core.training.options import TrainConfig

# Points logged per epoch at most: enough for a smooth per-batch curve, small enough for snapshots.
BATCH_POINTS_PER_EPOCH = 100


def make_optimizer(config: TrainConfig, total_steps: int):
    """The optimizer ``config`` names, with its learning-rate schedule over ``total_steps``."""
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

        def __init__(self, progress: Progress, n: int, batch_size: int, offset: int = 0):
            super().__init__()
            self.progress, self.n, self.batch_size = progress, n, batch_size
            self.offset = offset  # epochs done by an earlier phase: batches log run-wide epochs
            steps = math.ceil(n / batch_size)
            self.log_every = max(1, math.ceil(steps / BATCH_POINTS_PER_EPOCH))
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
                self.progress.log_batch(
                    epoch=self.offset + self.epoch + 1,
                    step=batch + 1,
                    loss=float(logs.get("loss", float("nan"))),
                    accuracy=float(logs.get("accuracy", float("nan"))),
                )
            if self.progress.stop_requested:
                self.model.stop_training = True

        @property
        def images_per_s(self) -> float:
            elapsed = self.t_last - self.t_begin
            return self.seen / elapsed if elapsed > 0 else 0.0

    return ProgressCallback


@functools.cache
def _batches_class():
    """A Keras PyDataset reading a disk-backed array one batch at a time (defined lazily)."""
    import keras

    class Batches(keras.utils.PyDataset):
        """Batches of ``x[order]`` (and ``y``): the same batches, in the same order, as the
        in-memory path, so both train the same model."""

        def __init__(self, x, y, order, batch_size, mirrored=None, mirror=None):
            super().__init__()
            self.x, self.y, self.order, self.batch_size = x, y, order, batch_size
            self.mirrored, self.mirror = mirrored, mirror

        def __len__(self):
            return math.ceil(len(self.order) / self.batch_size)

        def __getitem__(self, i):
            part = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = self.order[part]
            xs = np.asarray(self.x[idx], dtype="float32")
            if self.mirror is not None:
                pick = self.mirror[part]
                xs[pick] = self.mirrored[idx[pick]]
            return xs if self.y is None else (xs, self.y[idx])

    return Batches


def as_inputs(
    x,
    y: np.ndarray | None,
    batch_size: int,
    order: np.ndarray | None = None,
    mirror: np.ndarray | None = None,
):
    """``(inputs, labels)`` for Keras's ``fit``/``predict``: in-memory arrays as they are (in
    ``order``), a disk-backed ``np.memmap`` as batches read one at a time (labels inside).

    A memmap indexed as a whole (``x[order]``) would be copied into memory entirely.

    Args:
        x: The inputs, or a pair (inputs, the mirror images' inputs): flip augmentation on
            cached features, where ``mirror[i]`` says that position ``i`` of ``order`` takes the
            mirror image's.
    """
    x, mirrored = x if isinstance(x, tuple) else (x, None)
    order = np.arange(len(x)) if order is None else order
    if mirrored is None:
        mirror = None
    if isinstance(x, np.memmap) or isinstance(mirrored, np.memmap):
        return _batches_class()(x, y, order, batch_size, mirrored, mirror), None
    out = x[order]
    if mirror is not None:
        out[mirror] = mirrored[order[mirror]]
    return out, (None if y is None else y[order])


def predict_probs(model, x, batch_size: int) -> np.ndarray:
    """Class probabilities of ``x``; for a pair ``(x, x_mirrored)`` (flip test-time
    augmentation: the inputs of the images and of their mirror images) the average of the two."""
    if isinstance(x, tuple):
        return (predict(model, x[0], batch_size) + predict(model, x[1], batch_size)) / 2
    return predict(model, x, batch_size)


def loss_and_accuracy(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(loss, accuracy)``: mean cross-entropy (probabilities clipped as Keras does) and the
    share of top-1 hits."""
    picked = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return float(-np.log(picked).mean()), float((probs.argmax(axis=1) == y).mean())


def compile_model(
    model, config: TrainConfig, n: int, epochs: int, on_gpu: bool, steps_per_execution: int = 1
) -> None:
    """Compile for sparse-label classification with ``config``'s optimizer and schedule."""
    model.compile(
        optimizer=make_optimizer(config, math.ceil(n / config.batch_size) * epochs),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile(on_gpu),
        steps_per_execution=steps_per_execution,
    )


def fit(
    model,
    x: np.ndarray,
    y: np.ndarray,
    val: tuple,
    config: TrainConfig,
    progress: Progress,
    *,
    on_gpu: bool,
    epochs: int | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
    on_best: Callable[[int], None] | None = None,
    compile: bool = True,
    steps_per_execution: int = 1,
    before: tuple[list[dict], int | None] | None = None,
    phase: str | None = None,
    label: str = "Training",
    group=None,
    local=None,
) -> tuple[list[dict], int | None]:
    """Train ``model`` epoch by epoch in a seeded batch order; keep the best validation weights.

    ``val`` is ``(inputs, labels)``; the inputs may be a pair (inputs, mirrored inputs) for flip
    test-time augmentation (see :func:`predict_probs`).

    The order of epoch ``e`` is ``default_rng([seed, e]).permutation(n)``, so any two paths
    trained from the same weights on the same inputs see exactly the same batches. The best epoch
    is the one with the highest validation accuracy; with ``config.patience``, training stops
    once that many epochs pass without a new best (early stopping).

    Args:
        on_epoch: Called with all rows so far after every epoch.
        on_best: Called with the epoch number whenever the model holds a new best (so it can be
            saved at once, and a killed process still leaves the best model so far).
        before: ``(rows, best_epoch)`` of an earlier phase (two-phase fine-tuning): epochs number
            on from its rows, and ``model``'s weights now are that phase's best, which this one
            must beat to replace them. Patience counts from this phase's start.
        phase: Recorded in each row ("head", "finetune"; None for one-phase runs).
        label: The progress phase's name.
        group: Multi-process data parallel (a
            :class:`core.training.distributed.ProcessGroup`): ``model`` was built in its
            distribution's scope, every process runs this same loop on the same inputs and
            feeds its share of each global batch of ``config.batch_size`` (see
            :func:`shard_positions`); JAX sums the gradients. None: this process alone.
        local: With ``group``: a process-local model of the same architecture. Keras predicts
            only on arrays this process holds whole, so validation (and ``on_best``) runs on
            this copy, its weights set from ``model``'s first.

    Returns:
        ``(rows, best_epoch)``: one metrics dict per epoch (the earlier phase's first), and the
        epoch whose weights the model now holds (None if no epoch finished).
    """
    import keras

    epochs = epochs or config.epochs
    n, batch = len(y), config.batch_size
    # JAX data parallel splits every batch evenly over the devices (runtime.batch_multiple): the
    # batch size must divide, the ragged last batch is trimmed, predict pads validation.
    multiple = group.device_count if group is not None else batch_multiple()
    if batch % multiple:
        raise ValueError(
            f"batch size {batch} must be a multiple of the {multiple} devices it is split over."
        )
    # Under a process group only Keras's fit (and what it builds) runs in the distribution's
    # scope: validation predicts outside it, on the process-local copy.
    scope = group.scope if group is not None else contextlib.nullcontext
    if compile:
        with scope():
            compile_model(model, config, n, epochs, on_gpu, steps_per_execution)
    index, count = (group.index, group.count) if group is not None else (0, 1)
    local_batch = batch // count  # this process's share of each global batch
    local_n = (
        n if count == 1 else len(shard_positions(n - (n % batch) % multiple, batch, index, count))
    )
    rows: list[dict] = list(before[0]) if before else []
    first = len(rows)  # epochs already done by an earlier phase
    callback = _callback_class()(progress, local_n, local_batch, first)
    progress.start(label, local_n * epochs, "img")
    best, best_weights, best_epoch = -math.inf, None, None
    if before and before[1]:
        best_epoch = before[1]
        best, best_weights = _score(rows[best_epoch - 1]), model.get_weights()
    for epoch in range(first, first + epochs):
        order = np.random.default_rng([config.seed, epoch]).permutation(n)
        order = order[: n - (n % batch) % multiple]  # drops < devices images (none on one device)
        started = time.time()
        # Flip augmentation on cached features: each image, each epoch, one or the other.
        mirror = (
            np.random.default_rng([config.seed, epoch, 1]).random(n) < 0.5
            if isinstance(x, tuple)
            else None
        )
        if mirror is not None:
            mirror = mirror[: len(order)]  # aligned with ``order`` (trimmed above)
        if count > 1:  # this process's share of every global batch, in the same order
            part = shard_positions(len(order), batch, index, count)
            order = order[part]
            mirror = None if mirror is None else mirror[part]
        inputs, labels = as_inputs(x, y, local_batch, order, mirror)
        with scope():
            history = model.fit(
                inputs,
                labels,
                batch_size=None if labels is None else local_batch,
                epochs=epoch + 1 - first,
                initial_epoch=epoch - first,
                shuffle=False,
                callbacks=[callback],
                verbose=0,
            ).history
        last = {k: float(v[-1]) for k, v in history.items() if v}
        scored = model
        if local is not None:
            local.set_weights(model.get_weights())
            scored = local
        # Validation by our own predict: the same path as the test split's (and flip TTA's).
        val_loss = val_accuracy = None
        if val is not None:
            val_loss, val_accuracy = loss_and_accuracy(predict_probs(scored, val[0], batch), val[1])
        row = {
            "epoch": epoch + 1,
            "loss": last.get("loss"),
            "accuracy": last.get("accuracy"),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
            "seconds": round(time.time() - started, 3),
            "images_per_s": round(callback.images_per_s, 1),
        }
        if phase:
            row["phase"] = phase
        rows.append(row)
        progress.log_epoch(**row)
        if on_epoch is not None:
            on_epoch(rows)
        score = _score(row)
        if score > best:
            best, best_weights, best_epoch = score, model.get_weights(), epoch + 1
            if on_best is not None:
                on_best(best_epoch)
        if progress.stop_requested:
            break
        since = max(best_epoch, first)
        if config.patience and epoch + 1 - since >= config.patience and epoch + 1 < first + epochs:
            progress.message(
                f"Early stop: no better validation accuracy for {config.patience} "
                f"epoch(s) since epoch {since}"
            )
            break
    if best_weights is not None:
        model.set_weights(best_weights)
        if local is not None:
            local.set_weights(best_weights)
    return rows, best_epoch


def shard_positions(length: int, batch: int, index: int, count: int) -> np.ndarray:
    """Positions, in a global order of ``length`` items cut into batches of ``batch``, of
    process ``index``'s share of every batch: its ``1/count`` slice, in process order.

    JAX assembles a global batch from the processes' local batches in process order
    (``jax.make_array_from_process_local_data``), so ``count`` processes, each fed its share
    in batches of ``batch // count``, train on exactly the global batches one process would.
    Every batch (the last, shorter one too) must split evenly: ``fit`` trims the order so.
    """
    parts = []
    for start in range(0, length, batch):
        share = min(batch, length - start) // count
        parts.append(np.arange(start + index * share, start + (index + 1) * share))
    return np.concatenate(parts) if parts else np.arange(0)


def predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict`` in batches of a multiple of ``batch_size`` (at least 256 images), padded
    so that JAX data parallel splits every batch evenly, and never loading a disk-backed ``x``
    whole; returns one row per image of ``x``."""
    multiple = batch_multiple()
    pad = -len(x) % multiple
    order = np.concatenate([np.arange(len(x)), np.arange(pad)]) if pad else None
    step = batch_size * max(1, 256 // batch_size)
    inputs, _ = as_inputs(x, None, step, order)
    if isinstance(x, np.memmap):  # batches of their own
        return np.asarray(model.predict(inputs, verbose=0))[: len(x)]
    return np.asarray(model.predict(inputs, batch_size=step, verbose=0))[: len(x)]


def _score(row: dict) -> float:
    """What picks the best epoch: validation accuracy (training loss only without validation)."""
    return row["val_accuracy"] if row.get("val_accuracy") is not None else -row["loss"]
