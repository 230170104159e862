"""Models out: export a finished run or the ImageNet model with Keras's own ``model.export``, then
prove that the file predicts what the Keras model predicts.

Formats (:data:`~core.export.formats.FORMATS`): ONNX, LiteRT float32, LiteRT with int8 weights (weight-only int8,
float32 compute; see :mod:`core.export.quantize`) and TensorFlow SavedModel. Every exported graph
takes raw RGB pixels, uint8 (N, H, W, 3) in 0..255, and returns class probabilities:
normalisation and resizing are inside it; only the crop and resize of the model's saved
:class:`~core.data.images.Preprocessing` happen before, and ``model.json`` says how.

Right after writing the file, :func:`export` runs it in its own runtime (onnxruntime,
ai-edge-litert, TensorFlow) through the folder's ``predict.py`` on at least 200 held-out images,
and records top-1 agreement with the Keras model and the largest probability difference against
the targets (float: 100 % and at most 1e-4; int8: at least 98 %). What it did is the
:class:`~core.export.record.ExportRecord` written as ``model.json``. The file itself is written
by :mod:`core.export.keras_export` (where two Keras 3.15 export faults are worked around).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.data.images import Preprocessing
from core.export.folder import list_exports, load_runner, write_folder, write_model_json
from core.export.formats import FORMATS, MIN_IMAGES, Format, check_format
from core.export.keras_export import inference_graph, write_model_file
from core.export.parity_images import (
    calibration_inputs,
    run_dataset,
    run_inputs,
    sample_photo_inputs,
)
from core.export.record import ExportRecord, Parity
from core.models import efficientnet as models
from core.models.efficientnet import float32_model
from core.platform import paths, procs
from core.platform.errors import UserError
from core.platform.progress import Progress, Stopped
from core.platform.runtime import describe_device
from core.serving.inference import load_classifier
from core.training import runs

IMAGENET = "imagenet"


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


def source_exports(source: str, weights: str = "auto") -> list[ExportRecord]:
    """The finished exports in ``source``'s default place, in format order."""
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


def parity(
    reference: np.ndarray, got: np.ndarray, fmt: Format, labels: np.ndarray | None
) -> Parity:
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
    agreement, max_abs_diff = agree / len(reference), float(diff.max())
    return Parity(
        images=len(reference),
        agree=agree,
        agreement=agreement,
        max_abs_diff=max_abs_diff,
        mean_abs_diff=float(diff.mean()),
        disagreement_max_margin=float(margin[differ].max()) if differ.any() else None,
        target=fmt.target,
        meets_target=bool(
            agreement >= fmt.target["agreement"]
            and max_abs_diff <= fmt.target.get("max_abs_diff", np.inf)
        ),
        keras_accuracy=None if labels is None else float((reference.argmax(1) == labels).mean()),
        export_accuracy=None if labels is None else float((got.argmax(1) == labels).mean()),
    )


def export(
    source: str,
    fmt: str,
    out: str | os.PathLike | None = None,
    *,
    images: int = MIN_IMAGES,
    weights: str = "auto",
    progress=None,
) -> ExportRecord | None:
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
        The :class:`ExportRecord` (model.json, and ``dir``: the export folder), or None when a
        stop request ended it.

    Raises:
        UserError: Bad format, source, folder or image count, or a backend other than TensorFlow.
    """

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
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _export(
    src: Source, fmt: Format, out: Path, tmp: Path, n: int, weights: str, progress
) -> ExportRecord:
    import keras

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
    check = replace(
        parity(reference, got, fmt, y),
        runtime=_runtime_version(fmt),
        images_from=where,
        seconds=round(time.perf_counter() - t0, 2),
    )
    record = ExportRecord(
        format=fmt.key,
        format_label=fmt.label,
        file=fmt.file,
        input={
            "name": "image",
            "shape": [None, prep.size, prep.size, 3],
            "dtype": "uint8",
            "range": "0..255",
            "layout": "NHWC, RGB",
        },
        output={
            "shape": [None, len(classifier.labels)],
            "dtype": "float32",
            "meaning": "class probabilities (softmax), in labels.txt order",
        },
        classes=tuple(classifier.labels),
        preprocessing={**prep.to_dict(), "notes": _preprocessing_notes(prep)},
        quantization=fmt.quantization,
        int8={**chosen, "calibration_from": calibration_from} if chosen else None,
        compute="float32"
        + (
            " (the model was saved with mixed-precision float16 layers; the "
            "export and its Keras reference compute in float32)"
            if getattr(model, "saved_with_mixed_precision", False)
            else ""
        ),
        source=_source_facts(src, classifier.weights),
        parity=check,
        export_s=round(export_s, 2),
        size_bytes=_size(tmp / fmt.file),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        keras=keras.__version__,
        device=describe_device(),
        usage="predict.py",
    )
    write_model_json(tmp, record)
    _replace(tmp, out)
    return replace(record, dir=str(out))


def _remove_stale(out: Path) -> None:
    """Remove half-written folders that a killed export left beside ``out``."""

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
    ``out``, ``images`` and ``weights``; returns the record's JSON form, or ``{"stopped": True}``
    when a stop request ended it (a result, so the command line tells it from a cancelled job)."""
    record = export(
        args["source"],
        args["format"],
        args.get("out"),
        images=int(args.get("images") or MIN_IMAGES),
        weights=args.get("weights") or "auto",
        progress=progress,
    )
    return record.to_dict() if record is not None else {"stopped": True}
