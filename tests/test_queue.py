"""core.jobs.runner's queue with real worker processes: a queued job is a record (no process),
owners take turns, caps refuse a flood with one clear line, a queued job cancels without ever
starting, any process can stop a job by id and owner, a finishing worker (or, when a worker
died, any poll) starts the next job, training workers run at a lower CPU priority, and a job
over its wall-time limit stops like a Stop and keeps its best model.

The fast tests hold the "data" slot with a real data check of the whole CIFAR-10 folder (no
TensorFlow) and queue data checks of a missing folder, which end at once when their turn comes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from app_session import open_page
from conftest import texts

from components.session import tag_of
from core.jobs import runner as jobs
from core.platform.progress import JobStatus
from core.training import runs

pytestmark = pytest.mark.slow  # real worker processes (and one tiny training)
REPO = Path(__file__).resolve().parents[1]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def train_args(data: Path, runs_root: Path, name: str) -> dict:
    config = dict(
        data=str(data),
        backbone="lite0",
        weights="lite0",
        mode="frozen",
        resolution=32,
        epochs=100,
        batch_size=32,
        schedule="constant",
        cache_features=False,
        name=name,
    )
    return {"config": config, "runs_root": str(runs_root)}


def workers(base: Path) -> list[int]:
    """PIDs of live worker processes (``python -m core job DIR``) of the jobs folder ``base``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")  # empty for a zombie
        except OSError:
            continue
        if argv[1:4] == [b"-m", b"core", b"job"] and argv[4].startswith(str(base).encode()):
            found.append(int(proc.name))
    return found


