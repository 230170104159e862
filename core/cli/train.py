"""``python -m core train`` and ``python -m core bench {seed,best}``.

Training runs in a worker thread while the main thread draws a progress bar on stderr (images/s
and ETA); Ctrl-C asks the run to stop at the end of the current batch and keeps what it has (a
second Ctrl-C aborts). Each command ends with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from core.cli import CliError
from core.progress import Progress

_TRAIN_OPTIONS = (  # (flag, TrainConfig field, type, help)
    ("--data", "data", str, "'cifar10' or the path of an image folder (one subfolder per class)"),
    ("--backbone", "backbone", str, "b0..b7 or lite0 (default b0)"),
    ("--weights", "weights", str, "auto | imagenet | lite0 | none | PATH (default auto)"),
    ("--mode", "mode", str, "frozen | finetune (default frozen)"),
    ("--resolution", "resolution", int, "input size the backbone sees (default 32)"),
    ("--epochs", "epochs", int, "training epochs (default 50)"),
    ("--batch-size", "batch_size", int, "images per step (default 64)"),
    ("--lr", "lr", float, "peak learning rate (default 1e-3)"),
    ("--optimizer", "optimizer", str, "adam | adamw | sgd (default adam)"),
    ("--schedule", "schedule", str, "constant | cosine (default cosine)"),
    ("--seed", "seed", int, "random seed (default 0)"),
    ("--subset", "subset", int, "train on a stratified subset of N images"),
    ("--test-subset", "test_subset", int, "evaluate on a stratified subset of N test images"),
    ("--finetune-blocks", "finetune_blocks", int,
     "finetune: top MBConv blocks to train (B0 and Lite0 have 16; default 2)"),
    ("--dropout", "dropout", float, "dropout before the classifier (default 0 frozen, 0.2 finetune)"),
)


def register(subparsers) -> None:
    """Add the ``train`` and ``bench`` commands."""
    from core.training import PRESETS

    p = subparsers.add_parser(
        "train", help="train a classifier and save it as a run",
        description="Train an EfficientNet classifier and save the run (model, history, "
                    "confusion matrix). Ends with one JSON line on stdout.")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="start from a preset; options given explicitly override it")
    for flag, dest, kind, text in _TRAIN_OPTIONS:
        p.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    p.add_argument("--augment", dest="augment", action=argparse.BooleanOptionalAction, default=None,
                   help="finetune: flip and shift inside the model (default on)")
    p.add_argument("--cache-features", dest="cache_features",
                   action=argparse.BooleanOptionalAction, default=None,
                   help="reuse extracted features from the disk cache (default on)")
    p.add_argument("--out", help="run folder to create (default: a new folder under the runs folder)")
    p.set_defaults(func=run_train)

    bench = subparsers.add_parser("bench", help="benchmarks: the blog's protocol and the best recipe")
    kinds = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    seed = kinds.add_parser(
        "seed", help="the blog's protocol, our way, against one epoch done the blog's way",
        description="Frozen backbone at 32×32, BatchNorm + Dense head, Adam 1e-3, batch 64, test "
                    "split as validation: trained our way (cached features), plus one epoch "
                    "the blog's way (backbone inside the loop) timed in the same run.")
    best = kinds.add_parser(
        "best", help="the best recipe for this machine (CPU: 30 minutes; GPU: 15 minutes)",
        description="Train the best preset for this machine on the full dataset and report "
                    "test accuracy and wall time (data loading included).")
    for sub in (seed, best):
        sub.add_argument("--data", default="cifar10", help="'cifar10' or an image folder path")
        sub.add_argument("--subset", type=int, default=None, help="train on N images (for trials)")
        sub.add_argument("--test-subset", type=int, default=None, help="test on N images (for trials)")
        sub.add_argument("--epochs", type=int, default=None, help="override the epochs")
        sub.add_argument("--weights", default="auto", help="weights source (default auto)")
        sub.add_argument("--out", help="run folder to create (default: under the runs folder)")
    seed.add_argument("--backbone", default="b0", help="backbone (default b0, as in the blog)")
    best.add_argument("--recipe", choices=("cpu", "gpu"), default=None,
                      help="which preset (default: gpu when a GPU is present, else cpu)")
    seed.set_defaults(func=run_bench_seed)
    best.set_defaults(func=run_bench_best)


# ----- running a job with a progress bar --------------------------------------------------------
def _clock(seconds) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


class _Bar:
    """Draws a Progress snapshot on stderr: a live bar on a terminal, plain lines otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.phase = None
        self.finished = None
        self.epochs_shown = 0
        self.last_line = time.time()
        self.width = 0

    def _write_line(self, text: str) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, snap: dict) -> None:
        if snap["phase"] != self.phase and snap["phase"]:
            self.phase, self.last_line = snap["phase"], time.time()
            self._write_line(f"{self.phase} ({snap['total']} {snap['unit']})"
                             if snap["total"] else self.phase)
        for row in snap["epochs"][self.epochs_shown:]:
            val = (f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}"
                   if row.get("val_accuracy") is not None else "")
            self._write_line(f"epoch {row['epoch']}: loss {row['loss']:.4f}  acc {row['accuracy']:.4f}"
                             f"{val}  {row['seconds']:.1f} s  {row['images_per_s']:.0f} img/s")
        self.epochs_shown = len(snap["epochs"])
        total, done = snap["total"], snap["done"]
        if not total:
            return
        unit = snap["unit"]
        text = (f"{done}/{total} {unit}  {snap['rate']:.0f} {unit}/s  ETA {_clock(snap['eta_s'])}")
        now = time.time()
        if self.tty:
            filled = int(30 * done / total)
            line = f"[{'#' * filled}{'.' * (30 - filled)}] {text}"
            self.stream.write("\r" + line.ljust(self.width))
            self.stream.flush()
            self.width = len(line)
        elif done >= total and self.finished != self.phase:  # a finished phase, once
            self._write_line(f"  100.0%  {text}")
            self.finished = self.phase
        elif done < total and now - self.last_line >= 15:  # plain logs: a line every 15 s
            self._write_line(f"  {100 * done / total:5.1f}%  {text}")
            self.last_line = now

    def close(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()


def _run_with_progress(fn, progress: Progress):
    """Run ``fn()`` in a worker thread, drawing ``progress``; Ctrl-C requests a stop.

    Returns:
        ``(value, interrupted)``.
    """
    box: dict = {}
    finished = threading.Event()  # not Thread.join: a Ctrl-C during join() can corrupt is_alive()

    def work():
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the main thread below
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=work, name="effnet-lab-cli-job", daemon=True).start()
    bar = _Bar()
    interrupted = False
    while not finished.is_set():
        try:
            finished.wait(0.5)
        except KeyboardInterrupt:
            if interrupted:
                raise  # a second Ctrl-C: give up without saving
            interrupted = True
            progress.request_stop()
            bar._write_line("Ctrl-C: stopping at the end of the current batch and saving "
                            "(press Ctrl-C again to abort)")
        bar.update(progress.snapshot())
    bar.update(progress.snapshot())
    bar.close()
    if "error" in box:
        _raise_cli_error(box["error"])
    return box["value"], interrupted


