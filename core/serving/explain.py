"""Grad-CAM heatmaps: where in an image a classifier looked for the class it chose.

Grad-CAM (Selvaraju et al., 2017) weights a convolutional layer's feature maps by the gradient of
the class score (the logit before the softmax) averaged over each map, sums them and keeps the
positive part: a coarse map of the regions that raised the score. It works for any model
EffNet Lab uses: the ImageNet classifiers (one flat Keras graph) and trained runs (image → stem
→ a nested EfficientNet backbone → head), because :func:`cam_model` splits either into
*image → feature maps* and *feature maps → logits*, two Keras models sharing the original's
layers.

Everything goes through the Keras 3 API except the gradient itself: ``keras.ops`` has no
``grad``, so :func:`_gradient` holds the one backend-specific call (``tf.GradientTape`` on
TensorFlow, ``jax.grad`` on JAX). No ``GradientTape`` appears anywhere else.

Which layer: the deepest block output whose maps are at least :data:`MIN_SIDE` pixels a side:
``top_activation`` (7×7) for the ImageNet models at 224 px. A trained run's top is 3×3 at 96 px
and 1×1 at 32 px (a uniform map), so its heatmap comes from an earlier block (block5c, 6×6, at
96 px; block3b, 4×4, at 32 px): less abstract features, but a map that can show a place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from core.data.images import Preprocessing
from core.platform.errors import UserError
from core.training.network import MULTISCALE_POOL

# Feature maps smaller than this (a side) localise too coarsely: a shallower block is used.
MIN_SIDE = 4
_BLOCK_RE = re.compile(r"^(block\d+[a-z])_")
# A small perceptual colormap (inferno's stops), so the overlay needs no matplotlib.
_STOPS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)


@dataclass
class CamModel:
    """A classifier split where its heatmaps are taken.

    Attributes:
        features: image batch (0..255 pixels) → feature maps of ``layer``.
        head: feature maps → the input of the final Dense layer (or the probabilities, when the
            model does not end in a Dense layer).
        kernel, bias: The final Dense layer's weights (None: ``head`` gives probabilities and the
            score is their logarithm).
        layer: The layer whose maps are weighted.
        side: Its maps' spatial size (height, width).
    """

    features: Any
    head: Any
    kernel: Any
    bias: Any
    layer: str
    side: tuple[int, int]


def _block_outputs(model) -> list:
    """The layers ending each MBConv block, plus ``top_activation``, in network order: the only
    places where everything after depends on that one output (no skip connection crosses)."""
    layers_ = list(model.layers)
    names = {layer.name for layer in layers_}
    out = []
    for layer in layers_:
        match = _BLOCK_RE.match(layer.name)
        if match:
            block = match.group(1)
            end = f"{block}_add" if f"{block}_add" in names else f"{block}_project_bn"
            if layer.name == end:
                out.append(layer)
        elif layer.name == "top_activation":
            out.append(layer)
    # A multi-scale backbone (core.training.network.multiscale) also pools earlier blocks'
    # outputs: only a cut at or before the first of those leaves every output depending on it.
    taps = [n[len(MULTISCALE_POOL) :] for n in names if n.startswith(MULTISCALE_POOL)]
    if taps:
        first = min(i for i, layer in enumerate(out) if layer.name in taps)
        out = out[: first + 1]
    return out


def _pick(candidates: list, layer: str | None):
    """The named layer, or the deepest with maps at least :data:`MIN_SIDE` a side."""
    if layer is not None:
        for cand in candidates:
            if cand.name == layer:
                return cand
        raise UserError(
            f"layer {layer!r} is not a block output of this model; choose one of "
            + ", ".join(c.name for c in candidates)
        )
    big = [c for c in candidates if min(c.output.shape[1:3]) >= MIN_SIDE]
    return (big or candidates)[-1]


def cam_model(model, layer: str | None = None) -> CamModel:
    """Split ``model`` (an EfficientNet classifier) for Grad-CAM at ``layer`` (default: see the
    module docstring).

    Works for a flat EfficientNet graph and for a chain of layers with a nested EfficientNet
    inside (how trained runs are built: stem → backbone → head).

    Raises:
        ValueError: No EfficientNet block is found, or ``layer`` is not a block output.
    """
    import keras

    last = model.layers[-1]
    dense = isinstance(last, keras.layers.Dense)
    own = _block_outputs(model)
    if own:  # flat: the blocks are the model's own layers
        cut = _pick(own, layer)
        features = keras.Model(model.inputs, cut.output)
        head = keras.Model(cut.output, last.input if dense else model.outputs)
        return CamModel(
            features,
            head,
            last.kernel if dense else None,
            last.bias if dense else None,
            cut.name,
            tuple(cut.output.shape[1:3]),
        )
    for i, inner in enumerate(model.layers):
        blocks = _block_outputs(inner) if isinstance(inner, keras.Model) else []
        if not blocks:
            continue
        cut = _pick(blocks, layer)
        image = keras.Input(model.input_shape[1:], name="image")
        x = image
        for outer in model.layers[1:i]:  # the stem (augmentation is off at inference)
            x = outer(x)
        maps = keras.Model(inner.input, cut.output)(x)
        maps_in = keras.Input(maps.shape[1:], name="feature_maps")
        y = keras.Model(cut.output, inner.output)(maps_in)
        for outer in model.layers[i + 1 : len(model.layers) - (1 if dense else 0)]:
            y = outer(y)
        return CamModel(
            keras.Model(image, maps),
            keras.Model(maps_in, y),
            last.kernel if dense else None,
            last.bias if dense else None,
            cut.name,
            tuple(cut.output.shape[1:3]),
        )
    raise UserError("no EfficientNet block found in this model: Grad-CAM needs its feature maps")


def _gradient(fn, x: np.ndarray) -> np.ndarray:
    """d fn(x) / dx for a scalar-valued ``fn`` built from Keras ops: the one backend-specific
    step (``keras.ops`` has no gradient)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        value = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(value)
            score = fn(value)
        return np.asarray(tape.gradient(score, value))
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(jax.numpy.asarray(x)))
    raise UserError(f"Grad-CAM supports the tensorflow and jax backends, not {backend}")


