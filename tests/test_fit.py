"""core/training/fit.py helpers: batches from memory and from disk agree, with and without flip
augmentation on cached features; validation scoring and flip test-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from core.training.fit import as_inputs, loss_and_accuracy


def test_mirrored_inputs_are_picked_per_position_in_memory_and_from_disk(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((10, 2, 2, 3)).astype("float32")
    mirrored = -x  # stand-in for the mirror images' features
    y = np.arange(10)
    order = rng.permutation(10)
    mirror = rng.random(10) < 0.5
    inputs, labels = as_inputs((x, mirrored), y, 4, order, mirror)
    expected = np.where(mirror[:, None, None, None], mirrored[order], x[order])
    np.testing.assert_array_equal(inputs, expected)
    np.testing.assert_array_equal(labels, y[order])
    np.testing.assert_array_equal(as_inputs((x, mirrored), y, 4, order)[0], x[order])  # no mask
    on_disk = np.lib.format.open_memmap(
        tmp_path / "x.npy", mode="w+", dtype="float32", shape=x.shape
    )
    on_disk[:] = x
    batches, none = as_inputs((on_disk, mirrored), y, 4, order, mirror)
    assert none is None and len(batches) == 3
    got = [batches[i] for i in range(3)]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), expected)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), y[order])


def test_loss_and_accuracy_match_keras():
    import keras

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.0, 1.0, 0.0]], dtype="float32")
    y = np.array([0, 1, 1])
    loss, acc = loss_and_accuracy(probs, y)
    expected = keras.losses.SparseCategoricalCrossentropy()(y, probs)
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert acc == pytest.approx(2 / 3)
