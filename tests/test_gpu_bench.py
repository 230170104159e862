"""The one-shot GPU benchmark's scripts, run as on the GPU machine, on the CPU: gpu_prepare.py
packs an image folder, and gpu_bench.py --cpu-smoke unpacks and checks it and runs ``bench best
--recipe gpu`` on it with the JAX backend, TensorFlow hidden, the GPU's bfloat16 precision and a
tiny subset, ending with its one JSON result."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_bench_cpu_smoke_runs_the_gpu_recipe_end_to_end(
    jax_python, jax_without_tensorflow, tiny_cifar, tmp_path
):
    archive = tmp_path / "data" / "cifar10.tar.xz"
    (tiny_cifar / "dataset.id").write_text("0" * 32)  # the app's own file: not packed as data
    packed = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_prepare.py",
            "--skip-wheels",
            "--data",
            str(tiny_cifar),
            "--data-out",
            str(archive),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert packed.returncode == 0, packed.stderr
    manifest = json.loads((archive.parent / "cifar10.json").read_text())
    assert manifest["files"] == 150 and len(manifest["sha256"]) == 64

    out = tmp_path / "result" / "gpu-bench.json"
    run = subprocess.run(
        [
            jax_python,
            "benchmarks/gpu_bench.py",
            "--cpu-smoke",
            "--wheels",
            str(tmp_path / "no-wheels"),
            "--data-archive",
            str(archive),
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=jax_without_tensorflow,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    result = json.loads(out.read_text())
    assert run.returncode == 0, result.get("error") or run.stderr[-3000:]
    assert json.loads(run.stdout) == result  # the same JSON on stdout
    assert result["ok"] and result["mode"] == "cpu-smoke" and result["error"] is None
    assert result["env"]["backend"] == "jax" and result["env"]["gpus"] == 0
    assert set(result["setup_s"]) == {"wheels", "data", "env_check"}
    bench = result["result"]
    assert bench["preset"] == "best-gpu" and 0 <= bench["test_accuracy"] <= 1
    assert "mixed precision, bfloat16" in bench["device"]
    assert bench["recipe"]["resolution"] == 48 and bench["recipe"]["subset"] == 100
    assert len(result["history"]) == 1 and result["history"][0]["images_per_s"] > 0
    assert not result["stopped_at_budget"] and result["met_target"] is None
    assert out.with_suffix(".log").is_file()


def test_gpu_bench_reports_a_missing_archive_in_its_json(tmp_path):
    out = tmp_path / "gpu-bench.json"
    run = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_bench.py",
            "--cpu-smoke",
            "--wheels",
            str(tmp_path / "none"),
            "--data-archive",
            str(tmp_path / "missing.tar.xz"),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    result = json.loads(out.read_text())
    assert not result["ok"] and "gpu_prepare.py" in result["error"]
