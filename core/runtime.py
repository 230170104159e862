"""What this process runs on: Keras backend, framework versions, devices and available weights."""

from __future__ import annotations

import os
import platform


def devices() -> list[str]:
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
    """One line: the GPUs in use, or the CPU and its core count."""
    gpus = devices()
    if gpus:
        names = sorted({g.removeprefix("GPU: ") for g in gpus})
        return f"GPU: {', '.join(names)} ×{len(gpus)}"
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def runtime_info() -> dict:
    """Backend, versions and devices, for the start page and ``python -m core info``."""
    import keras

    info = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "gpus": devices(),
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