def grad_cam(cm: CamModel, x: np.ndarray, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps of a batch.

    Args:
        cm: From :func:`cam_model`.
        x: float32 batch of 0..255 pixels, the model's input size.
        classes: One class index per image to explain (default: each image's top class).

    Returns:
        ``(cams, probs)``: float32 maps (N, h, w) scaled to 0..1 per image (all 0 when nothing
        raised the score), at the layer's resolution; and the class probabilities (N, classes).
    """
    import keras
    from keras import ops

    maps = np.asarray(cm.features.predict_on_batch(np.asarray(x, dtype="float32")), dtype="float32")

    def logits(m):
        out = ops.cast(cm.head(m, training=False), "float32")
        if cm.kernel is None:  # probabilities: their log differs from the logit by a constant
            return ops.log(ops.maximum(out, 1e-12))
        return ops.matmul(out, ops.cast(cm.kernel, "float32")) + ops.cast(cm.bias, "float32")

    scores = keras.ops.convert_to_numpy(logits(maps))
    probs = np.asarray(keras.ops.convert_to_numpy(ops.softmax(scores, axis=-1)), dtype="float32")
    chosen = probs.argmax(axis=1) if classes is None else np.asarray(classes, dtype="int64")
    onehot = np.eye(probs.shape[1], dtype="float32")[chosen]
    # The images never interact (inference mode), so one gradient of the summed scores gives
    # each image's own.
    grads = _gradient(lambda m: ops.sum(logits(m) * onehot), maps)
    weights = grads.mean(axis=(1, 2))  # one weight per channel and image
    cams = np.maximum(np.einsum("nhwc,nc->nhw", maps, weights), 0.0)
    top = cams.max(axis=(1, 2), keepdims=True)
    cams = np.where(top > 0, cams / np.where(top > 0, top, 1.0), 0.0)
    return cams.astype("float32"), probs


class GradCam:
    """Grad-CAM for one model, split once on first use (thread-unsafe, like the model)."""

    def __init__(self, model, layer: str | None = None):
        self.model, self.layer = model, layer
        self._cm: CamModel | None = None

    @property
    def split(self) -> CamModel:
        """The model split for Grad-CAM (built on first use)."""
        if self._cm is None:
            self._cm = cam_model(self.model, self.layer)
        return self._cm

    def __call__(self, x: np.ndarray, classes=None) -> tuple[np.ndarray, np.ndarray]:
        """:func:`grad_cam` of a batch."""
        return grad_cam(self.split, x, classes)


def place(cam: np.ndarray, preprocessing: Preprocessing, size: tuple[int, int]) -> np.ndarray:
    """A heatmap as a uint8 (height, width) array over a whole image of ``size`` (width,
    height): the map covers the region the model saw (the preprocessing's crop), 0 elsewhere."""
    width, height = size
    left, top, right, bottom = (round(v) for v in preprocessing.box(width, height))
    out = np.zeros((height, width), dtype=np.uint8)
    if right > left and bottom > top:
        small = Image.fromarray(np.clip(cam * 255 + 0.5, 0, 255).astype(np.uint8), "L")
        out[top:bottom, left:right] = np.asarray(
            small.resize((right - left, bottom - top), Image.Resampling.BICUBIC)
        )
    return out


def colorize(heat: np.ndarray) -> np.ndarray:
    """uint8 heat (H, W) → uint8 RGB (H, W, 3) through a dark-to-bright colormap."""
    pos = heat.astype(np.float32) / 255 * (len(_STOPS) - 1)
    low = np.minimum(pos.astype(np.int64), len(_STOPS) - 2)
    frac = (pos - low)[..., None]
    return (_STOPS[low] * (1 - frac) + _STOPS[low + 1] * frac).astype(np.uint8)


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.6) -> Image.Image:
    """The image with the colorized heatmap blended over it (``heat`` at the image's size);
    hot places get up to ``alpha`` of the colour, cold ones keep the image nearly as it is."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    weight = alpha * (0.2 + 0.8 * heat.astype(np.float32) / 255)[..., None]
    blended = base * (1 - weight) + colorize(heat).astype(np.float32) * weight
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB")
