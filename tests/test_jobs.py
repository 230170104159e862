"""core.jobs.runner: jobs in real worker processes — progress, stop, the first-in-first-out queue,
cancel, SIGKILL mid-run, and a worker whose starter went away (all slow). These are the paths the
Train and Scaling pages and the command line all use. Quick: every job kind resolves to its
function, and bad job ids are refused."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.jobs import runner as jobs
from core.platform.progress import JobStatus, Progress
from core.training import runs

REPO = Path(__file__).resolve().parents[1]


def train_args(data: Path, runs_root: Path, name: str, epochs: int = 100, **extra) -> dict:
    config = dict(
        data=str(data),
        backbone="lite0",
        weights="lite0",
        mode="frozen",
        resolution=32,
        epochs=epochs,
        batch_size=32,
        schedule="constant",
        cache_features=False,
        name=name,
        **extra,
    )
    return {"config": config, "runs_root": str(runs_root)}


def wait_until(predicate, timeout: float = 240.0, what: str = "condition"):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_measure_job_reports_timings(tmp_path):
    job = jobs.submit(
        "measure",
        {"width": 1.0, "depth": 1.0, "resolution": 32, "flops": 123, "batch_sizes": [1, 2]},
        owner="me",
        runs_root=tmp_path,
    )
    snap = job.wait(timeout=240)
    assert snap.status is JobStatus.DONE, (snap.error, job.log_tail())
    assert [t["batch"] for t in snap.result] == [1, 2] and snap.result[0]["flops"] == 123
    assert snap.device.startswith(("CPU", "GPU")) and job.owner == "me"


@pytest.mark.slow
def test_bad_input_is_an_input_error(tmp_path):
    job = jobs.submit("measure", {"width": 1.0, "depth": 1.0, "resolution": 16}, runs_root=tmp_path)
    snap = job.wait(timeout=240)
    assert snap.status is JobStatus.ERROR and snap.error_kind == "input" and "32" in snap.error
    with pytest.raises(ValueError, match="unknown job kind"):
        jobs.submit("mine-bitcoin", {}, runs_root=tmp_path)


@pytest.mark.slow
def test_queue_is_first_in_first_out_cancel_and_stop(mini_cifar, tmp_path):
    first = jobs.submit(
        "train", train_args(mini_cifar, tmp_path, "first"), owner="a", runs_root=tmp_path
    )
    wait_until(lambda: first.snapshot().epochs, what="the first job's first epoch")
    second = jobs.submit(
        "train", train_args(mini_cifar, tmp_path, "second", epochs=1), owner="b", runs_root=tmp_path
    )
    third = jobs.submit(
        "train", train_args(mini_cifar, tmp_path, "third", epochs=1), owner="c", runs_root=tmp_path
    )
    wait_until(
        lambda: second.snapshot().queue_position == 1 and third.snapshot().queue_position == 2,
        what="both later jobs to queue",
    )
    info = jobs.slot_info("trainer", tmp_path)
    assert info.running == first.id and info.owner == "a"
    assert info.queued == (second.id, third.id)

    second.stop()  # leaves the queue: cancelled, and it never made a run folder
    assert second.wait(timeout=60).status is JobStatus.CANCELLED
    assert not (tmp_path / "second").exists()
    wait_until(lambda: third.snapshot().queue_position == 1, what="the third job to move up")

    first.stop()  # stops at the end of a batch and keeps its run
    snap = first.wait(timeout=120)
    assert snap.status is JobStatus.STOPPED and snap.result["stopped"]
    assert runs.load_run(tmp_path / "first").status == "stopped"
    snap = third.wait(timeout=300)  # starts on its own once the trainer is free
    assert snap.status is JobStatus.DONE, (snap.error, third.log_tail())
    assert runs.load_run(tmp_path / "third").status == "done"
    assert jobs.slot_info("trainer", tmp_path).running is None


@pytest.mark.slow
def test_sigkill_mid_run_leaves_a_loadable_model_and_an_interrupted_run(mini_cifar, tmp_path):
    job = jobs.submit("train", train_args(mini_cifar, tmp_path, "killed"), runs_root=tmp_path)
    wait_until(lambda: len(job.snapshot().epochs) >= 2, what="two epochs")
    job.kill()
    snap = job.wait(timeout=60)
    assert snap.status is JobStatus.ERROR and "killed by signal 9" in snap.error
    info = runs.load_run(tmp_path / "killed")
    assert info.status == "interrupted" and info.has_model and "best model" in info.error
    model, classes, _ = runs.load_run_model(info.path)
    assert len(classes) == 10 and model.output_shape == (None, 10)
    assert not [p for p in info.path.iterdir() if ".tmp" in p.name]
    assert jobs.slot_info("trainer", tmp_path).running is None  # the lock died with it


@pytest.mark.slow
def test_a_worker_stops_cleanly_when_its_starter_goes_away(mini_cifar, tmp_path):
    """The process that submitted the job exits at once; the worker notices and stops, keeping
    its run (as when the web server or the CLI that started it is killed)."""
    code = (
        "import json, sys; from core.jobs import runner as jobs\n"
        "job = jobs.submit('train', json.loads(sys.argv[1]), runs_root=sys.argv[2])\n"
        "print(job.id, flush=True)\n"
        "import time\n"
        "while not job.snapshot().epochs: time.sleep(0.2)\n"
        "import os; os._exit(0)\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            json.dumps(train_args(mini_cifar, tmp_path, "orphan")),
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    job = jobs.open_job(out.stdout.strip(), tmp_path)
    snap = job.wait(timeout=120)
    assert snap.status is JobStatus.STOPPED, (snap.error, job.log_tail())
    assert runs.load_run(tmp_path / "orphan").status == "stopped"


def test_open_job_refuses_unknown_ids(tmp_path):
    for bad in ("nope", "../etc", ".hidden"):
        with pytest.raises(ValueError, match="no job"):
            jobs.open_job(bad, tmp_path)


@pytest.mark.parametrize("kind", sorted(jobs.KINDS))
def test_every_job_kind_resolves_to_a_job_function(kind):
    """KINDS names its functions as strings (core.jobs may not import the layers above it), so
    a renamed module or function would only fail inside a worker: resolve each one here, as the
    worker does, and check it takes ``(args, progress)``."""
    module_name, function_name, slot = jobs.KINDS[kind]
    function = getattr(importlib.import_module(module_name), function_name)
    assert callable(function)
    inspect.signature(function).bind({}, Progress())
    assert slot.isidentifier()  # a slot names its lock file and queue folder
