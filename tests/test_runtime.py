"""Runtime facts for the start page and ``python -m core info``."""

import json
import os
import subprocess
import sys
from pathlib import Path

from core import runtime


def test_runtime_info_names_backend_and_device():
    info = runtime.runtime_info()
    assert info["backend"] in ("tensorflow", "jax", "torch")
    assert info["device"].startswith(("CPU", "GPU"))
    if info["backend"] == "tensorflow":
        assert info["tensorflow"].count(".") >= 2


def test_weights_status_lists_both_sources():
    rows = runtime.weights_status()
    assert [r["weights"].split()[0] for r in rows] == ["official", "EfficientNet-Lite0"]
    assert rows[1]["available"] is True and "efficientnet" in rows[1]["where"]


def test_cli_info_prints_json():
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "core", "info"], cwd=repo, env=dict(os.environ),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"backend", "keras", "device", "weights"} <= set(data)
