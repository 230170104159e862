"""Data-parallel training over several processes (core.training.distributed): the options it
refuses, how a global batch is shared, and real runs — two JAX processes here, and two on the
two worker nodes of a real Ray cluster — that must give the model one process gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ray_cluster import LocalRayCluster

from core.cli import main
from core.training import TrainConfig
from core.training.distributed import DistributedError, check
from core.training.fit import shard_positions

REPO = Path(__file__).resolve().parents[1]
# Learning rate 0.01 so that three epochs move the head's weights well away from their start.
TINY = [
    *("--backbone", "lite0", "--weights", "lite0", "--resolution", "32", "--mode", "frozen"),
    *("--batch-size", "32", "--epochs", "3", "--lr", "0.01"),
]
# The gradients are float32 sums taken in another order (per process, then across), so they
# differ in the last bits; Adam divides each step by the gradient's running RMS, which turns
# that into up to ~1e-3 of a step for near-zero components. Measured (lr 0.01, 3 epochs): 1.3e-5
# at most, on a head kernel of magnitude ~0.1 (1e-4 is 1 % of one step at lr 0.01).
WEIGHT_TOLERANCE = 1e-4


# ----- options --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "processes, launcher, values, message",
    [
        (0, "local", {}, "--processes must be from 1 to 64"),
        (65, "local", {}, "--processes must be from 1 to 64"),
        (2, "mpi", {}, "--launcher must be one of local, ray"),
        (2, "local", {"mode": "finetune"}, "supports --mode frozen only"),
        (3, "local", {"batch_size": 32}, "must be a multiple of --processes (3)"),
    ],
)
def test_check_refuses_in_one_line(processes, launcher, values, message):
    with pytest.raises(DistributedError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(TrainConfig(**values), processes, launcher)


def test_the_ray_launcher_needs_a_cluster_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(DistributedError, match="--launcher ray needs RAY_ADDRESS"):
        check(TrainConfig(mode="frozen", batch_size=32), 2, "ray")


def test_one_process_is_always_allowed():
    check(TrainConfig(mode="finetune", batch_size=33), 1, "local")  # the ordinary path


@pytest.mark.slow
def test_a_backend_other_than_jax_is_refused_in_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "core", "train", "--mode", "frozen", "--processes", "2"],
        cwd=REPO,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "needs the JAX backend (this is tensorflow): set KERAS_BACKEND=jax" in proc.stderr
    assert len(err) == 1 and "Traceback" not in proc.stderr


def test_cli_refuses_with_one_line_and_exit_2(capsys):
    status = main(["train", "--mode", "finetune", "--processes", "2"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "supports --mode frozen only" in err and "Traceback" not in err


# ----- how a global batch is shared -----------------------------------------------------------
@pytest.mark.parametrize("length, batch, count", [(96, 32, 2), (90, 32, 2), (64, 16, 4), (8, 8, 1)])
def test_shares_rebuild_every_global_batch_in_process_order(length, batch, count):
    shares = [shard_positions(length, batch, i, count) for i in range(count)]
    local = batch // count
    rebuilt = []
    for start in range(0, length, batch):  # batch k of each process, side by side
        size = min(batch, length - start) // count
        k = start // batch
        for share in shares:
            rebuilt.extend(share[k * local : k * local + size])
    assert rebuilt == list(range(length))
    assert sum(len(s) for s in shares) == length


# ----- real runs ------------------------------------------------------------------------------
def _train(jax_python: str, out: Path, *extra: str, env: dict | None = None) -> dict:
    started = time.time()
    proc = subprocess.run(
        [jax_python, "-m", "core", "train", *TINY, *extra, "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "KERAS_BACKEND": "jax", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["test_s"] = time.time() - started
    return result


@pytest.fixture(scope="module")
def one_process(jax_python, tiny_cifar, tmp_path_factory) -> Path:
    """The reference: the ordinary single-process run, on JAX (it also fills the features
    cache the multi-process runs then read)."""
    out = tmp_path_factory.mktemp("dp") / "one"
    _train(jax_python, out, "--data", str(tiny_cifar))
    return out


def _assert_same_model(one: Path, many: Path) -> None:
    """Same weights, predictions and training curve, within float tolerance."""
    import keras

    from core.training import runs

    a, b = runs.load_run(one), runs.load_run(many)
    results = json.loads((many / "results.json").read_text())
    assert results["processes"] == 2 and results["devices"] == 2
    n, batch = results["train_images"], 32
    assert n % batch % 2 == 0  # no image trimmed: both saw exactly the same batches
    wa = keras.saving.load_model(one / "model.keras").get_weights()
    wb = keras.saving.load_model(many / "model.keras").get_weights()
    assert len(wa) == len(wb)
    worst = max(float(np.abs(x - y).max()) for x, y in zip(wa, wb))
    assert worst < WEIGHT_TOLERANCE, worst
    pa, pb = (np.load(run / "predictions.npz") for run in (one, many))
    assert np.array_equal(pa["pred"], pb["pred"])
    np.testing.assert_allclose(pa["prob"], pb["prob"], atol=1e-5)
    ha, hb = a.history, b.history
    assert len(ha) == len(hb) == 3
    assert ha[-1]["loss"] < ha[0]["loss"] - 0.01  # it did train (not a comparison of starts)
    for ra, rb in zip(ha, hb):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert ra[key] == pytest.approx(rb[key], abs=1e-5), key
    assert a.test_accuracy == b.test_accuracy


@pytest.mark.slow
def test_two_local_processes_train_the_one_process_model(jax_python, tiny_cifar, one_process):
    many = one_process.parent / "two-local"
    result = _train(jax_python, many, "--data", str(tiny_cifar), "--processes", "2")
    assert [p["index"] for p in result["processes"]] == [0, 1]
    assert len({p["pid"] for p in result["processes"]}) == 2
    assert "2 processes" in result["device"]
    _assert_same_model(one_process, many)
    print(f"two local processes: {result['test_s']:.1f} s")


@pytest.mark.slow
def test_two_processes_on_two_ray_nodes_train_the_one_process_model(
    jax_python, tiny_cifar, one_process
):
    many = one_process.parent / "two-ray"
    with LocalRayCluster(workers=2, cpus=1) as cluster:
        result = _train(
            jax_python,
            many,
            *("--data", str(tiny_cifar), "--processes", "2", "--launcher", "ray"),
            env={"RAY_ADDRESS": cluster.address},
        )
        nodes = {p["node"] for p in result["processes"]}
        assert nodes == set(cluster.worker_ips)  # one process on each worker node
    _assert_same_model(one_process, many)
    print(f"two Ray processes: {result['test_s']:.1f} s")