def _raise_cli_error(exc: BaseException):
    from core.weights import WeightsError

    if isinstance(exc, (ValueError, WeightsError)):  # bad input: DataError is a ValueError
        raise CliError(str(exc)) from exc
    if isinstance(exc, Exception):
        raise CliError(f"training failed: {exc.__class__.__name__}: {exc}", status=1) from exc
    raise exc


def _config_from_args(args, base: dict):
    from core.training import TrainConfig

    values = dict(base)
    for _, dest, _, _ in _TRAIN_OPTIONS:
        if getattr(args, dest, None) is not None:
            values[dest] = getattr(args, dest)
    for dest in ("augment", "cache_features"):
        if getattr(args, dest, None) is not None:
            values[dest] = getattr(args, dest)
    return TrainConfig(**values)


def _place(config, out: str | None):
    """Map ``--out RUN_DIR`` onto the config's run name and the runs root."""
    if not out:
        return config, None
    out_path = Path(out).expanduser().resolve()
    config.name = out_path.name
    return config, out_path.parent


def _validate(config) -> None:
    try:
        config.validate()
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _train(config, runs_root):
    from core.training import train

    progress = Progress()
    return _run_with_progress(lambda: train(config, progress, runs_root), progress)


# ----- commands ---------------------------------------------------------------------------------
def run_train(args) -> int:
    """``python -m core train``."""
    from core.training import PRESETS

    config, root = _place(_config_from_args(args, PRESETS.get(args.preset, {})), args.out)
    _validate(config)
    result, interrupted = _train(config, root)
    out = result.to_dict()
    out["status"] = "stopped" if result.stopped else "done"
    print(json.dumps(out), flush=True)
    return 130 if interrupted else 0


