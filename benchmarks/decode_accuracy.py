"""Benchmark: does decoding lose accuracy? The production decode against a plain PIL resize.

Usage: python benchmarks/decode_accuracy.py [--core DIR] [--scales 1,2,3]

On the ImageNet sample photos, and on larger copies of them (each photo upscaled 2× and 3×
with Lanczos and saved as a JPEG of quality 95: a camera photo's size, the scene unchanged), it
classifies every view with the offline ImageNet classifier twice: through
``Classifier.classify_files`` (the CLI's path) and from a plain PIL decode (``convert("RGB")``,
then ``Image.resize`` of the crop box with the model's filter and no reducing gap). It prints
top-1, top-5 and the mean probability of the true class for both, and how far the production
inputs are from the plain ones, for the classifier and for two training storage sizes
(``decode_file``, as datasets are stored).

``--core DIR`` measures another checkout's ``core`` package (e.g. ``git worktree add /tmp/old
HEAD~1``), for a before/after comparison; the plain path is the same for both. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "datasets" / "imagenet-samples"


def views(scale: int, folder: Path) -> list[tuple[str, Path, str]]:
    """(name, file, synset) of each sample photo upscaled ``scale`` times, written to ``folder``
    (the photos themselves at scale 1)."""
    out = []
    for photo in sorted(SAMPLES.glob("*.JPEG")):
        synset = photo.name.split("_")[0]
        if scale == 1:
            out.append((photo.name, photo, synset))
            continue
        image = ImageOps.exif_transpose(Image.open(photo)).convert("RGB")
        big = image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)
        path = folder / f"x{scale}_{photo.name}"
        big.save(path, "JPEG", quality=95)
        out.append((path.name, path, synset))
    return out


def plain(path: Path, prep) -> np.ndarray:
    """The reference: the full decode, upright, in RGB, resized once from the crop box."""
    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(path.read_bytes()))).convert("RGB")
    out = image.resize(
        (prep.size, prep.size), filters[prep.resample], box=prep.box(*image.size), reducing_gap=None
    )
    return np.asarray(out, dtype=np.uint8)


def scores(probs: np.ndarray, truth: list[int]) -> str:
    top1 = np.mean([p.argmax() == t for p, t in zip(probs, truth)])
    top5 = np.mean([t in np.argsort(-p)[:5] for p, t in zip(probs, truth)])
    true = np.mean([p[t] for p, t in zip(probs, truth)])
    return f"top-1 {top1:.3f}  top-5 {top5:.3f}  mean p(true) {true:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", type=Path, default=REPO, help="checkout whose core/ to measure")
    parser.add_argument("--scales", default="1,2,3", help="upscaling factors of the views")
    args = parser.parse_args()
    sys.path.insert(0, str(args.core.resolve()))
    from core.data.images import Preprocessing, decode_file
    from core.models.labels import imagenet_synsets
    from core.serving.inference import load_classifier

    print(f"core from {args.core.resolve()}")
    classifier = load_classifier("imagenet", "auto")
    prep = classifier.preprocessing
    print(f"weights: {classifier.weights}; preprocessing: {prep}")
    synsets = imagenet_synsets()
    scales = [int(s) for s in args.scales.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for scale in scales:
            chosen = views(scale, Path(tmp))
            truth = [synsets.index(s) for _, _, s in chosen]
            items = list(
                classifier.classify_files([(n, p) for n, p, _ in chosen], top=1000, batch_size=32)
            )
            production = np.zeros((len(items), len(classifier.labels)))
            for row, item in zip(production, items):
                for entry in item.prediction.top:
                    row[entry["index"]] = entry["prob"]
            x = np.stack([plain(p, prep) for _, p, _ in chosen]).astype("float32")
            reference = np.asarray(classifier.model.predict_on_batch(x), dtype="float64")
            size = Image.open(chosen[0][1]).size
            print(f"\n{len(chosen)} views at {scale}x (e.g. {size[0]}x{size[1]})")
            print(f"  production (classify_files): {scores(production, truth)}")
            print(f"  plain PIL resize:            {scores(reference, truth)}")
            for p in (prep, Preprocessing(160, 1.0, "bicubic"), Preprocessing(96, 1.0, "bicubic")):
                diff = np.stack(
                    [
                        np.abs(decode_file(path, p).astype(int) - plain(path, p).astype(int))
                        for _, path, _ in chosen
                    ]
                )
                changed = sum(int(d.max() > 0) for d in diff)
                print(
                    f"  decode_file {p.size}px crop {p.crop:g} {p.resample}: {changed}/{len(diff)} "
                    f"photos differ from plain, max |diff| {diff.max()}, mean {diff.mean():.3f}"
                )


if __name__ == "__main__":
    main()
