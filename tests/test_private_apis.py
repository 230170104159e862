"""The private framework APIs EffNet Lab relies on still exist in the installed versions.

Each lives in one module (core/platform/_keras_private.py, core/platform/_tensorflow_private.py,
components/_streamlit_private.py) with the reason it is needed; these tests fail as soon as an
upgrade moves or changes one of them.
"""

import inspect

import numpy as np

from core.platform import _keras_private as keras_private
from core.platform import _tensorflow_private as tf_private


def test_keras_efficientnet_builder_takes_what_we_pass():
    params = inspect.signature(keras_private.efficientnet_builder()).parameters
    assert list(params)[:4] == [
        "width_coefficient",
        "depth_coefficient",
        "default_size",
        "dropout_rate",
    ]
    assert {
        "activation",
        "blocks_args",
        "name",
        "include_top",
        "weights",
        "input_shape",
        "pooling",
        "classes",
    } <= set(params)


def test_keras_block_table_is_b0s():
    blocks = keras_private.default_blocks_args()
    assert [b["repeats"] for b in blocks] == [1, 2, 2, 3, 3, 4, 1]
    assert [b["filters_out"] for b in blocks] == [16, 24, 40, 80, 112, 192, 320]
    assert all(b["se_ratio"] == 0.25 for b in blocks)
    blocks[0]["se_ratio"] = 0.0  # a copy: the Keras table itself is untouched
    assert keras_private.default_blocks_args()[0]["se_ratio"] == 0.25


def test_keras_official_weight_hashes():
    for variant in ("b0", "b7"):
        for top in (True, False):
            digest = keras_private.official_weights_hash(variant, top)
            assert isinstance(digest, str) and len(digest) in (32, 64) and int(digest, 16) >= 0
    assert keras_private.official_weights_hash("lite0", True) is None


def test_keras_jit_compile_is_read_without_settling_it():
    import keras

    def dense():
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    model = dense()
    assert keras_private.settled_jit_compile(model) is None  # never compiled: not settled
    resolved = model.jit_compile  # the public property settles "auto" when read ...
    assert resolved in (True, False)
    assert keras_private.settled_jit_compile(model) is resolved  # ... and this sees it
    loaded = dense()
    loaded.compile(loss="mse", jit_compile=False)  # as load_model does, before allow_jit
    assert keras_private.settled_jit_compile(loaded) is False
    loaded.jit_compile = True
    assert keras_private.settled_jit_compile(loaded) is True
    keras.backend.clear_session()


def test_tflite_schema_enums_are_the_file_format_codes():
    """The numbers are the .tflite format's (schema.fbs), fixed across versions: an enum that
    moved or changed breaks the int8 rewrite."""
    fb = tf_private.tflite_schema()
    op = fb.BuiltinOperator
    assert (op.CONV_2D, op.DEPTHWISE_CONV_2D, op.DEQUANTIZE, op.FULLY_CONNECTED) == (3, 4, 6, 9)
    assert (fb.TensorType.FLOAT32, fb.TensorType.INT8) == (0, 9)
    for name in ("ModelT", "TensorT", "BufferT", "OperatorT", "OperatorCodeT"):
        assert callable(getattr(fb, name)), name
    quant = fb.QuantizationParametersT()
    assert {"scale", "zeroPoint", "quantizedDimension"} <= set(vars(quant))


def test_tflite_files_read_and_write_through_the_schema(tmp_path):
    """A real file (Keras's own export) reads into the object tree and writes back unchanged in
    meaning: same ops, tensors and weights."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
    path = tmp_path / "m.tflite"
    model.export(str(path), format="litert", verbose=False)
    tree = tf_private.read_tflite(path.read_bytes())
    codes = {max(c.builtinCode, c.deprecatedBuiltinCode) for c in tree.operatorCodes}
    assert tf_private.tflite_schema().BuiltinOperator.FULLY_CONNECTED in codes
    again = tf_private.read_tflite(tf_private.write_tflite(tree))
    assert len(again.subgraphs[0].tensors) == len(tree.subgraphs[0].tensors)
    kernel = [b.data for b in tree.buffers if b.data is not None and len(b.data) == 4 * 4 * 3]
    kept = [b.data for b in again.buffers if b.data is not None and len(b.data) == 4 * 4 * 3]
    assert len(kernel) == 1 and np.array_equal(kernel[0], kept[0])
    keras.backend.clear_session()


def test_streamlit_cleanup_hook_is_still_there_and_patched():
    from streamlit.runtime.scriptrunner import script_runner

    from components import _streamlit_private

    assert hasattr(script_runner, _streamlit_private.PATCHED)
    _streamlit_private.install()
    assert (
        getattr(script_runner, _streamlit_private.PATCHED) is _streamlit_private._keep_keras_state
    )
    source = inspect.getsource(script_runner.ScriptRunner)
    assert f"_log_if_error({_streamlit_private.PATCHED})" in source  # still called after each run
