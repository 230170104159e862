"""The on-disk job queue: records, fair turns between owners, caps, starting the next worker.

A waiting job is only a record, ``queue/<slot>/<time>--<id>.json``: it costs no process and no
polling. An exclusive ``flock`` on ``queue.lock`` around every look at the queue makes sure exactly
one worker starts per free seat of a slot; ``<slot>.holder`` names the running job and its worker
(a dead worker frees the seat). A slot has one seat with the local executor; with the Ray
executor (:mod:`core.jobs.ray_executor`) it has :func:`_width` seats, the others held by
``<slot>.<n>.holder``. The executor is chosen when a job is submitted and kept in its spec. The next job of a slot is picked round-robin over owners
(``<slot>.turns.json`` keeps each owner's last start). :mod:`core.jobs.runner` is the public face.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from core.platform import cluster, limits, liveness, paths, procs
from core.platform.errors import UserError, first_line
from core.platform.fileio import write_json
from core.platform.progress import EventLog, Progress

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


def _width() -> int:
    """Seats per slot: 1 with the local executor, the Ray executor's width with Ray."""
    if cluster.executor() != "ray":
        return 1
    from core.jobs import ray_executor  # Ray is imported only in Ray mode

    return ray_executor.width()


def _seats(base: Path, slot: str) -> list[Path]:
    """Every holder file of ``slot`` there is (seat 0 first)."""
    extra = sorted(base.glob(f"{slot}.[0-9]*.holder"), key=lambda p: int(p.name.split(".")[-2]))
    return [base / f"{slot}.holder", *extra]


def _seat(base: Path, slot: str, n: int) -> Path:
    return base / (f"{slot}.holder" if n == 0 else f"{slot}.{n}.holder")


def worker_alive(job_dir: Path, worker: dict | None) -> bool:
    """True if the worker ``worker`` of the job in ``job_dir`` still runs, on any host: a Ray
    job's pending identity gives way to the worker's own (``worker.json``) once it started."""
    if isinstance(worker, dict) and worker.get("pending"):
        worker = _read_json(job_dir / "worker.json") or worker
    return liveness.alive(worker, job_dir)


def _live_holder(base: Path, path: Path) -> dict | None:
    holder = _read_json(path)
    job = holder.get("job") if holder else None
    return (
        holder if isinstance(job, str) and worker_alive(base / job, holder.get("worker")) else None
    )


def _live_holders(base: Path, slot: str | None = None) -> list[dict]:
    """The running jobs' holders (of ``slot``, or of every slot), seat 0 first."""
    paths_ = _seats(base, slot) if slot else sorted(base.glob("*.holder"))
    return [h for h in (_live_holder(base, p) for p in paths_) if h]


def _holder_alive(base: Path, slot: str) -> bool:
    """True if every seat of ``slot`` is taken (nothing to start)."""
    return len(_live_holders(base, slot)) >= _width()


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
    running = _live_holders(base)
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


def _dispatch(base: Path, slot: str) -> list[tuple[str, subprocess.Popen | None]]:
    """Start ``slot``'s next queued jobs while it has free seats (call with the lock held).

    Returns:
        ``(job id, worker process)`` of each job started (the process is None for a job started
        on Ray, whose worker runs on a cluster node).
    """
    for path in _seats(base, slot):
        if _live_holder(base, path) is None:
            path.unlink(missing_ok=True)  # a dead worker's: the seat is free
    order = _queue_order(base, slot)
    if not order:  # nothing waits (a finishing Ray worker then need not join the cluster)
        return []
    try:
        width = _width()
    except UserError:  # a Ray cluster that cannot be reached now: the jobs wait in the queue
        return []
    free = [p for p in (_seat(base, slot, n) for n in range(width)) if not p.exists()]
    started: list[tuple[str, subprocess.Popen | None]] = []
    for record in order:
        if not free:
            break
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
        if spec.get("executor") == "ray":
            process, worker = None, _start_on_ray(job_dir, slot, spec)
        else:
            process, worker = _start_local(job_dir, spec)
        if worker is None:
            continue
        write_json(
            free.pop(0), {"job": record["job"], "owner": spec.get("owner", ""), "worker": worker}
        )
        started.append((record["job"], process))
    return started


def _start_local(job_dir: Path, spec: dict) -> tuple[subprocess.Popen | None, dict | None]:
    """Start the job's worker process here; returns it and its identity (None: it failed)."""
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
        return None, None
    worker = procs.identity(process.pid)  # the same process after exec: same identity
    write_json(job_dir / "worker.json", worker)
    return process, worker


def _start_on_ray(job_dir: Path, slot: str, spec: dict) -> dict | None:
    """Start the job's worker as a Ray actor; returns its pending identity (None: it failed)."""
    from core.jobs import ray_executor  # Ray is imported only in Ray mode

    worker = liveness.pending()
    # Before the launch, so that the worker's own identity, written when it starts, wins.
    write_json(job_dir / "worker.json", worker)
    liveness.beat(job_dir)  # the dispatch time: a worker not started by ray_start_s counts as dead
    try:
        deadline = time.time() + cluster.ray_start_s()
        ray_executor.launch(job_dir, slot, spec, paths.PROJECT_ROOT, deadline)
    except Exception as exc:  # whatever Ray raised: this job fails, the next may start
        first = first_line(exc)
        _finish_unstarted(job_dir, error=f"could not start it on the Ray cluster: {first}")
        return None
    return worker


def _poke(base: Path, slot: str) -> list[tuple[str, subprocess.Popen | None]]:
    """Start ``slot``'s next jobs if it has free seats (a lock-free look first: polls are cheap)."""
    if not any((base / "queue" / slot).glob("[0-9]*--*.json")):
        return []
    try:
        if _holder_alive(base, slot):
            return []
    except UserError:  # a Ray cluster that cannot be reached now: the jobs wait in the queue
        return []
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
                and not liveness.alive(_read_json(job_dir / "worker.json"), job_dir)
                and not any((base / "queue").glob(f"*/*--{job_dir.name}.json"))
            ):
                shutil.rmtree(job_dir, ignore_errors=True)
        except OSError:
            continue
