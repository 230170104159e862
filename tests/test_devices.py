"""All local devices and mixed precision, checked on the CPU.

Each check trains tiny Lite0 runs in a fresh process (tests/train_probe.py), because device
counts, XLA flags and the backend are fixed when a process starts: JAX data parallel over two
host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``), TensorFlow's
MirroredStrategy over two logical CPU devices (``EFFNET_LAB_DEVICES=cpu:2`` splits the CPU), and
the GPU's mixed precision forced on the CPU through ``EFFNET_LAB_PRECISION``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.platform import runtime

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "train_probe.py"
TWO_HOST_DEVICES = "--xla_force_host_platform_device_count=2"


def probe(
    python: str, backend: str, data: Path, tmp_path: Path, overrides: dict, modes: list, **env
) -> dict:
    """Run the probe; return {mode: what the run did} (see tests/train_probe.py)."""
    out = subprocess.run(
        [python, str(PROBE), str(data), str(tmp_path / "runs"), json.dumps(overrides), *modes],
        cwd=REPO,
        env={**os.environ, "KERAS_BACKEND": backend, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def losses(run: dict, key: str = "loss") -> list[float]:
    return [row[key] for row in run["history"]]


@pytest.mark.parametrize("value", ["gpu", "cpu:0", "cpu:x", "cpu-2"])
def test_bad_device_requests_are_refused_with_the_allowed_values(monkeypatch, value):
    monkeypatch.setenv(runtime.DEVICES_ENV, value)
    with pytest.raises(ValueError, match="'auto' or 'cpu:N'"):
        runtime.device_plan()


def test_bad_precision_is_refused_with_the_allowed_values(monkeypatch):
    monkeypatch.setenv(runtime.PRECISION_ENV, "float8")
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        runtime.device_plan()


def test_one_cpu_device_by_default(monkeypatch):
    monkeypatch.delenv(runtime.DEVICES_ENV, raising=False)
    monkeypatch.delenv(runtime.PRECISION_ENV, raising=False)
    plan = runtime.device_plan()
    if not plan.on_gpu:
        assert plan.devices == ("cpu:0",) and plan.policy == "float32" and plan.strategy == ""
        assert runtime.describe_device() == plan.describe()


@pytest.mark.slow
def test_jax_data_parallel_splits_every_batch_and_matches_one_device(
    jax_python, tiny_cifar, tmp_path
):
    # Finetune with augmentation: the GPU recipe's path (images through the whole model). 49
    # test images: validation and evaluation are padded to split evenly (the pads do not count).
    runs = probe(
        jax_python,
        "jax",
        tiny_cifar,
        tmp_path,
        {"augment": True, "test_subset": 49},
        ["cpu:2", "auto"],
        XLA_FLAGS=TWO_HOST_DEVICES,
    )
    multi, single = runs["cpu:2"], runs["auto"]
    assert multi["device"].endswith("; 2 devices, data parallel)") and multi["devices"] == 2
    assert single["device"] == runtime.DevicePlan("cpu", ("cpu:0",), ("CPU",), "float32").describe()
    # Each training batch arrives split along the batch axis over both devices.
    assert "2 devices, spec ('batch',)" in multi["splits"]
    assert single["splits"] == ["1 devices, spec ()"]
    # Compiled, not eager (RandomTranslation's flag, see runtime.allow_jit), also once reloaded.
    assert multi["loaded_jit"] and single["loaded_jit"]
    # The same computation as on one device, up to float rounding.
    assert abs(losses(multi)[0] - losses(single)[0]) < 1e-4
    assert abs(losses(multi, "val_loss")[0] - losses(single, "val_loss")[0]) < 1e-3
    assert np.abs(np.subtract(multi["probs"], single["probs"])).max() < 1e-3
    assert multi["test_accuracy"] == single["test_accuracy"]


@pytest.mark.slow
def test_jax_data_parallel_trims_a_ragged_last_batch(jax_python, tiny_cifar, tmp_path):
    # Frozen mode (the head trains on cached features, 32 steps per execution); 99 images in
    # batches of 32 leave a last batch of 3, which cannot split over 2 devices: one image of it
    # waits for the next epoch's order.
    run = probe(
        jax_python,
        "jax",
        tiny_cifar,
        tmp_path,
        {"mode": "frozen", "subset": 99, "test_subset": 49, "epochs": 2},
        ["cpu:2"],
        XLA_FLAGS=TWO_HOST_DEVICES,
    )["cpu:2"]
    assert run["devices"] == 2 and "2 devices, spec ('batch',)" in run["splits"]
    assert len(run["history"]) == 2 and 0 <= run["test_accuracy"] <= 1
    assert all(np.isfinite(losses(run) + losses(run, "val_loss")))


@pytest.mark.slow
def test_tensorflow_mirrored_strategy_splits_every_batch(tiny_cifar, tmp_path):
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed (requirements.txt)")
    # No augmentation: the cached-feature-maps path (features extracted under the strategy).
    # Validation on the test split, so all 100 training images train (no validation carved out).
    runs = probe(
        sys.executable,
        "tensorflow",
        tiny_cifar,
        tmp_path,
        {"augment": False, "dropout": 0.0, "validation": "test"},
        ["cpu:2", "auto"],
    )
    multi, single = runs["cpu:2"], runs["auto"]
    assert multi["device"].endswith("; 2 devices, MirroredStrategy)") and multi["devices"] == 2
    assert single["devices"] == 1 and "MirroredStrategy" not in single["device"]
    # 100 images in batches of 32: each replica gets half of every batch (16, and 2 of the last 4).
    assert multi["splits"] == ["2 replicas, replica batch 16", "2 replicas, replica batch 2"]
    assert single["splits"] == ["1 replicas, replica batch 32", "1 replicas, replica batch 4"]
    # Close, not equal: MirroredStrategy normalises each replica's half batch on its own in the
    # head's BatchNormalization (measured difference in the first epoch's loss: 0.004).
    assert abs(losses(multi)[0] - losses(single)[0]) < 0.05
    assert all(np.isfinite(losses(multi, "val_loss")))


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, policy, optimizer",
    [
        ("jax", "mixed_bfloat16", "Adam"),  # bfloat16 has float32's range: no loss scaling
        ("tensorflow", "mixed_float16", "LossScaleOptimizer"),  # compile() adds loss scaling
    ],
)
def test_mixed_precision_trains_and_is_recorded(
    backend, policy, optimizer, jax_python, tiny_cifar, tmp_path
):
    if backend == "tensorflow":
        pytest.importorskip("tensorflow", reason="TensorFlow is not installed (requirements.txt)")
    python = jax_python if backend == "jax" else sys.executable
    run = probe(
        python, backend, tiny_cifar, tmp_path, {"epochs": 3}, ["auto"], EFFNET_LAB_PRECISION=policy
    )["auto"]
    assert run["precision"] == policy
    assert f"mixed precision, {policy.removeprefix('mixed_')}" in run["device"]
    assert run["optimizer"] == optimizer
    train_loss = losses(run)
    assert all(np.isfinite(train_loss + losses(run, "val_loss")))
    assert train_loss[-1] < train_loss[0]
    # Trained in 16 bits, the run loads in float32 on a machine without an accelerator
    # (core.training.runs.load_run_model: a CPU has no fast float16), and so are the probabilities.
    assert run["loaded_policies"] == ["float32"]
    assert run["output_dtype"] == "float32"
    assert np.allclose(np.sum(run["probs"], axis=1), 1, atol=1e-3)


def test_padded_predict_returns_the_real_samples(monkeypatch, tmp_path):
    # JAX data parallel needs every batch to split evenly over the devices: predict (which also
    # scores validation and test) pads with copies, then drops their rows. Four devices here.
    import keras

    from core.training import fit as fit_module

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(11, 4)).astype("float32")
    plain = model.predict(x, batch_size=4, verbose=0)
    monkeypatch.setattr(fit_module, "batch_multiple", lambda: 4)
    padded = fit_module.predict(model, x, 4)
    assert padded.shape == (11, 3)
    np.testing.assert_allclose(padded, plain, atol=1e-6)
    on_disk = np.lib.format.open_memmap(
        tmp_path / "x.npy", mode="w+", dtype="float32", shape=x.shape
    )
    on_disk[:] = x
    np.testing.assert_allclose(fit_module.predict(model, on_disk, 4), plain, atol=1e-6)
