"""The training augmentation as Keras layers: the fine-tune path applies them inside the model,
and the health check previews them on a dataset's own images."""

from __future__ import annotations

import numpy as np


def augmentation_layers(seed: int) -> list:
    """The training augmentation (fine-tune mode): random horizontal flips and shifts of up to
    10 % (the health check previews it with these same layers)."""
    from keras import layers

    return [
        layers.RandomFlip("horizontal", seed=seed, name="augment_flip"),
        layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed, name="augment_shift"),
    ]


def augmentation_preview(images: np.ndarray, variants: int = 4, seed: int = 0) -> np.ndarray:
    """``images`` (N, S, S, 3) uint8 through the training augmentation (the same Keras layers
    as :func:`augmentation_layers`); returns (N, variants, S, S, 3)."""
    import keras

    x = np.repeat(np.asarray(images, np.float32), variants, axis=0)
    for layer in augmentation_layers(seed):
        x = layer(x, training=True)
    x = np.clip(keras.ops.convert_to_numpy(x), 0, 255).astype(np.uint8)
    return x.reshape(len(images), variants, *x.shape[1:])
