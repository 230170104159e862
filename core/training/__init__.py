"""Train EfficientNet classifiers on an image dataset, fast enough for a 2-core CPU.

One module per layer:

- :mod:`~core.training.options`: :class:`TrainConfig` (every option defined once, each an
  :class:`~core.training.option.Option`); :mod:`~core.training.presets`: the presets;
- :mod:`~core.training.network`: the classifier, frozen where it should be;
- :mod:`~core.training.features`: feature extraction for the fast paths, and its cache;
- :mod:`~core.training.fit`: the training loop and its callback;
- :mod:`~core.training.run`: one run (train, evaluate, save) and its job entry.
- :mod:`~core.training.distributed`: one run's model trained over N processes or hosts (JAX).

Two modes, and where their speed comes from:

- **frozen**: the backbone is frozen and called in inference mode, so its pooled features are a
  fixed function of each image. We compute them once, cache them, and train only the head on
  them; the full image → class model is assembled from the same layer objects and saved.
  Training with the backbone inside the loop (the blog's way, :func:`core.experiments.bench.fit_blog_way`)
  gives the same model, epoch after epoch; tests prove it.
- **finetune**: the top ``finetune_blocks`` MBConv blocks (plus the top conv) train; BatchNorm
  stays frozen. With ``augment`` on, flips and shifts happen inside the model, so every step runs
  the whole network; with it off, the frozen prefix's feature maps are cached and only the top
  trains.
"""

from core.training.option import Option
from core.training.options import (
    DEFAULTS,
    MODES,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    options,
    server_cap,
)
from core.training.presets import PRESETS, Preset, preset_config
from core.training.run import RunResult, train

__all__ = [
    "DEFAULTS",
    "MODES",
    "OPTIMIZERS",
    "PRESETS",
    "SCHEDULES",
    "Option",
    "Preset",
    "RunResult",
    "TrainConfig",
    "options",
    "preset_config",
    "server_cap",
    "train",
]