def finished_at(job: jobs.Job) -> float | None:
    """When the job's worker wrote its final event (read from the file: no poll, no poke)."""
    try:
        lines = (job.dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    ends = [json.loads(line)["t"] for line in lines if '"finish"' in line]
    return ends[-1] if ends else None


def stop_elsewhere(job_id: str, owner: str, root: Path) -> subprocess.CompletedProcess:
    """Stop a job from another process, which knows only the job's id, owner and runs folder."""
    code = (
        "import sys; from core.jobs import runner as jobs\n"
        "try:\n"
        "    jobs.stop_job(sys.argv[1], sys.argv[2], sys.argv[3])\n"
        "except ValueError as exc:\n"
        "    sys.exit(str(exc))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, job_id, owner, str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_queued_jobs_are_records_take_turns_and_a_flood_is_refused(
    cifar10_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("EFFNET_LAB_MAX_QUEUE", "7")  # the per-owner cap keeps its default, 3
    base = jobs.jobs_dir(tmp_path)
    holder = jobs.submit(
        "data_check",
        {"data": str(cifar10_dir), "use_cache": False},
        owner="owner-A",
        runs_root=tmp_path,
    )
    wait_until(lambda: holder.snapshot().status is JobStatus.RUNNING, 60, "the data check to run")

    def quick(owner: str) -> jobs.Job:
        return jobs.submit(
            "data_check", {"data": str(tmp_path / "missing")}, owner=owner, runs_root=tmp_path
        )

    x1, x2, x3 = quick("owner-X"), quick("owner-X"), quick("owner-X")
    y1 = quick("owner-Y")
    a2 = quick("owner-A")
    with pytest.raises(jobs.QueueFull, match=r"You already have 3 job\(s\) running or queued"):
        quick("owner-X")
    a3 = quick("owner-A")  # A's running job counts too: this is A's third
    with pytest.raises(jobs.QueueFull, match="cancel a queued one"):
        quick("owner-A")
    f1 = quick("fresh-1")
    for n in range(2, 12):  # a flood of fresh sessions, each within its own cap
        with pytest.raises(ValueError, match=r"queue is full \(7 jobs waiting") as refused:
            quick(f"fresh-{n}")
        others = ("owner-X", "owner-Y", "fresh-1", "owner-A", x1.id, holder.id, str(tmp_path))
        assert not any(name in str(refused.value) for name in others)
        assert "\n" not in str(refused.value)

    # Seven queued jobs, one process: the holder's.
    assert workers(base) == [holder._process.pid]
    queued = [x1, y1, f1, a2, x2, a3, x3]  # never-started owners first, then turn by turn
    assert jobs.slot_info("data", tmp_path).queued == tuple(j.id for j in queued)
    assert [j.snapshot().queue_position for j in queued] == list(range(1, 8))
    assert all(j.snapshot().status is JobStatus.QUEUED for j in queued)

    # Another process cancels Y's queued job by id and owner; a wrong owner reads as no job.
    wrong = stop_elsewhere(y1.id, "owner-X", tmp_path)
    assert wrong.returncode != 0 and "no job" in wrong.stderr
    assert stop_elsewhere(y1.id, "owner-Y", tmp_path).returncode == 0
    assert y1.snapshot().status is JobStatus.CANCELLED
    assert not (y1.dir / "worker.json").exists() and not y1.log_path.exists()
    queued.remove(y1)
    assert jobs.slot_info("data", tmp_path).queued == tuple(j.id for j in queued)

    # Stop the running job from another process; each finishing worker starts the next job.
    # Nothing here polls a job (no snapshot, no slot_info), so the workers hand on by themselves.
    assert stop_elsewhere(holder.id, "owner-A", tmp_path).returncode == 0
    # A finishing worker starts the next one as its last act, then exits at once: for that
    # instant two processes exist, but never two whose job is unfinished.
    by_pid = {holder._process.pid: holder, **{}}
    most = 0
    deadline = time.time() + 120
    while finished_at(x3) is None:
        for j in queued:
            worker = jobs._read_json(j.dir / "worker.json")
            if worker:
                by_pid[worker["pid"]] = j
        pids = workers(base)
        busy = [p for p in pids if p not in by_pid or finished_at(by_pid[p]) is None]
        most = max(most, len(busy))
        assert len(pids) <= 2
        assert time.time() < deadline, "the queue did not drain"
        time.sleep(0.02)
    assert most == 1
    assert holder.wait(10).status is JobStatus.STOPPED
    ends = [finished_at(j) for j in queued]
    assert ends == sorted(ends), "jobs started out of turn"
    assert all(j.snapshot().error_kind == "input" for j in queued)
    info = jobs.slot_info("data", tmp_path)
    assert info.running is None and info.queued == ()


def test_polls_start_exactly_one_job_when_a_worker_died(cifar10_dir, tmp_path):
    """SIGKILL leaves no hand-on: the next polls see the dead worker; four processes polling at
    once start one job between them, not one each."""
    base = jobs.jobs_dir(tmp_path)
    long = {"data": str(cifar10_dir), "use_cache": False}
    holder = jobs.submit("data_check", long, owner="owner-A", runs_root=tmp_path)
    wait_until(lambda: holder.snapshot().status is JobStatus.RUNNING, 60, "the data check to run")
    waiting = [jobs.submit("data_check", long, owner=o, runs_root=tmp_path) for o in "BC"]
    assert [j.snapshot().queue_position for j in waiting] == [1, 2]
    holder.kill()
    wait_until(lambda: not workers(base), 30, "the killed worker to go")
    code = "import sys; from core.jobs import runner as jobs; jobs.slot_info('data', sys.argv[1])"
    pollers = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO) for _ in range(4)
    ]
    try:
        assert all(p.wait(60) == 0 for p in pollers)
        assert len(workers(base)) == 1
        assert (waiting[0].dir / "worker.json").exists()  # B's turn: submitted first
        assert waiting[1].snapshot().queue_position == 1
        assert jobs.slot_info("data", tmp_path).running == waiting[0].id
        assert holder.wait(30).status is JobStatus.ERROR  # its worker died: a crash, said so
    finally:
        for job in waiting:
            job.kill()
    assert waiting[1].wait(30).status is JobStatus.CANCELLED


