"""core/training/features.py: folding BatchNorm into the convolutions keeps the function; the
bfloat16 copy of the extractor computes the same function in bfloat16; multi-scale features."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_folded_batchnorm_computes_the_same_features():
    import keras

    from core.models.weights import load_backbone
    from core.training.features import fold_batchnorm

    backbone, _ = load_backbone(
        "lite0", "lite0", input_shape=(64, 64, 3), include_top=False, pooling="avg"
    )
    cut = backbone.get_layer("block6c_expand_conv").input
    for model in (backbone, keras.Model(backbone.input, cut)):
        folded = fold_batchnorm(model)
        names = {layer.name for layer in folded.layers}
        assert not any(
            isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers
        )
        assert ("stem_conv_bnfold" in names and "top_conv_bnfold" in names) or model is not backbone
        x = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
        ref, out = model.predict_on_batch(x), folded.predict_on_batch(x)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # The original is untouched: its own BatchNorm layers still run.
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in backbone.layers)


@pytest.mark.slow
def test_extractor_copy_under_another_policy():
    """``in_policy``: a float32 copy is exact (the stem's Normalization constants included) and a
    bfloat16 copy is close; the float32 original is untouched."""
    import keras

    from core.models.weights import load_backbone
    from core.training.features import fold_batchnorm, in_policy

    backbone, _ = load_backbone(
        "lite0", "lite0", input_shape=(64, 64, 3), include_top=False, pooling="avg"
    )
    folded = fold_batchnorm(backbone)
    x = np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    ref = np.asarray(folded.predict_on_batch(x))
    same = in_policy(folded, "float32")
    np.testing.assert_array_equal(np.asarray(same.predict_on_batch(x)), ref)
    half = in_policy(folded, "mixed_bfloat16")
    assert {layer.dtype_policy.name for layer in half.layers[1:]} == {"mixed_bfloat16"}
    out = np.asarray(half.predict_on_batch(x), dtype="float32")
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.98
    assert np.abs(out - ref).mean() < 0.2 * np.abs(ref).mean()
    assert {layer.dtype_policy.name for layer in folded.layers[1:]} == {"float32"}
    assert keras.config.dtype_policy().name == "float32"


def test_feature_policy_follows_the_setting_and_the_cpu(monkeypatch):
    from core.platform import runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.feature_policy("auto") == "float32"
    assert runtime.feature_policy("float32") == "float32"
    assert runtime.feature_policy("bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(runtime, "backend", lambda: "tensorflow")
    assert runtime.feature_policy("auto") == "mixed_bfloat16"
    assert runtime.feature_policy("float32") == "float32"
    monkeypatch.setattr(runtime, "backend", lambda: "jax")  # XLA's CPU kernels: not known here
    assert runtime.feature_policy("auto") == "float32"
    assert runtime.feature_policy("bfloat16") == "mixed_bfloat16"


def test_cpu_bf16_is_read_from_the_cpu_flags():
    from pathlib import Path

    from core.platform import runtime

    cpuinfo = Path("/proc/cpuinfo")
    flags = next(
        (line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), ""
    ).split()
    assert runtime.cpu_has_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))


@pytest.mark.slow
def test_multiscale_backbone_adds_the_pooled_ends_of_stages_5_and_6():
    import keras

    from core.training.network import build_network
    from core.training.options import TrainConfig

    plain = build_network(TrainConfig(backbone="lite0", weights="none", mode="frozen"), 10, 32)
    multi = build_network(
        TrainConfig(backbone="lite0", weights="none", mode="frozen", multiscale=True), 10, 32
    )
    assert plain.features.shape[-1] == 1280
    assert multi.features.shape[-1] == 1280 + 192 + 112  # top, block6d, block5c (Lite0)
    pools = [la.name for la in multi.backbone.layers if la.name.startswith("multiscale_pool_")]
    assert pools == ["multiscale_pool_block6d_add", "multiscale_pool_block5c_add"]
    assert not multi.backbone.trainable
    # The first 1280 features are the plain backbone's (same weights: seeded build).
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    a = keras.Model(plain.model.input, plain.features).predict_on_batch(x)
    b = keras.Model(multi.model.input, multi.features).predict_on_batch(x)
    np.testing.assert_allclose(b[:, :1280], a, rtol=1e-5, atol=1e-5)
    # Finetune ignores it (the option matters for frozen mode only).
    tuned = build_network(
        TrainConfig(backbone="lite0", weights="none", mode="finetune", multiscale=True), 10, 32
    )
    assert tuned.features.shape[-1] == 1280
