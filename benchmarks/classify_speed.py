"""Benchmark: time to first prediction (fresh and cached) and batch classification throughput.

Usage: python benchmarks/classify_speed.py [--images N] [--batch-size B]

Prints figures; asserts nothing. "Fresh" runs the CLI with an empty cache, so it includes the
Lite0 pickle → Keras conversion; "cached" runs it again with the converted weights in place.
Both include Python start-up and the TensorFlow import, as a user's first command would.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "datasets" / "imagenet-samples"


def first_prediction(cache: str, photo: Path) -> float:
    env = {**os.environ, "EFFNET_LAB_CACHE": cache, "EFFNET_LAB_DOWNLOAD_TIMEOUT": "2"}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "core", "classify", "--top", "1", str(photo)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - t0
    print(f"  -> {json.loads(out.stdout)['top'][0]['label']}", file=sys.stderr)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    photos = sorted(SAMPLES.glob("*.JPEG"))
    with tempfile.TemporaryDirectory() as cache:
        fresh = first_prediction(cache, photos[0])
        cached = first_prediction(cache, photos[0])
        os.environ["EFFNET_LAB_CACHE"] = cache
        os.environ["EFFNET_LAB_DOWNLOAD_TIMEOUT"] = "2"
        sys.path.insert(0, str(REPO))
        from core.data.images import load_image
        from core.platform import runtime
        from core.serving import inference

        classifier = inference.load_classifier("imagenet", "auto")
        images = [load_image(p) for p in photos]
        batch = (images * (args.images // len(images) + 1))[: args.images]
        classifier.classify(batch[: args.batch_size], batch_size=args.batch_size)  # warm-up
        t0 = time.perf_counter()
        classifier.classify(batch, batch_size=args.batch_size)
        elapsed = time.perf_counter() - t0
    result = {
        "first_prediction_fresh_s": round(fresh, 2),
        "first_prediction_cached_s": round(cached, 2),
        "images_per_s": round(len(batch) / elapsed, 2),
        "images": len(batch),
        "batch_size": args.batch_size,
        "resolution": classifier.resolution,
        "weights": classifier.weights,
        "device": runtime.describe_device(),
    }
    print(f"time to first prediction, fresh (conversion included): {fresh:.1f} s")
    print(f"time to first prediction, cached:                      {cached:.1f} s")
    print(
        f"batch classification: {result['images_per_s']} img/s at {classifier.resolution}px, "
        f"batch {args.batch_size} ({result['device']}, {classifier.weights})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
