"""``python -m core classify``: top-k labels for image files, one JSON object per line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.platform.errors import UserError
from core.platform.fileio import atomic_path


def register(sub) -> None:
    """Add the ``classify`` command."""
    p = sub.add_parser(
        "classify",
        help="classify image files with an ImageNet model or a trained run",
        description="Prints one JSON object per input file. Exit 0 if every file was "
        "classified, 1 if some were not, 2 for bad arguments.",
    )
    p.add_argument(
        "--model",
        default="imagenet",
        help="'imagenet' (default), a backbone name (b0..b7, lite0), or a run folder / .keras file",
    )
    p.add_argument(
        "--weights",
        default="auto",
        help="ImageNet weights: auto (default), imagenet, lite0, or a .h5/.weights.h5 file",
    )
    p.add_argument(
        "--top", type=int, default=5, help="how many classes to print per image (default 5)"
    )
    p.add_argument(
        "--batch-size", type=int, default=32, help="images per forward pass (default 32)"
    )
    p.add_argument(
        "--explain",
        metavar="DIR",
        help="also write DIR/<file stem>.cam.png: the Grad-CAM heatmap of the top class "
        "(grayscale, the input's size; the JSON line names it)",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="image files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model once, then decode and classify the files a batch at a time, printing one
    JSON line per file in the order given; unreadable files get an error line."""
    from core.serving.inference import load_classifier  # per-command lazy import (see core.cli)

    if not 1 <= args.top <= 1000:
        raise UserError(f"--top must be from 1 to 1000, got {args.top}")
    if not 1 <= args.batch_size <= 1024:
        raise UserError(f"--batch-size must be from 1 to 1024, got {args.batch_size}")
    out = _explain_dir(args.explain) if args.explain else None
    classifier = load_classifier(args.model, args.weights)  # a UserError: exit 2
    print(f"model: {classifier.name} — {classifier.weights} ({classifier.detail})", file=sys.stderr)
    failed = 0
    for item in classifier.classify_files(
        ((f, f) for f in args.files),
        top=args.top,
        batch_size=args.batch_size,
        explain=out is not None,
    ):
        if item.error:
            failed += 1
            line = {"file": item.name, "error": item.error}
        else:
            line = {
                "file": item.name,
                "model": classifier.name,
                "weights": classifier.weights,
                "top": item.prediction.top,
            }
            if out is not None:
                try:
                    line["cam"] = _write_cam(item, classifier.preprocessing, out)
                except OSError as exc:
                    failed += 1
                    line["error"] = f"cannot write the heatmap: {exc.strerror or exc}"
        print(json.dumps(line), flush=True)
    return 1 if failed else 0


def _explain_dir(folder: str) -> Path:
    """The ``--explain`` folder, created if needed (exit 2 if it cannot be)."""
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --explain folder {path}: {exc.strerror or exc}") from exc
    return path


def _write_cam(item, preprocessing, folder: Path) -> str:
    """Write one heatmap as ``<stem>.cam.png`` at the input's own size; returns its path."""
    from PIL import Image

    from core.serving.explain import place  # per-command lazy import (see core.cli)

    heat = place(item.cam, preprocessing, item.source_size)
    path = folder / f"{Path(item.name).stem}.cam.png"
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(heat, "L").save(tmp, format="PNG")
    return str(path)
