"""Weight-only int8 LiteRT files (core/export/quantize.py): int8 weights, float32 compute, and the
layers int8 hurts most kept float32 within a budget."""

from __future__ import annotations

import numpy as np
import pytest

from core.export import quantize


@pytest.fixture(scope="module")
def float_file(tmp_path_factory):
    """A small Keras model (no BatchNormalization, so its kernels are the file's weights) and its
    float32 LiteRT file from ``model.export``."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(64, 3, activation="relu6", name="stem_conv")(x)
    x = keras.layers.DepthwiseConv2D(5, padding="same", activation="relu6", name="mid_dwconv")(x)
    x = keras.layers.Conv2D(48, 1, name="proj_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    out = keras.layers.Dense(10, activation="softmax", name="predictions")(x)  # 320: stays float
    model = keras.Model(inp, out)
    path = tmp_path_factory.mktemp("quantize") / "model.tflite"
    model.export(str(path), format="litert", verbose=False)
    return model, path.read_bytes()


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def test_weights_are_the_big_kernels_named_by_layer(float_file):
    _, content = float_file
    found = {w.name: w for w in quantize.weights(content)}
    assert set(found) == {"stem_conv", "mid_dwconv", "proj_conv", "dense"}  # predictions < 1024
    assert found["mid_dwconv"].elements == 5 * 5 * 64 and found["mid_dwconv"].axis == 3
    assert found["proj_conv"].axis == 0 and found["dense"].axis == 0


def test_layer_name_reads_fused_tensor_names():
    fused = (
        "m_1/block2a_project_bn_1/batchnorm/mul_1;m_1/block2a_project_bn_1/batchnorm/add_1;"
        "m_1/block2a_project_conv_1/convolution"
    )
    assert quantize.layer_name(fused) == "block2a_project_conv"
    assert quantize.layer_name("m_1/head_bn_1/batchnorm/mul;m_1/predictions_1/MatMul") == (
        "predictions"
    )


def test_int8_grid_is_per_channel_and_keeps_each_channels_largest_value():
    w = np.array([[0.5, -1.0, 0.25], [100.0, 3.0, -50.0]], np.float32)
    q, scale = quantize.int8_grid(w, axis=0)
    assert q.dtype == np.int8 and scale.shape == (2, 1)
    assert q[0, 1] == -127 and q[1, 0] == 127
    assert (np.abs(q * scale - w).max(axis=1) <= scale.ravel() / 2 + 1e-6).all()


def test_rewrite_stores_int8_and_computes_in_float32(float_file):
    """The rewritten file gives exactly what the Keras model gives with its kernels rounded to
    the int8 grid: weights are int8, activations are not quantized."""
    from ai_edge_litert.interpreter import Interpreter

    model, content = float_file
    every = {w.tensor for w in quantize.weights(content)}
    int8 = quantize.rewrite(content, every)
    assert len(int8) < len(content) - 3 * 1024 * 6  # ~7 900 weights: 4 bytes -> 1 byte each
    stored = [
        t for t in Interpreter(model_content=int8).get_tensor_details() if t["dtype"] == np.int8
    ]
    assert sorted(len(t["quantization_parameters"]["scales"]) for t in stored) == [32, 48, 64, 64]

    x = images(40)
    original = [layer.get_weights() for layer in model.layers]
    try:
        for layer in model.layers:
            if layer.name in ("stem_conv", "mid_dwconv", "proj_conv", "dense"):
                kernel, bias = layer.get_weights()
                axis = 2 if layer.name == "mid_dwconv" else kernel.ndim - 1
                q, scale = quantize.int8_grid(kernel, axis)
                layer.set_weights([q.astype(np.float32) * scale, bias])
        rounded = model.predict(x.astype(np.float32), verbose=0)
    finally:
        for layer, weights in zip(model.layers, original):
            layer.set_weights(weights)
    got = quantize.predict(int8, x)
    exact = quantize.predict(content, x)
    assert np.abs(got - rounded).max() < 2e-6
    assert np.abs(got - exact).max() > 1e-5  # the rounding is really there
    assert np.abs(quantize.predict(quantize.rewrite(content, set()), x) - exact).max() < 1e-6

    with pytest.raises(ValueError, match="not weights"):
        quantize.rewrite(content, {10_000})


def test_quantize_keeps_harmful_layers_float_within_the_budget(float_file):
    _, content = float_file
    total = sum(w.elements for w in quantize.weights(content))
    cal = images(64, seed=1)

    # Reachable at once: every layer int8.
    out, facts = quantize.quantize(content, cal, goal=0.0)
    assert facts["float32_layers"] == [] and facts["int8_layers"] == 4
    assert facts["int8_weight_share"] == 1.0 and facts["calibration_images"] == 64

    # Unreachable: the budget ends the choice, and the facts say so and what was reached.
    out, facts = quantize.quantize(content, cal, goal=1.01)
    assert facts["budget_reached"]
    kept = [w for w in quantize.weights(content) if w.name in facts["float32_layers"]]
    assert sum(w.elements for w in kept) / total <= quantize.MAX_FLOAT_SHARE
    assert facts["int8_weight_share"] >= 1 - quantize.MAX_FLOAT_SHARE
    assert 0.0 <= facts["calibration_agreement"] <= 1.0
    assert facts["int8_layers"] == 4 - len(kept) >= 3
    # The file returned is the one described: its int8 tensors are the layers not kept.
    assert len(quantize.weights(out)) == len(kept)

    # The search itself: no budget, a goal of full agreement. The file returned reaches it, the
    # facts describe that file, and what stays float32 is a prefix of the harm ranking.
    out, facts = quantize.quantize(content, cal, goal=1.0, max_float_share=1.0)
    assert facts["calibration_agreement"] == 1.0 and not facts["budget_reached"]
    assert quantize._agreement(quantize.predict(content, cal), quantize.predict(out, cal)) == 1.0
    assert len(quantize.weights(out)) == len(facts["float32_layers"]) == 4 - facts["int8_layers"]

    # No calibration images: every layer int8, nothing measured.
    _, facts = quantize.quantize(content, None)
    assert facts["calibration_agreement"] is None and facts["int8_layers"] == 4


def test_int8_caption_says_what_stayed_float32():
    from components.exports import int8_text

    meta = {
        "int8": {
            "int8_layers": 37,
            "float32_layers": ["predictions", "block2a_project_conv"],
            "int8_weight_share": 0.928,
            "calibration_from": "256 CIFAR-10 training images",
            "calibration_agreement": 0.945,
            "goal": 0.99,
            "max_float32_share": 0.25,
            "budget_reached": True,
        }
    }
    text = int8_text(meta["int8"]).replace("\\", "")
    assert "37 layers int8 (93% of the weights)" in text
    assert "2 kept float32 (predictions, block2a_project_conv)" in text
    assert "agreement there 94.5%" in text and "ended the choice before the 99% goal" in text
    assert int8_text(None) == ""  # another format
