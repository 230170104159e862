"""Where jobs run: the executor setting and the settings of the Ray executor, each defined once.

- ``EFFNET_LAB_EXECUTOR`` (``local``): ``local`` runs each dispatched job as a worker process on
  this machine (``python -m core job DIR``), one job per slot at a time; ``ray`` runs it as a
  detached Ray actor on the cluster that ``RAY_ADDRESS`` names (Ray's own convention; unset means
  ``ray.init(address="auto")``, the cluster this machine belongs to). The queue (records, turns,
  caps, cancel) is the same on-disk queue either way; only how and where a worker starts differs.
- ``EFFNET_LAB_RAY_SLOTS`` (unset): jobs one slot may run at once on Ray; unset means one per
  alive node that has CPUs or GPUs (a head with no CPUs does not count). The local executor
  always runs one job per slot.
- ``EFFNET_LAB_HEARTBEAT_S`` (2): how often a Ray job's worker refreshes the ``heartbeat`` file
  of its job and run folders, which is how a process on another host knows it still runs.
- ``EFFNET_LAB_HEARTBEAT_STALE_S`` (30): a heartbeat older than this means its worker is gone
  (a PID means nothing on another host; several missed beats, not one slow disk write).
- ``EFFNET_LAB_RAY_START_S`` (300): how long a job dispatched to Ray may take to start its
  worker (the actor waits for a node with free resources, then starts Python) before it counts
  as failed and its slot goes to the next job.
- ``EFFNET_LAB_RAY_CONNECT_S`` (5): how long connecting to the cluster's address may take before
  start-up fails with one line, instead of ``ray.init`` hanging.
"""

from __future__ import annotations

import os

from core.platform.errors import UserError
from core.platform.paths import positive_number

EXECUTORS = ("local", "ray")


class ExecutorError(UserError):
    """A wrong executor setting, or a Ray cluster that cannot be reached (one line, no path)."""


def executor() -> str:
    """``local`` or ``ray`` (``EFFNET_LAB_EXECUTOR``, default ``local``).

    Raises:
        ExecutorError: Any other value; the message names the variable.
    """
    value = os.environ.get("EFFNET_LAB_EXECUTOR", "local").strip().lower() or "local"
    if value not in EXECUTORS:
        raise ExecutorError(
            f"EFFNET_LAB_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {value!r}"
        )
    return value


def ray_slots() -> int | None:
    """Jobs per slot on Ray (``EFFNET_LAB_RAY_SLOTS``), or None: one per alive worker node."""
    value = positive_number("EFFNET_LAB_RAY_SLOTS", None, "jobs")
    return None if value is None else max(1, int(value))


def heartbeat_s() -> float:
    """Seconds between a Ray worker's heartbeats (``EFFNET_LAB_HEARTBEAT_S``)."""
    return positive_number("EFFNET_LAB_HEARTBEAT_S", 2.0, "seconds")


def heartbeat_stale_s() -> float:
    """Age in seconds past which a heartbeat means a dead worker (``EFFNET_LAB_HEARTBEAT_STALE_S``)."""
    return positive_number("EFFNET_LAB_HEARTBEAT_STALE_S", 30.0, "seconds")


def ray_start_s() -> float:
    """Seconds a dispatched Ray job may take to start its worker (``EFFNET_LAB_RAY_START_S``)."""
    return positive_number("EFFNET_LAB_RAY_START_S", 300.0, "seconds")


def ray_connect_s() -> float:
    """Seconds connecting to the Ray cluster may take (``EFFNET_LAB_RAY_CONNECT_S``)."""
    return positive_number("EFFNET_LAB_RAY_CONNECT_S", 5.0, "seconds")


def ray_address() -> str:
    """The cluster to join, by Ray's convention: ``RAY_ADDRESS``, else ``auto``."""
    return os.environ.get("RAY_ADDRESS", "").strip() or "auto"
