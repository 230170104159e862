"""The job panel (components/job_panel.py) on real jobs: queued with Cancel, running with progress
and Stop, cancelled, stopped, failed in one line without server paths, and the result callback.

Dataset checks (kind "data_check", one at a time on the machine) are the jobs: a check of the
whole local CIFAR-10 copy (60 000 images) runs long enough to queue another behind it and to stop
it; a check of the mini copy finishes.
"""

from __future__ import annotations

import time

import pytest
from conftest import texts
from streamlit.testing.v1 import AppTest

from components import job_panel
from core.jobs import runner as jobs
from core.platform.progress import JobStatus, Snapshot


def _panel_script(data: str, token: str) -> None:  # AppTest runs a copy: imports inside
    import streamlit as st

    from components import job_panel, session

    st.session_state.setdefault("session_token", token)
    if st.button("Check", key="t_start"):
        session.start_job("data_check", {"data": data})
    job_panel.show(
        "data_check",
        "t",
        result=lambda job, snap: st.success(f"Report: {snap.result['images']} images"),
        failed="The check failed",
    )


def panel(data: str, token: str) -> AppTest:
    """A session of its own (``token``) showing its check of ``data`` in the job panel."""
    return AppTest.from_function(_panel_script, args=(data, token), default_timeout=60).run()


def wait_for(at: AppTest, status: JobStatus, timeout: float = 120) -> Snapshot:
    job = jobs.open_job(at.session_state["job_data_check"])
    deadline = time.monotonic() + timeout
    while (snap := job.snapshot()).status is not status and time.monotonic() < deadline:
        time.sleep(0.25)
    assert snap.status is status, snap
    at.run()
    assert not at.exception
    return snap


def test_step_text_says_the_count_rate_and_eta():
    snap = Snapshot(
        status=JobStatus.RUNNING, phase="Reading", done=50, total=200, unit="img", rate=25.4
    )
    assert job_panel.step_text(snap) == "Reading: 50/200 img · 25 img/s · ETA …"
    snap = Snapshot(status=JobStatus.RUNNING, phase="Reading", done=50, total=200, unit="img")
    assert job_panel.step_text(snap) == "Reading: 50/200 img"  # no rate yet, so no ETA
    assert job_panel.step_text(Snapshot(status=JobStatus.RUNNING, message="Building")) == (
        "Building…"
    )
    assert job_panel.step_text(Snapshot(status=JobStatus.STOPPING)).startswith("Stopping")
    assert [job_panel.fmt_seconds(s) for s in (None, 75, 3725)] == ["…", "1:15", "1:02:05"]


def test_error_line_is_one_line_without_server_paths():
    error = "DataError: folder not found: /srv/secret/cifar10\nTraceback (most recent call last):"
    line = job_panel.error_line(error)
    assert "\n" not in line and "Traceback" not in line
    assert "/srv" not in line and "secret" not in line and "cifar10" in line
    assert job_panel.error_line(None) == "unknown error"


@pytest.mark.slow
def test_a_failed_job_is_one_line_without_the_servers_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    at = panel("/srv/secret/missing-dataset", "alice")
    at.button(key="t_start").click().run()
    wait_for(at, JobStatus.ERROR)
    assert len(at.error) == 1
    error = texts(at.error)
    assert error.startswith("The check failed: Dataset folder not found: missing-dataset.")
    assert "/srv" not in error and "secret" not in error
    assert not at.get("progress")


@pytest.mark.slow
def test_running_queued_cancelled_and_stopped(tmp_path, monkeypatch, cifar10_dir):
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))  # no cached report
    alice = panel(str(cifar10_dir), "alice")
    alice.button(key="t_start").click().run()
    wait_for(alice, JobStatus.RUNNING)
    assert alice.button(key="t_stop").label == "Stop"
    assert len(alice.get("progress")) == 1

    bob = panel(str(cifar10_dir / "test"), "bob")  # the same slot: Bob waits behind Alice
    bob.button(key="t_start").click().run()
    wait_for(bob, JobStatus.QUEUED)
    assert "Queued: position 1" in texts(bob.info)
    assert not [b for b in bob.button if b.key == "t_stop"]
    bob.button(key="t_cancel").click().run()
    wait_for(bob, JobStatus.CANCELLED)
    assert "Cancelled before it started." in texts(bob.info)

    alice.button(key="t_stop").click().run()
    wait_for(alice, JobStatus.STOPPED)
    assert "Stopped before it finished." in texts(alice.info)
    assert not alice.get("progress") and not [b for b in alice.button if b.key == "t_stop"]


@pytest.mark.slow
def test_a_finished_job_is_drawn_by_the_result_callback(tmp_path, monkeypatch, mini_cifar):
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    at = panel(str(mini_cifar), "carol")
    at.button(key="t_start").click().run()
    wait_for(at, JobStatus.DONE, timeout=300)
    assert texts(at.success) == "Report: 300 images"
    assert not at.error and not at.info and not at.get("progress")
