"""Benchmark: does classifying image files serve a run exactly as it was trained?

Usage: python benchmarks/serve_as_trained.py RUN_DIR TEST_FOLDER [--per-class N]

TEST_FOLDER holds one sub-folder of image files per class (e.g. CIFAR-10's ``test/``). Takes the
first N files of each class and prints the accuracy three ways: ``python -m core classify
--model RUN_DIR`` (a subprocess, as a user runs it), the run's Keras model on the same files
decoded exactly as training decoded its data, and the old behaviour (ImageNet's centre crop for
every model) for comparison. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("folder")
    parser.add_argument("--per-class", type=int, default=100)
    args = parser.parse_args()
    from core.data.images import Preprocessing, decode_file
    from core.serving.inference import load_classifier

    files = [
        f
        for d in sorted(Path(args.folder).iterdir())
        if d.is_dir()
        for f in sorted(d.iterdir())[: args.per_class]
    ]
    truth = [f.parent.name for f in files]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "classify",
            "--model",
            args.run,
            "--top",
            "1",
            *map(str, files),
        ],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
    )
    cli = [json.loads(line)["top"][0]["label"] for line in out.stdout.splitlines()]
    classifier = load_classifier(args.run)
    labels = classifier.labels

    def accuracy(prep: Preprocessing) -> tuple[float, list[str]]:
        x = np.stack([decode_file(f, prep) for f in files]).astype("float32")
        pred = [labels[i] for i in classifier.model.predict(x, verbose=0).argmax(1)]
        return float(np.mean([p == t for p, t in zip(pred, truth)])), pred

    keras_acc, keras_pred = accuracy(classifier.preprocessing)
    old_acc, old_pred = accuracy(Preprocessing.imagenet(classifier.preprocessing.size))
    cli_acc = float(np.mean([p == t for p, t in zip(cli, truth)]))
    print(f"{len(files)} files; the run's preprocessing: {classifier.preprocessing}")
    print(f"python -m core classify --model RUN: {cli_acc:.2%}")
    print(
        f"Keras model on the files decoded as in training: {keras_acc:.2%} "
        f"(predictions that differ from classify: {sum(a != b for a, b in zip(cli, keras_pred))})"
    )
    print(
        f"old behaviour, ImageNet centre crop 0.875: {old_acc:.2%} "
        f"(predictions that differ: {sum(a != b for a, b in zip(old_pred, keras_pred))})"
    )


if __name__ == "__main__":
    main()
