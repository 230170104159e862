"""core.platform.cluster: the executor setting and the Ray executor's settings, each read from
its environment variable with its default, and refused in one line naming the variable."""

from __future__ import annotations

import pytest

from core.platform import cluster


def test_defaults_keep_todays_local_workers(monkeypatch):
    for name in (
        "EFFNET_LAB_EXECUTOR",
        "EFFNET_LAB_RAY_SLOTS",
        "EFFNET_LAB_HEARTBEAT_S",
        "EFFNET_LAB_HEARTBEAT_STALE_S",
        "EFFNET_LAB_RAY_START_S",
        "EFFNET_LAB_RAY_CONNECT_S",
        "RAY_ADDRESS",
    ):
        monkeypatch.delenv(name, raising=False)
    assert cluster.executor() == "local"
    assert cluster.ray_slots() is None  # one per alive worker node
    assert cluster.heartbeat_s() < cluster.heartbeat_stale_s()
    assert cluster.ray_connect_s() <= 10 and cluster.ray_start_s() >= 60
    assert cluster.ray_address() == "auto"


@pytest.mark.parametrize("value, expected", [("ray", "ray"), (" RAY ", "ray"), ("local", "local")])
def test_the_executor_is_local_or_ray(monkeypatch, value, expected):
    monkeypatch.setenv("EFFNET_LAB_EXECUTOR", value)
    assert cluster.executor() == expected


def test_a_wrong_executor_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_EXECUTOR", "kubernetes")
    with pytest.raises(
        cluster.ExecutorError, match="EFFNET_LAB_EXECUTOR must be one of local, ray"
    ):
        cluster.executor()


def test_numbers_are_read_and_checked(monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_RAY_SLOTS", "3")
    monkeypatch.setenv("EFFNET_LAB_HEARTBEAT_STALE_S", "7.5")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert cluster.ray_slots() == 3 and cluster.heartbeat_stale_s() == 7.5
    assert cluster.ray_address() == "10.0.0.5:6379"
    monkeypatch.setenv("EFFNET_LAB_RAY_SLOTS", "0")
    with pytest.raises(ValueError, match="EFFNET_LAB_RAY_SLOTS must be positive"):
        cluster.ray_slots()
    monkeypatch.setenv("EFFNET_LAB_HEARTBEAT_S", "soon")
    with pytest.raises(ValueError, match="EFFNET_LAB_HEARTBEAT_S must be a number of seconds"):
        cluster.heartbeat_s()
