"""Configuration from the environment: defaults, overrides and clear errors."""

import pytest

from core import config


def test_download_timeout(monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_DOWNLOAD_TIMEOUT", "2.5")
    assert config.download_timeout() == 2.5
    for bad in ("10s", "0", "-1"):
        monkeypatch.setenv("EFFNET_LAB_DOWNLOAD_TIMEOUT", bad)
        with pytest.raises(ValueError, match="EFFNET_LAB_DOWNLOAD_TIMEOUT"):
            config.download_timeout()


def test_dirs_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "r"))
    monkeypatch.setenv("EFFNET_LAB_CIFAR10_DIR", str(tmp_path / "cifar"))
    assert config.cache_dir() == tmp_path / "c" and config.cache_dir().is_dir()
    assert config.runs_dir() == tmp_path / "r" and config.runs_dir().is_dir()
    assert config.cifar10_dir() == tmp_path / "cifar"
