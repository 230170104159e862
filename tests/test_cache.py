"""core.platform.cache: the cache folder's size cap, least recently used entries pruned first."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from core.data.loading import load_dataset
from core.platform import cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entry(folder, name, size, age_s):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"x" * size)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_prune_removes_least_recently_used_first_and_keeps_the_new_one(cache_dir):
    old = entry(cache_dir / "features", "old.npy", 400, 300)
    mid = entry(cache_dir / "datasets", "mid.npz", 400, 200)
    new = entry(cache_dir / "features", "new.npy", 400, 100)
    weights = entry(cache_dir / "weights", "lite0.weights.h5", 10_000, 1000)  # never pruned
    cache.touch(old)  # just used: now the most recent
    removed = cache.prune(keep=new, limit=500)
    assert removed == [mid, old] and new.exists() and weights.exists()
    assert sum(size for _, size, _ in cache.entries()) == 400


def test_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_CACHE_MAX_GB", "2.5")
    assert cache.max_bytes() == 2_500_000_000
    for bad in ("lots", "0", "-1"):
        monkeypatch.setenv("EFFNET_LAB_CACHE_MAX_GB", bad)
        with pytest.raises(ValueError, match="EFFNET_LAB_CACHE_MAX_GB"):
            cache.max_bytes()


def test_dataset_caches_stay_under_the_cap(cache_dir, tmp_path, monkeypatch):
    for name in ("one", "two"):
        for cls in ("a", "b"):
            (tmp_path / name / cls).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.full((16, 16, 3), i * 20, np.uint8)).save(
                    tmp_path / name / cls / f"{i}.png"
                )
    load_dataset(str(tmp_path / "one"))
    [first] = (cache_dir / "datasets").glob("*.npz")
    monkeypatch.setenv("EFFNET_LAB_CACHE_MAX_GB", str(first.stat().st_size * 1.5 / 1e9))
    load_dataset(str(tmp_path / "two"))  # room for one entry only: the older one goes
    [left] = (cache_dir / "datasets").glob("*.npz")
    assert left != first and not first.exists()
    assert "cache hit" not in load_dataset(str(tmp_path / "one")).source  # decoded again