def test_training_runs_niced_and_stops_at_the_time_limit_keeping_the_best_model(
    cifar10_dir, tmp_path
):
    args = train_args(cifar10_dir, tmp_path, "limited")
    # Fine-tuning 2 000 images an epoch (the backbone runs every epoch, unlike the frozen head on
    # features extracted once): 100 epochs take many minutes even on a quiet machine, one epoch
    # seconds.
    args["config"].update(
        mode="finetune", finetune_blocks=1, augment=False, subset=2000, test_subset=500
    )
    job = jobs.submit(
        "train",
        args,
        owner="owner-A",
        runs_root=tmp_path,
        env={"EFFNET_LAB_MAX_WALL_S": "90"},
    )
    pid = job._process.pid
    wait_until(lambda: job.snapshot().status is JobStatus.RUNNING, 120, "training to start")
    stat = Path(f"/proc/{pid}/stat").read_text()
    nice = int(stat[stat.rfind(")") + 2 :].split()[16])  # field 19 overall
    assert nice >= os.nice(0) + 10, "a training worker runs below its submitter's priority"
    # Where the kernel shares the CPU between sessions first (autogroup), the worker's session
    # is niced too: otherwise its niceness would not count against the web server's session.
    autogroup = Path(f"/proc/{pid}/autogroup")
    enabled = Path("/proc/sys/kernel/sched_autogroup_enabled")
    if enabled.is_file() and enabled.read_text().strip() == "1":
        assert int(autogroup.read_text().split("nice")[1]) >= 10, autogroup.read_text()

    snap = job.wait(timeout=300)
    assert snap.status is JobStatus.STOPPED, (snap.error, job.log_tail())
    assert "time limit of 90 s per job was reached" in snap.stop_reason
    assert snap.result["stopped"] and len(snap.epochs) >= 1
    info = runs.load_run(tmp_path / "limited")
    assert info.status == "stopped" and info.has_model
    record = json.loads((tmp_path / "limited" / "results.json").read_text())
    assert "time limit" in record["stop_reason"]


def test_a_refused_start_shows_one_line_on_the_page(cifar10_dir, tmp_path, monkeypatch):
    """Over the per-owner cap, the Train page's dataset check says why in one line (no
    traceback) and starts nothing."""
    for name, folder in (("RUNS", "runs"), ("DATA", "data"), ("CACHE", "cache")):
        monkeypatch.setenv(f"EFFNET_LAB_{name}", str(tmp_path / folder))
    monkeypatch.setenv("EFFNET_LAB_MAX_JOBS_PER_OWNER", "1")
    alice = tag_of("alice")  # the owner tag of the workspace whose secret is "alice"
    running = jobs.submit("data_check", {"data": str(cifar10_dir), "use_cache": False}, owner=alice)
    try:
        at = open_page("train", timeout=120, token="alice").run()
        at.selectbox(key="train_data").set_value("cifar10").run()
        at.button(key="train_health_start").click().run()
        assert not at.exception
        assert len(at.error) == 1
        error = texts(at.error)  # as shown (Markdown escapes removed)
        assert error.startswith("You already have 1 job(s) running or queued")
        assert "\n" not in error and str(tmp_path) not in error
        assert len([p for p in jobs.jobs_dir().iterdir() if p.is_dir() and p.name != "queue"]) == 1
    finally:
        running.kill()


def test_the_command_line_is_one_capped_owner(cifar10_dir, mini_cifar, tmp_path):
    """Every shell user is the owner "cli": past its cap, ``python -m core train`` refuses in one
    line (exit status 2) before anything is queued."""
    running = jobs.submit(
        "data_check",
        {"data": str(cifar10_dir), "use_cache": False},
        owner="cli",
        runs_root=tmp_path,
    )
    try:
        out = subprocess.run(
            [sys.executable, "-m", "core", "train", "--data", str(mini_cifar), "--epochs", "1"]
            + ["--backbone", "lite0", "--weights", "lite0", "--out", str(tmp_path / "run")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "EFFNET_LAB_MAX_JOBS_PER_OWNER": "1"},
        )
        assert out.returncode == 2, out.stderr
        assert "You already have 1 job(s) running or queued" in out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
        assert jobs.slot_info("trainer", tmp_path).queued == ()
        assert not (tmp_path / "run").exists()
    finally:
        running.kill()
