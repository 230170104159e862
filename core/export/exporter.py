"""Models out: export a finished run or the ImageNet model with Keras's own ``model.export``, then
prove that the file predicts what the Keras model predicts.

Formats (:data:`FORMATS`): ONNX, LiteRT float32, LiteRT with int8 weights (weight-only int8,
float32 compute; see :mod:`core.export.quantize`) and TensorFlow SavedModel. Every exported graph
takes raw RGB pixels, uint8 (N, H, W, 3) in 0..255, and returns class probabilities:
normalisation and resizing are inside it; only the crop and resize of the model's saved
:class:`~core.data.images.Preprocessing` happen before, and ``model.json`` says how.

Right after writing the file, :func:`export` runs it in its own runtime (onnxruntime,
ai-edge-litert, TensorFlow) through the folder's ``predict.py`` on at least 200 held-out images,
and records top-1 agreement with the Keras model and the largest probability difference against
the targets (float: 100 % and at most 1e-4; int8: at least 98 %).

Two Keras 3.15 export faults are worked around here (see :func:`inference_graph` and
:func:`constant_normalization`): without them ONNX and SavedModel exports of a run run parts of
the network in training mode, and ONNX files ask for the Normalization constants as inputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.images import Preprocessing
from core.export.folder import list_exports, load_runner, write_folder, write_model_json
from core.export.parity_images import (
    calibration_inputs,
    run_dataset,
    run_inputs,
    sample_photo_inputs,
)
from core.models.efficientnet import all_layers, float32_model
from core.platform import paths
from core.platform.errors import UserError

MIN_IMAGES = 200
FLOAT_TARGET = {"agreement": 1.0, "max_abs_diff": 1e-4}
INT8_TARGET = {"agreement": 0.98}
IMAGENET = "imagenet"


@dataclass(frozen=True)
class Format:
    """One export format.

    Attributes:
        key: What ``--format`` takes.
        label: For people.
        file: The model file (or folder) inside the export folder.
        runtime: The runtime the parity check (and ``predict.py``) uses.
        pip: What to install to run it.
        quantization: How weights/activations are quantized, or None for float32.
    """

    key: str
    label: str
    file: str
    runtime: str
    pip: str
    quantization: str | None = None

    @property
    def target(self) -> dict:
        """The parity this format must reach."""
        return INT8_TARGET if self.quantization else FLOAT_TARGET


FORMATS = {
    f.key: f
    for f in (
        Format("onnx", "ONNX", "model.onnx", "onnxruntime", "onnxruntime"),
        Format(
            "litert",
            "LiteRT float32 (TensorFlow Lite)",
            "model.tflite",
            "ai-edge-litert",
            "ai-edge-litert",
        ),
        Format(
            "litert-int8",
            "LiteRT int8 weights (TensorFlow Lite)",
            "model_int8.tflite",
            "ai-edge-litert",
            "ai-edge-litert",
            "weight-only int8: int8 weights with one scale per output channel, turned into "
            "float32 once when the model loads, float32 compute; the few layers whose int8 "
            "weights changed the most predictions on calibration images stay float32 (listed "
            "under int8 in model.json); input and output stay uint8 pixels and float32 "
            "probabilities",
        ),
        Format(
            "tf_saved_model", "TensorFlow SavedModel", "saved_model", "tensorflow", "tensorflow"
        ),
    )
}


@dataclass(frozen=True)
class Source:
    """What is exported: a run folder, or the ImageNet model (``variant`` "b0".."b7", "lite0")."""

    kind: str  # "run" or "imagenet"
    name: str
    path: Path | None = None
    variant: str = "b0"


def resolve_source(source: str) -> Source:
    """Check ``source`` ("imagenet", a backbone name, or a finished run folder) without loading it.

    Raises:
        ValueError: Not a run folder, a run still training, or a run without a saved model.
    """
    from core.models import efficientnet as models
    from core.training import runs

    key = str(source).strip().lower()
    if key == IMAGENET or key in models.VARIANTS:
        return Source(IMAGENET, key, variant="b0" if key == IMAGENET else key)
    path = Path(source).expanduser()
    if not path.is_dir():
        raise UserError(f"{source!r} is neither 'imagenet' nor a run folder")
    run = runs.load_run(path)  # ValueError when it is no run folder
    if run.status == "running":
        raise UserError(f"run {run.name} is still training: export it when it has finished")
    if not run.has_model:
        raise UserError(f"run {run.name} has no saved model to export ({run.status})")
    return Source("run", run.name, path.resolve())


def check_format(fmt: str) -> Format:
    """The :class:`Format` for ``fmt``; ValueError naming the choices otherwise."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def exports_root(source: Source, weights: str = "auto") -> Path:
    """Where a source's exports go by default: ``RUN/exports``, or for the ImageNet model
    ``<runs folder>/.exports/<model>-<weights>`` (a weights file: ``…-file-<hash>``)."""
    if source.kind == "run":
        return source.path / "exports"
    tag = (
        weights
        if weights in ("auto", "imagenet", "lite0")
        else ("file-" + hashlib.sha256(str(weights).encode()).hexdigest()[:10])
    )
    return paths.runs_dir() / ".exports" / f"{source.name}-{tag}"


