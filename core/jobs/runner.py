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
- **stop** of a running job is SIGTERM: the worker stops at the end of the current batch and
  keeps what it has (any process may stop a job, :func:`stop_job`); stop of a queued job removes
  its record (cancelled, no process ever started); **kill** is SIGKILL;
- a job running past ``EFFNET_LAB_MAX_WALL_S`` stops exactly like a Stop, saying why; training
  workers run at a lower CPU priority than the web server;
- if the process that submitted a job goes away, its worker stops cleanly on its own (and a job
  still queued is cancelled when its turn comes).

Job folders live under ``<runs folder>/.jobs/`` and are pruned after a day.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.platform import limits, paths, procs
from core.platform.errors import UserError, error_kind, error_message
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
_KEEP_S = 24 * 3600  # finished job folders (and owners' last turns) older than this are pruned


class QueueFull(UserError):
    """A job refused because a queue cap is reached; the message says what to wait for or cancel
    (and names only the submitter's own jobs)."""


def jobs_dir(runs_root: str | os.PathLike | None = None) -> Path:
    """Where job folders, queue records and slot holders live (created on demand)."""
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
        queued: Job ids waiting, in the order they will start.
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
        return procs.alive(self._worker())

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
            return _died(state, self._exit_code()).snapshot()

    def _queued_state(self) -> ProgressState | None:
        """The job's place in its queue (starting the slot's next job if the slot is free), or
        None once it is no longer waiting."""
        base = self.dir.parent
        started = _poke(base, self._slot)
        if started is not None and started[0] == self.id:
            self._process = started[1]  # ours: keep the handle for its exit status
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
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """End the worker at once (SIGKILL); the run keeps its last saved best model. A queued
        job is cancelled."""
        if not self.cancel():
            self._signal(signal.SIGKILL)

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
                "submitter": procs.identity(),
                "nice": os.nice(0),  # a trainer worker runs this much lower than its submitter
                "env": dict(env or {}),
            },
        )
        # The record is the queued job: its file name orders an owner's jobs (first in, first out).
        write_json(
            base / "queue" / slot / f"{time.time_ns():020d}--{job_id}.json",
            {"job": job_id, "owner": owner, "submitted": now, "submitter": procs.identity()},
        )
        started = _dispatch(base, slot)
    mine = started is not None and started[0] == job_id
    return Job(job_dir, started[1] if mine else None)


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
    holder = _read_json(base / f"{slot}.holder")
    running = owner = None
    if holder and procs.alive(holder.get("worker")):
        running, owner = holder.get("job"), holder.get("owner")
    return SlotInfo(running, owner, tuple(r["job"] for r in _queue_order(base, slot)))


