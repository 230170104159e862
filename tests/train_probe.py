"""Helper for tests/test_devices.py, run in a fresh process (device counts, XLA flags and the
backend are fixed when a process starts): train a tiny Lite0 finetune run once per
``EFFNET_LAB_DEVICES`` value given, watching how each training batch reaches the model (it
observes Keras's ``train_step``, it changes nothing), and print one JSON line.

Usage: python tests/train_probe.py DATA RUNS_ROOT CONFIG_JSON MODE [MODE ...]
(CONFIG_JSON: TrainConfig values over the probe's defaults.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEEN: list[str] = []  # how the training batches reached the model


def _record_split(x) -> None:
    """Note how the batch ``x`` is split over devices (called inside the train step)."""
    import keras

    if keras.backend.backend() == "jax":  # traced under jit: the input's sharding
        import jax

        def seen(sharding):
            spec = getattr(sharding, "spec", None)
            SEEN.append(f"{len(sharding.device_set)} devices, spec {tuple(spec) if spec else ()}")

        jax.debug.inspect_array_sharding(x, callback=seen)
    else:  # runs once per replica: the replica count now, the replica's batch when it runs
        import tensorflow as tf

        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx else 1

        def seen(n):
            SEEN.append(f"{replicas} replicas, replica batch {int(n)}")
            return 0

        tf.numpy_function(seen, [tf.shape(x)[0]], tf.int64)


def main() -> None:
    data, runs_root, overrides, *modes = sys.argv[1:]
    import keras
    import numpy as np

    original = keras.Model.train_step  # JAX: (state, data); TensorFlow: (data,)

    def probed(self, *args):
        _record_split(args[-1][0])
        return original(self, *args)

    keras.Model.train_step = probed

    from core.data.loading import load_dataset
    from core.platform import runtime
    from core.training import TrainConfig
    from core.training.fit import compile_model
    from core.training.run import train
    from core.training.runs import load_run, load_run_model

    out = {}
    for mode in modes:
        os.environ[runtime.DEVICES_ENV] = mode
        SEEN.clear()
        values = dict(
            data=data,
            backbone="lite0",
            weights="lite0",
            mode="finetune",
            resolution=32,
            finetune_blocks=2,
            augment=True,
            epochs=1,
            batch_size=32,
            lr=1e-3,
            optimizer="adam",
            schedule="constant",
        )
        config = TrainConfig(
            **{**values, **json.loads(overrides)}, name=f"probe-{mode.replace(':', '')}"
        )
        result = train(config, runs_root=Path(runs_root))
        info = load_run(result.run_dir)
        model, _, _ = load_run_model(result.run_dir)
        ds = load_dataset(data)
        probs = np.asarray(model.predict_on_batch(ds.x_test[:8].astype("float32")))
        with runtime.device_context() as plan:  # what compile does with this plan's policy
            probe_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
            compile_model(probe_model, config, 64, 1, plan.on_gpu)
            optimizer = type(probe_model.optimizer).__name__
        out[mode] = {
            "device": result.device,
            "test_accuracy": result.test_accuracy,
            "precision": info.results.get("precision"),
            "devices": info.results.get("devices"),
            "history": info.history,
            "splits": sorted(set(SEEN)),
            "output_dtype": str(probs.dtype),
            "probs": probs.tolist(),
            "optimizer": optimizer,
            "loaded_jit": bool(model.jit_compile),
            "loaded_policies": sorted({layer.dtype_policy.name for layer in model.layers}),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
