"""Tests for core.data.loading: layouts, the stratified split, errors, skipping, the cache, CIFAR-10."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.catalog import DataError, list_datasets, resolve
from core.data.cifar10 import CLASSES as CIFAR10_CLASSES
from core.data.loading import load_dataset, load_image_folder, subsample
from core.platform import paths
from core.platform.progress import Progress, Stopped

# Class i is painted in COLORS[i] (plus a little noise), so decoded pixels reveal their true class.
COLORS = [(230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30), (30, 230, 230)]


@pytest.fixture(autouse=True)
def data_cache(tmp_path_factory, monkeypatch) -> Path:
    """Never touch the user's cache or Keras home (kept outside tmp_path, which holds datasets)."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(cache))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras-home")))
    return cache


def make_class(folder: Path, color_index: int, n: int, size=(40, 30), ext=".png", start=0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(color_index * 1000 + start)
    for i in range(start, start + n):
        img = np.tile(np.array(COLORS[color_index], np.uint8), (size[1], size[0], 1))
        img = np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i:03d}{ext}")


def assert_labels_match_colors(x: np.ndarray, y: np.ndarray, class_names: list[str], palette):
    """Every image's mean colour is its class's colour: labels stayed aligned with pixels."""
    means = x.reshape(len(x), -1, 3).mean(axis=1)
    expected = np.array([palette[name] for name in class_names])[y]
    assert np.abs(means - expected).max() < 25


