"""Background jobs in worker processes: one runner for training, timing and the command line.

A job (train a run, time a forward pass) runs in its own process, ``python -m core job DIR``,
so an out-of-memory kill or a crash in training never takes down the web server or the command
that started it. Whoever starts a job (the Train page, the Scaling page, ``python -m core
train``) gets a :class:`Job` handle and watches it the same way:

- **progress** travels as events through ``DIR/events.jsonl`` (:mod:`core.platform.progress`), folded into
  a :class:`~core.platform.progress.Snapshot` by :meth:`Job.snapshot`;
- **stop** is SIGTERM: the worker stops at the end of the current batch and keeps what it has;
  a job still waiting in the queue leaves it (cancelled); **kill** is SIGKILL;
- **queue**: jobs of one *slot* (all training shares the "trainer" slot) run one at a time, first
  in, first out, across every process on the machine that uses the same runs folder
  (:mod:`core.jobs.queue`);
- if the process that started a worker goes away, the worker stops cleanly on its own.

Job folders live under ``<runs folder>/.jobs/`` and are pruned after a day.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.jobs.queue import live_tickets, read_json, ticket_path, wait_for_slot
from core.platform import paths, procs
from core.platform.errors import error_kind, error_message
from core.platform.fileio import write_json
from core.platform.progress import (
    EventLog,
    EventReader,
    JobStatus,
    Progress,
    ProgressState,
    Snapshot,
)

# kind → (module, function, slot). A job function takes (args: dict, progress) and returns a
# JSON-ready result; bad input raises core.platform.errors.UserError (a ValueError).
KINDS = {
    "train": ("core.training.run", "train_job", "trainer"),
    "measure": ("core.experiments.measure", "measure_job", "measure"),
    "bench_seed": ("core.experiments.bench", "bench_seed_job", "trainer"),
    "bench_best": ("core.experiments.bench", "bench_best_job", "trainer"),
    "data_check": ("core.data.health", "check_job", "data"),
    "export": ("core.export.exporter", "export_job", "export"),
    "sweep": ("core.experiments.sweep", "sweep_job", "measure"),
    "search": ("core.experiments.search", "search_job", "trainer"),
    "lr_find": ("core.training.lrfind", "lr_find_job", "trainer"),
}
_POLL_S = 0.25
_KEEP_S = 24 * 3600  # finished job folders older than this are pruned


def jobs_dir(runs_root: str | os.PathLike | None = None) -> Path:
    """Where job folders, queue tickets and slot locks live (created on demand)."""
    root = Path(runs_root) if runs_root is not None else paths.runs_dir()
    path = root / ".jobs"
    (path / "queue").mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class SlotInfo:
    """Who uses a slot now, and how many wait for it.

    Attributes:
        running: The job id holding the slot, or None when it is free.
        owner: That job's owner (an opaque session token, or "cli").
        queued: Job ids waiting, first in line first.
    """

    running: str | None
    owner: str | None
    queued: tuple[str, ...]


class Job:
    """A handle on one job: its folder, its worker process and its progress events.

    Attributes:
        id: The job's id (its folder name).
        dir: The job folder (``spec.json``, ``events.jsonl``, ``worker.log``, ``worker.json``).
        kind: A key of :data:`KINDS`.
        owner: Who started it (an opaque token; the app keeps one per browser session).
    """

    def __init__(self, job_dir: Path, process: subprocess.Popen | None = None):
        self.dir = Path(job_dir)
        spec = json.loads((self.dir / "spec.json").read_text(encoding="utf-8"))
        self.id, self.kind, self.owner = self.dir.name, spec["kind"], spec.get("owner", "")
        self.args = spec.get("args", {})
        self._process = process
        self._reader = EventReader(self.dir / "events.jsonl")
        self._lock = threading.Lock()

    @property
    def log_path(self) -> Path:
        """The worker's stdout and stderr."""
        return self.dir / "worker.log"

    def _worker(self) -> dict | None:
        try:
            return json.loads((self.dir / "worker.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        worker = self._worker()
        if worker is None:  # not started yet: give a just-submitted worker a minute to start
            spec = read_json(self.dir / "spec.json") or {}
            return time.time() - float(spec.get("submitted", 0)) < 60
        return procs.alive(worker)

    def snapshot(self) -> Snapshot:
        """The job's progress now; a worker that died without finishing reads as an error."""
        with self._lock:
            state = self._reader.poll()
            if state.status.finished:
                return state.snapshot()
            if self._alive():
                return state.snapshot()
            state = self._reader.poll()  # it may have finished between the two reads
            if state.status.finished:
                return state.snapshot()
            return _died(state, self._exit_code()).snapshot()

    def _exit_code(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def stop(self) -> None:
        """Ask the job to stop at the end of its current batch (or to leave the queue)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """End the worker at once (SIGKILL); the run keeps its last saved best model."""
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signum)
            return
        worker = self._worker()
        if procs.alive(worker):
            try:
                os.kill(worker["pid"], signum)
            except OSError:
                pass

    def wait(self, timeout: float | None = None) -> Snapshot:
        """Wait until the job has ended (or ``timeout`` seconds); returns the last snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if snap.status.finished or (deadline is not None and time.monotonic() >= deadline):
                return snap
            time.sleep(_POLL_S)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the worker's log (for a crash report)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _died(state: ProgressState, exit_code: int | None) -> ProgressState:
    """Mark a state whose worker ended without a final event as failed, saying how."""
    if exit_code is not None and exit_code < 0:
        how = f"was killed by signal {-exit_code} ({signal.Signals(-exit_code).name})"
        if -exit_code == signal.SIGKILL:
            how += ", for example because the machine ran out of memory"
    elif exit_code is not None:
        how = f"exited with status {exit_code}"
    else:
        how = "is no longer running"
    state.apply(
        {
            "e": "finish",
            "status": JobStatus.ERROR.value,
            "error_kind": "crash",
            "error": f"the worker process {how} before the job finished; "
            "a training run keeps its best model saved so far",
        }
    )
    return state


def submit(
    kind: str,
    args: dict,
    *,
    owner: str = "",
    runs_root: str | os.PathLike | None = None,
    env: dict | None = None,
) -> Job:
    """Start a job in a new worker process; it queues for its slot by itself.

    Args:
        kind: A key of :data:`KINDS`.
        args: JSON-ready arguments for the job function.
        owner: Who starts it (shown to nobody; used to decide who may stop it).
        runs_root: The runs folder whose queue it joins (default :func:`core.platform.paths.runs_dir`).
        env: Extra environment variables for the worker.

    Raises:
        ValueError: Unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}: choose one of {', '.join(KINDS)}")
    base = jobs_dir(runs_root)
    _prune(base)
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:8]}"
    job_dir = base / job_id
    job_dir.mkdir()
    write_json(
        job_dir / "spec.json",
        {
            "kind": kind,
            "args": args,
            "owner": owner,
            "submitted": time.time(),
            "parent": os.getpid(),
        },
    )
    # The ticket is taken here, before the worker starts, so queue order is submission order.
    ticket_path(base, KINDS[kind][2], job_id).write_text("", encoding="utf-8")
    with open(job_dir / "worker.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "core", "job", str(job_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            cwd=str(paths.PROJECT_ROOT),
            start_new_session=True,
        )
    return Job(job_dir, process)


def open_job(job_id: str, runs_root: str | os.PathLike | None = None) -> Job:
    """A handle on an existing job by id (e.g. after the watcher restarted).

    Raises:
        ValueError: No such job.
    """
    job_dir = jobs_dir(runs_root) / job_id
    if "/" in job_id or job_id.startswith(".") or not (job_dir / "spec.json").is_file():
        raise ValueError(f"no job {job_id!r}")
    return Job(job_dir)


def slot_info(slot: str = "trainer", runs_root: str | os.PathLike | None = None) -> SlotInfo:
    """Who holds ``slot`` and who waits for it, from the files every process shares."""
    base = jobs_dir(runs_root)
    holder = read_json(base / f"{slot}.holder")
    running = owner = None
    if holder and procs.alive(holder.get("worker")):
        running, owner = holder.get("job"), holder.get("owner")
    return SlotInfo(
        running, owner, tuple(t.name.split("--", 1)[1] for t in live_tickets(base, slot))
    )


# ----- the worker side ----------------------------------------------------------------------------
def _prune(base: Path) -> None:
    """Remove finished job folders older than a day (and any left half-made)."""
    cutoff = time.time() - _KEEP_S
    for job_dir in base.iterdir():
        if not job_dir.is_dir() or job_dir.name == "queue":
            continue
        try:
            if job_dir.stat().st_mtime < cutoff and not procs.alive(
                read_json(job_dir / "worker.json")
            ):
                shutil.rmtree(job_dir, ignore_errors=True)
        except OSError:
            continue


def _watch_parent(parent: int, progress: Progress) -> None:
    """Stop the job cleanly if the process that started it goes away."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            progress.message("The app or command that started this job ended: stopping")
            progress.request_stop()
            return


def run_worker(job_dir: str | os.PathLike) -> int:
    """The worker process's main: wait for the slot, run the job, report through events.

    Returns the exit status (0 whatever the job's outcome; the outcome is in the events).
    """
    job_dir = Path(job_dir)
    spec = json.loads((job_dir / "spec.json").read_text(encoding="utf-8"))
    kind, args = spec["kind"], spec.get("args", {})
    module_name, function_name, slot = KINDS[kind]
    base = job_dir.parent
    write_json(job_dir / "worker.json", procs.identity())
    log = EventLog(job_dir / "events.jsonl")
    progress = Progress(sinks=(log,))

    def on_signal(signum, frame):  # SIGTERM (docker stop, systemd, the app) or SIGINT
        progress.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):  # also when started with SIGINT ignored
        signal.signal(signum, on_signal)
    parent = spec.get("parent")
    if isinstance(parent, int) and os.getppid() == parent:
        threading.Thread(target=_watch_parent, args=(parent, progress), daemon=True).start()
    try:
        lock = wait_for_slot(base, slot, job_dir.name, progress)
        if lock is None:
            progress.finish(cancelled=True)
            return 0
        holder = base / f"{slot}.holder"
        write_json(
            holder,
            {"job": job_dir.name, "owner": spec.get("owner", ""), "worker": procs.identity()},
        )
        try:
            function = getattr(importlib.import_module(module_name), function_name)
            result = function(args, progress)
        except Exception as exc:
            if progress.snapshot().active:
                progress.finish(error=error_message(exc), error_kind=error_kind(exc))
            if error_kind(exc) == "crash":
                logging.getLogger(__name__).exception("job %s failed", job_dir.name)
        else:
            if progress.snapshot().active:
                progress.finish(result=result)
        finally:
            holder.unlink(missing_ok=True)  # the lock itself goes when this process ends
    finally:
        log.close()
    return 0
