"""core on the JAX backend, through the CLI: the same classification as TensorFlow, and every
command working where TensorFlow is not installed (as on GPU images that ship JAX only).

Without TensorFlow means: the JAX Python (``EFFNET_LAB_JAX_PYTHON``, e.g. a venv from
requirements-jax.txt, or this one) in the ``jax_without_tensorflow`` environment, where ``import
tensorflow`` fails as if it were not installed — in every process, the job workers included.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_classify_with_jax_backend_matches_tensorflow(imagenet_samples_dir):
    pytest.importorskip("jax", reason="jax is not installed (pip install -r requirements-dev.txt)")
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed (requirements.txt)")
    photos = [str(p) for p in sorted(imagenet_samples_dir.glob("*.JPEG"))[:4]]
    results = {}
    for backend in ("tensorflow", "jax"):
        out = subprocess.run(
            [sys.executable, "-m", "core", "classify", "--top", "3", *photos],
            cwd=REPO,
            env={**os.environ, "KERAS_BACKEND": backend},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        results[backend] = [json.loads(line)["top"] for line in out.stdout.splitlines()]
    for tf_top, jax_top in zip(results["tensorflow"], results["jax"]):
        assert [t["index"] for t in tf_top] == [t["index"] for t in jax_top]
        assert abs(tf_top[0]["prob"] - jax_top[0]["prob"]) < 1e-3


@pytest.mark.slow
def test_every_command_runs_on_jax_without_tensorflow(
    jax_python, jax_without_tensorflow, tiny_cifar, imagenet_samples_dir, tmp_path
):
    env = jax_without_tensorflow

    def core(*args: str) -> str:
        out = subprocess.run(
            [jax_python, "-m", "core", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert "Traceback" not in out.stderr
        return out.stdout

    hidden = subprocess.run([jax_python, "-c", "import tensorflow"], env=env, capture_output=True)
    assert hidden.returncode != 0  # the premise: TensorFlow cannot be imported here

    info = json.loads(core("info"))
    assert info["backend"] == "jax" and "jax" in info and "tensorflow" not in info

    assert json.loads(core("scaling", "--variant", "b1", "--json"))["resolution"] == 240

    photo = str(sorted(imagenet_samples_dir.glob("*.JPEG"))[0])
    top = json.loads(core("classify", "--weights", "lite0", "--top", "3", photo))["top"]
    assert len(top) == 3

    # A finetune run with augmentation (RandomTranslation: compiled on JAX, see allow_jit),
    # then classification with it.
    run_dir = tmp_path / "jax-run"
    result = json.loads(
        core(
            "train",
            "--data",
            str(tiny_cifar),
            "--backbone",
            "lite0",
            "--weights",
            "lite0",
            "--mode",
            "finetune",
            "--finetune-blocks",
            "1",
            "--augment",
            "--resolution",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--out",
            str(run_dir),
        ).splitlines()[-1]
    )
    assert result["status"] == "done" and 0 <= result["test_accuracy"] <= 1
    results = json.loads((run_dir / "results.json").read_text())
    assert results["backend"] == "jax" and results["precision"] == "float32"
    image = str(next(tiny_cifar.rglob("*.jpg")))
    top = json.loads(core("classify", "--model", str(run_dir), "--top", "2", image))["top"]
    assert len(top) == 2
