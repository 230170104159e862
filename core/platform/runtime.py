"""What this process runs on: Keras backend, framework versions, devices and available weights,
and the device context training runs in: every local device (data parallel when there are
several) and mixed precision on GPUs.

Two environment variables change the defaults (tests and unusual machines; a normal CPU box and a
normal GPU box need neither):

- ``EFFNET_LAB_DEVICES``: ``auto`` (default: every local GPU, else one CPU device) or ``cpu:N``:
  train data-parallel over N CPU devices — the multi-device path, checked on a CPU. JAX then
  needs ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before it starts (set for you if
  JAX has not initialised yet); TensorFlow splits the CPU into N logical devices before it
  initialises.
- ``EFFNET_LAB_PRECISION``: ``auto`` (default: mixed precision on GPUs — bfloat16 on JAX when
  every GPU supports it, float16 with loss scaling otherwise — float32 on CPUs), or one of
  ``float32``, ``mixed_float16``, ``mixed_bfloat16`` (e.g. to run the GPU precision on a CPU).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from dataclasses import dataclass

from core.platform import _keras_private

DEVICES_ENV = "EFFNET_LAB_DEVICES"
PRECISION_ENV = "EFFNET_LAB_PRECISION"
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
_CPU_COUNT_FLAG = "--xla_force_host_platform_device_count"


def backend() -> str:
    """The Keras backend's name ("tensorflow", "jax", "torch")."""
    import keras

    return keras.backend.backend()


def requested_cpu_devices() -> int:
    """N from ``EFFNET_LAB_DEVICES=cpu:N``; 0 for ``auto`` (the default).

    Raises:
        ValueError: Any other value.
    """
    value = os.environ.get(DEVICES_ENV, "auto").strip().lower()
    if value in ("", "auto"):
        return 0
    match = re.fullmatch(r"cpu:(\d{1,3})", value)
    if not match or int(match[1]) < 1:
        raise ValueError(
            f"{DEVICES_ENV} must be 'auto' or 'cpu:N' (N CPU devices, N ≥ 1), got {value!r}."
        )
    return int(match[1])


_cpu_split_done = False


def _split_cpu() -> None:
    """With ``cpu:N``, make the backend show N CPU devices. Both backends fix their devices when
    they first use them, so this runs before any device query (see :func:`accelerators`)."""
    global _cpu_split_done
    n = requested_cpu_devices()
    if _cpu_split_done or n < 2:
        return
    _cpu_split_done = True
    name = backend()  # importing Keras initialises neither backend's devices
    if name == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if _CPU_COUNT_FLAG not in flags:  # read by JAX when it first creates its CPU client
            os.environ["XLA_FLAGS"] = f"{flags} {_CPU_COUNT_FLAG}={n}".strip()
    elif name == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * n
            )
        except RuntimeError:  # TensorFlow already initialised: train_devices() says what to do
            pass


def accelerators() -> list[str]:
    """Accelerators visible to the Keras backend, e.g. ``["GPU: NVIDIA H100 80GB HBM3"]``; empty on CPU."""
    import keras

    _split_cpu()
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


def _local_devices(kind: str) -> list[str]:
    """The backend's own names of its local ``kind`` ("cpu"/"gpu") devices, in order."""
    name = backend()
    if name == "jax":
        import keras

        return list(keras.distribution.list_devices(kind))  # "cpu:0", "gpu:0", ...
    if name == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices(kind.upper())]
    return [f"{kind}:0"]  # torch: one device (no multi-device path here)


def _bf16_gpus() -> bool:
    """Whether every JAX GPU computes in bfloat16 natively (compute capability 8.0, Ampere, on)."""
    import jax

    try:
        return all(float(d.compute_capability) >= 8.0 for d in jax.devices() if d.platform == "gpu")
    except (AttributeError, ValueError):
        return False


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX512_BF16 or AMX-BF16; Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def feature_policy(setting: str) -> str:
    """The Keras dtype policy of the frozen feature extractor for the ``feature_precision``
    training option: "mixed_bfloat16" for "bfloat16", and for "auto" on TensorFlow on a CPU
    with native bfloat16 (:func:`cpu_has_bf16`), while training runs in float32; else
    "float32" (the extractor then follows the training policy, e.g. mixed precision on a GPU)."""
    import keras

    if keras.config.dtype_policy().name != "float32":
        return "float32"  # already mixed precision (a GPU): nothing to change
    # auto: TensorFlow's oneDNN kernels use the CPU's bfloat16 units; XLA's CPU kernels (JAX)
    # are not known to here, so auto leaves JAX in float32.
    native = backend() == "tensorflow" and cpu_has_bf16()
    if setting == "bfloat16" or (setting == "auto" and native):
        return "mixed_bfloat16"
    return "float32"


