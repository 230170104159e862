"""Runtime facts for the start page and ``python -m core info``, and the device context training
runs in (mixed precision on a GPU; exercised here on the CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.models import weights
from core.platform import runtime


def test_runtime_info_names_backend_and_device():
    info = runtime.runtime_info()
    assert info["backend"] in ("tensorflow", "jax", "torch")
    if info["backend"] == "tensorflow":
        assert info["tensorflow"].count(".") >= 2
    assert info["device"] == runtime.describe_device()
    assert info["gpus"] == runtime.accelerators()


def test_describe_device_agrees_with_the_accelerators_found():
    text, gpus = runtime.describe_device(), runtime.accelerators()
    if gpus:
        assert text.startswith("GPU: ") and f"×{len(gpus)}" in text and "mixed precision" in text
    else:
        assert text.startswith(f"CPU ({os.cpu_count()} cores") and "mixed precision" not in text


@pytest.mark.parametrize("on_gpu, inside", [(True, "mixed_float16"), (False, "float32")])
def test_device_context_sets_and_restores_the_precision(on_gpu, inside):
    import keras

    before = keras.config.dtype_policy().name
    with runtime.device_context(on_gpu):
        assert keras.config.dtype_policy().name == inside
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
        assert layer.kernel.dtype == "float32"  # variables stay float32 under mixed precision
    assert keras.config.dtype_policy().name == before


def test_weights_status_lists_both_sources():
    rows = weights.status()
    assert [r["weights"].split()[0] for r in rows] == ["official", "EfficientNet-Lite0"]
    assert rows[1]["available"] is True and "efficientnet" in rows[1]["where"]


@pytest.mark.slow
def test_cli_info_prints_json():
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "core", "info"],
        cwd=repo,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"backend", "keras", "device", "weights"} <= set(data)
