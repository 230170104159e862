"""What this process runs on: Keras backend, framework versions, devices and available weights,
and the device context training runs in (mixed precision and all GPUs on a GPU machine)."""

from __future__ import annotations

import contextlib
import os
import platform


def backend() -> str:
    """The Keras backend's name ("tensorflow", "jax", "torch")."""
    import keras

    return keras.backend.backend()


def accelerators() -> list[str]:
    """Accelerators visible to the Keras backend, e.g. ``["GPU: NVIDIA H100 80GB HBM3"]``; empty on CPU."""
    import keras

    backend = keras.backend.backend()
    found: list[str] = []
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            found.append(f"GPU: {details.get('device_name', gpu.name)}")
    elif backend == "jax":
        import jax

        found = [f"GPU: {d.device_kind}" for d in jax.devices() if d.platform == "gpu"]
    elif backend == "torch":
        import torch

        found = [f"GPU: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return found


def describe_device() -> str:
    """One line naming what training and inference run on.

    E.g. ``CPU (2 cores, x86_64)`` or ``GPU: NVIDIA H100 80GB HBM3 ×1 (mixed precision)``; with
    several GPUs it also names the strategy (``…, MirroredStrategy``).
    """
    gpus = accelerators()
    if not gpus:
        return f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    names = sorted({g.removeprefix("GPU: ") for g in gpus})
    extra = ", MirroredStrategy" if len(gpus) > 1 and backend() == "tensorflow" else ""
    return f"GPU: {', '.join(names)} ×{len(gpus)} (mixed precision{extra})"


@contextlib.contextmanager
def device_context(on_gpu: bool):
    """Mixed precision on GPU and all local GPUs through MirroredStrategy (TensorFlow only).

    Keras keeps its dtype policy per thread, so a training thread's mixed precision does not
    leak into other threads; the previous policy is restored on exit.
    """
    import keras

    old = keras.config.dtype_policy()
    with contextlib.ExitStack() as stack:
        if on_gpu:
            keras.config.set_dtype_policy("mixed_float16")
            stack.callback(keras.config.set_dtype_policy, old)
            if len(accelerators()) > 1 and backend() == "tensorflow":
                import tensorflow as tf

                stack.enter_context(tf.distribute.MirroredStrategy().scope())
        yield


def jit_compile(on_gpu: bool):
    """Keras's ``jit_compile`` for training: XLA on a CPU is many times slower for these models
    with TensorFlow; JAX always compiles."""
    return "auto" if on_gpu or backend() != "tensorflow" else False


def runtime_info() -> dict:
    """Backend, versions and devices, for the start page and ``python -m core info``."""
    import keras

    info = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "gpus": accelerators(),
    }
    if info["backend"] == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    elif info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
    return info


def weights_status() -> list[dict]:
    """Which ImageNet weights are available without downloading, and from where."""
    from core import weights

    rows = []
    cached = weights.official_cached_path("b0")
    rows.append({
        "weights": "official Keras EfficientNet-B0 (imagenet)",
        "available": bool(cached),
        "where": str(cached) if cached else "not cached; downloaded by Keras on first use when online",
    })
    try:
        package = weights.lite0_package_path()
        converted = weights.lite0_cache_path()
        rows.append({
            "weights": "EfficientNet-Lite0 ImageNet (lite0, offline)",
            "available": True,
            "where": f"{package}" + (f" → converted {converted}" if converted.exists()
                                     else " (converted to Keras on first use)"),
        })
    except weights.WeightsError as exc:
        rows.append({"weights": "EfficientNet-Lite0 ImageNet (lite0, offline)", "available": False,
                     "where": str(exc)})
    return rows
