"""The private framework APIs EffNet Lab relies on still exist in the installed versions.

Each lives in one module (core/platform/_keras_private.py, components/_streamlit_private.py) with the reason
it is needed; these tests fail as soon as an upgrade moves or changes one of them.
"""

import inspect

from core.platform import _keras_private as keras_private


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