def precision(on_gpu: bool) -> str:
    """The Keras dtype policy to train with (``EFFNET_LAB_PRECISION`` overrides ``auto``).

    ``auto``: float32 on a CPU (mixed precision only pays on GPUs). On GPUs, mixed_bfloat16 on
    JAX when every GPU supports it (same range as float32, so no loss scaling; the fastest on
    H100), else mixed_float16, for which Keras's ``compile`` wraps the optimizer in a
    ``LossScaleOptimizer`` by itself (TensorFlow keeps float16, its best-trodden mixed path).
    """
    value = os.environ.get(PRECISION_ENV, "auto").strip().lower()
    if value not in ("auto", "", *POLICIES):
        raise ValueError(
            f"{PRECISION_ENV} must be auto or one of {', '.join(POLICIES)}, got {value!r}."
        )
    if value not in ("auto", ""):
        return value
    if not on_gpu:
        return "float32"
    return "mixed_bfloat16" if backend() == "jax" and _bf16_gpus() else "mixed_float16"


@dataclass(frozen=True)
class DevicePlan:
    """Where and how training runs.

    Attributes:
        kind: "gpu" or "cpu".
        devices: The backend's names of the devices used (one, or several in data parallel).
        names: What the devices are, for people ("NVIDIA H100 80GB HBM3").
        policy: The Keras dtype policy ("float32", "mixed_float16", "mixed_bfloat16").
    """

    kind: str
    devices: tuple[str, ...]
    names: tuple[str, ...]
    policy: str

    @property
    def on_gpu(self) -> bool:
        return self.kind == "gpu"

    @property
    def strategy(self) -> str:
        """How the devices share the work: "" (one device), "data parallel" (Keras's
        distribution API, JAX) or "MirroredStrategy" (TensorFlow)."""
        if len(self.devices) < 2:
            return ""
        return "MirroredStrategy" if backend() == "tensorflow" else "data parallel"

    def describe(self) -> str:
        """E.g. ``CPU (2 cores, x86_64)``, ``GPU: NVIDIA H100 80GB HBM3 ×1 (mixed precision,
        bfloat16)`` or ``GPU: … ×2 (mixed precision, float16; 2 devices, MirroredStrategy)``."""
        extras = []
        if self.policy != "float32":
            extras.append(f"mixed precision, {self.policy.removeprefix('mixed_')}")
        if self.strategy:
            extras.append(f"{len(self.devices)} devices, {self.strategy}")
        if self.kind == "cpu":
            return f"CPU ({'; '.join([f'{os.cpu_count()} cores, {platform.machine()}', *extras])})"
        names = ", ".join(sorted(set(self.names)))
        return f"GPU: {names} ×{len(self.devices)}" + (f" ({'; '.join(extras)})" if extras else "")


def device_plan() -> DevicePlan:
    """The devices and precision training uses here (see the module docstring).

    Raises:
        ValueError: A bad ``EFFNET_LAB_DEVICES`` or ``EFFNET_LAB_PRECISION``.
        RuntimeError: ``cpu:N`` asked for more CPU devices than the backend shows (it
            initialised before the split could be made); the message says what to set.
    """
    n = requested_cpu_devices()
    gpus = [] if n else accelerators()
    if gpus:
        devices = _local_devices("gpu")
        if backend() not in ("jax", "tensorflow"):
            devices = devices[:1]
        return DevicePlan(
            "gpu", tuple(devices), tuple(g.removeprefix("GPU: ") for g in gpus), precision(True)
        )
    if n < 2:
        return DevicePlan("cpu", ("cpu:0",), ("CPU",), precision(False))
    _split_cpu()
    devices = _local_devices("cpu")
    if len(devices) < n:
        hint = (
            f"start Python with XLA_FLAGS={_CPU_COUNT_FLAG}={n}"
            if backend() == "jax"
            else "set it before anything uses TensorFlow"
        )
        raise RuntimeError(
            f"{DEVICES_ENV}=cpu:{n} asks for {n} CPU devices but {backend()} "
            f"shows {len(devices)}: {hint}."
        )
    return DevicePlan("cpu", tuple(devices[:n]), ("CPU",) * n, precision(False))


