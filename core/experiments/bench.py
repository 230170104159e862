"""Benchmarks behind ``python -m core bench``: the blog's protocol, the blog's way as a baseline,
and the best recipe for this machine. Each prints figures; results go in docs/benchmarks.md.

- ``seed``: the blog's protocol (frozen B0 at 32×32, BN + Dense head, Adam 1e-3, batch 64, 50
  epochs) trained our way (cached features), plus one epoch trained the blog's way
  (:func:`fit_blog_way`: the backbone runs inside every step), timed in the same job.
- ``best``: the best preset for this machine (CPU or GPU), timed end to end.
"""

from __future__ import annotations

import time

from core.platform.progress import Progress
from core.platform.runtime import accelerators, device_context, device_plan
from core.training.fit import compile_model, fit
from core.training.network import build_network
from core.training.options import TrainConfig
from core.training.presets import preset_config
from core.training.run import load_data, train
from core.training.runs import load_run


def fit_blog_way(
    config: TrainConfig,
    *,
    dataset=None,
    epochs: int | None = None,
    progress: Progress | None = None,
    warmup: bool = False,
):
    """Train the full network with the backbone inside every step, as the blog does.

    Same seeded model, batch order and optimizer as :func:`core.training.train`, but no cached
    features: every step runs the images through the backbone. Nothing is saved.

    Args:
        config: As for :func:`core.training.train` (typically frozen mode).
        dataset: A loaded :class:`core.data.loading.Dataset` (default: load ``config.data``).
        epochs: Epochs to train (default ``config.epochs``); the learning-rate schedule still
            spans ``config.epochs``.
        progress: Receives progress; stop works as in :func:`core.training.train`.
        warmup: First trace the train and test steps on two batches, so epoch timings measure
            steady-state speed (for the benchmark; it changes the weights slightly).

    Returns:
        ``(model, rows)``: the trained full model and its per-epoch metrics rows.
    """
    config.validate()
    progress = progress if progress is not None else Progress()
    ds = dataset if dataset is not None else load_data(config, progress)
    plan = device_plan()
    on_gpu = plan.on_gpu
    with device_context(plan):
        net = build_network(config, ds.num_classes, ds.storage_size)
        compile_model(net.model, config, len(ds.y_train), config.epochs, on_gpu)
        if warmup:
            k = 2 * config.batch_size
            net.model.fit(
                ds.x_train[:k],
                ds.y_train[:k],
                batch_size=config.batch_size,
                validation_data=(ds.x_val[:k], ds.y_val[:k]),
                verbose=0,
            )
        rows, _ = fit(
            net.model,
            ds.x_train,
            ds.y_train,
            (ds.x_val, ds.y_val),
            config,
            progress,
            on_gpu=on_gpu,
            epochs=epochs,
            compile=False,
        )
    return net.model, rows


def bench_seed_job(args: dict, progress: Progress) -> dict:
    """Job entry: the blog's protocol our way, then one epoch the blog's way, timed.

    ``args``: ``overrides`` for the "blog" preset and ``runs_root``. A stop request during the
    first part ends the benchmark with ``stopped`` set and no blog-way timing.
    """
    config = preset_config("blog", **args.get("overrides", {}))
    result = train(config, progress, args.get("runs_root"), finish=False)
    out = {
        "test_accuracy": result.test_accuracy,
        "val_accuracy": result.val_accuracy,
        "protocol": config.protocol,
        "wall_s": result.wall_s,
        "weights": result.weights,
        "device": result.device,
        "epochs": result.epochs,
        "run_dir": str(result.run_dir),
        "stopped": result.stopped,
    }
    if result.stopped or result.test_accuracy is None:
        return out
    progress.message("One epoch the blog's way (backbone inside every step)")
    ds = load_data(config, progress)
    _, rows = fit_blog_way(config, dataset=ds, epochs=1, progress=progress, warmup=True)
    if progress.stop_requested:
        return {**out, "stopped": True}
    epoch_s = rows[0]["seconds"]
    blog_way_s = epoch_s * config.epochs
    return {
        **out,
        "blog_way_epoch_s": epoch_s,
        "blog_way_s": round(blog_way_s, 2),
        "speedup": round(blog_way_s / result.wall_s, 2),
    }


def bench_best_job(args: dict, progress: Progress) -> dict:
    """Job entry: the best preset for this machine (``args["recipe"]``: "cpu", "gpu" or None for
    this machine's), with ``args["overrides"]``, timed end to end."""

    recipe = args.get("recipe") or ("gpu" if accelerators() else "cpu")
    preset = f"best-{recipe}"
    config = preset_config(preset, **args.get("overrides", {}))
    started = time.time()
    result = train(config, progress, args.get("runs_root"), finish=False)
    timings = load_run(result.run_dir).results.get("timings", {})
    return {
        "test_accuracy": result.test_accuracy,
        "val_accuracy": result.val_accuracy,
        "protocol": config.protocol,
        "wall_s": round(time.time() - started, 2),
        "preset": preset,
        "recipe": config.to_dict(),
        "device": result.device,
        "weights": result.weights,
        "epochs": result.epochs,
        "timings": timings,
        "stopped": result.stopped,
        "run_dir": str(result.run_dir),
    }
