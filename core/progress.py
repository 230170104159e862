"""A thread-safe progress object shared by a worker thread and whoever watches it.

The worker (feature extraction, training) calls :meth:`Progress.start`, :meth:`Progress.advance`,
:meth:`Progress.log_batch` and :meth:`Progress.log_epoch`; a UI or CLI polls
:meth:`Progress.snapshot`, which returns a plain-dict copy taken under the lock. Stopping is
cooperative: :meth:`Progress.request_stop` sets an event that the worker checks between batches.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any


class Stopped(Exception):
    """Raised inside a worker when a stop was requested; callers keep what was done so far."""


class Progress:
    """Lock-guarded progress state plus a stop event.

    Attributes are read through :meth:`snapshot` only; writers use the methods below.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._state: dict[str, Any] = {
            "status": "idle",  # idle | running | stopping | stopped | done | error
            "phase": "",  # human description of the current step
            "done": 0,
            "total": 0,
            "unit": "",
            "rate": 0.0,  # units per second in the current phase
            "eta_s": None,
            "started_at": None,
            "phase_started_at": None,
            "message": "",
            "error": None,
            "batches": [],  # per-batch dicts (epoch, step, loss, accuracy, ...)
            "epochs": [],  # per-epoch dicts (epoch, loss, accuracy, val_loss, val_accuracy, ...)
            "result": None,
            "device": None,
        }

    # ----- writers -------------------------------------------------------------------------
    def begin(self, device: str | None = None) -> None:
        """Mark the whole job as running."""
        with self._lock:
            self._state["status"] = "running"
            self._state["started_at"] = time.time()
            self._state["device"] = device

    def start(self, phase: str, total: int, unit: str = "img") -> None:
        """Start a new phase of ``total`` units (resets the done counter, rate and ETA)."""
        with self._lock:
            if self._state["status"] in ("idle",):
                self._state["status"] = "running"
                self._state["started_at"] = time.time()
            self._state.update(
                phase=phase, done=0, total=int(total), unit=unit, rate=0.0, eta_s=None,
                phase_started_at=time.time(),
            )

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done in the current phase and update rate and ETA."""
        with self._lock:
            s = self._state
            s["done"] = min(s["done"] + int(n), s["total"]) if s["total"] else s["done"] + int(n)
            elapsed = time.time() - (s["phase_started_at"] or time.time())
            if elapsed > 0 and s["done"] > 0:
                s["rate"] = s["done"] / elapsed
                remaining = max(s["total"] - s["done"], 0)
                s["eta_s"] = remaining / s["rate"] if s["rate"] > 0 else None

    def set_done(self, done: int) -> None:
        """Set the absolute number of units done in the current phase."""
        with self._lock:
            delta = int(done) - self._state["done"]
        if delta:
            self.advance(delta)

    def log_batch(self, **metrics: Any) -> None:
        """Append one per-batch metrics record."""
        with self._lock:
            self._state["batches"].append(dict(metrics))

    def log_epoch(self, **metrics: Any) -> None:
        """Append one per-epoch metrics record."""
        with self._lock:
            self._state["epochs"].append(dict(metrics))

    def message(self, text: str) -> None:
        """Set a short human-readable status line."""
        with self._lock:
            self._state["message"] = text

    def finish(self, result: Any = None, error: str | None = None) -> None:
        """End the job: ``error`` set means it failed, a stop request means stopped, else done."""
        with self._lock:
            self._state["result"] = result
            if error is not None:
                self._state["status"] = "error"
                self._state["error"] = error
            elif self._stop.is_set():
                self._state["status"] = "stopped"
            else:
                self._state["status"] = "done"
            self._state["eta_s"] = 0.0

    # ----- stop ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the worker to stop at the end of its current batch."""
        self._stop.set()
        with self._lock:
            if self._state["status"] == "running":
                self._state["status"] = "stopping"

    @property
    def stop_requested(self) -> bool:
        """True once :meth:`request_stop` was called."""
        return self._stop.is_set()

    def check_stop(self) -> None:
        """Raise :class:`Stopped` if a stop was requested."""
        if self._stop.is_set():
            raise Stopped("stopped by request")

    # ----- readers -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the current state, safe to use without the lock."""
        with self._lock:
            snap = copy.deepcopy(self._state)
        if snap["started_at"]:
            snap["elapsed_s"] = time.time() - snap["started_at"]
        else:
            snap["elapsed_s"] = 0.0
        return snap

    @property
    def active(self) -> bool:
        """True while the job is running or stopping."""
        with self._lock:
            return self._state["status"] in ("running", "stopping")
