"""Progress of a long job as events: written by the worker, folded into snapshots by watchers.

The worker (data decoding, feature extraction, training, timing) reports through a
:class:`Progress`: phases with a count of units, per-batch and per-epoch metrics, messages and the
final outcome. Each report is an *event* (a small JSON-ready dict) applied to a
:class:`ProgressState`; a :class:`Progress` may also hand every event to sinks, such as an
append-only file that another process reads back with :class:`EventReader`. Both sides fold the
same events the same way, so a watcher in another process sees exactly what the worker saw, as a
frozen :class:`Snapshot`.

Stopping is cooperative: :meth:`Progress.request_stop` sets an event that the worker checks
between batches (:meth:`Progress.check_stop` raises :class:`Stopped`).
"""

from __future__ import annotations

import enum
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Stopped(Exception):
    """Raised inside a worker when a stop was requested; callers keep what was done so far."""


class JobStatus(str, enum.Enum):
    """Where a job is in its life."""

    IDLE = "idle"  # created, nothing reported yet
    QUEUED = "queued"  # waiting for its turn
    RUNNING = "running"
    STOPPING = "stopping"  # a stop was requested; ends at the end of the current batch
    DONE = "done"
    STOPPED = "stopped"  # ended early by a stop request, keeping what it had
    CANCELLED = "cancelled"  # left the queue before it started
    ERROR = "error"

    @property
    def active(self) -> bool:
        """Queued, running or stopping: the job has not ended."""
        return self in (JobStatus.IDLE, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STOPPING)

    @property
    def finished(self) -> bool:
        """The job ended (done, stopped, cancelled or failed)."""
        return not self.active


@dataclass(frozen=True)
class Snapshot:
    """What a job looks like at one moment (an immutable copy, safe to keep and render).

    Attributes:
        status: The job's :class:`JobStatus`.
        phase: What it does now ("Decoding images", "Training", ...).
        done, total, unit: Units done in the current phase, out of ``total`` ("img", "pass").
        rate: Units per second in the current phase.
        eta_s: Seconds left in the current phase (None while unknown).
        elapsed_s: Seconds since the job began running.
        message: The latest one-line status message.
        error: Why the job failed (status ERROR), else None.
        error_kind: "input" (bad data, options or weights) or "crash", for ERROR.
        device: What it runs on (:func:`core.platform.runtime.describe_device`).
        result: The job's JSON-ready result, once it ended.
        epochs: Per-epoch metric dicts (epoch, loss, accuracy, val_loss, val_accuracy, ...).
        batches: Per-batch metric dicts (epoch, step, loss, accuracy).
        queue_position: 1-based place in the queue while QUEUED, else None.
        marks: Named points on the epoch axis, e.g. ``{"epoch": 3, "label": "fine-tuning"}``.
        stop_reason: Why a stop was requested when it was not a person's Stop (e.g. the time
            limit was reached), else None.
    """

    status: JobStatus = JobStatus.IDLE
    phase: str = ""
    done: int = 0
    total: int = 0
    unit: str = ""
    rate: float = 0.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    message: str = ""
    error: str | None = None
    error_kind: str | None = None
    device: str | None = None
    result: Any = None
    epochs: tuple[dict, ...] = ()
    batches: tuple[dict, ...] = ()
    queue_position: int | None = None
    marks: tuple[dict, ...] = ()
    stop_reason: str | None = None

    @property
    def active(self) -> bool:
        """True until the job has ended."""
        return self.status.active

    @property
    def fraction(self) -> float:
        """Share of the current phase done, 0..1."""
        return min(self.done / self.total, 1.0) if self.total else 0.0


