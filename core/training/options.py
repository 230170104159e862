"""Training options, each defined once.

Every field of :class:`TrainConfig` carries an :class:`~core.training.option.Option` in its
metadata: the label, help text, bounds, choices and widget kind. From that one place come the
validation (:meth:`TrainConfig.validate`), the command line's flags (:mod:`core.cli.train`) and
the Train page's controls (``pages/train.py``). Adding an option is one edit here, plus the code
that uses it. The presets built from them are :mod:`core.training.presets`.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from core.data.catalog import resolve, split_ref
from core.models.efficientnet import VARIANTS
from core.models.weights import SOURCES
from core.platform.limits import CAPPED_OPTIONS, server_cap
from core.training.option import Option, OptionError, option

MODES = ("frozen", "finetune")
VALIDATIONS = ("split", "test")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
FEATURE_PRECISIONS = ("float32", "bfloat16", "auto")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")


# ----- checks and choices that need other modules (looked up lazily) ----------------------------
def _backbones() -> tuple:

    return tuple(VARIANTS)


def _check_data(value: str) -> None:

    if not value.strip():
        raise OptionError("data must be 'cifar10', a dataset name or the path of an image folder.")
    target = resolve(value)
    shown = split_ref(value)[1]  # a workspace's dataset by its name, never its tag
    try:
        missing = target != "cifar10" and not target.is_dir()
    except OSError as exc:  # e.g. no permission to look
        raise OptionError(f"cannot read data folder {shown!r}: {exc.strerror or exc}") from None
    if missing:
        raise OptionError(
            f"data folder {shown!r} does not exist: give 'cifar10', the name of a "
            "dataset under the data root, or the path of a folder with one "
            "subfolder per class."
        )


def _check_weights(value: str) -> None:

    try:
        missing = value not in SOURCES and not Path(value).expanduser().is_file()
    except OSError as exc:  # e.g. no permission to look
        raise OptionError(f"cannot read weights file {value!r}: {exc.strerror or exc}") from None
    if missing:
        raise OptionError(
            f"weights must be one of {', '.join(SOURCES)} or the path of an "
            f"existing .h5 weights file, not {value!r}."
        )


def _check_name(value: str) -> None:
    if not _NAME_RE.match(value):
        raise OptionError(
            f"run name {value!r} must be 1–100 letters, digits, '.', '_', '+' "
            "or '-', starting with a letter or digit."
        )


# ----- the configuration ------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that defines a training run; each field's :class:`Option` documents it.

    Offline, ``weights="auto"`` gives the Lite0 backbone whatever ``backbone`` says (the run
    records what was used). ``dropout=None`` means 0 for frozen (the blog's head) and 0.2 for
    finetune (see :attr:`head_dropout`).
    """

    data: str = option(
        "cifar10",
        label="Dataset",
        kind=str,
        widget="data",
        check=_check_data,
        help="'cifar10', a dataset under the data root (by name) or an image folder path "
        "(one subfolder per class)",
    )
    backbone: str = option(
        "b0",
        label="Backbone",
        kind=str,
        widget="select",
        choices=_backbones,
        help="EfficientNet variant: b0..b7, or lite0 (the offline ImageNet weights)",
    )
    weights: str = option(
        "auto",
        label="Weights",
        kind=str,
        widget="weights",
        check=_check_weights,
        help="auto (official ImageNet if cached or downloadable, else offline Lite0), imagenet, "
        "lite0, none (random init) or a .h5 weights file",
    )
    mode: str = option(
        "frozen",
        label="Mode",
        kind=str,
        widget="radio",
        choices=MODES,
        help="frozen trains only a new head on fixed ImageNet features (fast); finetune also "
        "trains the top blocks",
    )
    resolution: int = option(
        32,
        label="Resolution (px)",
        kind=int,
        widget="number",
        low=32,
        high=1024,
        step=8,
        unit="pixels",
        help="input size the backbone sees; images are upscaled inside the model",
    )
    epochs: int = option(
        50, label="Epochs", kind=int, widget="number", low=1, high=10_000, help="training epochs"
    )
    batch_size: int = option(
        64,
        label="Batch size",
        kind=int,
        widget="number",
        low=1,
        high=8192,
        step=16,
        help="images per training step",
    )
    lr: float = option(
        1e-3,
        label="Learning rate",
        kind=float,
        widget="number",
        low=0,
        low_open=True,
        high=10,
        step=1e-4,
        what="lr (learning rate)",
        help="peak learning rate",
    )
    optimizer: str = option(
        "adam",
        advanced=True,
        label="Optimizer",
        kind=str,
        widget="select",
        choices=OPTIMIZERS,
        help="the optimizer (sgd: momentum 0.9, Nesterov; adamw: weight decay 1e-4)",
    )
    schedule: str = option(
        "cosine",
        advanced=True,
        label="Learning-rate schedule",
        kind=str,
        widget="select",
        choices=SCHEDULES,
        help="the learning-rate schedule (cosine decays to 0 over all steps)",
    )
    seed: int = option(
        0,
        advanced=True,
        label="Seed",
        kind=int,
        widget="number",
        low=0,
        high=2**31 - 1,
        help="seeds the head's initialisation, batch order, subsets and augmentation",
    )
    subset: int | None = option(
        None,
        advanced=True,
        label="Training subset (images)",
        kind=int,
        widget="number",
        low=1,
        high=10**9,
        step=500,
        optional=True,
        none_means="all",
        unit="images",
        help="train on a stratified subset of this many images (quick demos)",
    )
    test_subset: int | None = option(
        None,
        advanced=True,
        label="Test subset (images)",
        kind=int,
        widget="number",
        low=1,
        high=10**9,
        step=500,
        optional=True,
        none_means="all",
        unit="images",
        help="evaluate on a stratified subset of the test split",
    )
    validation: str = option(
        "split",
        advanced=True,
        label="Validation data",
        kind=str,
        widget="radio",
        choices=VALIDATIONS,
        help="split: a held-out part of the training data (or the dataset's val/ folder) picks "
        "the best epoch and the test split is used once, at the end; test: the test split "
        "picks the best epoch, as in the blog's protocol (its test accuracy is optimistic)",
    )
    val_fraction: float = option(
        0.1,
        advanced=True,
        label="Validation share",
        kind=float,
        widget="number",
        low=0.01,
        high=0.5,
        step=0.05,
        only_for=("validation", "split"),
        help="share of each class's training images held out for validation (when the dataset "
        "has no val/ folder)",
    )
    patience: int | None = option(
        None,
        advanced=True,
        label="Early-stopping patience (epochs)",
        kind=int,
        widget="number",
        low=1,
        high=10_000,
        optional=True,
        none_means="off",
        unit="epochs",
        help="stop when validation accuracy has not improved for this many epochs",
    )
    finetune_blocks: int = option(
        2,
        label="Fine-tune top blocks",
        kind=int,
        widget="number",
        low=1,
        high=100,
        unit="blocks",
        only_for=("mode", "finetune"),
        help="finetune: how many top MBConv blocks train (B0 and Lite0 have 16)",
    )
    head_epochs: int = option(
        0,
        label="Head-only epochs first",
        kind=int,
        widget="number",
        low=0,
        high=10_000,
        unit="epochs",
        only_for=("mode", "finetune"),
        help="finetune: first train only the head on frozen (cached) features for this many "
        "epochs, then fine-tune the top blocks for the given epochs (0: fine-tune from the "
        "start)",
    )
    dropout: float | None = option(
        None,
        advanced=True,
        label="Dropout",
        kind=float,
        widget="number",
        low=0,
        high=1,
        high_open=True,
        step=0.05,
        optional=True,
        none_means="auto",
        help="dropout before the classifier (auto: 0 for frozen, as in the blog's head; 0.2 for finetune)",
    )
    name: str | None = option(
        None,
        advanced=True,
        label="Run name",
        kind=str,
        widget="text",
        optional=True,
        none_means="automatic: time and settings",
        check=_check_name,
        help="the run folder's name",
    )
    augment: bool = option(
        True,
        label="Augment (flip + shift)",
        kind=bool,
        widget="toggle",
        only_for=("mode", "finetune"),
        help="finetune: random flip and small translation inside the model",
    )
    # Measured on CIFAR-10 (160 px, 15 000 images, offline Lite0): the pooled outputs of stages
    # 5 and 6 beside the last layer's lift a linear head by ~2.5 points, for no extra extraction
    # (docs/benchmarks.md).
    multiscale: bool = option(
        False,
        label="Multi-scale features",
        kind=bool,
        widget="toggle",
        only_for=("mode", "frozen"),
        help="frozen: the head sees the average-pooled output of stages 5 and 6 as well as the "
        "last layer's (more of what the image looks like at middle depth; same extraction cost)",
    )
    # bfloat16 where the CPU computes it natively (AVX512_BF16 or AMX): ~1.7x the images/s of
    # float32 on the development box, same accuracy on cached features (docs/benchmarks.md).
    feature_precision: str = option(
        "float32",
        label="Feature extraction precision",
        kind=str,
        widget="select",
        choices=FEATURE_PRECISIONS,
        advanced=True,
        help="the arithmetic of the frozen part while its features are cached (frozen, and "
        "finetune without augment; bfloat16: faster where the CPU supports it, features kept "
        "in float32, the test split extracted in float32; auto: bfloat16 on a CPU with native "
        "bfloat16, else float32); the saved model stays float32",
    )
    flip_features: bool = option(
        False,
        label="Flip augmentation on cached features",
        kind=bool,
        widget="toggle",
        help="also cache the features of every training image's mirror image, and train each "
        "epoch on one or the other of each, at random (twice the feature extraction; for "
        "the cached paths: frozen, and finetune without augment)",
    )
    flip_tta: bool = option(
        False,
        label="Flip test-time augmentation",
        kind=bool,
        widget="toggle",
        help="validate and test on each image and its mirror image, averaging the two "
        "predictions (they pick the best epoch and give the accuracies; the run classifies "
        "new images the same way); twice the evaluation cost",
    )
    cache_features: bool = option(
        True,
        advanced=True,
        label="Cache features on disk",
        kind=bool,
        widget="toggle",
        help="reuse extracted features when the same data, backbone and resolution come again",
    )

    def validate(self) -> None:
        """Check every value against its :class:`Option`.

        Raises:
            OptionError: With a sentence naming the bad value and what is allowed.
        """
        for f in fields(self):
            f.metadata["option"].validate(f.name, getattr(self, f.name))
        # The shared server's caps (core.platform.limits), on top of each option's own range.
        for name in CAPPED_OPTIONS:
            value, (cap, variable) = getattr(self, name), server_cap(name)
            if value is not None and value > cap:
                what = next(f for f in fields(self) if f.name == name).metadata["option"].what
                raise OptionError(
                    f"{what or name} must be at most {cap} on this server ({variable}), "
                    f"got {value!r}."
                )

    def to_dict(self) -> dict:
        """The configuration as a JSON-ready dict."""
        return asdict(self)

    @property
    def protocol(self) -> str:
        """How the reported accuracies were chosen, in words (saved with every run)."""
        if self.validation == "test":
            return (
                "the blog's protocol: the test split picked the best epoch, so the test "
                "accuracy is optimistic"
            )
        return "best epoch chosen on the validation split; test split evaluated once, at the end"

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build a config from a dict (e.g. a run's ``config.json``), ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def head_dropout(self) -> float:
        """The dropout rate actually used before the classifier."""
        if self.dropout is not None:
            return float(self.dropout)
        return 0.0 if self.mode == "frozen" else 0.2


def options() -> list[tuple[str, Option, object]]:
    """``(field name, Option, default)`` for every training option, in display order."""
    return [
        (f.name, f.metadata["option"], None if f.default is MISSING else f.default)
        for f in fields(TrainConfig)
    ]


DEFAULTS: dict = {name: default for name, _, default in options()}
