"""What an export folder holds, and reading it back: the model file, ``labels.txt``,
``model.json`` and ``predict.py``.

``predict.py`` is the usage snippet for the format's runtime: a short, standalone script (numpy,
Pillow and the runtime only) that crops and resizes photos the way the model was trained and
prints the top classes. ``model.json`` is the export's :class:`~core.export.record.ExportRecord`.
The parity check in :mod:`core.export.exporter` runs the exported file through
this very script's ``load_model``, so the snippet people copy is the code that was verified.
"""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

from core.export.record import ExportRecord

_HEADER = '''"""Classify images with {file} ({label}), exported by EffNet Lab.

    pip install {pip} pillow numpy
    python predict.py photo.jpg [more.jpg ...]

The model takes raw RGB pixels: uint8, shape (N, {size}, {size}, 3), values 0..255. Normalisation
(and any resizing to the network's working resolution) is inside the graph; only the crop and
resize in prepare() happen outside, exactly as the model saw its images in training. It returns
class probabilities in labels.txt order. model.json says how well this file agrees with the
Keras model it came from.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
BATCH = 32


def prepare(path, size, crop, resample):
    """The central square of `crop` x the shorter side, resized to size x size RGB uint8."""
    image = Image.open(path)
    need = math.ceil(size / crop)  # a large JPEG decodes at a reduced scale, as in training
    if image.format in ("JPEG", "MPO") and min(image.size) > need:
        scale = need / min(image.size)
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":  # palette, grey, CMYK; transparency goes on white
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    width, height = image.size
    side = min(width, height) * crop
    left, top = (width - side) / 2, (height - side) / 2
    image = image.resize((size, size), Image.Resampling[resample.upper()],
                         box=(left, top, left + side, top + side))
    return np.asarray(image, dtype=np.uint8)

'''

_RUNTIMES = {
    "onnxruntime": '''
import onnxruntime as ort


def load_model(path):
    """A function from a uint8 batch (N, H, W, 3) to probabilities (N, classes)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]
''',
    "ai-edge-litert": '''
from ai_edge_litert.interpreter import Interpreter


def load_model(path):
    """A function from a uint8 batch (N, H, W, 3) to probabilities (N, classes)."""
    interpreter = Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x):
        interpreter.resize_tensor_input(inp["index"], x.shape)  # the batch size is free
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()
    return run
''',
    "tensorflow": '''
import tensorflow as tf


def load_model(path):
    """A function from a uint8 batch (N, H, W, 3) to probabilities (N, classes)."""
    model = tf.saved_model.load(str(path))
    return lambda x: model.serve(tf.constant(x)).numpy()
''',
}

_FOOTER = '''

def predict(x, run):
    """Probabilities for a uint8 batch of any size, BATCH images at a time."""
    return np.concatenate([run(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def main(files):
    meta = json.loads((HERE / "model.json").read_text(encoding="utf-8"))
    labels = (HERE / "labels.txt").read_text(encoding="utf-8").splitlines()
    pre = meta["preprocessing"]
    run = load_model(HERE / meta["file"])
    x = np.stack([prepare(f, pre["size"], pre["crop"], pre["resample"]) for f in files])
    for name, p in zip(files, predict(x, run)):
        best = np.argsort(-p)[:3]
        print(name + ": " + ", ".join(f"{labels[i]} {p[i]:.1%}" for i in best))


if __name__ == "__main__":
    main(sys.argv[1:]) if sys.argv[1:] else sys.exit(__doc__)
'''


def predict_script(fmt, size: int) -> str:
    """The ``predict.py`` text for a :class:`core.export.formats.Format` at input ``size``."""
    return (
        _HEADER.format(file=fmt.file, label=fmt.label, pip=fmt.pip, size=size)
        + _RUNTIMES[fmt.runtime]
        + _FOOTER
    )


def write_folder(folder: Path, fmt, classes: list[str], size: int) -> None:
    """Write ``labels.txt`` and ``predict.py`` into a new export folder (model.json comes last)."""
    # One class per line: a line break inside a (folder) name must not shift the others.
    names = [" ".join(str(c).splitlines()) or "?" for c in classes]
    (folder / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    (folder / "predict.py").write_text(predict_script(fmt, size), encoding="utf-8")


def load_runner(folder: Path, model_file: str):
    """Import ``folder/predict.py`` and load the model file with its ``load_model``.

    Returns:
        A function from a uint8 batch of any size to probabilities, as people will call it.
    """
    spec = importlib.util.spec_from_file_location(
        f"effnet_lab_export_{abs(hash(folder))}", folder / "predict.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.load_model(folder / model_file)
    return lambda x: module.predict(x, run)


def write_model_json(folder: Path, record: ExportRecord) -> None:
    """Write ``model.json`` (the last file written: an export folder with one is complete)."""
    text = json.dumps(record.model_json(), indent=2) + "\n"
    (folder / "model.json").write_text(text, encoding="utf-8")


def read_export(folder: str | Path) -> ExportRecord | None:
    """The record in an export folder's ``model.json`` (``dir``: the folder); None if it is not
    one."""
    folder = Path(folder)
    try:
        return ExportRecord.from_dict(
            json.loads((folder / "model.json").read_text(encoding="utf-8")), folder
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # none, or not a record
        return None


def list_exports(folder: str | Path, order=()) -> list[ExportRecord]:
    """The exports under ``folder`` (one sub-folder each), in ``order`` of their format keys."""
    folder = Path(folder)
    found = (
        [
            m
            for m in (
                read_export(p)
                for p in sorted(folder.iterdir())
                if p.is_dir() and not p.name.startswith(".")
            )
            if m
        ]
        if folder.is_dir()
        else []
    )
    rank = {key: i for i, key in enumerate(order)}
    return sorted(found, key=lambda m: (rank.get(m.format, len(rank)), m.dir))


def zip_bytes(folder: str | Path, top: str) -> bytes:
    """The whole export folder as a zip, its files under ``top/``."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
    return buf.getvalue()
