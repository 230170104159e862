"""core/training/features.py: folding BatchNorm into the convolutions keeps the function."""

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