# ----- the queue ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(base: Path) -> Iterator[None]:
    """Hold the queue lock of ``base`` (every process that reads or changes the queue takes it;
    the kernel releases it even when the holder is killed)."""
    with open(base / "queue.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _records(base: Path, slot: str | None = None) -> list[dict]:
    """Queued records (of ``slot``, or of every slot), oldest first, each with its ``path``."""
    folders = [base / "queue" / slot] if slot else sorted((base / "queue").glob("*"))
    records = []
    for folder in folders:
        for path in sorted(folder.glob("[0-9]*--*.json")) if folder.is_dir() else []:
            record = _read_json(path)
            if record and isinstance(record.get("job"), str):
                records.append({**record, "path": path, "slot": folder.name})
    return records


def _record_of(base: Path, slot: str, job_id: str) -> Path | None:
    return next(iter((base / "queue" / slot).glob(f"[0-9]*--{job_id}.json")), None)


def _turns_path(base: Path, slot: str) -> Path:
    return base / f"{slot}.turns.json"


def _queue_order(base: Path, slot: str) -> list[dict]:
    """The slot's records in the order they will start: round-robin over owners, the owner whose
    last start is oldest first (never started: first of all), first in first out within one."""
    last = {o: float(t) for o, t in (_read_json(_turns_path(base, slot)) or {}).items()}
    by_owner: dict[str, list[dict]] = {}
    for record in _records(base, slot):
        by_owner.setdefault(str(record.get("owner", "")), []).append(record)
    order, clock = [], max([time.time(), *last.values()])
    while by_owner:
        owner = min(by_owner, key=lambda o: (last.get(o, 0.0), by_owner[o][0]["path"].name))
        order.append(by_owner[owner].pop(0))
        clock += 1.0  # the owner's simulated start: its next job waits for everyone else's
        last[owner] = clock
        if not by_owner[owner]:
            del by_owner[owner]
    return order


def _holder_alive(base: Path, slot: str) -> bool:
    holder = _read_json(base / f"{slot}.holder")
    return bool(holder) and procs.alive(holder.get("worker"))


def _orphan(record: dict) -> bool:
    """True if the process that submitted a queued job has gone (it would stop at once)."""
    return isinstance(record.get("submitter"), dict) and not procs.alive(record["submitter"])


def _finish_unstarted(job_dir: Path, message: str = "", error: str | None = None) -> None:
    """Write the final event of a job whose worker never started: cancelled, or ``error``."""
    if not job_dir.is_dir():
        return
    log = EventLog(job_dir / "events.jsonl")
    try:
        progress = Progress(sinks=(log,))
        if message:
            progress.message(message)
        progress.finish(cancelled=error is None, error=error)
    finally:
        log.close()


def _cancel_orphan(base: Path, record: dict) -> None:
    """Drop a queued job whose submitter went away (under the lock), saying so in its events."""
    record["path"].unlink(missing_ok=True)
    _finish_unstarted(
        base / record["job"], "The app or command that started this job ended before its turn"
    )


def _check_caps(base: Path, owner: str) -> None:
    """Refuse a new job of ``owner`` over a cap (under the lock); messages never name others."""
    records = []
    for record in _records(base):
        if _orphan(record):
            _cancel_orphan(base, record)  # a dead submitter's jobs do not hold places
        else:
            records.append(record)
    running = [h for h in map(_read_json, base.glob("*.holder")) if h and procs.alive(h["worker"])]
    mine = sum(r.get("owner") == owner for r in records) + sum(
        h.get("owner") == owner for h in running
    )
    cap = limits.max_jobs_per_owner()
    if mine >= cap:
        raise QueueFull(
            f"You already have {mine} job(s) running or queued, the most allowed at once "
            f"({cap}): wait for one to finish, or cancel a queued one."
        )
    most = limits.max_queue()
    if len(records) >= most:
        raise QueueFull(
            f"The server's queue is full ({len(records)} jobs waiting, at most {most}): "
            "try again when some have started."
        )


def _dispatch(base: Path, slot: str) -> tuple[str, subprocess.Popen] | None:
    """If ``slot`` is free, start its next queued job's worker (call with the lock held).

    Returns:
        ``(job id, worker process)`` of the job started, or None.
    """
    holder_path = base / f"{slot}.holder"
    if _holder_alive(base, slot):
        return None
    holder_path.unlink(missing_ok=True)  # a dead worker's: the slot is free
    for record in _queue_order(base, slot):
        if _orphan(record):
            _cancel_orphan(base, record)
            continue
        record["path"].unlink(missing_ok=True)
        job_dir = base / record["job"]
        spec = _read_json(job_dir / "spec.json")
        if spec is None:  # its folder was removed by hand
            continue
        turns = _read_json(_turns_path(base, slot)) or {}
        now = time.time()
        turns = {o: t for o, t in turns.items() if now - float(t) < _KEEP_S}
        write_json(_turns_path(base, slot), {**turns, str(record.get("owner", "")): now})
        try:
            with open(job_dir / "worker.log", "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "core", "job", str(job_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **spec.get("env", {}), "PYTHONUNBUFFERED": "1"},
                    cwd=str(paths.PROJECT_ROOT),
                    start_new_session=True,
                )
        except OSError as exc:  # e.g. out of processes: this job fails, the next may start
            _finish_unstarted(job_dir, error=f"could not start its worker process: {exc}")
            continue
        worker = procs.identity(process.pid)  # the same process after exec: same identity
        write_json(job_dir / "worker.json", worker)
        write_json(
            holder_path, {"job": record["job"], "owner": spec.get("owner", ""), "worker": worker}
        )
        return record["job"], process
    return None


def _poke(base: Path, slot: str) -> tuple[str, subprocess.Popen] | None:
    """Start ``slot``'s next job if the slot is free (a lock-free look first: polls are cheap)."""
    if _holder_alive(base, slot) or not any((base / "queue" / slot).glob("[0-9]*--*.json")):
        return None
    with _locked(base):
        return _dispatch(base, slot)


def _prune(base: Path) -> None:
    """Remove finished job folders older than a day (and any left half-made)."""
    cutoff = time.time() - _KEEP_S
    for job_dir in base.iterdir():
        if not job_dir.is_dir() or job_dir.name == "queue":
            continue
        try:
            if (
                job_dir.stat().st_mtime < cutoff
                and not procs.alive(_read_json(job_dir / "worker.json"))
                and not any((base / "queue").glob(f"*/*--{job_dir.name}.json"))
            ):
                shutil.rmtree(job_dir, ignore_errors=True)
        except OSError:
            continue


# ----- the worker side ----------------------------------------------------------------------------
def _watch_parent(submitter: dict, progress: Progress) -> None:
    """Stop the job cleanly if the process that submitted it goes away."""
    while True:
        time.sleep(1.0)
        if not procs.alive(submitter):
            progress.message("The app or command that started this job ended: stopping")
            progress.request_stop()
            return


def _time_limit(seconds: float, progress: Progress) -> None:
    """Stop the job like a Stop once it has run ``seconds`` (the shared server's wall-time cap)."""
    hours = f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"
    reason = f"the time limit of {hours} per job was reached (EFFNET_LAB_MAX_WALL_S)"
    progress.message(f"Stopping: {reason}")
    progress.request_stop(reason=reason)


def _lower_priority(spec: dict) -> None:
    """Run below the submitter's CPU priority (by :func:`core.platform.limits.trainer_nice`), so
    the web server stays interactive; a worker started by another worker does not sink further."""
    try:
        wanted = int(spec.get("nice") or 0) + limits.trainer_nice()
        current = os.nice(0)
        if wanted > current:
            os.nice(wanted - current)
    except (OSError, ValueError):  # a priority we may not change is no reason to fail the job
        pass


def run_worker(job_dir: str | os.PathLike) -> int:
    """The worker process's main: run the job, report through events, hand the slot on.

    Returns the exit status (0 whatever the job's outcome; the outcome is in the events).
    """
    job_dir = Path(job_dir)
    base = job_dir.parent
    spec = json.loads((job_dir / "spec.json").read_text(encoding="utf-8"))
    slot = KINDS[spec["kind"]][2]
    try:
        _run(job_dir, spec)
    finally:  # even after a crash of the worker itself: the queue must not stall
        _hand_on(base, slot, job_dir.name)
    return 0


def _run(job_dir: Path, spec: dict) -> None:
    """Run the job of ``spec`` in this process, reporting through ``job_dir/events.jsonl``."""
    kind, args = spec["kind"], spec.get("args", {})
    module_name, function_name, slot = KINDS[kind]
    write_json(job_dir / "worker.json", procs.identity())
    if slot == "trainer":
        _lower_priority(spec)
    log = EventLog(job_dir / "events.jsonl")
    progress = Progress(sinks=(log,))

    def on_signal(signum, frame):  # SIGTERM (docker stop, systemd, the app) or SIGINT
        progress.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):  # also when started with SIGINT ignored
        signal.signal(signum, on_signal)
    if isinstance(spec.get("submitter"), dict):
        threading.Thread(
            target=_watch_parent, args=(spec["submitter"], progress), daemon=True
        ).start()
    timer = None
    try:
        seconds = limits.max_wall_s()
        timer = threading.Timer(seconds, _time_limit, (seconds, progress))
        timer.daemon = True
        timer.start()
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
        if timer is not None:
            timer.cancel()
        log.close()


def _hand_on(base: Path, slot: str, job_id: str) -> None:
    """Free ``slot`` and start its next queued job (this worker exits right after)."""
    with _locked(base):
        holder = _read_json(base / f"{slot}.holder") or {}
        if holder.get("job") == job_id:
            (base / f"{slot}.holder").unlink(missing_ok=True)
        _dispatch(base, slot)
