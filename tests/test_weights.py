"""Weights: the Lite0 conversion into Keras's builder (core.models.lite0), source resolution, and clear
errors."""

import os
from pathlib import Path

import numpy as np
import pytest

from core.models import lite0, weights
from core.models.torch_pickle import read_torch_legacy
from core.models.weights import WeightsError


def test_lite0_conversion_maps_every_tensor():
    from core.models.efficientnet import build_efficientnet

    state = read_torch_legacy(lite0.lite0_package_path())
    model = build_efficientnet("lite0")
    lite0.assign_lite0(model, state)
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0],
        np.transpose(state["_conv_stem.weight"], (2, 3, 1, 0)),
    )
    np.testing.assert_array_equal(
        model.get_layer("block7a_project_conv").get_weights()[0][0, 0, :, 0],
        state["_blocks.15._project_conv.weight"][0, :, 0, 0],
    )
    np.testing.assert_array_equal(
        model.get_layer("predictions").get_weights()[1], state["_fc.bias"]
    )
    # Every non-BN tensor (one per conv/dense weight) was used exactly once.
    used = sum(
        len(layer.get_weights())
        for layer in model.layers
        if not layer.name.startswith("normalization") and layer.weights
    )
    assert used == len([k for k in state if not k.endswith("num_batches_tracked")])
    # Input normalisation is (x - 127) / 128.
    x = np.array([[[[0.0, 127.0, 255.0]]]], dtype="float32")
    from keras import layers

    norm = next(layer for layer in model.layers if isinstance(layer, layers.Normalization))
    rescale = model.layers[1]
    np.testing.assert_allclose(np.asarray(norm(rescale(x))), (x - 127.0) / 128.0, atol=1e-5)


@pytest.mark.slow
def test_wrong_model_is_refused():
    from core.models.efficientnet import build_efficientnet

    state = read_torch_legacy(lite0.lite0_package_path())
    with pytest.raises(WeightsError):
        lite0.assign_lite0(build_efficientnet("b1"), state)


def test_auto_falls_back_to_lite0_and_says_why():
    info = weights.resolve_source("b0", "auto")
    if info.source == "imagenet":
        pytest.skip(
            "official B0 weights are cached on this machine; the offline fallback is not exercised"
        )
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


@pytest.mark.slow
def test_local_weights_file_round_trip(tmp_path):
    model, _info = weights.load_backbone("lite0", "lite0", input_shape=(64, 64, 3))
    path = tmp_path / "mine.weights.h5"
    model.save_weights(path)
    again, info2 = weights.load_backbone("lite0", str(path), input_shape=(64, 64, 3))
    assert info2.source == "file"
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(model.predict_on_batch(x), again.predict_on_batch(x), atol=1e-5)


@pytest.mark.slow
def test_notop_backbone_shares_converted_weights():
    full, _ = weights.load_backbone("lite0", "lite0", input_shape=(96, 96, 3))
    notop, _ = weights.load_backbone(
        "lite0", "lite0", input_shape=(96, 96, 3), include_top=False, pooling="avg"
    )
    assert notop.output_shape == (None, 1280)
    np.testing.assert_array_equal(
        full.get_layer("top_conv").get_weights()[0], notop.get_layer("top_conv").get_weights()[0]
    )


def test_unreadable_offline_weights_become_the_weights_error(tmp_path, monkeypatch):
    broken = tmp_path / "lite0.pth"
    broken.write_bytes(b"\x80\x02" + b"garbage" * 10)
    monkeypatch.setattr(lite0, "lite0_package_path", lambda: broken)
    monkeypatch.setattr(lite0, "lite0_cache_path", lambda: tmp_path / "converted.weights.h5")
    with pytest.raises(WeightsError, match="cannot read the offline Lite0 weights"):
        lite0.convert_lite0()


def test_weights_files_are_listed_only_from_the_weights_root(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path))
    (tmp_path / "weights" / "sub").mkdir(parents=True)
    for name in ("a.weights.h5", "sub/b.h5", "notes.txt", ".hidden.h5"):
        (tmp_path / "weights" / name).write_bytes(b"x")
    (tmp_path / "elsewhere.h5").write_bytes(b"x")
    assert [
        p.relative_to(tmp_path / "weights").as_posix() for p in weights.list_weights_files()
    ] == ["a.weights.h5", "sub/b.h5"]


@pytest.mark.slow  # converts again (force=True)
def test_conversion_leaves_the_random_numbers_of_later_code_alone():
    # Keras draws layer seeds (stochastic-depth dropout) from Python's random: a run that
    # triggers the one-off conversion must train exactly like the runs after it.
    import random

    random.seed(7)
    expected = random.random()
    random.seed(7)
    lite0.convert_lite0(force=True)
    assert random.random() == expected


def test_the_session_has_its_own_keras_home():
    """tests/conftest.py points KERAS_HOME at a fresh folder before Keras loads, so no test sees
    the developer's ~/.keras (its keras.json, or official weights that would change "auto")."""
    import keras

    home = Path(os.environ["KERAS_HOME"])
    assert home.resolve() != (Path.home() / ".keras").resolve()
    assert (home / "keras.json").is_file()  # written there by Keras when it loaded
    assert keras.config.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")
