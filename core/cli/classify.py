"""``python -m core classify``: top-k labels for image files, one JSON object per line."""

from __future__ import annotations

import argparse
import json
import sys

from core.cli import CliError


def register(sub) -> None:
    """Add the ``classify`` command."""
    p = sub.add_parser("classify", help="classify image files with an ImageNet model or a trained run",
                       description="Prints one JSON object per input file. Exit 0 if every file was "
                                   "classified, 1 if some were not, 2 for bad arguments.")
    p.add_argument("--model", default="imagenet",
                   help="'imagenet' (default), a backbone name (b0..b7, lite0), or a run folder / .keras file")
    p.add_argument("--weights", default="auto",
                   help="ImageNet weights: auto (default), imagenet, lite0, or a .h5/.weights.h5 file")
    p.add_argument("--top", type=int, default=5, help="how many classes to print per image (default 5)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("files", nargs="+", metavar="FILE", help="image files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model once, then classify each readable file; errors are reported per file."""
    from core.inference import ImageError, load_classifier, load_image

    if args.top < 1:
        raise CliError("--top must be at least 1")
    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    try:
        classifier = load_classifier(args.model, args.weights)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(f"model: {classifier.name} — {classifier.weights} ({classifier.detail})", file=sys.stderr)

    # Decode everything first (bad files become error lines), classify the rest in batches, then
    # print one line per input in the order given.
    lines: dict[int, dict] = {}
    images, positions = [], []
    for i, name in enumerate(args.files):
        try:
            images.append(load_image(name))
            positions.append(i)
        except ImageError as exc:
            lines[i] = {"file": name, "error": str(exc)}
    for i, pred in zip(positions, classifier.classify(images, top=args.top, batch_size=args.batch_size)):
        lines[i] = {"file": args.files[i], "model": classifier.name, "weights": classifier.weights,
                    "top": pred.top}
    for i in range(len(args.files)):
        print(json.dumps(lines[i]), flush=True)
    return 1 if len(positions) < len(args.files) else 0
