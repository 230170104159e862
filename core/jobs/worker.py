"""The worker process's side of a job: run it, report through events, hand the slot on.

``python -m core job DIR`` calls :func:`run_worker`; :mod:`core.jobs.runner` describes the whole.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from core.jobs.queue import _dispatch, _locked, _read_json, _seats
from core.jobs.runner import KINDS
from core.platform import limits, liveness, procs
from core.platform.errors import error_kind, error_message
from core.platform.fileio import write_json
from core.platform.progress import EventLog, Progress


def _watch_parent(submitter: dict, progress: Progress) -> None:
    """Stop the job cleanly if the process that submitted it goes away."""
    while True:
        time.sleep(1.0)
        if not procs.alive(submitter):
            progress.message("The app or command that started this job ended: stopping")
            progress.request_stop()
            return


def _watch_requests(job_dir: Path, progress: Progress) -> None:
    """Stop the job when a ``stop`` request appears in its folder (written by :meth:`Job.stop`
    in any process on any host that shares the runs folder: the signal reaches only this one)."""
    while True:
        time.sleep(0.5)
        try:
            request = (job_dir / "stop").read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if request in ("stop", "kill"):  # a kill the actor or a signal carries out; stop meanwhile
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
        return
    _lower_autogroup(os.nice(0))


def _lower_autogroup(nice: int) -> None:
    """Give this worker's session the niceness ``nice`` too, where Linux schedules by session.

    With autogroup scheduling on (``/proc/sys/kernel/sched_autogroup_enabled``, the default of
    most desktop and many server kernels), the CPU is shared fairly between *sessions* first, and
    a process's own niceness only counts against the processes of its session. A local worker
    starts a session of its own (so that a Ctrl-C in the app's terminal does not reach it), so
    without this its niceness would change nothing against the web server: measured with 8
    visitors classifying while a run trained, p95 6.45 s from upload to label with the worker
    niced alone. Only a session leader changes its session's niceness (a Ray worker's child
    shares Ray's session and keeps its own niceness only).
    """
    try:
        if os.getsid(0) != os.getpid():
            return
        with open("/proc/self/autogroup", "w", encoding="ascii") as f:
            f.write(str(nice))
    except OSError:  # no autogroup on this kernel (or not Linux): per-process niceness is all
        pass


def run_worker(job_dir: str | os.PathLike, executor: str = "local", node: str | None = None) -> int:
    """The worker process's main: run the job, report through events, hand the slot on.

    Args:
        job_dir: The job folder.
        executor: "ray" when a Ray actor started this worker on a cluster node: it then keeps
            heartbeats in its job and run folders, so other hosts see it alive.
        node: The Ray node's address (recorded in the job's and run's worker identity).

    Returns the exit status (0 whatever the job's outcome; the outcome is in the events).
    """
    job_dir = Path(job_dir)
    base = job_dir.parent
    spec = json.loads((job_dir / "spec.json").read_text(encoding="utf-8"))
    slot = KINDS[spec["kind"]][2]
    if executor == "ray":
        liveness.start_heartbeat(job_dir, executor, node)
    try:
        _run(job_dir, spec)
    finally:  # even after a crash of the worker itself: the queue must not stall
        _hand_on(base, slot, job_dir.name)
    return 0


def _run(job_dir: Path, spec: dict) -> None:
    """Run the job of ``spec`` in this process, reporting through ``job_dir/events.jsonl``."""
    kind, args = spec["kind"], spec.get("args", {})
    module_name, function_name, slot = KINDS[kind]
    write_json(job_dir / "worker.json", liveness.identity())
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
    threading.Thread(target=_watch_requests, args=(job_dir, progress), daemon=True).start()
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
    """Free this job's seat of ``slot`` and start the slot's next queued job (this worker exits
    right after; with Ray it joins the cluster to start it)."""
    with _locked(base):
        for seat in _seats(base, slot):
            if (_read_json(seat) or {}).get("job") == job_id:
                seat.unlink(missing_ok=True)
        _dispatch(base, slot)
