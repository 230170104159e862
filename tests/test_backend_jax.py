"""core on the JAX backend: the same classification, through the CLI, with KERAS_BACKEND=jax."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_classify_with_jax_backend_matches_tensorflow(imagenet_samples_dir):
    pytest.importorskip("jax", reason="jax is not installed (pip install -r requirements-dev.txt)")
    photos = [str(p) for p in sorted(imagenet_samples_dir.glob("*.JPEG"))[:4]]
    results = {}
    for backend in ("tensorflow", "jax"):
        out = subprocess.run([sys.executable, "-m", "core", "classify", "--top", "3", *photos],
                             cwd=REPO, env={**os.environ, "KERAS_BACKEND": backend},
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        results[backend] = [json.loads(line)["top"] for line in out.stdout.splitlines()]
    for tf_top, jax_top in zip(results["tensorflow"], results["jax"]):
        assert [t["index"] for t in tf_top] == [t["index"] for t in jax_top]
        assert abs(tf_top[0]["prob"] - jax_top[0]["prob"]) < 1e-3