@dataclass
class ProgressState:
    """The mutable fold of a job's events (see :meth:`apply`); not thread-safe on its own."""

    status: JobStatus = JobStatus.IDLE
    phase: str = ""
    done: int = 0
    total: int = 0
    unit: str = ""
    rate: float = 0.0
    eta_s: float | None = None
    started_at: float | None = None
    phase_started_at: float | None = None
    last_t: float | None = None
    ended_at: float | None = None
    message: str = ""
    error: str | None = None
    error_kind: str | None = None
    device: str | None = None
    result: Any = None
    epochs: list = field(default_factory=list)
    batches: list = field(default_factory=list)
    queue_position: int | None = None
    marks: list = field(default_factory=list)
    stop_reason: str | None = None

    def apply(self, event: dict) -> None:
        """Fold one event into the state. Unknown event types are ignored (newer writers)."""
        kind, t = event.get("e"), float(event.get("t") or time.time())
        self.last_t = t
        if kind == "begin":
            self.status, self.started_at, self.queue_position = JobStatus.RUNNING, t, None
            self.device = event.get("device")
        elif kind == "queued":
            self.status, self.queue_position = JobStatus.QUEUED, int(event.get("position") or 1)
        elif kind == "phase":
            if self.status in (JobStatus.IDLE, JobStatus.QUEUED):
                self.status, self.started_at, self.queue_position = JobStatus.RUNNING, t, None
            self.phase, self.total, self.unit = (
                str(event.get("phase", "")),
                int(event.get("total") or 0),
                str(event.get("unit", "")),
            )
            self.done, self.rate, self.eta_s, self.phase_started_at = 0, 0.0, None, t
        elif kind == "advance":
            done = int(event.get("done") or 0)
            self.done = min(done, self.total) if self.total else done
            elapsed = t - (self.phase_started_at or t)
            if elapsed > 0 and self.done > 0:
                self.rate = self.done / elapsed
                self.eta_s = max(self.total - self.done, 0) / self.rate
        elif kind == "batch":
            self.batches.append(dict(event.get("metrics") or {}))
        elif kind == "epoch":
            self.epochs.append(dict(event.get("metrics") or {}))
        elif kind == "mark":
            self.marks.append({"epoch": event.get("epoch"), "label": event.get("label", "")})
        elif kind == "message":
            self.message = str(event.get("text", ""))
        elif kind == "stopping":
            self.stop_reason = event.get("reason") or self.stop_reason
            if self.status in (JobStatus.RUNNING, JobStatus.IDLE):
                self.status = JobStatus.STOPPING
        elif kind == "finish":
            self.status = JobStatus(event.get("status", "done"))
            self.result, self.error = event.get("result"), event.get("error")
            self.error_kind = event.get("error_kind")
            self.eta_s, self.ended_at, self.queue_position = 0.0, t, None

    def snapshot(self, now: float | None = None) -> Snapshot:
        """An immutable copy (``elapsed_s`` up to ``now``, or to the end once finished)."""
        end = self.ended_at if self.ended_at is not None else (now or time.time())
        return Snapshot(
            status=self.status,
            phase=self.phase,
            done=self.done,
            total=self.total,
            unit=self.unit,
            rate=self.rate,
            eta_s=self.eta_s,
            elapsed_s=max(0.0, end - self.started_at) if self.started_at else 0.0,
            message=self.message,
            error=self.error,
            error_kind=self.error_kind,
            device=self.device,
            result=self.result,
            epochs=tuple(dict(r) for r in self.epochs),
            batches=tuple(dict(r) for r in self.batches),
            queue_position=self.queue_position,
            marks=tuple(dict(m) for m in self.marks),
            stop_reason=self.stop_reason,
        )


