"""core.data.health (and core.data.duplicates, core.data.health_report): the check finds planted exact and near duplicates, leaks across splits (folder and
stored), unreadable, tiny and extreme-aspect images; bounded near-duplicate search; the cache."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from core.data import augment, datasets, duplicates, health, splits
from core.data.catalog import DataError
from core.data.health_report import HealthReport


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def smooth(seed: int, size: int = 64) -> Image.Image:
    """A photo-like image: smooth colour blobs (random noise has no stable perceptual hash)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC
    )


def near_copy(image: Image.Image) -> Image.Image:
    """Resized, brightened and (when saved as JPEG) recompressed: a near duplicate."""
    return ImageEnhance.Brightness(image.resize((48, 48), Image.Resampling.BILINEAR)).enhance(1.1)


def planted(root: Path) -> Path:
    """train/ and test/ folders, classes a and b, with every kind of problem planted once."""
    for split, n, base in (("train", 6, 0), ("test", 3, 100)):
        for c, offset in (("a", 0), ("b", 50)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                smooth(base + offset + i).save(root / split / c / f"{i}.png")
    shutil.copy(root / "train/a/0.png", root / "train/a/dup.png")  # exact, same split
    shutil.copy(root / "train/a/1.png", root / "test/a/copy.png")  # exact, across splits: a leak
    near_copy(smooth(52)).save(root / "test/b/near.jpg", quality=70)  # train/b/2.png, a leak
    (root / "train/a/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    smooth(7, 10).save(root / "train/b/tiny.png")
    smooth(8).resize((200, 40)).save(root / "train/b/wide.png")
    return root


def test_the_check_finds_what_was_planted(tmp_path):
    root = planted(tmp_path / "planted")
    r = health.check(str(root), use_cache=False)
    assert r.layout == "train/ and test/ folders"
    assert r.classes == {"a": 12, "b": 12} and r.images == 24 and r.readable == 23
    assert r.splits["train"] == {"a": 8, "b": 8} and r.splits["test"] == {"a": 4, "b": 4}
    assert [u.file for u in r.unreadable] == ["train/a/broken.jpg"]
    assert sorted(map(sorted, r.duplicates)) == [
        ["test/a/copy.png", "train/a/1.png"],
        ["train/a/0.png", "train/a/dup.png"],
    ]
    assert [sorted(p) for p in r.near_duplicates] == [["test/b/near.jpg", "train/b/2.png"]]
    leaks = {(frozenset((x.a, x.b)), x.kind) for x in r.leaks}
    assert leaks == {
        (frozenset(("train/a/1.png", "test/a/copy.png")), "exact"),
        (frozenset(("train/b/2.png", "test/b/near.jpg")), "near"),
    }
    assert [(t.file, t.width, t.height) for t in r.tiny] == [("train/b/tiny.png", 10, 10)]
    assert [(t.file, t.width, t.height) for t in r.extreme_aspect] == [
        ("train/b/wide.png", 200, 40)
    ]
    assert r.imbalance == 1.0 and r.problems == ()
    assert set(r.samples) == {"a", "b"} and all(len(v) <= 8 for v in r.samples.values())
    assert "train/a/broken.jpg" not in r.samples["a"]
    data = json.loads(json.dumps(r.to_dict()))  # JSON-ready, and read back the same
    assert data["tiny"] == [{"file": "train/b/tiny.png", "size": [10, 10]}]
    assert data["unreadable"][0]["file"] == "train/a/broken.jpg"
    assert HealthReport.from_dict(data) == r


def test_leaks_follow_the_stored_split_of_a_managed_dataset(data_root):
    datasets.create("pets", None)
    for c, base in (("cat", 0), ("dog", 100)):
        datasets.add_class("pets", c, None)
        datasets.add_images(
            "pets", c, [(f"{i}.png", png_bytes(smooth(base + i))) for i in range(10)], None
        )
    assignment = json.loads((data_root / "pets" / splits.SPLITS_FILE).read_text())["files"]
    test_cat = next(p for p, s in sorted(assignment.items()) if s == "test" and p.startswith("cat"))
    val_cat = next(p for p, s in sorted(assignment.items()) if s == "val" and p.startswith("cat"))
    # A copy of a test image and a near copy of a validation image, added to another class.
    datasets.add_images(
        "pets", "dog", [("copy.png", (data_root / "pets" / test_cat).read_bytes())], None
    )
    datasets.add_images(
        "pets",
        "dog",
        [("near.png", png_bytes(near_copy(Image.open(data_root / "pets" / val_cat))))],
        None,
    )
    r = health.check("pets", use_cache=False)
    final = json.loads((data_root / "pets" / splits.SPLITS_FILE).read_text())["files"]
    expected = set()
    for a, b, kind in ((test_cat, "dog/copy.png", "exact"), (val_cat, "dog/near.png", "near")):
        if final[a] != final[b]:
            expected.add((frozenset((a, b)), kind))
    assert {(frozenset((x.a, x.b)), x.kind) for x in r.leaks} == expected
    assert r.leaks_count == len(expected) == 2  # both new images went to train
    assert sum(r.splits[s]["cat"] for s in ("train", "val", "test")) == 10


def png_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_a_half_built_dataset_is_reported_not_refused(data_root):
    datasets.create("wip", None)
    datasets.add_class("wip", "cat", None)
    r = health.check("wip", use_cache=False)
    assert r.classes == {"cat": 0} and r.images == 0 and r.imbalance is None
    assert any("no images" in p for p in r.problems)
    assert any("two classes" in p for p in r.problems)


def test_missing_folders_and_keras_cifar_are_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(DataError, match="not found"):
        health.check(str(tmp_path / "nowhere"))
    monkeypatch.setenv("EFFNET_LAB_CIFAR10_DIR", "")
    monkeypatch.setattr(health.paths, "cifar10_dir", lambda: None)
    with pytest.raises(DataError, match="EFFNET_LAB_CIFAR10_DIR"):
        health.check("cifar10")


def test_an_unchanged_dataset_is_answered_from_the_cache(tmp_path):
    root = planted(tmp_path / "planted")
    first = health.check(str(root))
    second = health.check(str(root))
    assert not first.cached and second.cached
    assert replace(second, cached=False, seconds=0) == replace(first, seconds=0)
    smooth(999).save(root / "train/a/new.png")
    third = health.check(str(root))
    assert not third.cached and third.images == first.images + 1


def test_near_duplicate_search_is_not_quadratic():
    rng = np.random.default_rng(0)
    n = 60_000
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, n, dtype=np.uint64
    )
    thumbs = rng.integers(0, 255, (n, 16, 16), dtype=np.uint8)
    hashes[123], thumbs[123] = hashes[45_678] ^ np.uint64(0b1011), thumbs[45_678]  # 3 bits apart
    started = time.perf_counter()
    pairs, note = duplicates.near_pairs(hashes, thumbs)
    assert pairs == [(123, 45_678)] and note is None
    assert time.perf_counter() - started < 20  # all 1.8e9 pairs would take minutes


def test_many_identical_hashes_pair_with_the_first_and_a_cap_says_so(monkeypatch):
    thumbs = np.stack([np.asarray(smooth(1).convert("L").resize((16, 16)))] * 5000)
    hashes = np.full(5000, 12345, dtype=np.uint64)
    pairs, note = duplicates.near_pairs(hashes, thumbs)
    assert len(pairs) == 4999 and {a for a, _ in pairs} == {0}  # linear, not 12.5 million pairs
    monkeypatch.setattr(duplicates, "MAX_COMPARISONS", 10)
    rng = np.random.default_rng(1)
    close = np.uint64(rng.integers(0, 2**62)) ^ rng.integers(0, 64, 200).astype(np.uint64)
    _, note = duplicates.near_pairs(close, thumbs[:200])
    assert note and "stopped after" in note


def test_the_check_job_stops_on_request(tmp_path):
    from core.platform.progress import JobStatus, Progress

    root = planted(tmp_path / "planted")
    progress = Progress()
    progress.request_stop()
    assert health.check_job({"data": str(root), "use_cache": False}, progress) is None
    progress.finish(result=None)
    assert progress.snapshot().status is JobStatus.STOPPED


def test_augmentation_preview_uses_the_training_layers(tmp_path):
    root = planted(tmp_path / "planted")
    images = np.stack(health.load_samples(root, ["train/a/0.png", "train/b/1.png", "../x.png"], 32))
    assert images.shape == (2, 32, 32, 3)  # the file outside the dataset was refused
    grid = augment.augmentation_preview(images, variants=6, seed=0)
    assert grid.shape == (2, 6, 32, 32, 3) and grid.dtype == np.uint8
    assert any(not np.array_equal(v, images[0]) for v in grid[0])  # flipped or shifted
    assert np.array_equal(grid, augment.augmentation_preview(images, variants=6, seed=0))
