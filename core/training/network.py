"""The trainable classifier: an EfficientNet backbone, frozen where it should be, with a new head.

The network takes raw 0..255 pixels at the dataset's storage size::

    image → [augmentation, finetune only] → [Resizing to `resolution`] → backbone (avg pool)
          → BatchNormalization → [Dropout] → Dense softmax

With ``multiscale`` (frozen mode) the backbone's output is the concatenation of its pooled
output and the pooled outputs of the last blocks of stages 6 and 5 (:func:`multiscale`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.data.augment import augmentation_layers
from core.models.weights import load_backbone
from core.platform.runtime import allow_jit
from core.training.options import TrainConfig

_BLOCK_RE = re.compile(r"^(block\d+[a-z])_")  # Keras names layers block1a_…, block6d_…


@dataclass
class TrainNetwork:
    """A classifier and the parts the fast training paths need.

    Attributes:
        model: The full image → class model (what is saved).
        backbone: The nested EfficientNet (pooling "avg", no top).
        stem: Layers between the image and the backbone (augmentation, resizing).
        head: Layers after the pooled features (BatchNormalization, Dropout, Dense).
        features: The backbone's output tensor in ``model``'s graph.
        weights: :class:`core.models.weights.WeightsInfo` of the backbone.
        first_trainable: finetune: the first trainable layer of the backbone (where the frozen
            prefix ends), else None.
    """

    model: Any
    backbone: Any
    stem: list
    head: list
    features: Any
    weights: Any
    first_trainable: Any = None


def apply_layers(layers_, x):
    """Call ``layers_`` in order on ``x`` (builds a functional graph on symbolic inputs)."""
    for layer in layers_:
        x = layer(x)
    return x


def block_of(layer) -> str | None:
    """The MBConv block a backbone layer belongs to ("block6d"), or None (stem, top)."""
    match = _BLOCK_RE.match(layer.name)
    return match.group(1) if match else None


MULTISCALE_STAGES = ("6", "5")  # whose last block's pooled output joins the features
MULTISCALE_POOL = "multiscale_pool_"  # + the tapped layer's name: how Grad-CAM finds the taps


def multiscale(backbone):
    """``backbone`` (pooling "avg") with the average-pooled outputs of the last blocks of stages
    6 and 5 concatenated to its own pooled output.

    Frozen ImageNet features of the last layer alone are tuned to ImageNet's classes; the
    middle stages describe shapes and textures more generally, and a linear head on all three
    gained ~2.5 points on CIFAR-10 (docs/benchmarks.md) at no extra extraction cost. The layers
    are the backbone's own (shared), so weights and freezing carry over.
    """
    import keras
    from keras import layers

    ends = {}
    for layer in backbone.layers:  # network order: the last layer of a stage is its output
        block = block_of(layer)
        if block and block[5:-1] in MULTISCALE_STAGES:
            ends[block[5:-1]] = layer
    pooled = [
        layers.GlobalAveragePooling2D(name=f"{MULTISCALE_POOL}{ends[stage].name}")(
            ends[stage].output
        )
        for stage in MULTISCALE_STAGES
        if stage in ends
    ]
    out = layers.Concatenate(name="multiscale_features")([backbone.output, *pooled])
    return keras.Model(backbone.input, out, name=f"{backbone.name}_multiscale")


def freeze(backbone, n_blocks: int):
    """Freeze the backbone except its top ``n_blocks`` blocks and top conv; BatchNorm stays frozen.

    Frozen layers run as at inference: BatchNormalization does when not trainable, and we set
    the frozen blocks' stochastic-depth Dropout rates to 0 (Keras 3 functional models pass the
    outer ``training`` flag to nested models, so ``backbone(x, training=False)`` would not stop
    them). The frozen part is then a fixed function of the image, and its output can be cached.

    Args:
        backbone: The EfficientNet from :func:`core.models.weights.load_backbone`.
        n_blocks: Top blocks to train; 0 freezes everything (frozen mode).

    Returns:
        The first trainable layer (where the frozen prefix ends), or None when all is frozen.
    """
    from keras import layers

    blocks = list(dict.fromkeys(b for b in map(block_of, backbone.layers) if b))  # network order
    trainable = set(blocks[len(blocks) - min(n_blocks, len(blocks)) :]) if n_blocks > 0 else set()
    backbone.trainable = bool(trainable)
    first_layer = None
    for layer in backbone.layers:
        top = bool(trainable) and (block_of(layer) in trainable or layer.name.startswith("top_"))
        if top and first_layer is None:
            first_layer = layer
        layer.trainable = top and not isinstance(layer, layers.BatchNormalization)
        if not top and isinstance(layer, layers.Dropout):
            layer.rate = 0.0
    return first_layer


def build_network(config: TrainConfig, num_classes: int, storage_size: int) -> TrainNetwork:
    """Build the classifier for ``config`` (seeded, so two builds start from the same weights).

    Call inside :func:`core.platform.runtime.device_context` so GPU runs get mixed precision and all
    devices (a data-parallel model must be built inside the distribution's scope).
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(config.seed)
    size = config.resolution
    backbone, info = load_backbone(
        config.backbone,
        config.weights,
        input_shape=(size, size, 3),
        include_top=False,
        pooling="avg",
    )
    frozen = config.mode == "frozen"
    if frozen and config.multiscale:
        backbone = multiscale(backbone)
    first = freeze(backbone, 0 if frozen else config.finetune_blocks)
    stem = []
    if not frozen and config.augment:
        stem += augmentation_layers(config.seed)
        allow_jit(stem)  # else Keras-on-JAX runs every train step eagerly (see allow_jit)
    if size != storage_size:
        stem.append(layers.Resizing(size, size, interpolation="bilinear", name="upscale"))
    head = [layers.BatchNormalization(name="head_bn")]
    if config.head_dropout > 0:
        head.append(layers.Dropout(config.head_dropout, seed=config.seed, name="head_dropout"))
    # float32 softmax: under mixed precision, probabilities and the loss stay accurate.
    # Seeded explicitly: the head's start must not depend on what else drew random numbers
    # before (e.g. a one-off weights conversion), so two builds of one config are identical.
    head.append(
        layers.Dense(
            num_classes,
            activation="softmax",
            dtype="float32",
            name="predictions",
            kernel_initializer=keras.initializers.GlorotUniform(seed=config.seed),
        )
    )

    inputs = keras.Input((storage_size, storage_size, 3), name="image")
    x = apply_layers(stem, inputs)
    features = backbone(x)  # frozen parts run as at inference (see freeze)
    model = keras.Model(inputs, apply_layers(head, features), name=f"{info.variant}_classifier")
    return TrainNetwork(model, backbone, stem, head, features, info, first)
