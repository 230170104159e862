"""The job executor as the app sees it: with ``EFFNET_LAB_EXECUTOR=ray``, one line when the Ray
cluster cannot be reached, checked once at server start (logged) and shown on every page, so an
operator's mistake reads as a sentence rather than jobs that never start. Pages that need no jobs
(classify an upload, the scaling calculator) keep working meanwhile."""

from __future__ import annotations

import threading
import time

from core.jobs import ray_executor
from core.platform import cluster
from core.platform.errors import UserError

RECHECK_S = 30.0  # a failed check is repeated at most this often (each may take seconds)
_lock = threading.Lock()
_last: dict = {"at": None, "problem": None}


def problem() -> str | None:
    """None when jobs can run (the local executor, or a reachable Ray cluster), else one line
    saying why not (never a server path: only the setting's value and the cluster's address)."""
    try:
        if cluster.executor() != "ray":
            return None
    except UserError as exc:
        return str(exc)
    with _lock:  # one check at a time: the others wait and share its answer
        at = _last["at"]
        if at is not None and (_last["problem"] is None or time.monotonic() - at < RECHECK_S):
            return _last["problem"]
        try:
            ray_executor.connect()
            found = None
        except UserError as exc:
            found = str(exc)
        _last.update(at=time.monotonic(), problem=found)
        return found
