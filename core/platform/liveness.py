"""Is a job's or run's worker still running, wherever it runs? A process identity plus a heartbeat.

On the machine that started it, a worker is a PID with its start time and boot id
(:mod:`core.platform.procs`), exact and immediate. A worker on another host (the Ray executor)
has a PID that means nothing here, so such a worker also refreshes a ``heartbeat`` file in its
job folder and run folder every :func:`~core.platform.cluster.heartbeat_s` seconds (on the
shared store every replica reads). Its identity then says ``"heartbeat": true`` and is alive:

- on the same boot (same machine) as the reader: while its process runs (PID + start + boot);
- elsewhere: while the heartbeat is younger than :func:`~core.platform.cluster.heartbeat_stale_s`.

A job dispatched to Ray but not yet started has a *pending* identity (no PID): it is alive while
its dispatch (the heartbeat file's first write) is younger than
:func:`~core.platform.cluster.ray_start_s`, and is replaced by the worker's own identity when it
starts.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from core.platform import cluster, procs

HEARTBEAT = "heartbeat"  # the file a worker refreshes in its job and run folders

_lock = threading.Lock()
_folders: set[Path] = set()  # folders whose heartbeat this process keeps
_thread: threading.Thread | None = None
_where: dict = {}  # this process's executor and node, set by the worker once


def beat(folder: Path) -> None:
    """Write ``folder/heartbeat`` now (its content is the time, its mtime the same)."""
    try:
        (Path(folder) / HEARTBEAT).write_text(f"{time.time():.3f}\n", encoding="utf-8")
    except OSError:  # a folder removed under us, or a full disk: the next beat retries
        pass


def heartbeat_age(folder: Path) -> float | None:
    """Seconds since ``folder/heartbeat`` was last written, or None without one."""
    try:
        return max(0.0, time.time() - (Path(folder) / HEARTBEAT).stat().st_mtime)
    except OSError:
        return None


def _loop() -> None:
    while True:
        with _lock:
            folders = list(_folders)
        for folder in folders:
            beat(folder)
        time.sleep(cluster.heartbeat_s())


def start_heartbeat(folder: Path, executor: str, node: str | None) -> None:
    """Keep ``folder``'s heartbeat fresh from now until this process exits, and remember where
    this process runs (``executor``, ``node``) for the identities it writes."""
    global _thread
    _where.update(executor=executor, node=node)
    beat(folder)
    with _lock:
        _folders.add(Path(folder))
        if _thread is None:
            _thread = threading.Thread(target=_loop, name="heartbeat", daemon=True)
            _thread.start()


def beat_also(folder: Path) -> None:
    """Also keep ``folder``'s heartbeat fresh, if this process keeps one at all (a Ray worker
    adds its run folder once it has one)."""
    with _lock:
        if _thread is None:
            return
        _folders.add(Path(folder))
    beat(folder)


def identity() -> dict:
    """This process's identity (:func:`core.platform.procs.identity`), with where it runs:
    ``executor`` (``local`` or ``ray``), ``node`` (the Ray node's address, else this host's name)
    and ``heartbeat`` (true when it keeps heartbeat files)."""
    return {
        **procs.identity(),
        "executor": _where.get("executor", "local"),
        "node": _where.get("node") or socket.gethostname(),
        "heartbeat": _thread is not None,
    }


def pending(node: str | None = None) -> dict:
    """The identity of a job dispatched to Ray whose worker has not started yet."""
    return {"executor": "ray", "node": node, "heartbeat": True, "pending": True}


def alive(ident: dict | None, folder: str | os.PathLike | None = None) -> bool:
    """True if the worker ``ident`` names still runs (see the module's rules); ``folder`` holds
    its heartbeat (the job or run folder the identity was read from)."""
    if not isinstance(ident, dict):
        return False
    if not ident.get("heartbeat") or folder is None:
        return procs.alive(ident)
    if ident.get("pending"):
        age = heartbeat_age(Path(folder))
        return age is not None and age < cluster.ray_start_s()
    if ident.get("boot") and ident["boot"] == procs.boot_id():
        return procs.alive(ident)  # the same machine: the PID is exact and immediate
    age = heartbeat_age(Path(folder))
    return age is not None and age < cluster.heartbeat_stale_s()