def describe_device() -> str:
    """One line naming what training and inference run on (:meth:`DevicePlan.describe`)."""
    return device_plan().describe()


@contextlib.contextmanager
def device_context(plan: DevicePlan | bool | None = None):
    """Run training in ``plan``'s precision, over all its devices; restore everything on exit.

    Several devices: on JAX, Keras's ``DataParallel`` distribution (each batch is split over the
    devices, variables are replicated; every batch must split evenly, see
    :func:`batch_multiple`); on TensorFlow, ``MirroredStrategy``. Build the model inside the
    context. Keras keeps the dtype policy and the distribution per thread, so a training
    thread's settings do not leak into other threads.

    Args:
        plan: A :class:`DevicePlan` (default: :func:`device_plan`); a bool means this machine's
            plan with the precision for a GPU (True) or a CPU (False).

    Yields:
        The plan in force.
    """
    import keras

    if plan is None or isinstance(plan, bool):
        on_gpu = plan
        plan = device_plan()
        if on_gpu is not None:
            plan = DevicePlan(plan.kind, plan.devices, plan.names, precision(on_gpu))
    old = keras.config.dtype_policy()
    with contextlib.ExitStack() as stack:
        if plan.policy != old.name:
            keras.config.set_dtype_policy(plan.policy)
            stack.callback(keras.config.set_dtype_policy, old)
        if plan.strategy == "data parallel":
            dist = keras.distribution.DataParallel(devices=list(plan.devices))
            stack.enter_context(dist.scope())
        elif plan.strategy == "MirroredStrategy":
            import tensorflow as tf

            stack.enter_context(tf.distribute.MirroredStrategy(list(plan.devices)).scope())
        yield plan


def batch_multiple() -> int:
    """What every batch's size must be a multiple of here: the device count under JAX data
    parallel (it splits each batch into equal shards and refuses a ragged last batch), else 1
    (one device, or TensorFlow's MirroredStrategy, which splits uneven batches itself)."""
    import keras

    if keras.backend.backend() != "jax":
        return 1
    dist = keras.distribution.distribution()
    if dist is None:
        return 1
    return int(dist.device_mesh.devices.size)


def allow_jit(layers_) -> None:
    """On JAX, let Keras compile models that hold ``RandomTranslation``.

    Keras marks ``RandomTranslation`` as not jit-compatible (``supports_jit = False``, a
    TensorFlow concern), so ``jit_compile="auto"`` quietly runs the *whole* train or predict
    step eagerly, op by op, on JAX (measured on this project's 2-core CPU: 112 s against 36.6 s
    for an epoch). Its JAX code compiles fine and gives the same results (to 3e-8), so on JAX we
    clear the flag — for models we build, and for models we load (a loaded model that already
    resolved ``jit_compile`` is switched back on too).

    Args:
        layers_: A layer, a model or an iterable of them (nested models are walked).
    """
    import keras

    if keras.backend.backend() != "jax":
        return
    stack = list(layers_) if isinstance(layers_, (list, tuple)) else [layers_]
    models = []
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.Model):
            models.append(layer)
        if isinstance(layer, keras.layers.RandomTranslation):
            layer.supports_jit = True
        stack.extend(getattr(layer, "layers", ()))
    for model in models:
        if _keras_private.settled_jit_compile(model) is False:  # resolved before the fix
            model.jit_compile = True


def jit_compile(on_gpu: bool):
    """Keras's ``jit_compile`` for training: XLA on a CPU is many times slower for these models
    with TensorFlow; JAX always compiles."""
    return "auto" if on_gpu or backend() != "tensorflow" else False


def runtime_info() -> dict:
    """Backend, versions and devices, for the start page and ``python -m core info``."""
    import keras

    plan = device_plan()
    info = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": plan.describe(),
        "precision": plan.policy,
        "gpus": accelerators(),
    }
    if info["backend"] == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    elif info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
    return info
