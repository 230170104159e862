"""Where things live on disk (core.platform.paths): defaults, environment overrides and clear errors."""

import pytest

from core.platform import paths


def test_download_timeout(monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_DOWNLOAD_TIMEOUT", "2.5")
    assert paths.download_timeout() == 2.5
    for bad in ("10s", "0", "-1"):
        monkeypatch.setenv("EFFNET_LAB_DOWNLOAD_TIMEOUT", bad)
        with pytest.raises(ValueError, match="EFFNET_LAB_DOWNLOAD_TIMEOUT"):
            paths.download_timeout()


def test_dirs_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "r"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("EFFNET_LAB_CIFAR10_DIR", str(tmp_path / "cifar"))
    assert paths.cache_dir() == tmp_path / "c" and paths.cache_dir().is_dir()
    assert paths.runs_dir() == tmp_path / "r" and paths.runs_dir().is_dir()
    assert paths.data_dir() == tmp_path / "d" and paths.weights_dir() == tmp_path / "d" / "weights"
    assert paths.cifar10_dir() == tmp_path / "cifar"


def test_defaults_live_in_the_project_and_home(monkeypatch, tmp_path):
    for name in ("EFFNET_LAB_CACHE", "EFFNET_LAB_RUNS", "EFFNET_LAB_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path / "project")
    assert paths.cache_dir() == tmp_path / ".cache" / "effnet-lab"
    assert paths.runs_dir() == tmp_path / "project" / "runs"
    assert paths.data_dir() == tmp_path / "project" / "data"
