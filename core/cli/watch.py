"""Run a background job from a terminal and watch it: a progress bar on stderr, and signals that
stop it.

Used by every command that runs a job (``train``, ``bench``, ``lr-find``, ``export``, ``scaling
sweep`` and ``search``), through :func:`run_job`. Ctrl-C (SIGINT) or SIGTERM (what
``docker stop`` and systemd send) asks the job to stop at the end of the current batch and keep
what it has; a second Ctrl-C kills it. SIGINT is handled even when the command was started with
it ignored, as background jobs from scripts are.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from core.cli import CliError
from core.jobs.runner import Job, submit
from core.platform.errors import UserError
from core.platform.progress import Snapshot

_POLL_S = 0.5
SIGNAL_STATUS = {2: 130, 15: 143}  # SIGINT, SIGTERM → the shell's 128 + signal


def clock(seconds) -> str:
    """``75`` → ``"01:15"``; ``None`` → ``"--:--"``."""
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


class Bar:
    """Draws snapshots on stderr: a live bar on a terminal, plain lines otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.phase = None
        self.finished = None
        self.queued = None
        self.epochs_shown = 0
        self.last_line = time.time()
        self.width = 0

    def line(self, text: str) -> None:
        """Print a whole line (clearing a live bar first)."""
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, snap: Snapshot) -> None:
        """Show what changed since the last snapshot."""
        if snap.queue_position and snap.queue_position != self.queued:
            self.queued = snap.queue_position
            self.line(f"Queued: position {snap.queue_position} (another job is using the trainer)")
        if snap.phase != self.phase and snap.phase:
            self.phase, self.last_line = snap.phase, time.time()
            self.line(f"{self.phase} ({snap.total} {snap.unit})" if snap.total else self.phase)
        for row in snap.epochs[self.epochs_shown :]:
            val = (
                f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}"
                if row.get("val_accuracy") is not None
                else ""
            )
            self.line(
                f"epoch {row['epoch']}: loss {row['loss']:.4f}  acc {row['accuracy']:.4f}"
                f"{val}  {row['seconds']:.1f} s  {row['images_per_s']:.0f} img/s"
            )
        self.epochs_shown = len(snap.epochs)
        total, done, unit = snap.total, snap.done, snap.unit
        if not total:
            return
        text = f"{done}/{total} {unit}  {snap.rate:.0f} {unit}/s  ETA {clock(snap.eta_s)}"
        now = time.time()
        if self.tty:
            filled = int(30 * done / total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {text}"
            self.stream.write("\r" + bar.ljust(self.width))
            self.stream.flush()
            self.width = len(bar)
        elif done >= total and self.finished != self.phase:  # a finished phase, once
            self.line(f"  100.0%  {text}")
            self.finished = self.phase
        elif done < total and now - self.last_line >= 15:  # plain logs: a line every 15 s
            self.line(f"  {100 * done / total:5.1f}%  {text}")
            self.last_line = now

    def close(self) -> None:
        """End a live bar's line."""
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()


def watch(job: Job) -> tuple[Snapshot, int | None]:
    """Draw ``job``'s progress until it ends, relaying SIGINT and SIGTERM as stop requests.

    Returns:
        ``(last snapshot, the signal that asked it to stop, or None)``.
    """
    bar = Bar()
    received: list[int] = []

    def on_signal(signum, frame):
        if received and signum == signal.SIGINT:  # a second Ctrl-C: give up without saving
            job.kill()
            bar.line("Second Ctrl-C: killed the job (the run keeps its best model saved so far)")
        else:
            job.stop()
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            bar.line(
                f"{name}: stopping at the end of the current batch and saving "
                "(press Ctrl-C again to abort)"
            )
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            snap = job.snapshot()
            bar.update(snap)
            if snap.status.finished:
                break
            time.sleep(_POLL_S)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        bar.close()
    return snap, (received[0] if received else None)


def run_job(kind: str, args: dict, root: Path | None = None) -> tuple[dict, int]:
    """Run a ``kind`` job in the background (:func:`core.jobs.runner.submit`), watch it, and map
    its outcome.

    Args:
        kind: A key of :data:`core.jobs.runner.KINDS`.
        args: The job's JSON-ready arguments (``runs_root`` is added).
        root: The runs folder whose queue it joins (default: the configured one).

    Returns:
        ``(the job's result, exit status)``: 0, or 130/143 when Ctrl-C/SIGTERM stopped it.

    Raises:
        UserError: The job found bad input (exit 2).
        CliError: It crashed (exit 1, with the worker log's tail) or was cancelled before it
            started.
    """

    job = submit(
        kind, {**args, "runs_root": str(root) if root else None}, owner="cli", runs_root=root
    )
    snap, signum = watch(job)
    if snap.error:
        if snap.error_kind == "input":
            raise UserError(snap.error)
        tail = job.log_tail(8)
        raise CliError(
            f"{kind} failed: {snap.error}"
            + (f"\n(worker log {job.log_path}):\n{tail}" if tail else ""),
            status=1,
        )
    if snap.result is None:
        raise CliError(
            f"{kind} was cancelled before it started", status=SIGNAL_STATUS.get(signum, 1)
        )
    return snap.result, SIGNAL_STATUS.get(signum, 0)