def test_train_test_folder_layout(tmp_path):
    exts = {"bird": ".png", "cat": ".JPG", "dog": ".bmp"}
    for i, name in enumerate(["dog", "cat", "bird"]):  # created unsorted on purpose
        make_class(tmp_path / "d" / "train" / name, i, 10, ext=exts[name])
        make_class(tmp_path / "d" / "test" / name, i, 2, ext=exts[name], start=50)
    (tmp_path / "d" / "train" / "cat" / "notes.txt").write_text("not an image")

    progress = Progress()
    ds = load_dataset(str(tmp_path / "d"), storage_size=16, progress=progress)

    assert ds.class_names == ["bird", "cat", "dog"]
    assert ds.split.startswith(
        "27/3/6 train/validation/test; test: the test/ folder; validation: stratified 10 %"
    )
    assert ds.x_train.shape == (27, 16, 16, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_val.shape == (3, 16, 16, 3) and ds.x_test.shape == (6, 16, 16, 3)
    assert np.bincount(ds.y_train).tolist() == [9, 9, 9]
    assert np.bincount(ds.y_val).tolist() == [1, 1, 1]
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    assert ds.skipped == 0
    palette = {"dog": COLORS[0], "cat": COLORS[1], "bird": COLORS[2]}
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert_labels_match_colors(x, y, ds.class_names, palette)
    snap = progress.snapshot()
    assert (snap.phase, snap.done, snap.total) == ("Decoding images", 36, 36)


def test_val_and_test_folders_are_used_as_given(tmp_path):
    for i, name in enumerate(["a", "b"]):
        make_class(tmp_path / "train" / name, i, 6)
        make_class(tmp_path / "val" / name, i, 3, start=50)
    ds = load_dataset(str(tmp_path), storage_size=8)
    # A val/ folder validates; with no test/ folder, the test split is carved from train/.
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (10, 6, 2)
    assert (
        "validation: the val/ folder" in ds.split and "test: stratified 20 % of train/" in ds.split
    )
    make_class(tmp_path / "test" / "a", 0, 1, start=80)
    make_class(tmp_path / "test" / "b", 1, 1, start=80)
    ds = load_dataset(str(tmp_path), storage_size=8)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (12, 6, 2)
    (tmp_path / "test" / "c").mkdir()
    make_class(tmp_path / "test" / "c", 2, 1)
    with pytest.raises(DataError, match=r"test/ split .* different classes"):
        load_dataset(str(tmp_path), storage_size=8)


def test_stratified_splits_are_fixed_and_disjoint(tmp_path):
    sizes = {"a": 20, "b": 40, "c": 10}
    for i, (name, n) in enumerate(sizes.items()):
        make_class(tmp_path / name, i, n)

    ds = load_image_folder(tmp_path, storage_size=8, val_fraction=0.25, test_fraction=0.2)
    assert ds.split.startswith(
        "42/14/14 train/validation/test; test: stratified 20 %; validation: stratified 25 %"
    )
    assert np.bincount(ds.y_test).tolist() == [4, 8, 2]
    assert np.bincount(ds.y_val).tolist() == [4, 8, 2]
    assert np.bincount(ds.y_train).tolist() == [12, 24, 6]
    palette = dict(zip(sizes, COLORS))
    assert_labels_match_colors(ds.x_train, ds.y_train, ds.class_names, palette)
    assert_labels_match_colors(ds.x_test, ds.y_test, ds.class_names, palette)
    # The three splits are disjoint and together are every image exactly once.
    all_rows = np.concatenate([ds.x_train, ds.x_val, ds.x_test]).reshape(70, -1)
    assert len(np.unique(all_rows, axis=0)) == 70
    # Fixed: whatever a run's seed, the same validation and test images (accuracies compare).
    again = load_dataset(str(tmp_path), storage_size=8, val_fraction=0.25, seed=7)
    assert np.array_equal(again.x_test, ds.x_test) and np.array_equal(again.x_val, ds.x_val)
    none = load_image_folder(tmp_path, storage_size=8, val_fraction=0.0)
    assert len(none.y_val) == 0 and len(none.y_train) == 56


def test_non_square_images_are_centre_cropped(tmp_path):
    # Left third red, middle third green, right third blue: the centre crop keeps only green.
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        img = np.zeros((30, 90, 3), np.uint8)
        img[:, :30, 0] = img[:, 30:60, 1] = img[:, 60:, 2] = 255
        Image.fromarray(img).save(tmp_path / name / "wide.png")
        Image.fromarray(img).save(tmp_path / name / "wide2.png")
    ds = load_image_folder(tmp_path, storage_size=10)
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    assert x.shape[1:] == (10, 10, 3)
    assert (x[..., 1] > 200).all() and (x[..., 0] < 30).all() and (x[..., 2] < 30).all()


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20, 0] = img[:, 20:, 2] = 255  # left red, right blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": left half shows on top
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(img).save(tmp_path / name / f"{i}.jpg", exif=exif, quality=95)
    ds = load_image_folder(tmp_path, storage_size=20)
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test]).astype(int)
    assert (x[:, :8, :, 0] > 200).all() and (x[:, 12:, :, 2] > 200).all()


