"""One panel for any background job of this browser session (training, the learning-rate finder,
the Scaling page's timings and search, exports, dataset checks).

:func:`show` draws this session's current job of a kind as it is now:

- queued: its place in the queue, and Cancel;
- running: a progress bar (the phase, units done of the total, rate and ETA), the device and the
  time so far, and Stop;
- ended: what it gave, drawn by the caller's ``result`` callback (finished, or stopped with what
  it kept), or one line saying it was stopped, cancelled or failed. An error is shown as one
  line, without server paths; the worker's log keeps the rest.

While the job runs, the panel is an ``st.fragment`` that polls it every :data:`POLL_S` seconds,
and reruns the whole page once when it ends, so that the page's Start buttons and lists see the
end and polling stops. An ended job is drawn in the page itself, so widgets in its result (a
"use this value" button, a preview toggle) rerun the page like any other widget.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from components import no_paths, plain, session
from core.jobs.runner import Job
from core.platform.progress import JobStatus, Snapshot

POLL_S = 1.0

Draw = Callable[[Job, Snapshot], None]


def fmt_seconds(seconds) -> str:
    """``75`` → ``"1:15"``, ``3725`` → ``"1:02:05"``; unknown → ``"…"``."""
    if seconds is None:
        return "…"
    minutes, secs = divmod(round(seconds), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
        if minutes >= 60
        else f"{minutes}:{secs:02d}"
    )


def step_text(snap: Snapshot) -> str:
    """What a running job does now: the counted phase with its rate and ETA, else its latest
    message."""
    if snap.status is JobStatus.STOPPING:
        return "Stopping at the end of the current step…"
    if (
        snap.phase and snap.total and snap.done < snap.total
    ):  # a finished phase: the message is newer
        text = f"{snap.phase}: {snap.done}/{snap.total} {snap.unit}"
        if snap.rate:
            text += f" · {snap.rate:.0f} {snap.unit}/s · ETA {fmt_seconds(snap.eta_s)}"
        return text
    return f"{snap.message or snap.phase or 'Starting'}…"


def error_line(error) -> str:
    """A job's error as one line a visitor may see: its first line, server paths cut, Markdown
    escaped."""
    lines = str(error or "").strip().splitlines()
    return plain(no_paths(lines[0] if lines else "unknown error"))


def show(
    kind: str,
    key: str,
    *,
    result: Draw | None = None,
    live: Draw | None = None,
    failed: str = "Failed",
    when: Callable[[Job], bool] | None = None,
) -> Snapshot | None:
    """Draw this session's current ``kind`` job (nothing when it has none).

    Args:
        kind: The job kind (a key of :data:`core.jobs.runner.KINDS`).
        key: Prefix of the panel's widget keys (``{key}_stop``, ``{key}_cancel``).
        result: Draws an ended job's result (called when it finished or stopped with a result).
        live: Draws more while the job runs, under the progress bar (e.g. live curves).
        failed: The words before a failed job's error, e.g. "Training failed".
        when: Only a job it accepts is shown (e.g. the export of this run, not another's).

    Returns:
        The job's snapshot as the page saw it, or None when there is no job to show.
    """
    job = session.my_job(kind)
    if job is None or (when is not None and not when(job)):
        return None
    snap = job.snapshot()
    if snap.active:
        st.fragment(_running, run_every=POLL_S)(job, key, live)
    else:
        _ended(job, snap, result, failed)
    return snap


def _running(job: Job, key: str, live: Draw | None) -> None:
    """The polled part: queue place or progress, with Cancel or Stop."""
    snap = job.snapshot()
    if not snap.active:  # it ended since the last poll: the whole page once, to see the end
        st.rerun()
    if snap.status is JobStatus.QUEUED:
        st.info(
            f"Queued: position {snap.queue_position}. It starts on its own when the jobs ahead "
            "of it end.",
            icon=":material/hourglass_top:",
        )
        st.button("Cancel", key=f"{key}_cancel", on_click=job.stop)
        return
    st.progress(snap.fraction, text=plain(step_text(snap)))
    left, right = st.columns([5, 1], vertical_alignment="center")
    if snap.device:
        left.caption(f"{plain(snap.device)} · elapsed {fmt_seconds(snap.elapsed_s)}")
    right.button(
        "Stop",
        key=f"{key}_stop",
        on_click=job.stop,
        disabled=snap.status is JobStatus.STOPPING,
        width="stretch",
    )
    if live is not None:
        live(job, snap)


def _ended(job: Job, snap: Snapshot, result: Draw | None, failed: str) -> None:
    if snap.status is JobStatus.ERROR:
        st.error(f"{failed}: {error_line(snap.error)}")
    elif snap.status is JobStatus.CANCELLED:
        st.info("Cancelled before it started.")
    elif result is not None and snap.result is not None:
        result(job, snap)
    elif snap.status is JobStatus.STOPPED:
        st.info("Stopped before it finished.")