def run_bench_seed(args) -> int:
    """``python -m core bench seed``: the blog's protocol our way, and one epoch the blog's way."""
    from core.data import load_dataset
    from core.training import fit_blog_way, preset_config

    overrides = dict(data=args.data, backbone=args.backbone, weights=args.weights,
                     subset=args.subset, test_subset=args.test_subset, cache_features=False)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config, root = _place(preset_config("blog", **overrides), args.out)
    if not args.out:
        config.name = f"bench-seed-{time.strftime('%Y%m%d-%H%M%S')}"
    _validate(config)
    result, interrupted = _train(config, root)
    if interrupted or result.test_accuracy is None:
        raise CliError("benchmark interrupted before it finished", status=130)

    # One epoch the blog's way: the backbone runs inside every training step.
    progress = Progress()
    ds = load_dataset(config.data, subset=config.subset, test_subset=config.test_subset,
                      seed=config.seed)
    (_, rows), interrupted = _run_with_progress(
        lambda: fit_blog_way(config, dataset=ds, epochs=1, progress=progress, warmup=True), progress)
    if interrupted:
        raise CliError("benchmark interrupted during the blog-way epoch", status=130)
    epoch_s = rows[0]["seconds"]
    blog_way_s = epoch_s * config.epochs
    speedup = blog_way_s / result.wall_s
    print(f"our way:  test accuracy {result.test_accuracy:.4f} after {result.epochs} epochs, "
          f"{result.wall_s:.1f} s wall (data loading included)")
    print(f"blog way: {epoch_s:.1f} s per epoch × {config.epochs} epochs = {blog_way_s:.1f} s")
    print(f"speedup:  {speedup:.1f}×  ({result.device}; weights {result.weights})")
    print(json.dumps({"test_accuracy": result.test_accuracy, "wall_s": result.wall_s,
                      "blog_way_s": round(blog_way_s, 2), "blog_way_epoch_s": epoch_s,
                      "speedup": round(speedup, 2), "weights": result.weights,
                      "device": result.device, "epochs": result.epochs,
                      "run_dir": str(result.run_dir)}), flush=True)
    return 0


def run_bench_best(args) -> int:
    """``python -m core bench best``: the best preset for this machine, timed end to end."""
    from core.training import describe_device, preset_config

    recipe = args.recipe or ("gpu" if describe_device().startswith("GPU") else "cpu")
    preset = "best (GPU, 15 min)" if recipe == "gpu" else "best (CPU, 30 min)"
    overrides = dict(data=args.data, weights=args.weights, subset=args.subset,
                     test_subset=args.test_subset, cache_features=False)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config, root = _place(preset_config(preset, **overrides), args.out)
    if not args.out:
        config.name = f"bench-best-{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    _validate(config)
    started = time.time()
    result, interrupted = _train(config, root)
    wall = round(time.time() - started, 2)
    from core.runs import load_run

    timings = load_run(result.run_dir).results.get("timings", {})
    accuracy = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    print(f"preset {preset!r}: test accuracy {accuracy} in {wall:.1f} s wall "
          f"({result.device}; weights {result.weights}); phases: {timings}")
    print(json.dumps({"test_accuracy": result.test_accuracy, "wall_s": wall, "preset": preset,
                      "recipe": config.to_dict(), "device": result.device,
                      "weights": result.weights, "epochs": result.epochs, "timings": timings,
                      "stopped": result.stopped, "run_dir": str(result.run_dir)}), flush=True)
    return 130 if interrupted else 0
