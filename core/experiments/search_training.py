"""Training one candidate of the α, β, γ search (:mod:`core.experiments.search`): where it starts,
how long it may train, and what it scores.

Width-1 candidates start from B0's ImageNet weights, copied layer by layer by name (blocks that
B0 lacks start random); the others start from scratch. Every layer trains, BatchNorm too, with
the same recipe for all, so the comparison is about the architecture and its start.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from core.experiments.search_result import Outcome
from core.models import scaling
from core.models.efficientnet import build_efficientnet
from core.models.weights import load_backbone
from core.platform.progress import Progress
from core.training.fit import compile_model, predict

if TYPE_CHECKING:
    from core.models.weights import WeightsInfo

# Keras's EfficientNet BatchNorm keeps moving averages with momentum 0.99: after the ~100 steps of a
# short training they are still mostly their starting values, and a network trained from scratch
# then predicts one class at test time. 0.9 lets them follow the training within a few dozen steps.
_BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class StartingWeights:
    """B0's ImageNet weights, ready to copy into candidates.

    Attributes:
        family: The network family every candidate is built as: "b0", or "lite0" when the
            weights are the offline Lite0 (no squeeze-excite, relu6).
        by_name: Weights by layer name (empty: every candidate from scratch).
        normalization: The stem normalisation's weights (None: Keras's own).
        info: The weights' :class:`core.models.weights.WeightsInfo` (None: weights "none").
    """

    family: str = "b0"
    by_name: dict = field(default_factory=dict)
    normalization: list | None = None
    info: WeightsInfo | None = None


def starting_weights(source: str, resolution: int) -> StartingWeights:
    """B0's ImageNet weights from ``source`` ("auto", "imagenet", "lite0"; "none": nothing to
    copy) at ``resolution``.

    Raises:
        core.models.weights.WeightsError: The requested weights are unavailable.
    """
    if source == "none":  # every candidate from scratch, Keras's own stem normalisation
        return StartingWeights()
    import keras

    model, info = load_backbone(
        "b0", source, input_shape=(resolution, resolution, 3), include_top=False, pooling="avg"
    )
    by_name = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    normalization = norm.get_weights()
    keras.backend.clear_session()
    return StartingWeights(info.variant, by_name, normalization, info)


def copy_matching(backbone, by_name: dict, normalization, *, imagenet: bool) -> tuple[int, int]:
    """Copy the stem normalisation (if given), and with ``imagenet`` every layer whose name and
    shapes match; returns ``(layers copied, layers with weights)`` (normalisation not counted)."""
    import keras

    copied = total = 0
    for layer in backbone.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Normalization):  # Keras numbers these per model
            if normalization is not None:
                layer.set_weights(normalization)
                layer.finalize_state()
            continue
        total += 1
        source = by_name.get(layer.name) if imagenet else None
        if source is not None and [w.shape for w in source] == [
            tuple(w.shape) for w in layer.weights
        ]:
            layer.set_weights(source)
            copied += 1
    return copied, total


def _deadline_callback(
    progress: Progress, train_s: float, deadline: float, batch_size: int, n: int
):
    """A Keras callback counting images into ``progress`` that ends training ``train_s`` seconds
    after the first step (which includes compiling), at ``deadline`` (``time.monotonic()``) or on
    a stop request; ``.shown`` is the images of this epoch, ``.first_step_at`` when the first
    step ended."""
    import keras

    class Deadline(keras.callbacks.Callback):
        shown = 0
        first_step_at = None

        def on_epoch_begin(self, epoch, logs=None):
            self.shown = 0

        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            if self.first_step_at is None:
                self.first_step_at = now
            done = min(n, (batch + 1) * batch_size)
            progress.advance(done - self.shown)
            self.shown = done
            if self.over(now):
                self.model.stop_training = True

        def over(self, now: float) -> bool:
            """True once training should end (stop request, its share or the budget spent)."""
            return (
                progress.stop_requested
                or now >= deadline
                or (self.first_step_at is not None and now >= self.first_step_at + train_s)
            )

    return Deadline()


def _build(m: scaling.Multipliers, ds, start: StartingWeights, imagenet: bool, seed: int):
    """The candidate's classifier (resize to its resolution, backbone, softmax head) and
    ``(layers copied, layers with weights)``."""
    import keras

    size = m.resolution
    backbone = build_efficientnet(
        start.family,
        width=m.width,
        depth=m.depth,
        include_top=False,
        pooling="avg",
        input_shape=(size, size, 3),
        model_name="candidate_backbone",
    )
    copied = copy_matching(backbone, start.by_name, start.normalization, imagenet=imagenet)
    for layer in backbone.layers:  # see _BN_MOMENTUM
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = _BN_MOMENTUM
    inputs = keras.Input((ds.storage_size, ds.storage_size, 3), name="image")
    x = inputs if size == ds.storage_size else keras.layers.Resizing(size, size)(inputs)
    head = keras.layers.Dense(
        ds.num_classes,
        activation="softmax",
        dtype="float32",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
    )
    return keras.Model(inputs, head(backbone(x))), copied


def train_candidate(
    m: scaling.Multipliers,
    ds,
    config,
    start: StartingWeights,
    *,
    imagenet: bool,
    seed: int,
    train_s: float,
    deadline: float,
    on_gpu: bool,
    progress: Progress,
) -> Outcome:
    """Build the candidate B0 scaled by ``m``, train it for ``config.epochs``, or ``train_s``
    seconds after its first step, or until ``deadline`` (``time.monotonic()``), and score it.

    Args:
        m: The candidate's width, depth and resolution.
        ds: The search's dataset (training subset, validation and test splits).
        config: The recipe (a :class:`core.training.options.TrainConfig`).
        start: B0's ImageNet weights and the family to build.
        imagenet: Copy the matching layers from ``start`` (else only the normalisation).
        seed: Seeds the weights, the head and the order of the images.

    Returns:
        The :class:`Outcome`: validation accuracy (which ranks candidates) and its standard
        error, and test accuracy measured this once, unless a stop request ended it.
    """
    import keras

    keras.utils.set_random_seed(seed)
    model, (copied, total) = _build(m, ds, start, imagenet, seed)
    n = len(ds.y_train)
    compile_model(model, config, n, config.epochs, on_gpu)
    callback = _deadline_callback(progress, train_s, deadline, config.batch_size, n)
    started, seen = time.monotonic(), 0
    for epoch in range(config.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        model.fit(
            ds.x_train[order],
            ds.y_train[order],
            batch_size=config.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=False,
            callbacks=[callback],
            verbose=0,
        )
        seen += callback.shown
        if callback.over(time.monotonic()):
            break
    elapsed = time.monotonic() - started
    status = (
        "stopped" if progress.stop_requested else "done" if seen >= n * config.epochs else "budget"
    )
    scores = {}
    if status != "stopped":  # validation ranks the candidates; the test split is measured once
        for key, x, y in (
            ("val_accuracy", ds.x_val, ds.y_val),
            ("test_accuracy", ds.x_test, ds.y_test),
        ):
            scores[key] = float((predict(model, x, 256).argmax(axis=1) == y).mean())
        acc = scores["val_accuracy"]
        scores["stderr"] = math.sqrt(acc * (1 - acc) / len(ds.y_val))
    keras.backend.clear_session()
    compile_s = (callback.first_step_at or time.monotonic()) - started
    return Outcome(
        status=status,
        seed=seed,
        train_s=round(elapsed, 2),
        compile_s=round(compile_s, 2),
        images_seen=int(seen),
        epochs_done=round(seen / n, 3),
        copied_layers=copied,
        layers_with_weights=total,
        **scores,
    )
