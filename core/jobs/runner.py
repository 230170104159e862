"""Background jobs in worker processes: one runner for training, timing and the command line.

A job (train a run, time a forward pass) runs in its own process, ``python -m core job DIR``,
so an out-of-memory kill or a crash in training never takes down the web server or the command
that started it. Whoever starts a job (the Train page, the Scaling page, ``python -m core
train``) gets a :class:`Job` handle and watches it the same way:

- **progress** travels as events through ``DIR/events.jsonl`` (:mod:`core.platform.progress`),
  folded into a :class:`~core.platform.progress.Snapshot` by :meth:`Job.snapshot`;
- **queue**: jobs of one *slot* (all training shares the "trainer" slot) run one at a time
  across every process on the machine that uses the same runs folder. A waiting job is only a
  record, ``queue/<slot>/<time>--<id>.json``: it costs no process and no polling. Its worker
  starts when the slot frees, started by whoever notices first: the submitter (slot already
  free), the finishing worker (before it exits it starts its slot's next job), or any poll
  (:meth:`Job.snapshot`, :func:`slot_info`) when a worker died. An exclusive ``flock`` on
  ``queue.lock`` around every look at the queue makes sure exactly one worker starts per free
  slot; ``<slot>.holder`` names the running job and its worker (a dead worker frees the slot);
- **turns**: the next job of a slot is picked round-robin over owners (the owner whose last
  start is oldest first; within one owner, first in first out), so one workspace's five jobs
  never hold up another's one;
- **caps** (:mod:`core.platform.limits`): running plus queued jobs per owner and the total queue
  length; :func:`submit` over a cap raises :class:`QueueFull`;
- **stop** of a running job is a request file, ``DIR/stop``, that the worker polls, plus SIGTERM
  when the worker runs on this machine: the worker stops at the end of the current batch and
  keeps what it has (any process on any host sharing the runs folder may stop a job,
  :func:`stop_job`); stop of a queued job removes its record (cancelled, no process ever
  started); **kill** is SIGKILL (on a Ray node, the job's actor sends it on a ``kill`` request);
- a job running past ``EFFNET_LAB_MAX_WALL_S`` stops exactly like a Stop, saying why; training
  workers run at a lower CPU priority than the web server;
- with the local executor, if the process that submitted a job goes away, its worker stops
  cleanly on its own (and a job still queued is cancelled when its turn comes); with the Ray
  executor (``EFFNET_LAB_EXECUTOR=ray``, :mod:`core.jobs.ray_executor`) jobs outlive the app
  replica that submitted them, run as detached actors on the cluster, several per slot, and are
  seen alive from other hosts by their heartbeat (:mod:`core.platform.liveness`).

Job folders live under ``<runs folder>/.jobs/`` and are pruned after a day. The queue's files are
kept by :mod:`core.jobs.queue`, the worker's side is :mod:`core.jobs.worker`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.jobs import ray_executor
from core.jobs.queue import (
    QueueFull,  # noqa: F401  (re-exported: callers catch runner.QueueFull)
    _check_caps,
    _dispatch,
    _finish_unstarted,
    _live_holders,
    _locked,
    _poke,
    _prune,
    _queue_order,
    _read_json,
    _record_of,
    jobs_dir,
    worker_alive,
)
from core.platform import cluster, procs
from core.platform.fileio import write_json, write_text
from core.platform.progress import EventReader, JobStatus, ProgressState, Snapshot

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
    "zip_import": ("core.data.zipimport", "import_job", "data"),
}
_POLL_S = 0.25


@dataclass(frozen=True)
class SlotInfo:
    """Who uses a slot now, and how many wait for it.

    Attributes:
        running: The job id holding the slot (its first seat, with Ray), or None when it is free.
        owner: That job's owner (an opaque session token, or "cli").
        queued: Job ids waiting, in the order they will start.
        running_all: Every running job of the slot (with Ray a slot runs several at once).
    """

    running: str | None
    owner: str | None
    queued: tuple[str, ...]
    running_all: tuple[str, ...] = ()


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
        self._slot = KINDS[self.kind][2]
        self._process = process
        self._reader = EventReader(self.dir / "events.jsonl")
        self._lock = threading.Lock()

    @property
    def log_path(self) -> Path:
        """The worker's stdout and stderr."""
        return self.dir / "worker.log"

    def _worker(self) -> dict | None:
        return _read_json(self.dir / "worker.json")

    def _alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return worker_alive(self.dir, self._worker())

    def snapshot(self) -> Snapshot:
        """The job's progress now: QUEUED with its place while it waits as a record; a worker
        that died without finishing reads as an error. Also starts the slot's next job when the
        slot is free (the fallback when a worker died without handing on)."""
        with self._lock:
            state = self._reader.poll()
            if state.status.finished:
                return state.snapshot()
            if self._process is None and self._worker() is None:
                queued = self._queued_state()
                if queued is not None:
                    return queued.snapshot()
                state = self._reader.poll()  # started or cancelled meanwhile
                if state.status.finished:
                    return state.snapshot()
            if self._alive():
                return state.snapshot()
            state = self._reader.poll()  # it may have finished between the two reads
            if state.status.finished:
                return state.snapshot()
            return _died(state, self._exit_code(), self._worker()).snapshot()

    def _queued_state(self) -> ProgressState | None:
        """The job's place in its queue (starting the slot's next job if the slot is free), or
        None once it is no longer waiting."""
        base = self.dir.parent
        started = dict(_poke(base, self._slot))
        if self.id in started:
            self._process = started[self.id]  # ours: keep the handle for its exit status
            return None
        order = [r["job"] for r in _queue_order(base, self._slot)]
        if self.id not in order:
            # Whoever took the record out (a start or a cancel) holds the lock until the worker
            # or the final event is on disk: wait for that, so the caller reads one or the other.
            with _locked(base):
                return None
        state = ProgressState()
        state.apply({"e": "queued", "position": order.index(self.id) + 1})
        return state

    def _exit_code(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def stop(self) -> None:
        """Ask the job to stop at the end of its current batch; a queued job is cancelled."""
        if not self.cancel():
            self._request("stop")
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """End the worker at once (SIGKILL); the run keeps its last saved best model. A queued
        job is cancelled."""
        if not self.cancel():
            self._request("kill")
            self._signal(signal.SIGKILL)

    def _request(self, what: str) -> None:
        """Leave a ``stop`` or ``kill`` request in the job folder, for a worker on any host (the
        worker polls it for a stop; a Ray job's actor kills its worker on a kill)."""
        try:
            write_text(self.dir / "stop", what + "\n")
        except OSError:  # the job folder is gone: nothing left to stop
            pass

    def cancel(self) -> bool:
        """Take the job out of its queue (status cancelled, no process ever started).

        Returns:
            False if it was not waiting (it runs or has ended): then :meth:`stop` it.
        """
        base = self.dir.parent
        with _locked(base):
            record = _record_of(base, self._slot, self.id)
            if record is None:
                return False
            record.unlink(missing_ok=True)
            # Written under the lock: a reader sees the record or the end, never neither.
            _finish_unstarted(self.dir)
        return True

    def _signal(self, signum: int) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signum)
            return
        worker = self._worker()
        # Signals reach only a worker on this machine (same boot); one elsewhere reads the request.
        if (
            isinstance(worker, dict)
            and worker.get("boot") == procs.boot_id()
            and procs.alive(worker)
        ):
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


