"""EfficientNet model building: B0–B7 and EfficientNet-Lite0 from Keras's own builder.

Every model here takes raw RGB pixels in 0..255 (float, NHWC); normalisation lives inside the
model (Keras's ``Rescaling`` + ``Normalization`` stem), so data pipelines never normalise. Weights
are loaded separately by :mod:`core.models.weights`.
"""

from __future__ import annotations

from core.models import scaling
from core.models.scaling import Variant
from core.platform._keras_private import default_blocks_args, efficientnet_builder
from core.platform.errors import UserError

# The released B0–B7 come from the scaling module's table (one source of truth), plus Lite0:
# B0's stages without squeeze-excite, relu6 (quantisation-friendly).
VARIANTS: dict[str, Variant] = {**scaling.OFFICIAL, "lite0": Variant(1.0, 1.0, 224, 0.2, lite=True)}


def variant(name: str) -> Variant:
    """Look up a variant by name (case-insensitive), with a clear error for unknown names."""
    key = name.strip().lower()
    if key.startswith("efficientnet"):
        key = key[len("efficientnet") :].lstrip("-_")
    if key not in VARIANTS:
        raise UserError(f"Unknown backbone {name!r}: choose one of {', '.join(VARIANTS)}.")
    return VARIANTS[key]


def _lite_blocks_args() -> list[dict]:
    """B0's block table with squeeze-excite removed (EfficientNet-Lite)."""

    blocks = default_blocks_args()
    for args in blocks:
        args["se_ratio"] = 0.0
    return blocks


def build_efficientnet(
    name: str = "b0",
    *,
    input_shape: tuple[int, int, int] | None = None,
    include_top: bool = True,
    classes: int = 1000,
    pooling: str | None = None,
    width: float | None = None,
    depth: float | None = None,
    dropout: float | None = None,
    model_name: str | None = None,
):
    """Build an EfficientNet with random weights through Keras's ``EfficientNet`` builder.

    Args:
        name: A key of :data:`VARIANTS` ("b0".."b7", "lite0").
        input_shape: (H, W, 3); defaults to the variant's square resolution. Any size ≥ 32 works,
            with or without the top.
        include_top: Add global pooling, dropout and a ``classes``-way softmax Dense.
        classes: Size of the top's output.
        pooling: "avg", "max" or None, used when ``include_top`` is False.
        width: Override the width coefficient (formula-scaled networks).
        depth: Override the depth coefficient.
        dropout: Override the top's dropout rate.
        model_name: Keras model name; defaults to ``efficientnet<name>``.

    Returns:
        An uncompiled ``keras.Model`` taking float RGB pixels in 0..255.
    """
    import keras

    spec = variant(name)
    if input_shape is None:
        input_shape = (spec.resolution, spec.resolution, 3)
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3 or min(input_shape[:2]) < 32:
        raise UserError(f"input_shape must be (H, W, 3) with H, W >= 32, got {input_shape}.")
    key = name.strip().lower()
    return efficientnet_builder()(
        spec.width if width is None else width,
        spec.depth if depth is None else depth,
        spec.resolution,
        spec.dropout if dropout is None else dropout,
        activation=keras.activations.relu6 if spec.lite else "swish",
        blocks_args=_lite_blocks_args() if spec.lite else "default",
        name=model_name or f"efficientnet{key}",
        include_top=include_top,
        weights=None,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
    )


def set_input_normalization(model, mean, variance) -> None:
    """Set the stem ``Normalization`` layer so that it computes ``(x/255 - mean) / sqrt(variance)``.

    Args:
        model: A model from :func:`build_efficientnet` (its first Normalization layer is the stem's).
        mean: Per-channel mean on the 0..1 scale (3 values) or one scalar.
        variance: Per-channel variance on the 0..1 scale, or one scalar.
    """
    import numpy as np
    from keras import layers

    norm = next(layer for layer in model.layers if isinstance(layer, layers.Normalization))
    values = [np.broadcast_to(np.asarray(v, dtype="float32"), (3,)) for v in (mean, variance)]
    weights = norm.get_weights()  # [mean, variance, count], mean/variance shaped (1,1,1,3)
    weights[0] = values[0].reshape(weights[0].shape)
    weights[1] = values[1].reshape(weights[1].shape)
    norm.set_weights(weights)
    # Normalization caches mean/variance as constants; set_weights alone does not refresh them
    # (load_weights does, through load_own_variables), so refresh explicitly.
    norm.finalize_state()


def all_layers(model, include_self: bool = False) -> list:
    """Every layer of ``model``, nested models' layers included (depth first), through the
    public ``layers`` attribute."""
    found = [model] if include_self else []
    for layer in getattr(model, "layers", ()):
        found.append(layer)
        found.extend(all_layers(layer))
    return found


def float32_model(model):
    """``model`` with float32 compute: a run trained on a GPU was saved with ``mixed_float16``
    layers, which ONNX files reject (mixed-type nodes), LiteRT cannot convert (float16 ops are
    not built-ins) and a CPU runs slowly. Its weights are float32 already; only the layers'
    policies change. The converted copy has ``saved_with_mixed_precision = True``."""
    import keras

    if not any(
        layer.dtype_policy.name.startswith("mixed")
        for layer in all_layers(model, include_self=True)
    ):
        return model

    def float32(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and str(
                node.get("config", {}).get("name", "")
            ).startswith("mixed"):
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {key: float32(value) for key, value in node.items()}
        return [float32(value) for value in node] if isinstance(node, list) else node

    clone = model.__class__.from_config(float32(model.get_config()))
    clone.set_weights(model.get_weights())
    for layer in all_layers(clone):
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # its mean/variance constants come from the weights just set
    clone.saved_with_mixed_precision = True
    return clone
