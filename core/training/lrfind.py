"""A learning-rate finder: the loss against an exponentially rising learning rate.

Leslie Smith's range test (the fastai ``lr_find``): start from the run's initial weights, train
one batch per step while the learning rate rises exponentially from ``start`` to ``end``, record
each batch's loss, and stop once the loss blows up. It trains exactly what the run would, on the
same inputs: the head on cached pooled features (frozen mode), or the top blocks and head on the
cached feature maps (finetune without augmentation); so the features it extracts are cached for
the run that follows, when it trains on the same images (same subset and seed). With
augmentation on, the batches go through the whole model.

Two rules of thumb read the curve: where the smoothed loss falls fastest against log(lr)
("steepest", searched before the loss's minimum), and a tenth of the learning rate at the minimum
("min_over_10"); the suggestion is the lower of the two (see :func:`suggest`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from core.data.datasets import managed_job
from core.platform.errors import UserError
from core.platform.progress import Progress
from core.platform.runtime import accelerators, describe_device, device_context
from core.training.features import training_inputs
from core.training.fit import compile_model
from core.training.network import build_network
from core.training.options import TrainConfig
from core.training.run import load_data

STEPS = 100
START, END = 1e-6, 1.0
_DIVERGED = 4.0  # stop when the smoothed loss exceeds this many times its best
_SMOOTHING = 0.9  # exponential moving average of the loss (bias-corrected)


def lr_schedule(steps: int, start: float, end: float) -> np.ndarray:
    """The ``steps`` learning rates, rising exponentially from ``start`` to ``end``."""
    return start * (end / start) ** (np.arange(steps) / max(steps - 1, 1))


def smooth(losses, weight: float = _SMOOTHING) -> np.ndarray:
    """Bias-corrected exponential moving average."""
    out, avg = [], 0.0
    for i, value in enumerate(losses, start=1):
        avg = weight * avg + (1 - weight) * value
        out.append(avg / (1 - weight**i))
    return np.asarray(out)


def suggest(lrs, losses) -> dict:
    """Suggested learning rates from a sweep.

    Returns:
        ``{"steepest", "min_over_10", "suggested"}`` (None where the sweep is too short):
        steepest descent of the smoothed loss against log10(lr) before its minimum, a tenth of
        the learning rate at the minimum, and the one to use: the lower of the two. Both are
        rules of thumb; the moving average lags, which pushes "steepest" towards the minimum,
        and a rate too high diverges where one too low only learns slower.
    """
    lrs, smoothed = np.asarray(lrs, dtype=np.float64), smooth(losses)
    if len(lrs) < 5 or not np.isfinite(smoothed).any():
        return {"steepest": None, "min_over_10": None, "suggested": None}
    finite = np.where(np.isfinite(smoothed), smoothed, np.inf)
    low = int(np.argmin(finite))
    min_over_10 = float(lrs[low] / 10)
    skip = max(1, len(lrs) // 10)  # the first steps' average is still settling
    steepest = None
    if low - skip >= 2:
        slope = np.gradient(smoothed[skip : low + 1], np.log10(lrs[skip : low + 1]))
        steepest = float(lrs[skip + int(np.argmin(slope))])
    return {
        "steepest": steepest,
        "min_over_10": min_over_10,
        "suggested": min_over_10 if steepest is None else min(steepest, min_over_10),
    }


def find_lr(
    config: TrainConfig,
    progress: Progress | None = None,
    *,
    steps: int = STEPS,
    start: float = START,
    end: float = END,
    managed_only: bool = False,
) -> dict:
    """Run the range test for ``config`` (its data, model, optimizer and batch size).

    Uses at most ``steps × batch_size`` training images (a seeded, stratified subset);
    ``managed_only``: ``config.data`` must be "cifar10" or a dataset under the data root.

    Returns:
        ``lrs``, ``losses`` (raw, per step), ``smoothed``, the suggestions of :func:`suggest`,
        ``images`` (training images used), ``trains_on`` ("images", "cached pooled features" or
        "cached feature maps"), ``device`` and ``weights``.

    Raises:
        ValueError: Bad configuration or data, or ``steps``/``start``/``end`` out of range.
    """

    if not (isinstance(steps, int) and 5 <= steps <= 10_000):
        raise UserError(f"steps must be a whole number from 5 to 10000, got {steps!r}")
    if not (0 < start < end <= 100):
        raise UserError(f"the sweep must rise: 0 < start < end <= 100, got {start:g} to {end:g}")
    config.validate()
    progress = progress if progress is not None else Progress()
    device = describe_device()
    progress.begin(device=device)
    need = steps * config.batch_size
    sweep = replace(
        config,
        subset=min(config.subset or need, need),
        schedule="constant",
        head_epochs=0,
        flip_features=False,
        flip_tta=False,
    )
    on_gpu = bool(accelerators())
    with device_context(on_gpu):
        ds = load_data(sweep, progress, managed_only=managed_only)
        progress.check_stop()
        progress.message("Building the model")
        net = build_network(sweep, ds.num_classes, ds.storage_size)
        model, x, _, _ = training_inputs(net, sweep, ds, progress, on_gpu, train_only=True)
        y = ds.y_train
        x = x[0] if isinstance(x, tuple) else x  # the sweep needs no flip augmentation
        trains_on = (
            "images"
            if x is ds.x_train
            else "cached pooled features"
            if sweep.mode == "frozen"
            else "cached feature maps"
        )
        compile_model(model, sweep, len(y), 1, on_gpu)
        lrs = lr_schedule(steps, start, end)
        batch = config.batch_size
        # Epochs of seeded shuffles, long enough for every step (a small dataset repeats).
        stream = np.concatenate(
            [
                np.random.default_rng([config.seed, e]).permutation(len(y))
                for e in range(math.ceil(steps * batch / len(y)))
            ]
        )
        progress.start("Sweeping the learning rate", steps, "step")
        losses: list[float] = []
        best = math.inf
        for i, lr in enumerate(lrs):
            if progress.stop_requested:
                break
            idx = np.sort(
                stream[i * batch : (i + 1) * batch]
            )  # sorted: disk-backed reads stay sequential
            model.optimizer.learning_rate.assign(float(lr))
            xb, yb = np.asarray(x[idx], dtype="float32"), y[idx]
            loss = float(model.train_on_batch(xb, yb, return_dict=True)["loss"])
            losses.append(loss)
            smoothed = float(smooth(losses)[-1])
            progress.log_batch(step=i + 1, lr=float(lr), loss=loss, smoothed=smoothed)
            progress.advance(1)
            if not math.isfinite(smoothed) or (i >= 5 and smoothed > _DIVERGED * best):
                progress.message("The loss diverged: sweep ended")
                break
            best = min(best, smoothed)
    lrs = [float(v) for v in lrs[: len(losses)]]
    return {
        "lrs": lrs,
        "losses": losses,
        "smoothed": [float(v) for v in smooth(losses)],
        **suggest(lrs, losses),
        "images": len(y),
        "trains_on": trains_on,
        "device": device,
        "weights": net.weights.label,
        "stopped": progress.stop_requested,
    }


def lr_find_job(args: dict, progress: Progress) -> dict:
    """Job entry (see :mod:`core.jobs.runner`): ``args`` holds ``config`` (a :meth:`TrainConfig.to_dict`)
    and optionally ``steps``, ``start`` and ``end``."""
    config = TrainConfig.from_dict(args["config"])
    managed = managed_job(args, config.data)
    return find_lr(
        config,
        progress,
        steps=int(args.get("steps", STEPS)),
        start=float(args.get("start", START)),
        end=float(args.get("end", END)),
        managed_only=managed,
    )
