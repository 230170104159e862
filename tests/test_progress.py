"""core.platform.progress: events folded into frozen snapshots, the same in the worker and in a watcher
reading the event file."""

import dataclasses
import json
import threading

import pytest

from core.platform.progress import EventLog, EventReader, JobStatus, Progress, Snapshot, Stopped


def run_a_job(progress: Progress, stop_after: int | None = None) -> None:
    progress.begin(device="CPU (test)")
    progress.start("Decoding images", 10, "img")
    for i in range(10):
        progress.advance(1)
        if stop_after is not None and i + 1 == stop_after:
            progress.request_stop()
    progress.start("Training", 4, "img")
    progress.log_batch(epoch=1, step=1, loss=2.0, accuracy=0.1)
    progress.log_epoch(epoch=1, loss=1.5, accuracy=0.4, val_loss=1.6, val_accuracy=0.3)
    progress.mark(1, "fine-tuning")
    progress.set_done(4)
    progress.message("Saving")
    progress.finish(result={"test_accuracy": 0.3})


def test_snapshot_is_frozen_and_typed():
    progress = Progress()
    snap = progress.snapshot()
    assert isinstance(snap, Snapshot) and snap.status is JobStatus.IDLE and snap.active
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.status = JobStatus.DONE


def test_phases_counts_rate_and_outcome():
    progress = Progress()
    run_a_job(progress)
    snap = progress.snapshot()
    assert snap.status is JobStatus.DONE and not snap.active
    assert (snap.phase, snap.done, snap.total, snap.unit) == ("Training", 4, 4, "img")
    assert snap.fraction == 1.0 and snap.eta_s == 0.0 and snap.rate > 0
    assert snap.epochs[0]["val_accuracy"] == 0.3 and snap.batches[0]["loss"] == 2.0
    assert snap.marks == ({"epoch": 1, "label": "fine-tuning"},)
    assert snap.result == {"test_accuracy": 0.3} and snap.device == "CPU (test)"
    assert snap.message == "Saving" and snap.error is None


@pytest.mark.parametrize(
    "how, status",
    [("stop", JobStatus.STOPPED), ("error", JobStatus.ERROR), ("cancel", JobStatus.CANCELLED)],
)
def test_how_a_job_ends(how, status):
    progress = Progress()
    progress.begin()
    if how == "stop":
        progress.request_stop()
        assert progress.snapshot().status is JobStatus.STOPPING
        with pytest.raises(Stopped):
            progress.check_stop()
    progress.finish(
        error="boom" if how == "error" else None, error_kind="input", cancelled=how == "cancel"
    )
    snap = progress.snapshot()
    assert snap.status is status and snap.status.finished
    assert (snap.error, snap.error_kind) == (("boom", "input") if how == "error" else (None, None))


def test_queue_position_until_the_job_begins():
    progress = Progress()
    progress.queued(3)
    assert (
        progress.snapshot().status is JobStatus.QUEUED and progress.snapshot().queue_position == 3
    )
    progress.queued(1)
    progress.begin()
    snap = progress.snapshot()
    assert snap.status is JobStatus.RUNNING and snap.queue_position is None


def test_a_watcher_reading_the_event_file_sees_what_the_worker_saw(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, min_interval=3600)  # throttle every advance but the last of a phase
    progress = Progress(sinks=(log,))
    reader = EventReader(path)
    assert reader.poll().status is JobStatus.IDLE  # nothing written yet
    run_a_job(progress, stop_after=5)
    log.close()
    mine, theirs = progress.snapshot(), reader.poll().snapshot()
    assert dataclasses.replace(theirs, elapsed_s=0) == dataclasses.replace(mine, elapsed_s=0)
    assert theirs.status is JobStatus.STOPPED
    lines = path.read_text().splitlines()
    assert sum(json.loads(line)["e"] == "advance" for line in lines) <= 4  # throttled


def test_reader_waits_for_a_partial_line_and_skips_damaged_ones(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"e": "begin", "t": 1}\nnot json\n{"e": "phase", "t": 2, "phase": "A", "tot')
    reader = EventReader(path)
    assert reader.poll().status is JobStatus.RUNNING and reader.state.phase == ""
    with open(path, "a") as f:
        f.write('al": 5, "unit": "img"}\n')
    assert (reader.poll().phase, reader.state.total) == ("A", 5)


def test_writers_from_two_threads_keep_every_record():
    progress = Progress()

    def log(n):
        for i in range(500):
            progress.log_batch(step=i, thread=n)

    threads = [threading.Thread(target=log, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(progress.snapshot().batches) == 1000