def _died(state: ProgressState, exit_code: int | None, worker: dict | None = None) -> ProgressState:
    """Mark a state whose worker ended without a final event as failed, saying how."""
    if isinstance(worker, dict) and worker.get("executor") == "ray":
        if worker.get("pending"):
            error = (
                "the Ray cluster did not start this job within "
                f"{cluster.ray_start_s():g} s (EFFNET_LAB_RAY_START_S): no node had room for it"
            )
        else:
            error = (
                "the Ray node or worker running this job died before the job finished; "
                "a training run keeps its best model saved so far"
            )
        state.apply(
            {"e": "finish", "status": JobStatus.ERROR.value, "error_kind": "crash", "error": error}
        )
        return state
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
    """Queue a job for its slot; its worker process starts at once if the slot is free.

    Args:
        kind: A key of :data:`KINDS`.
        args: JSON-ready arguments for the job function.
        owner: Who starts it (shown to nobody; it decides who may stop it, whose turn it is and
            which per-owner cap counts it).
        runs_root: The runs folder whose queue it joins (default :func:`core.platform.paths.runs_dir`).
        env: Extra environment variables for the worker (kept in the job's spec, so whichever
            process starts the worker passes them on).

    Raises:
        ValueError: Unknown kind.
        QueueFull: The owner already has :func:`core.platform.limits.max_jobs_per_owner` jobs
            running or queued, or :func:`core.platform.limits.max_queue` jobs wait already.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}: choose one of {', '.join(KINDS)}")
    executor = cluster.executor()
    if executor == "ray":
        ray_executor.connect()  # an unreachable cluster: one line now, not a job that never starts
    # Local workers stop when their submitter goes away; Ray jobs outlive the replica that
    # submitted them, so they name no submitter (nor are their queued records ever orphaned).
    submitter = procs.identity() if executor == "local" else None
    base = jobs_dir(runs_root)
    _prune(base)
    slot = KINDS[kind][2]
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:8]}"
    job_dir = base / job_id
    now = time.time()
    with _locked(base):
        _check_caps(base, owner)
        job_dir.mkdir()
        write_json(
            job_dir / "spec.json",
            {
                "kind": kind,
                "args": args,
                "owner": owner,
                "submitted": now,
                "parent": os.getpid(),
                "submitter": submitter,
                "nice": os.nice(0),  # a trainer worker runs this much lower than its submitter
                "env": dict(env or {}),
                "executor": executor,
                # The settings a worker on another node needs (the node's own environment wins).
                "ray_env": ray_executor.forwarded_env() if executor == "ray" else {},
            },
        )
        # The record is the queued job: its file name orders an owner's jobs (first in, first out).
        write_json(
            base / "queue" / slot / f"{time.time_ns():020d}--{job_id}.json",
            {"job": job_id, "owner": owner, "submitted": now, "submitter": submitter},
        )
        started = dict(_dispatch(base, slot))
    return Job(job_dir, started.get(job_id))


def open_job(job_id: str, runs_root: str | os.PathLike | None = None) -> Job:
    """A handle on an existing job by id (e.g. after the watcher restarted).

    Raises:
        ValueError: No such job.
    """
    job_dir = jobs_dir(runs_root) / job_id
    if "/" in job_id or job_id.startswith(".") or not (job_dir / "spec.json").is_file():
        raise ValueError(f"no job {job_id!r}")
    return Job(job_dir)


def stop_job(
    job_id: str, owner: str, runs_root: str | os.PathLike | None = None, *, kill: bool = False
) -> Job:
    """Stop (or kill) a job from any process, given its id and its owner: a queued job is
    cancelled, a running one stops at the end of its batch. Works after its submitter went away.

    Raises:
        ValueError: No such job of this owner (another owner's job reads as no job at all).
    """
    job = open_job(job_id, runs_root)
    if job.owner != owner:
        raise ValueError(f"no job {job_id!r}")
    if kill:
        job.kill()
    else:
        job.stop()
    return job


def slot_info(slot: str = "trainer", runs_root: str | os.PathLike | None = None) -> SlotInfo:
    """Who holds ``slot`` and who waits for it, in start order, from the files every process
    shares (starting the next job first if the slot is free: the fallback when a worker died)."""
    base = jobs_dir(runs_root)
    _poke(base, slot)
    holders = _live_holders(base, slot)
    running, owner = (holders[0].get("job"), holders[0].get("owner")) if holders else (None, None)
    return SlotInfo(
        running,
        owner,
        tuple(r["job"] for r in _queue_order(base, slot)),
        tuple(h["job"] for h in holders),
    )
