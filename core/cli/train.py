"""``python -m core train`` and ``python -m core bench {seed,best}``.

Each runs as a background job (:mod:`core.jobs.runner`, the same runner the app uses) watched from the
terminal (:mod:`core.cli.watch`): a progress bar with images/s and ETA on stderr, Ctrl-C or
SIGTERM stops at the end of the current batch and keeps the run, and the command ends with one
JSON line on stdout. Training options come from :mod:`core.training.options`, defined once.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from core.cli import CliError
from core.cli.watch import run_job
from core.platform import paths
from core.platform.errors import UserError
from core.platform.runtime import accelerators


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_option_flags(parser: argparse.ArgumentParser, names=None) -> None:
    """One flag per training option (or those in ``names``), generated from its Option."""
    from core.training import options  # per-command lazy import (see core.cli)

    for name, opt, default in options():
        if names is not None and name not in names:
            continue
        choices = opt.allowed() if not callable(opt.choices) else None
        text = opt.help
        if choices:
            text += f" ({' | '.join(map(str, choices))})"
        if opt.kind is bool:
            parser.add_argument(
                _flag(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{text} (default {'on' if default else 'off'})",
            )
            continue
        shown = opt.none_means if default is None else default
        parser.add_argument(
            _flag(name),
            dest=name,
            type=opt.kind,
            default=None,
            metavar=name.upper(),
            help=f"{text} (default {shown})",
        )


def register(subparsers) -> None:
    """Add the ``train`` and ``bench`` commands."""
    from core.training import PRESETS  # per-command lazy import (see core.cli)

    p = subparsers.add_parser(
        "train",
        help="train a classifier and save it as a run",
        description="Train an EfficientNet classifier and save the run (model, history, "
        "confusion matrix). Ends with one JSON line on stdout. Exit 0 done, 2 bad "
        "input, 1 a crash, 130/143 stopped by Ctrl-C/SIGTERM (the run is kept).",
    )
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="start from a preset ("
        + "; ".join(f"{k}: {v.label}" for k, v in PRESETS.items())
        + "); options given "
        "explicitly override it",
    )
    add_option_flags(p)
    p.add_argument(
        "--out", help="run folder to create (default: a new folder under the runs folder)"
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="train one model data parallel over this many processes (JAX backend, frozen "
        "mode; see docs/distributed.md; default 1: this process alone)",
    )
    p.add_argument(
        "--launcher",
        choices=("local", "ray"),
        default="local",
        help="with --processes: start them here (local) or on the Ray cluster RAY_ADDRESS "
        "names, spread over its nodes (ray) (default local)",
    )
    p.set_defaults(func=run_train)

    lr = subparsers.add_parser(
        "lr-find",
        help="learning-rate finder: loss against a rising learning rate",
        description="Train from the run's starting weights on cached features, one batch per step, "
        "while the learning rate rises exponentially; print the suggested rate and one "
        "JSON line with the whole curve. Same options as train (it uses at most "
        "steps × batch size training images). The Train page draws the curve. Exit 0 "
        "done, 2 bad input.",
    )
    lr.add_argument("--preset", choices=list(PRESETS), help="start from a preset")
    add_option_flags(
        lr, [name for name in _options() if name not in ("name", "epochs", "patience")]
    )
    lr.add_argument("--steps", type=int, default=100, help="learning rates tried (default 100)")
    lr.add_argument("--start", type=float, default=1e-6, help="first learning rate (default 1e-6)")
    lr.add_argument("--end", type=float, default=1.0, help="last learning rate (default 1)")
    lr.set_defaults(func=run_lr_find)

    bench = subparsers.add_parser(
        "bench", help="benchmarks: the blog's protocol and the best recipe"
    )
    kinds = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    seed = kinds.add_parser(
        "seed",
        help="the blog's protocol, our way, against one epoch done the blog's way",
        description="Frozen backbone at 32×32, BatchNorm + Dense head, Adam 1e-3, batch 64, test "
        "split as validation: trained our way (cached features), plus one epoch "
        "the blog's way (backbone inside the loop) timed in the same run.",
    )
    best = kinds.add_parser(
        "best",
        help="the best recipe for this machine (CPU: 30 minutes; GPU: 15 minutes)",
        description="Train the best preset for this machine on the full dataset and report "
        "test accuracy and wall time (data loading included).",
    )
    for sub in (seed, best):
        add_option_flags(sub, ("data", "subset", "test_subset", "epochs", "weights"))
        sub.add_argument("--out", help="run folder to create (default: under the runs folder)")
    add_option_flags(seed, ("backbone",))
    add_option_flags(best, ("resolution", "batch_size"))  # to retune the recipe, or shrink it
    best.add_argument(
        "--recipe",
        choices=("cpu", "gpu"),
        default=None,
        help="which preset (default: gpu when a GPU is present, else cpu)",
    )
    seed.set_defaults(func=run_bench_seed)
    best.set_defaults(func=run_bench_best)


def _options() -> list[str]:
    from core.training import options  # per-command lazy import (see core.cli)

    return [name for name, _, _ in options()]


def _given(args, names=None) -> dict:
    """The training options given on the command line (None means not given)."""
    from core.training import options  # per-command lazy import (see core.cli)

    return {
        name: getattr(args, name)
        for name, _, _ in options()
        if (names is None or name in names) and getattr(args, name, None) is not None
    }


def _place(values: dict, out: str | None) -> tuple[dict, Path | None]:
    """Map ``--out RUN_DIR`` onto the run name and the runs root."""
    if not out:
        return values, None
    out_path = Path(os.path.abspath(Path(out).expanduser()))  # no link resolving: may be unreadable
    return {**values, "name": out_path.name}, out_path.parent


def _checked(values: dict, root: Path | None):
    """Validate ``values`` as a TrainConfig and check the run folder is free (exit 2 if not)."""
    from core.training import TrainConfig  # per-command lazy import (see core.cli)

    config = TrainConfig(**values)
    config.validate()  # an OptionError (a UserError): exit 2
    folder = (root or paths.runs_dir()) / config.name if config.name else None
    try:
        taken = folder is not None and folder.exists()
        if (
            folder is not None
            and not taken
            and folder.parent.exists()
            and not os.access(folder.parent, os.W_OK)
        ):
            raise PermissionError(13, "Permission denied", str(folder.parent))
    except OSError as exc:
        raise UserError(f"cannot create run folder {folder}: {exc.strerror or exc}") from exc
    if taken:  # the worker reserves the folder atomically too; this answers at once
        raise UserError(
            f"run folder {folder} already exists: choose another name (or delete that run first)."
        )
    return config


# ----- commands ---------------------------------------------------------------------------------
def run_train(args) -> int:
    """``python -m core train``."""
    from core.training import PRESETS  # per-command lazy import (see core.cli)

    base = PRESETS[args.preset].values if args.preset else {}
    values, root = _place({**base, **_given(args)}, args.out)
    config = _checked(values, root)
    if args.processes != 1:
        return _run_distributed(config, args.processes, args.launcher, root)
    result, status = run_job("train", {"config": config.to_dict()}, root)
    result["status"] = "stopped" if result.get("stopped") else "done"
    print(json.dumps(result), flush=True)
    return status


def _run_distributed(config, processes: int, launcher: str, root: Path | None) -> int:
    """``python -m core train --processes N``: in the foreground (the processes are this
    command's children, or Ray's actors), one JSON line at the end."""
    from core.training.distributed import train_distributed  # per-command lazy import

    result = train_distributed(config, processes, launcher, root)
    result["status"] = "stopped" if result.get("stopped") else "done"
    print(json.dumps(result), flush=True)
    return 0


def _bench_overrides(args, names) -> tuple[dict, Path | None]:
    overrides = {**_given(args, names), "cache_features": False}
    return _place(overrides, args.out)


def run_bench_seed(args) -> int:
    """``python -m core bench seed``: the blog's protocol our way, and one epoch the blog's way."""
    from core.training import PRESETS  # per-command lazy import (see core.cli)

    overrides, root = _bench_overrides(
        args, ("data", "subset", "test_subset", "epochs", "weights", "backbone")
    )
    overrides.setdefault("name", f"bench-seed-{time.strftime('%Y%m%d-%H%M%S')}")
    config = _checked({**PRESETS["blog"].values, **overrides}, root)
    result, status = run_job("bench_seed", {"overrides": overrides}, root)
    if result.get("stopped") or "speedup" not in result:
        print(json.dumps(result), flush=True)
        raise CliError("benchmark stopped before it finished", status=status or 130)
    print(f"protocol: {result['protocol']}")
    print(
        f"our way:  test accuracy {result['test_accuracy']:.4f} after {result['epochs']} epochs, "
        f"{result['wall_s']:.1f} s wall (data loading included)"
    )
    print(
        f"blog way: {result['blog_way_epoch_s']:.1f} s per epoch × {config.epochs} epochs = "
        f"{result['blog_way_s']:.1f} s"
    )
    print(f"speedup:  {result['speedup']:.1f}×  ({result['device']}; weights {result['weights']})")
    print(json.dumps(result), flush=True)
    return status


def run_bench_best(args) -> int:
    """``python -m core bench best``: the best preset for this machine, timed end to end."""
    from core.training import PRESETS  # per-command lazy import (see core.cli)

    overrides, root = _bench_overrides(
        args, ("data", "subset", "test_subset", "epochs", "weights", "resolution", "batch_size")
    )
    recipe = args.recipe or ("gpu" if accelerators() else "cpu")
    overrides.setdefault("name", f"bench-best-{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    _checked({**PRESETS[f"best-{recipe}"].values, **overrides}, root)
    result, status = run_job("bench_best", {"recipe": recipe, "overrides": overrides}, root)
    accuracy = "n/a" if result["test_accuracy"] is None else f"{result['test_accuracy']:.4f}"
    val = "n/a" if result.get("val_accuracy") is None else f"{result['val_accuracy']:.4f}"
    print(
        f"preset {PRESETS[result['preset']].label!r}: test accuracy {accuracy} (validation "
        f"{val}; {result['protocol']}) in "
        f"{result['wall_s']:.1f} s wall ({result['device']}; weights {result['weights']}); "
        f"phases: {result['timings']}"
    )
    print(json.dumps(result), flush=True)
    return status


def run_lr_find(args) -> int:
    """``python -m core lr-find``: the learning-rate range test as a job."""
    from core.training import PRESETS  # per-command lazy import (see core.cli)

    if not 5 <= args.steps <= 10_000:
        raise UserError(f"--steps must be from 5 to 10000, got {args.steps}")
    if not 0 < args.start < args.end <= 100:
        raise UserError(
            f"the sweep must rise: 0 < --start < --end <= 100, got {args.start:g} and {args.end:g}"
        )
    base = PRESETS[args.preset].values if args.preset else {}
    config = _checked({**base, **_given(args)}, None)
    result, status = run_job(
        "lr_find",
        {"config": config.to_dict(), "steps": args.steps, "start": args.start, "end": args.end},
        None,
    )
    fmt = lambda v: "n/a" if v is None else f"{v:.2g}"  # noqa: E731
    lrs, smoothed = result["lrs"], result["smoothed"]
    for i in range(0, len(lrs), max(1, len(lrs) // 12)):  # the curve, coarsely, for people
        print(f"  lr {lrs[i]:8.2g}  loss {smoothed[i]:.4f}")
    print(
        f"suggested learning rate: {fmt(result['suggested'])} (steepest descent "
        f"{fmt(result['steepest'])}; minimum loss / 10: {fmt(result['min_over_10'])}) from "
        f"{len(result['lrs'])} steps on {result['images']} images ({result['device']})"
    )
    print(json.dumps(result), flush=True)
    return status