def source_exports(source: str, weights: str = "auto") -> list[dict]:
    """The finished exports in ``source``'s default place (model.json dicts, format order)."""
    return list_exports(exports_root(resolve_source(source), weights), order=tuple(FORMATS))


def check_out(out: Path) -> None:
    """An export may replace an earlier export folder, never anything else."""
    if out.exists() and not out.is_dir():
        raise UserError(f"export folder {out} is a file: name a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "model.json").is_file():
        raise UserError(
            f"export folder {out} holds other files: name a new or empty "
            "folder (an earlier export folder is replaced)"
        )


# ----- the two Keras 3.15 export faults ---------------------------------------------------------
def inference_graph(model):
    """``model`` behind a uint8 input, called with ``training=False``.

    ``model.export`` traces ``model.__call__`` without ``training=False``; Keras's image
    preprocessing layers (Resizing, RandomFlip, RandomTranslation) declare ``training=True`` as
    their default and that leaks into the shared call context, so every layer after them
    (stochastic-depth Dropout, the head's BatchNormalization) would run in training mode in the
    exported graph (a plain SavedModel export of a run agrees on 67.5 % of images). An outer node
    that passes ``training=False`` fixes it; the cast makes uint8 pixels the input.
    """
    import keras

    inp = keras.Input(model.input_shape[1:], dtype="uint8", name="image")
    outputs = model(keras.ops.cast(inp, "float32"), training=False)
    return keras.Model(inp, outputs, name=f"{model.name}_export")


@contextlib.contextmanager
def constant_normalization(model):
    """Make Normalization layers' mean and variance graph constants while exporting.

    ``Normalization.finalize_state`` keeps them as eager tensors, which a traced function captures
    as extra placeholders; tf2onnx freezes only variables, so the ONNX file would list them as
    inputs that onnxruntime asks for. NumPy arrays become constants instead.
    """
    import keras

    saved = []
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.Normalization) and layer.mean is not None:
            saved.append((layer, layer.mean, layer.variance))
            layer.mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), np.float32)
            layer.variance = np.asarray(keras.ops.convert_to_numpy(layer.variance), np.float32)
    try:
        yield
    finally:
        for layer, mean, variance in saved:
            layer.mean, layer.variance = mean, variance


def write_model_file(
    fmt: Format, model, path: Path, calibration: np.ndarray | None = None, progress=None
) -> dict | None:
    """Export ``model`` (an :func:`inference_graph`) to ``path`` with Keras's ``model.export``.

    For ``litert-int8`` the float32 LiteRT file is written first and :func:`core.export.quantize.quantize`
    turns it into the int8 one, choosing on ``calibration`` the layers that stay float32; returns
    what it chose (None for the other formats).
    """
    import keras
    import tensorflow as tf

    from core.export import quantize

    # Explicit signature: a freshly loaded model was never called, which export_onnx refuses.
    signature = [keras.InputSpec(shape=(None, *model.input_shape[1:]), dtype="uint8", name="image")]
    with constant_normalization(model):
        if fmt.key == "onnx":
            model.export(
                str(path), format="onnx", input_signature=signature, opset_version=17, verbose=False
            )
        elif fmt.key.startswith("litert"):
            # Built-in ops only: a graph needing TensorFlow ops fails here, not on a phone.
            options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
            written = path.with_name(".float32.tflite") if fmt.quantization else path
            model.export(
                str(written), format="litert", input_signature=signature, verbose=False, **options
            )
            if fmt.quantization:
                content, chosen = quantize.quantize(written.read_bytes(), calibration, progress)
                path.write_bytes(content)
                written.unlink()
                return chosen
        else:
            model.export(
                str(path), format="tf_saved_model", input_signature=signature, verbose=False
            )