def _file(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("x")


BAD_LAYOUTS = {
    "missing": (lambda r: None, "Dataset folder not found"),
    "a file": (lambda r: _file(r), "is a file, not a folder"),
    "empty folder": (lambda r: r.mkdir(), "No images found"),
    "loose images": (lambda r: make_class(r, 0, 3), "no class subfolders"),
    "one class": (lambda r: make_class(r / "cat", 0, 3), "Only one class ('cat')"),
    "empty class": (
        lambda r: (make_class(r / "cat", 0, 3), (r / "dog").mkdir()),
        "Class folder(s) 'dog'",
    ),
    "only non-images": (
        lambda r: (_file(r / "cat" / "a.txt"), _file(r / "dog" / "b.csv")),
        "No images found",
    ),
    "test classes differ": (
        lambda r: (
            make_class(r / "train" / "cat", 0, 2),
            make_class(r / "train" / "dog", 1, 2),
            make_class(r / "test" / "cat", 0, 2),
            make_class(r / "test" / "cow", 1, 2),
        ),
        "missing in test/: ['dog']; not in train/: ['cow']",
    ),
}


@pytest.mark.parametrize("case", list(BAD_LAYOUTS))
def test_bad_layouts_give_clear_errors(tmp_path, case):
    build, expected = BAD_LAYOUTS[case]
    root = tmp_path / "data"
    build(root)
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert expected in str(info.value)
    assert str(root) in str(info.value)


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    make_class(tmp_path / "a", 0, 5)
    make_class(tmp_path / "b", 1, 5)
    (tmp_path / "a" / "garbage.jpg").write_bytes(b"definitely not a jpeg")
    good = (tmp_path / "b" / "img000.png").read_bytes()
    (tmp_path / "b" / "truncated.png").write_bytes(good[: len(good) // 2])

    ds = load_image_folder(tmp_path, storage_size=8)
    assert ds.skipped == 2
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 10
    assert ds.skipped == load_image_folder(tmp_path, storage_size=8).skipped  # from the cache too

    for f in (tmp_path / "b").glob("img*.png"):  # now class b has nothing readable
        f.write_bytes(b"broken")
    with pytest.raises(DataError, match=r"No readable image in class folder.*'b'"):
        load_image_folder(tmp_path, storage_size=8)


def test_cache_is_faster_identical_and_keyed_by_contents(tmp_path, data_cache):
    root = tmp_path / "data"
    make_class(root / "a", 0, 150, size=(96, 96), ext=".jpg")
    make_class(root / "b", 1, 150, size=(96, 96), ext=".jpg")
    cache = data_cache / "datasets"

    t0 = time.perf_counter()
    first = load_dataset(str(root), storage_size=32)
    t1 = time.perf_counter()
    second = load_dataset(str(root), storage_size=32)
    t2 = time.perf_counter()
    assert "(decoded, cached)" in first.source and "(cache hit)" in second.source
    assert t2 - t1 < t1 - t0
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    (key_file,) = cache.glob("*.npz")

    # Another storage size is another cache entry; the first one stays.
    load_dataset(str(root), storage_size=16)
    assert len(list(cache.glob("*.npz"))) == 2

    # A changed folder gives a new key: the stale entry for that folder and size is replaced.
    make_class(root / "b", 1, 1, size=(96, 96), ext=".jpg", start=500)
    third = load_dataset(str(root), storage_size=32)
    assert "(decoded, cached)" in third.source
    assert len(third.y_train) + len(third.y_val) + len(third.y_test) == 301
    assert not key_file.exists() and len(list(cache.glob("*.npz"))) == 2

    # A damaged cache file is decoded again and rewritten, not an error.
    (new_file,) = set(cache.glob("*.npz")) - {f for f in cache.glob("*.npz") if "-s16-" in f.name}
    new_file.write_bytes(b"not a zip")
    assert "(decoded, cached)" in load_dataset(str(root), storage_size=32).source

    # use_cache=False neither reads nor writes.
    os.utime(root / "a" / "img000.jpg", ns=(0, 0))
    assert "(decoded)" in load_dataset(str(root), storage_size=32, use_cache=False).source
    assert "(decoded, cached)" in load_dataset(str(root), storage_size=32).source


def test_subsample_is_stratified_and_deterministic():
    y = np.repeat(np.arange(3), [60, 30, 10])
    x = np.arange(100)
    xs, ys = subsample(x, y, 20, seed=0)
    assert np.bincount(ys).tolist() == [12, 6, 2]
    assert np.array_equal(y[xs], ys)
    assert len(np.unique(xs)) == 20
    assert np.array_equal(subsample(x, y, 20, seed=0)[0], xs)
    assert not np.array_equal(subsample(x, y, 20, seed=1)[0], xs)
    assert np.bincount(subsample(x, y, 7, seed=0)[1]).sum() == 7
    assert subsample(x, y, 500, seed=0)[0] is x
    with pytest.raises(DataError):
        subsample(x, y, 0, seed=0)


def test_load_dataset_subsets_and_stop(tmp_path):
    for i, name in enumerate("abc"):
        make_class(tmp_path / name, i, 20, size=(8, 8))
    ds = load_dataset(str(tmp_path), subset=12, test_subset=6)
    assert np.bincount(ds.y_train).tolist() == [4, 4, 4]
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    assert len(ds.y_val) == 3  # validation cut in proportion (at least one per class)
    assert "train subset of 12, validation 3" in ds.split and "test subset of 6" in ds.split
    assert ds.storage_size == 8  # images smaller than 64 are not upscaled by default
    with pytest.raises(DataError, match="subset must be a positive"):
        load_dataset(str(tmp_path), subset=0)

    progress = Progress()
    progress.request_stop()
    with pytest.raises(Stopped):
        load_dataset(str(tmp_path), progress=progress, use_cache=False)


def test_real_cifar10_images(tiny_cifar):
    ds = load_dataset(str(tiny_cifar))
    assert ds.class_names == CIFAR10_CLASSES
    assert ds.x_train.shape == (90, 32, 32, 3) and ds.x_val.shape == (10, 32, 32, 3)
    assert ds.x_test.shape == (50, 32, 32, 3)
    assert ds.skipped == 0 and ds.split.startswith(
        "90/10/50 train/validation/test; test: the test/"
    )
    assert 50 < ds.x_train.mean() < 200 and ds.x_train.std() > 30  # real photos, not blank


def test_cifar10_falls_back_to_local_copy_fast(tiny_cifar, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_DOWNLOAD_TIMEOUT", "0.001")
    monkeypatch.setenv("EFFNET_LAB_CIFAR10_DIR", str(tiny_cifar))
    t0 = time.perf_counter()
    ds = load_dataset("cifar10")
    assert time.perf_counter() - t0 < 20
    assert ds.source.startswith("local CIFAR-10 copy: image folder")
    assert "keras.datasets was unavailable" in ds.source
    assert ds.class_names == CIFAR10_CLASSES and ds.x_train.shape == (90, 32, 32, 3)


def test_cifar10_error_says_what_failed_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_DOWNLOAD_TIMEOUT", "0.001")
    monkeypatch.delenv("EFFNET_LAB_CIFAR10_DIR", raising=False)
    # ...and no default copy beside the project either.
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10")
    message = str(info.value)
    assert "download failed" in message and "no local copy" in message
    assert "EFFNET_LAB_CIFAR10_DIR" in message and "internet" in message

    monkeypatch.setenv("EFFNET_LAB_CIFAR10_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"nowhere.*unusable: Dataset folder not found"):
        load_dataset("cifar10")


def test_folder_images_go_through_the_shared_image_path(tmp_path):
    """Transparent pixels become white, as on the Classify page (one RGB path for both)."""
    make_class(tmp_path / "clear", 0, 0)
    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(tmp_path / "clear" / "a.png")
    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(tmp_path / "clear" / "b.png")
    make_class(tmp_path / "red", 0, 2)
    ds = load_image_folder(tmp_path, use_cache=False)
    clear = ds.class_names.index("clear")
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    assert (x[y == clear] == 255).all()


def test_datasets_by_name_under_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "root"))
    for name in ("flowers", "weights", ".hidden", "bad name"):
        (tmp_path / "root" / name).mkdir(parents=True)
    make_class(tmp_path / "root" / "flowers" / "red", 0, 3)
    make_class(tmp_path / "root" / "flowers" / "green", 1, 3)
    assert list_datasets() == ["flowers"]  # not weights/, hidden or badly named folders
    assert resolve("flowers") == tmp_path / "root" / "flowers"
    assert resolve("CIFAR10") == "cifar10"
    assert resolve(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
    assert resolve("missing") == Path("missing")  # not a managed dataset: a relative path
    ds = load_dataset("flowers", use_cache=False)
    assert ds.class_names == ["green", "red"]
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 6


def test_an_unreadable_folder_is_a_data_error(unreadable_dir):
    with pytest.raises(DataError, match=r"cannot read .*Permission denied"):
        load_dataset(str(unreadable_dir))
