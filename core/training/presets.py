"""Presets: named recipes of training options, applied over :class:`TrainConfig`'s defaults (the
Train page's buttons, ``--preset``, the benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

from core.training.option import OptionError
from core.training.options import TrainConfig


@dataclass(frozen=True)
class Preset:
    """A named recipe: values applied over :class:`TrainConfig`'s defaults.

    Attributes:
        label: What people see (a button's text).
        description: One sentence on what it is for.
        values: The fields it sets.
    """

    label: str
    description: str
    values: dict


PRESETS: dict[str, Preset] = {
    # Lite0 frozen at 128 px (32 px images upscaled), with multi-scale features (the pooled ends
    # of stages 5 and 6 beside the top: ~+3 points), extracted in bfloat16 where the CPU has it
    # natively (~1.7x faster; the test split in float32, as the saved model computes), flip TTA,
    # 12 000 training images and a 2 000-image test subset: ~80 % in under a minute for the whole
    # process on the 2-core box from an empty cache (see docs/benchmarks.md).
    "quick": Preset(
        "quick demo",
        "about a minute on a 2-core CPU, to see the app work end to end (~80 % on CIFAR-10)",
        dict(
            backbone="lite0",
            weights="auto",
            mode="frozen",
            resolution=128,
            multiscale=True,
            feature_precision="auto",
            flip_tta=True,
            epochs=15,
            batch_size=64,
            lr=1e-3,
            optimizer="adam",
            schedule="cosine",
            dropout=0.3,
            subset=12000,
            test_subset=2000,
        ),
    ),
    "blog": Preset(
        "blog",
        "the blog's protocol: frozen ImageNet B0 at 32×32, BN + Dense head, Adam 1e-3, "
        "batch 64, 50 epochs, the test split as validation (so its test accuracy is "
        "optimistic)",
        dict(
            backbone="b0",
            weights="auto",
            mode="frozen",
            resolution=32,
            epochs=50,
            batch_size=64,
            lr=1e-3,
            optimizer="adam",
            schedule="constant",
            validation="test",
        ),
    ),
    # Lite0 at 160×160, its top 5 blocks (block6a–6d, 7a) fine-tuned on cached feature maps
    # (10×10×112) of every image and of its mirror image: each epoch sees one or the other of
    # each (flip augmentation), and validation and test average the two (flip TTA). The maps of
    # the training and validation images are extracted in bfloat16 where the CPU has it
    # natively (~1.6x faster), the test split's in float32 as the saved model computes them.
    # 91.14 % in 26.2 min on the 2-core box; 3 blocks × 9 epochs gave 89.92 % (docs/benchmarks.md).
    "best-cpu": Preset(
        "best (CPU, 30 min)",
        "the best recipe found for a 2-core CPU within 30 minutes",
        dict(
            backbone="lite0",
            weights="auto",
            mode="finetune",
            resolution=160,
            finetune_blocks=5,
            augment=False,
            feature_precision="auto",
            flip_features=True,
            flip_tta=True,
            epochs=7,
            batch_size=64,
            lr=1e-3,
            optimizer="adam",
            schedule="cosine",
        ),
    ),
    # Fine-tune the whole of B0 at its native 224×224 with augmentation and mixed precision
    # (bfloat16 on JAX). Batch 250 divides CIFAR-10's 50 000 and 10 000 images, so JAX compiles
    # one train and one test step (a ragged last batch costs a compile each); 10 epochs = 2 000
    # steps, about 5 minutes at 2 000 img/s (see docs/benchmarks.md, "GPU").
    "best-gpu": Preset(
        "best (GPU, 15 min)",
        "fine-tune all of B0 at 224 px with augmentation, for one GPU",
        dict(
            backbone="b0",
            weights="auto",
            mode="finetune",
            resolution=224,
            finetune_blocks=16,
            augment=True,
            epochs=10,
            batch_size=250,
            lr=5e-4,
            optimizer="adamw",
            schedule="cosine",
        ),
    ),
}


def preset_config(key: str, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from the preset ``key`` of :data:`PRESETS`, with ``overrides``."""
    if key not in PRESETS:
        raise OptionError(f"Unknown preset {key!r}: choose one of {', '.join(PRESETS)}.")
    return TrainConfig(**{**PRESETS[key].values, **overrides})
