"""core.platform.liveness: a worker on this machine is alive by its process identity; one on
another host (another boot id) by a fresh heartbeat; one dispatched to Ray but not started yet
until its start deadline. Real processes and files, the clock moved by setting file times."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from core.platform import liveness, procs

OTHER_BOOT = "00000000-0000-0000-0000-000000000000"


def _age(folder, seconds: float) -> None:
    """Make the folder's heartbeat ``seconds`` old."""
    then = time.time() - seconds
    os.utime(folder / liveness.HEARTBEAT, (then, then))


def test_a_worker_on_another_host_lives_while_its_heartbeat_is_fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_HEARTBEAT_STALE_S", "10")
    # A PID that is surely not running here: on another host it would mean nothing anyway.
    ident = {"pid": 2**22 + 7, "start": 1, "boot": OTHER_BOOT, "heartbeat": True}
    assert not liveness.alive(ident, tmp_path)  # no heartbeat yet
    liveness.beat(tmp_path)
    assert liveness.alive(ident, tmp_path)
    _age(tmp_path, 9)
    assert liveness.alive(ident, tmp_path)
    _age(tmp_path, 11)
    assert not liveness.alive(ident, tmp_path)
    # Without the heartbeat flag, another boot is a restarted machine: dead, as before.
    liveness.beat(tmp_path)
    assert not liveness.alive({**ident, "heartbeat": False}, tmp_path)


def test_on_this_machine_the_process_decides_not_the_heartbeat(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ident = {**procs.identity(child.pid), "heartbeat": True}
        liveness.beat(tmp_path)
        _age(tmp_path, 3600)  # a stale heartbeat does not kill a running local process
        assert liveness.alive(ident, tmp_path)
    finally:
        child.kill()
        child.wait()
    liveness.beat(tmp_path)  # nor does a fresh one revive a dead one
    assert not liveness.alive(ident, tmp_path)


def test_a_pending_ray_job_lives_until_its_start_deadline(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_RAY_START_S", "60")
    pending = liveness.pending()
    liveness.beat(tmp_path)  # what the dispatcher writes
    assert liveness.alive(pending, tmp_path)
    _age(tmp_path, 61)
    assert not liveness.alive(pending, tmp_path)


def test_identity_says_where_it_runs(tmp_path):
    ident = liveness.identity()
    assert ident["pid"] == os.getpid() and ident["executor"] in ("local", "ray")
    assert ident["node"] and liveness.alive(ident, tmp_path)
