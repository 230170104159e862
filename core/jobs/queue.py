"""The queue of one job *slot*: first in, first out, across every process on the machine that uses
the same runs folder (:mod:`core.jobs.runner` starts and watches the jobs).

A ticket file per waiting job (``<jobs dir>/queue/<slot>/<time>--<job id>``) gives the order; an
exclusive ``flock`` on the slot's lock file, which the kernel releases even when a worker is
killed, guarantees one job at a time; ``<slot>.holder`` names the job holding it. Tickets of
workers that died are dropped, so a crash never blocks the queue.
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

from core.platform import procs
from core.platform.progress import Progress

_POLL_S = 0.25


def ticket_path(base: Path, slot: str, job_id: str) -> Path:
    """A new ticket's path for ``job_id`` in ``slot``'s queue (named by the time: the order)."""
    folder = base / "queue" / slot
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{time.time_ns():020d}--{job_id}"


def read_json(path: Path) -> dict | None:
    """A job's JSON file (spec, worker, holder), or None when missing or half-written."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def live_tickets(base: Path, slot: str) -> list[Path]:
    """Waiting tickets in queue order; tickets of jobs whose worker died are removed."""
    folder = base / "queue" / slot
    live = []
    for ticket in sorted(folder.glob("*--*")) if folder.is_dir() else []:
        job_dir = base / ticket.name.split("--", 1)[1]
        worker = read_json(job_dir / "worker.json")
        spec = read_json(job_dir / "spec.json") or {}
        if worker is None:
            # Not started yet: keep it while its submitter lives and for a minute at most.
            if time.time() - float(spec.get("submitted", 0)) < 60:
                live.append(ticket)
                continue
        elif procs.alive(worker):
            live.append(ticket)
            continue
        ticket.unlink(missing_ok=True)
    return live


def wait_for_slot(base: Path, slot: str, job_id: str, progress: Progress):
    """Wait (first in, first out) until this job holds ``slot``; returns the open lock file.

    Returns None if a stop request cancelled the wait.
    """
    lock = open(base / f"{slot}.lock", "a+")  # noqa: SIM115 (held until the process ends)
    last_position = None
    while True:
        tickets = live_tickets(base, slot)
        mine = next((i for i, t in enumerate(tickets) if t.name.endswith(f"--{job_id}")), None)
        if mine is None:  # our ticket vanished (pruned as stale): take a new one at the end
            ticket_path(base, slot, job_id).write_text("", encoding="utf-8")
            continue
        if mine == 0:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                tickets[0].unlink(missing_ok=True)
                return lock
        holder = read_json(base / f"{slot}.holder") or {}
        position = mine + (1 if procs.alive(holder.get("worker")) else 0)
        if position and position != last_position:
            progress.queued(position)
            last_position = position
        if progress.stop_requested:
            for t in tickets:
                if t.name.endswith(f"--{job_id}"):
                    t.unlink(missing_ok=True)
            lock.close()
            return None
        time.sleep(_POLL_S)
