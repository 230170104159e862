"""The export formats (:data:`FORMATS`): what each writes, which runtime checks it, and the
parity it must reach with the Keras model it came from.

Float formats must agree on every held-out image (top-1) with probabilities within 1e-4; the int8
format, whose weights are rounded, on at least 98 % of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.platform.errors import UserError

MIN_IMAGES = 200  # held-out images a parity check runs on, at least
FLOAT_TARGET = {"agreement": 1.0, "max_abs_diff": 1e-4}
INT8_TARGET = {"agreement": 0.98}


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


def check_format(fmt: str) -> Format:
    """The :class:`Format` for ``fmt``; a UserError naming the choices otherwise."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]