# ----- the export -------------------------------------------------------------------------------
def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _predict(run, x: np.ndarray, progress, batch: int = 32) -> np.ndarray:
    """``run`` over ``x`` a batch at a time, counting images and honouring stop requests."""
    out = []
    for i in range(0, len(x), batch):
        out.append(np.asarray(run(x[i : i + batch]), np.float64))
        progress.set_done(i + len(out[-1]))
        progress.check_stop()
    return np.concatenate(out)


def parity(reference: np.ndarray, got: np.ndarray, fmt: Format, labels: np.ndarray | None) -> dict:
    """Top-1 agreement and largest probability difference of ``got`` against ``reference``.

    ``disagreement_max_margin`` is the largest gap between the Keras model's two most probable
    classes among the images where the export disagrees (None when it never does): a small one
    means the export only flips near-ties.
    """
    got = np.asarray(got, np.float64).reshape(reference.shape)
    differ = reference.argmax(1) != got.argmax(1)
    top2 = np.sort(reference, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    diff = np.abs(reference - got)
    agree = int((~differ).sum())
    result = {
        "images": len(reference),
        "agree": agree,
        "agreement": agree / len(reference),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "disagreement_max_margin": float(margin[differ].max()) if differ.any() else None,
        "target": fmt.target,
    }
    result["meets_target"] = bool(
        result["agreement"] >= fmt.target["agreement"]
        and (result["max_abs_diff"] <= fmt.target.get("max_abs_diff", np.inf))
    )
    if labels is not None:
        result["keras_accuracy"] = float((reference.argmax(1) == labels).mean())
        result["export_accuracy"] = float((got.argmax(1) == labels).mean())
    return result


def export(
    source: str,
    fmt: str,
    out: str | os.PathLike | None = None,
    *,
    images: int = MIN_IMAGES,
    weights: str = "auto",
    progress=None,
) -> dict:
    """Export ``source`` ("imagenet" or a run folder) to ``out`` in ``fmt`` and verify it.

    Args:
        source: "imagenet" (or a backbone name) or a finished run folder.
        fmt: A key of :data:`FORMATS`.
        out: The export folder (default :func:`exports_root` / ``fmt``); an earlier export
            folder there is replaced once the new one is complete.
        images: Held-out images for the parity check (at least :data:`MIN_IMAGES`).
        weights: ImageNet weights, for ``source`` "imagenet" ("auto", "imagenet", "lite0", a file).
        progress: A :class:`core.platform.progress.Progress` (phases, stop requests).

    Returns:
        model.json's contents plus ``dir`` (the export folder), or ``{"stopped": True}``.

    Raises:
        ValueError: Bad format, source, folder or image count, or a backend other than TensorFlow.
    """
    from core.platform.progress import Progress, Stopped

    progress = progress if progress is not None else Progress()
    spec, src = check_format(fmt), resolve_source(source)
    if int(images) < MIN_IMAGES:
        raise UserError(f"parity needs at least {MIN_IMAGES} held-out images, got {images}")
    out = Path(out).expanduser().resolve() if out else exports_root(src, weights) / spec.key
    check_out(out)
    _remove_stale(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        return _export(src, spec, out, tmp, int(images), weights, progress)
    except Stopped:
        return {"stopped": True}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _export(src: Source, fmt: Format, out: Path, tmp: Path, n: int, weights: str, progress) -> dict:
    import keras

    from core.platform.runtime import describe_device
    from core.serving.inference import load_classifier

    if keras.backend.backend() != "tensorflow":
        raise UserError(
            f"{fmt.key} export needs Keras's TensorFlow backend: this process "
            f"runs Keras on {keras.backend.backend()}; run it with "
            "KERAS_BACKEND=tensorflow"
        )
    progress.begin(device=describe_device())
    progress.start("Loading the model", 0, "")
    classifier = load_classifier(str(src.path) if src.path else src.variant, weights)
    model, prep = float32_model(classifier.model), classifier.preprocessing
    progress.check_stop()
    if src.kind == "run":
        data = run_dataset(src.path, prep, progress)
        x, y, where = run_inputs(data, prep, n)
    else:
        data = (None, "")
        x, text = sample_photo_inputs(prep, n)
        y, where = None, text
    # Taken now, so the dataset is loaded once and freed before the export.
    calibration, calibration_from = (
        calibration_inputs(data, prep) if fmt.quantization else (None, None)
    )
    del data
    progress.start("Keras reference predictions", len(x), "img")
    reference = _predict(lambda b: model.predict_on_batch(b.astype("float32")), x, progress)

    progress.start(f"Exporting to {fmt.label} (5-60 s)", 0, "")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    chosen = write_model_file(fmt, inference_graph(model), tmp / fmt.file, calibration, progress)
    export_s = time.perf_counter() - t0
    write_folder(tmp, fmt, classifier.labels, prep.size)
    progress.check_stop()

    progress.start(f"Checking parity in {fmt.runtime}", len(x), "img")
    t0 = time.perf_counter()
    got = _predict(load_runner(tmp, fmt.file), x, progress)
    check = {
        **parity(reference, got, fmt, y),
        "runtime": _runtime_version(fmt),
        "images_from": where,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    meta = {
        "format": fmt.key,
        "format_label": fmt.label,
        "file": fmt.file,
        "input": {
            "name": "image",
            "shape": [None, prep.size, prep.size, 3],
            "dtype": "uint8",
            "range": "0..255",
            "layout": "NHWC, RGB",
        },
        "output": {
            "shape": [None, len(classifier.labels)],
            "dtype": "float32",
            "meaning": "class probabilities (softmax), in labels.txt order",
        },
        "classes": list(classifier.labels),
        "preprocessing": {**prep.to_dict(), "notes": _preprocessing_notes(prep)},
        "quantization": fmt.quantization,
        **({"int8": {**chosen, "calibration_from": calibration_from}} if chosen else {}),
        "compute": "float32"
        + (
            " (the model was saved with mixed-precision float16 layers; the "
            "export and its Keras reference compute in float32)"
            if getattr(model, "saved_with_mixed_precision", False)
            else ""
        ),
        "source": _source_facts(src, classifier.weights),
        "parity": check,
        "export_s": round(export_s, 2),
        "size_bytes": _size(tmp / fmt.file),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "keras": keras.__version__,
        "device": describe_device(),
        "usage": "predict.py",
    }
    write_model_json(tmp, meta)
    _replace(tmp, out)
    return {**meta, "dir": str(out)}


def _remove_stale(out: Path) -> None:
    """Remove half-written folders that a killed export left beside ``out``."""
    from core.platform import procs

    for stale in out.parent.glob(f".{out.name}.*-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not procs.alive({"pid": int(pid)}):
            shutil.rmtree(stale, ignore_errors=True)


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished folder into place, replacing an earlier export."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _preprocessing_notes(prep: Preprocessing) -> str:
    crop = (
        "the largest central square"
        if prep.crop >= 1
        else f"the central square of {prep.crop:g} x the shorter side"
    )
    return (
        f"Before feeding an image: take {crop}, resize it to {prep.size}x{prep.size} "
        f"({prep.resample}), keep RGB uint8 0..255 (predict.py's prepare() does exactly "
        "this). Normalisation and resizing to the network's working resolution are inside "
        "the graph."
    )


def _source_facts(src: Source, weights: str) -> dict:
    """What was exported, for model.json."""
    from core.training import runs

    if src.kind != "run":
        return {"kind": src.kind, "name": src.name, "weights": weights}
    run = runs.load_run(src.path)
    return {
        "kind": "run",
        "name": run.name,
        "test_accuracy": run.test_accuracy,
        "weights": run.results.get("weights"),
        "data": run.config.get("data"),
        "backbone": run.config.get("backbone"),
        "resolution": run.config.get("resolution"),
    }


def _runtime_version(fmt: Format) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{fmt.runtime} {version(fmt.runtime)}"
    except PackageNotFoundError:
        return fmt.runtime


def export_job(args: dict, progress) -> dict:
    """Job entry (see :mod:`core.jobs.runner`): ``args`` holds ``source``, ``format`` and optionally
    ``out``, ``images`` and ``weights``."""
    return export(
        args["source"],
        args["format"],
        args.get("out"),
        images=int(args.get("images") or MIN_IMAGES),
        weights=args.get("weights") or "auto",
        progress=progress,
    )
