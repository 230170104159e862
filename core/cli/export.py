"""``python -m core export``: a finished run or the ImageNet model as ONNX, LiteRT or SavedModel,
with its parity against the Keras model checked in the format's own runtime.

It runs as a background job (:mod:`core.jobs.runner`, kind "export", the runner the app uses) watched
from the terminal like ``train``: progress on stderr, Ctrl-C stops, one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.cli import CliError
from core.cli.watch import run_job
from core.export.record import ExportRecord
from core.platform.errors import UserError


def register(sub) -> None:
    """Add the ``export`` command."""
    from core.export.exporter import FORMATS, MIN_IMAGES  # per-command lazy import (see core.cli)

    p = sub.add_parser(
        "export",
        help="export a run or the ImageNet model (ONNX, LiteRT, SavedModel), checked",
        description="Writes an export folder (the model file, labels.txt, model.json, predict.py) "
        "whose graph takes raw RGB uint8 pixels, then runs it in its own runtime on "
        "held-out images and reports top-1 agreement with the Keras model and the "
        "largest probability difference. Exit 0 parity target met, 1 exported but "
        "below the target (or a crash), 2 bad input, 130/143 stopped.",
    )
    p.add_argument(
        "source",
        metavar="RUN_DIR|imagenet",
        help="a finished run folder, or 'imagenet' (or a backbone name b0..b7, lite0)",
    )
    p.add_argument(
        "--format",
        required=True,
        metavar="FORMAT",
        help="; ".join(f"{f.key}: {f.label}" for f in FORMATS.values())
        + " (int8: int8 weights, float32 compute; the layers int8 hurts most stay "
        "float32)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="export folder to write (an earlier export folder is replaced; "
        "default: RUN_DIR/exports/FORMAT, or "
        "<runs folder>/.exports/imagenet-WEIGHTS/FORMAT)",
    )
    p.add_argument(
        "--images",
        type=int,
        default=MIN_IMAGES,
        help=f"held-out images for the parity check (at least and by default {MIN_IMAGES})",
    )
    p.add_argument(
        "--weights",
        default="auto",
        help="ImageNet weights for 'imagenet': auto (default), imagenet, lite0 or a weights file",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the arguments here (exit 2 at once), then export in a job and report parity."""
    from pathlib import Path

    from core.export import exporter as export  # per-command lazy import (see core.cli)
    from core.export import quantize  # per-command lazy import (see core.cli)

    fmt = export.check_format(args.format)
    source = export.resolve_source(args.source)
    if args.images < export.MIN_IMAGES:
        raise UserError(f"--images must be at least {export.MIN_IMAGES}, got {args.images}")
    out = (
        Path(args.out).expanduser().resolve()
        if args.out
        else export.exports_root(source, args.weights) / fmt.key
    )
    export.check_out(out)
    job_args = {
        "source": str(source.path or source.name),
        "format": fmt.key,
        "out": str(out),
        "images": args.images,
        "weights": args.weights,
    }
    result, status = run_job("export", job_args)
    if result.get("stopped"):
        print(json.dumps(result), flush=True)
        raise CliError("export stopped before it finished", status=status or 130)
    record = ExportRecord.from_dict(result)
    check = record.parity
    verdict = "target met" if check.meets_target else "BELOW THE TARGET"
    target = check.target
    print(
        f"{fmt.label}: {record.dir} ({record.size_bytes / 1e6:.1f} MB, exported in "
        f"{record.export_s:.1f} s)\nparity in {check.runtime} on {check.images} "
        f"held-out images: top-1 agreement {check.agreement:.2%} ({check.agree}/"
        f"{check.images}), max |prob diff| {check.max_abs_diff:.2e} — {verdict} "
        f"(agreement >= {target['agreement']:.0%}"
        + (f", diff <= {target['max_abs_diff']:g})" if "max_abs_diff" in target else ")"),
        file=sys.stderr,
    )
    if record.int8:
        print(f"int8: {quantize.summary(record.int8)}", file=sys.stderr)
    summary = {
        k: result[k]
        for k in (
            "dir",
            "format",
            "file",
            "size_bytes",
            "export_s",
            "quantization",
            "int8",
            "source",
            "parity",
        )
        if k in result
    }
    print(json.dumps(summary), flush=True)
    return status or (0 if check.meets_target else 1)
