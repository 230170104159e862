"""The on-disk job queue: records, fair turns between owners, caps, starting the next worker.

A waiting job is only a record, ``queue/<slot>/<time>--<id>.json``: it costs no process and no
polling. An exclusive ``flock`` on ``queue.lock`` around every look at the queue makes sure exactly
one worker starts per free slot; ``<slot>.holder`` names the running job and its worker (a dead
worker frees the slot). The next job of a slot is picked round-robin over owners
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

from core.platform import limits, paths, procs
from core.platform.errors import UserError
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
