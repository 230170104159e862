"""The private TensorFlow APIs EffNet Lab relies on, kept in this one module.

Why they are needed: the int8 export (:mod:`core.export.quantize`) rewrites the float32 LiteRT
file that Keras's ``model.export`` writes, storing chosen weights as int8 behind DEQUANTIZE ops.
TensorFlow's public ``tf.lite`` has no API to edit a .tflite file; its own tools do it through
the flatbuffer schema generated from ``schema.fbs`` (``tensorflow.lite.python.
schema_py_generated``: the object API ``ModelT``, ``TensorT``, ... and the enums
``BuiltinOperator`` and ``TensorType``) and ``tensorflow.lite.tools.flatbuffer_utils`` (file ↔
objects). Neither is public. Everything else in ``core`` uses public TensorFlow;
``tests/test_private_apis.py`` fails as soon as an upgrade changes what is used here.
"""

from __future__ import annotations


def tflite_schema():
    """The generated TensorFlow Lite schema module: object types (``ModelT``, ``TensorT``,
    ``BufferT``, ``OperatorT``, ``OperatorCodeT``, ``QuantizationParametersT``) and enums
    (``BuiltinOperator``, ``TensorType``)."""
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def read_tflite(content: bytes):
    """A .tflite file's bytes as the schema's mutable object tree (a ``ModelT``)."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(content))


def write_tflite(model) -> bytes:
    """A ``ModelT`` object tree (from :func:`read_tflite`, edited) as .tflite file bytes."""
    from tensorflow.lite.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
