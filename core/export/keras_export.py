"""Writing the model file with Keras's own ``model.export``, and the two Keras 3.15 export faults
worked around on the way (:func:`inference_graph`, :func:`constant_normalization`): without them
ONNX and SavedModel exports of a run run parts of the network in training mode, and ONNX files
ask for the Normalization constants as inputs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from core.export import quantize
from core.export.formats import Format
from core.models.efficientnet import all_layers


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