class Progress:
    """Thread-safe progress of one job: the worker's writer methods, a stop event, snapshots.

    Args:
        sinks: Called with every event (after it is applied), e.g. an :class:`EventLog`.
    """

    def __init__(self, sinks: tuple[Callable[[dict], None], ...] = ()) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._state = ProgressState()
        self._sinks = tuple(sinks)

    def _emit(self, kind: str, **data: Any) -> None:
        event = {"e": kind, "t": time.time(), **data}
        with self._lock:
            self._state.apply(event)
            for sink in self._sinks:
                sink(event)

    # ----- writers -------------------------------------------------------------------------
    def begin(self, device: str | None = None) -> None:
        """Mark the job as running (it left the queue), on ``device``."""
        self._emit("begin", device=device)

    def queued(self, position: int) -> None:
        """Report the job's 1-based place in the queue."""
        self._emit("queued", position=int(position))

    def start(self, phase: str, total: int, unit: str = "img") -> None:
        """Start a new phase of ``total`` units (resets the done counter, rate and ETA)."""
        self._emit("phase", phase=phase, total=int(total), unit=unit)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done in the current phase."""
        with self._lock:
            done = self._state.done + int(n)
        self.set_done(done)

    def set_done(self, done: int) -> None:
        """Set the absolute number of units done in the current phase."""
        self._emit("advance", done=int(done))

    def log_batch(self, **metrics: Any) -> None:
        """Append one per-batch metrics record."""
        self._emit("batch", metrics=metrics)

    def log_epoch(self, **metrics: Any) -> None:
        """Append one per-epoch metrics record."""
        self._emit("epoch", metrics=metrics)

    def mark(self, epoch: float, label: str) -> None:
        """Name a point on the epoch axis (e.g. where fine-tuning begins)."""
        self._emit("mark", epoch=epoch, label=label)

    def message(self, text: str) -> None:
        """Set a short human-readable status line."""
        self._emit("message", text=text)

    def finish(
        self,
        result: Any = None,
        error: str | None = None,
        error_kind: str = "crash",
        cancelled: bool = False,
    ) -> None:
        """End the job: ``error`` set means it failed, a stop request means stopped, else done."""
        if error is not None:
            status = JobStatus.ERROR
        elif cancelled:
            status = JobStatus.CANCELLED
        elif self._stop.is_set():
            status = JobStatus.STOPPED
        else:
            status = JobStatus.DONE
        self._emit(
            "finish",
            status=status.value,
            result=result,
            error=error,
            error_kind=error_kind if error is not None else None,
        )

    # ----- stop ----------------------------------------------------------------------------
    def request_stop(self, reason: str | None = None) -> None:
        """Ask the worker to stop at the end of its current batch.

        Args:
            reason: Why, when it is not a person's Stop (kept as ``Snapshot.stop_reason``).
        """
        already = self._stop.is_set()
        self._stop.set()
        if not already:
            self._emit("stopping", **({"reason": reason} if reason else {}))

    @property
    def stop_requested(self) -> bool:
        """True once :meth:`request_stop` was called."""
        return self._stop.is_set()

    def check_stop(self) -> None:
        """Raise :class:`Stopped` if a stop was requested."""
        if self._stop.is_set():
            raise Stopped("stopped by request")

    # ----- readers -------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """An immutable copy of the current state."""
        with self._lock:
            return self._state.snapshot()

    @property
    def active(self) -> bool:
        """True until the job has ended."""
        return self.snapshot().active


class EventLog:
    """A sink writing events as JSON lines to a file, for another process to read.

    Advance events come many times a second; they are written at most every ``min_interval``
    seconds (the latest count wins), and always before any other event, so readers never miss
    a phase's final count.
    """

    def __init__(self, path: str | os.PathLike, min_interval: float = 0.2):
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._min_interval = min_interval
        self._pending: dict | None = None
        self._last_write = 0.0

    def __call__(self, event: dict) -> None:
        if event["e"] == "advance":
            self._pending = event
            if event["t"] - self._last_write < self._min_interval:
                return
        self._flush_pending(event)
        self._write(event)

    def _flush_pending(self, current: dict) -> None:
        if self._pending is not None and self._pending is not current:
            self._write(self._pending)
        self._pending = None

    def _write(self, event: dict) -> None:
        self._file.write(json.dumps(event, default=str) + "\n")
        self._file.flush()
        self._last_write = event["t"]

    def close(self) -> None:
        """Write any pending count and close the file."""
        if self._pending is not None:
            self._write(self._pending)
            self._pending = None
        self._file.close()


class EventReader:
    """Folds an :class:`EventLog` file into a :class:`ProgressState`, reading only what is new."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.state = ProgressState()
        self._offset = 0
        self._partial = b""

    def poll(self) -> ProgressState:
        """Apply the events appended since the last call; returns the state."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.state
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an incomplete last line waits for the rest
        for line in lines:
            if line.strip():
                try:
                    self.state.apply(json.loads(line))
                except (ValueError, TypeError):
                    continue  # a damaged line (e.g. a full disk) must not break the watcher
        return self.state
