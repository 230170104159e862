"""Weights: the restricted legacy-PyTorch reader, the Lite0 conversion, and source resolution."""

import io
import os
import pickle
import struct
from collections import OrderedDict

import numpy as np
import pytest

from core import weights
from core.weights import UnsafePickleError, WeightsError, read_torch_legacy


def _legacy_file(path, state_pickle: bytes, keys=(), storages=()):
    """Write a file in the legacy torch.save layout around a given state-dict pickle."""
    with open(path, "wb") as f:
        for obj in (weights._LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(state_pickle)
        pickle.dump(list(keys), f, protocol=2)
        for data in storages:
            f.write(struct.pack("<q", data.size))
            f.write(data.astype("<f4").tobytes())
    return path


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_reads_packaged_lite0_state_dict():
    state = read_torch_legacy(weights.lite0_package_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    # Real trained weights, not zeros: BN running variances are positive and varied.
    var = state["_bn1.running_var"]
    assert (var > 0).all() and var.std() > 0


def test_refuses_forbidden_global_and_executes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = _legacy_file(tmp_path / "evil.pth", pickle.dumps(OrderedDict(x=_Evil(marker)), protocol=2))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        read_torch_legacy(evil)
    assert not marker.exists()


def test_refuses_builtins_eval(tmp_path):
    evil = _legacy_file(tmp_path / "eval.pth", pickle.dumps({"x": _EvalEvil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"(__builtin__|builtins)\.eval"):
        read_torch_legacy(evil)


def test_refuses_evil_magic_pickle(tmp_path):
    """The very first pickle is checked too, not only the state dict."""
    marker = tmp_path / "pwned2"
    path = tmp_path / "evil_magic.pth"
    path.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(UnsafePickleError):
        read_torch_legacy(path)
    assert not marker.exists()


def test_truncated_and_garbage_files_give_clear_errors(tmp_path):
    raw = weights.lite0_package_path().read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        read_torch_legacy(truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a pickle at all" * 10)
    with pytest.raises(WeightsError):
        read_torch_legacy(garbage)
    zipped = tmp_path / "zip.pth"
    zipped.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(WeightsError, match="zip"):
        read_torch_legacy(zipped)
    with pytest.raises(WeightsError, match="cannot read"):
        read_torch_legacy(tmp_path / "missing.pth")


def test_reader_handles_offsets_and_strides(tmp_path):
    """A tensor that is a strided view into a shared storage comes out right."""
    from core.weights import _TensorRef, _Storage

    storage = _Storage(np.dtype("float32"), 12)
    storage.data = np.arange(12, dtype="float32")
    # a transposed 3x2 view starting at element 2
    ref = _TensorRef(storage, 2, (3, 2), (1, 3))
    np.testing.assert_array_equal(ref.to_numpy(), np.arange(2, 8, dtype="float32").reshape(2, 3).T)


def test_lite0_conversion_maps_every_tensor():
    from core.models import build_efficientnet

    state = read_torch_legacy(weights.lite0_package_path())
    model = build_efficientnet("lite0")
    weights.assign_lite0(model, state)
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0],
                                  np.transpose(state["_conv_stem.weight"], (2, 3, 1, 0)))
    np.testing.assert_array_equal(model.get_layer("block7a_project_conv").get_weights()[0][0, 0, :, 0],
                                  state["_blocks.15._project_conv.weight"][0, :, 0, 0])
    np.testing.assert_array_equal(model.get_layer("predictions").get_weights()[1], state["_fc.bias"])
    # Every non-BN tensor (one per conv/dense weight) was used exactly once.
    used = sum(len(layer.get_weights()) for layer in model.layers
               if not layer.name.startswith("normalization") and layer.weights)
    assert used == len([k for k in state if not k.endswith("num_batches_tracked")])
    # Input normalisation is (x - 127) / 128.
    x = np.array([[[[0.0, 127.0, 255.0]]]], dtype="float32")
    from keras import layers

    norm = next(layer for layer in model.layers if isinstance(layer, layers.Normalization))
    rescale = model.layers[1]
    np.testing.assert_allclose(np.asarray(norm(rescale(x))), (x - 127.0) / 128.0, atol=1e-5)


def test_wrong_model_is_refused():
    from core.models import build_efficientnet

    state = read_torch_legacy(weights.lite0_package_path())
    with pytest.raises(WeightsError):
        weights.assign_lite0(build_efficientnet("b1"), state)


def test_auto_falls_back_to_lite0_and_says_why():
    info = weights.resolve_source("b0", "auto")
    if info.source == "imagenet":
        pytest.skip("official B0 weights are cached on this machine; the offline fallback is not exercised")
    assert info.source == "lite0" and info.variant == "lite0"
    assert "auto:" in info.detail and "unreachable" in info.detail
    assert os.path.exists(info.path) and info.path.endswith(".weights.h5")


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="unknown weights source"):
        weights.resolve_source("b0", "imagenette")
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"\.h5"):
        weights.resolve_source("b0", str(other))
    bad = tmp_path / "broken.weights.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="cannot load"):
        weights.load_backbone("lite0", str(bad))


def test_local_weights_file_round_trip(tmp_path):
    model, info = weights.load_backbone("lite0", "lite0", input_shape=(64, 64, 3))
    path = tmp_path / "mine.weights.h5"
    model.save_weights(path)
    again, info2 = weights.load_backbone("lite0", str(path), input_shape=(64, 64, 3))
    assert info2.source == "file"
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(model.predict_on_batch(x), again.predict_on_batch(x), atol=1e-5)


def test_notop_backbone_shares_converted_weights():
    full, _ = weights.load_backbone("lite0", "lite0", input_shape=(96, 96, 3))
    notop, _ = weights.load_backbone("lite0", "lite0", input_shape=(96, 96, 3), include_top=False,
                                     pooling="avg")
    assert notop.output_shape == (None, 1280)
    np.testing.assert_array_equal(full.get_layer("top_conv").get_weights()[0],
                                  notop.get_layer("top_conv").get_weights()[0])
