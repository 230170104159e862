"""core.jobs with EFFNET_LAB_EXECUTOR=ray, on a real two-node Ray cluster on loopback
(tests/ray_cluster.py: a head at 127.0.0.2 with no CPUs, so jobs can only run on the worker node
127.0.0.3): a training runs there and says so, Stop through the request file, a node killed
mid-run (the run interrupted and loadable, the job failed saying why, the next queued job runs
once the node is back), and a job that outlives the process that submitted it. One cluster for
the whole module (starting one takes seconds); all slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.jobs import runner as jobs
from core.platform.progress import JobStatus
from core.training import runs
from tests.ray_cluster import LocalRayCluster
from tests.test_jobs import train_args, wait_until

REPO = Path(__file__).resolve().parents[1]
NODE = "127.0.0.3"
OTHER_BOOT = "00000000-0000-0000-0000-000000000000"  # no machine's boot id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A started cluster, with this process (and the processes it starts) in Ray mode on it."""
    import ray

    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "EFFNET_LAB_EXECUTOR")}
    with LocalRayCluster(workers=1) as c:
        os.environ.update(RAY_ADDRESS=c.address, EFFNET_LAB_EXECUTOR="ray")
        try:
            yield c
        finally:
            ray.shutdown()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_a_training_runs_on_the_cluster_node_and_says_so(cluster, mini_cifar, tmp_path):
    job = jobs.submit(
        "train", train_args(mini_cifar, tmp_path, "on-ray", epochs=1), owner="a", runs_root=tmp_path
    )
    snap = job.wait(timeout=300)
    assert snap.status is JobStatus.DONE, (snap.error, job.log_tail())
    info = runs.load_run(tmp_path / "on-ray")
    assert (info.status, info.executor, info.node) == ("done", "ray", NODE)
    out = subprocess.run(
        [sys.executable, "-m", "core", "runs", "--root", str(tmp_path), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    row = json.loads(out.stdout.splitlines()[0])
    assert (row["executor"], row["node"]) == ("ray", NODE), out.stderr
    assert jobs.slot_info("trainer", tmp_path).running is None


def test_a_finishing_worker_starts_the_next_queued_job(cluster, mini_cifar, tmp_path):
    """The slot has one seat: the second job waits as a record, and the first job's worker, as it
    exits, starts it on the cluster (its actor must outlive that worker, which exits at once)."""
    first, second = (
        jobs.submit(
            "train", train_args(mini_cifar, tmp_path, name, epochs=1), owner=o, runs_root=tmp_path
        )
        for name, o in (("first", "a"), ("second", "b"))
    )
    assert jobs.slot_info("trainer", tmp_path).queued == (second.id,)
    snap = first.wait(timeout=300)
    assert snap.status is JobStatus.DONE, (snap.error, first.log_tail())
    # Nobody here polls the queue before the hand-on (wait only reads the first job's events):
    # the second job runs because the first job's worker started it.
    snap = second.wait(timeout=300)
    assert snap.status is JobStatus.DONE, (snap.error, second.log_tail())
    assert runs.load_run(tmp_path / "second").node == NODE


def test_stop_from_another_replica_keeps_the_model(cluster, mini_cifar, tmp_path):
    job = jobs.submit(
        "train", train_args(mini_cifar, tmp_path, "stopped"), owner="a", runs_root=tmp_path
    )
    wait_until(lambda: job.snapshot().epochs, timeout=300, what="the first epoch")
    assert jobs.slot_info("trainer", tmp_path).running == job.id
    # What Job.stop writes; a replica on another host can send no signal, so only this file.
    (job.dir / "stop").write_text("stop\n")
    snap = job.wait(timeout=120)
    assert snap.status is JobStatus.STOPPED, (snap.error, job.log_tail())
    info = runs.load_run(tmp_path / "stopped")
    assert info.status == "stopped" and info.has_model and info.executor == "ray"


def test_a_wider_slot_runs_two_trainings_at_once(cluster, mini_cifar, tmp_path, monkeypatch):
    """EFFNET_LAB_RAY_SLOTS=2: the trainer slot has two seats (the node has 2 CPUs, a job asks
    for one), so two owners' trainings run side by side; a third waits its turn."""
    monkeypatch.setenv("EFFNET_LAB_RAY_SLOTS", "2")
    a, b = (
        jobs.submit("train", train_args(mini_cifar, tmp_path, o), owner=o, runs_root=tmp_path)
        for o in ("a", "b")
    )
    third = jobs.submit(
        "train", train_args(mini_cifar, tmp_path, "c", epochs=1), owner="c", runs_root=tmp_path
    )
    wait_until(lambda: a.snapshot().epochs and b.snapshot().epochs, timeout=300, what="both")
    info = jobs.slot_info("trainer", tmp_path)
    assert set(info.running_all) == {a.id, b.id} and info.queued == (third.id,)
    third.stop()  # cancelled in the queue
    for job in (a, b):
        jobs.stop_job(job.id, job.owner, tmp_path)
    assert [j.wait(timeout=120).status for j in (a, b, third)] == [
        JobStatus.STOPPED,
        JobStatus.STOPPED,
        JobStatus.CANCELLED,
    ]


def _as_if_on_another_host(path: Path, key: str | None = None) -> None:
    """Rewrite a worker identity's boot id to another machine's, as a replica on another host
    reads it: its PID then means nothing there, and only the heartbeat tells it is alive."""
    data = json.loads(path.read_text())
    ident = data[key] if key else data
    assert ident["heartbeat"] and ident["executor"] == "ray" and ident["node"] == NODE
    ident["boot"] = OTHER_BOOT
    path.write_text(json.dumps(data))


def test_a_dead_node_interrupts_the_run_and_the_queue_goes_on(
    cluster, mini_cifar, tmp_path, monkeypatch
):
    """Seen from another host (the worker's PID ignored): alive by its heartbeats while the
    node lives; failed, with its run interrupted and loadable, once they stop; the queued job
    starts when the node is back."""
    monkeypatch.setenv("EFFNET_LAB_HEARTBEAT_STALE_S", "4")
    first = jobs.submit(
        "train", train_args(mini_cifar, tmp_path, "node-died"), owner="a", runs_root=tmp_path
    )
    wait_until(lambda: len(first.snapshot().epochs) >= 2, timeout=300, what="two epochs")
    _as_if_on_another_host(first.dir / "worker.json")
    _as_if_on_another_host(tmp_path / "node-died" / "status.json", "worker")
    second = jobs.submit(
        "train", train_args(mini_cifar, tmp_path, "next", epochs=1), owner="b", runs_root=tmp_path
    )
    assert second.snapshot().queue_position == 1  # one node: one training at a time
    time.sleep(6)  # longer than the staleness: only fresh heartbeats keep it running
    assert first.snapshot().status is JobStatus.RUNNING
    assert runs.load_run(tmp_path / "node-died").status == "running"
    assert cluster.kill_worker() > 0
    killed = time.monotonic()
    snap = first.wait(timeout=60)
    assert snap.status is JobStatus.ERROR and "Ray node" in snap.error, snap.error
    # Seen by the heartbeat going stale (4 s, less up to one 2 s beat), not at once by a PID.
    assert 1.5 < time.monotonic() - killed < 30
    assert "\n" not in snap.error and "/" not in snap.error
    info = runs.load_run(tmp_path / "node-died")
    assert info.status == "interrupted" and info.has_model and "best model" in info.error
    model, classes, _ = runs.load_run_model(info.path)
    assert len(classes) == 10 and model.output_shape == (None, 10)
    cluster.add_worker(NODE)  # the next job was waiting for a node with room: it starts now
    snap = second.wait(timeout=300)
    assert snap.status is JobStatus.DONE, (snap.error, second.log_tail())
    assert runs.load_run(tmp_path / "next").node == NODE


def test_a_job_outlives_the_process_that_submitted_it(cluster, mini_cifar, tmp_path):
    code = (
        "import json, sys, time; from core.jobs import runner as jobs\n"
        "job = jobs.submit('train', json.loads(sys.argv[1]), runs_root=sys.argv[2])\n"
        "print(job.id, flush=True)\n"
        "while not job.snapshot().epochs: time.sleep(0.2)\n"
        "import os; os._exit(0)\n"
    )
    args = train_args(mini_cifar, tmp_path, "orphan")
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args), str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    job = jobs.open_job(out.stdout.strip(), tmp_path)  # as another replica sees it
    seen = len(job.snapshot().epochs)
    # A local worker would stop within a second of its submitter's end; this one trains on.
    wait_until(lambda: len(job.snapshot().epochs) >= seen + 3, timeout=120, what="more epochs")
    assert jobs.slot_info("trainer", tmp_path).running == job.id
    jobs.stop_job(job.id, "", tmp_path)
    snap = job.wait(timeout=120)
    assert snap.status is JobStatus.STOPPED, (snap.error, job.log_tail())
    assert runs.load_run(tmp_path / "orphan").status == "stopped"


def test_an_unreachable_cluster_is_one_line_at_once(tmp_path):
    """No cluster fixture: nothing listens at the address, and the command says so in one line
    within seconds instead of waiting on ray.init."""
    env = {**os.environ, "EFFNET_LAB_EXECUTOR": "ray", "RAY_ADDRESS": "127.0.0.9:1"}
    env["EFFNET_LAB_RUNS"] = str(tmp_path)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "core", "train", "--preset", "quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert time.monotonic() - started < 60
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Ray cluster at 127.0.0.9:1" in lines[0], lines
    assert not list(tmp_path.glob("*/config.json")) and not list(tmp_path.glob(".jobs/*"))
