"""Per-visitor state: who this browser session is, and the jobs it started.

Anything in ``st.cache_resource`` is shared by every visitor, so this module keeps the shared
part (the live job handles, by id) behind functions that only ever hand a session its own jobs.
A session is known by a random token kept in ``st.session_state``; job and run files record only
a hash of it (:func:`owner_tag`), never the token itself. A browser tab's session ends when the
tab is reloaded or closed; its runs stay on the server, read-only from then on.

On a machine used by one person, ``EFFNET_LAB_SINGLE_USER=1`` makes every session the same
owner ("local"): runs and jobs stay yours across reloads, and command-line runs are yours too.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import streamlit as st

from core.jobs import runner as jobs

SINGLE_USER_TAG = "local"


def single_user() -> bool:
    """True when ``EFFNET_LAB_SINGLE_USER=1``: one person uses this app."""
    return os.environ.get("EFFNET_LAB_SINGLE_USER", "").strip() == "1"


def owner_tag() -> str:
    """This session's owner tag: a hash of its secret token, recorded with its jobs and runs."""
    if single_user():
        return SINGLE_USER_TAG
    token = st.session_state.setdefault("session_token", uuid.uuid4().hex)
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@st.cache_resource
def _live_jobs() -> dict[str, jobs.Job]:
    """Every job this server process started, by id (shared: only reached through my_job)."""
    return {}


def start_job(kind: str, args: dict) -> jobs.Job | None:
    """Start a job owned by this session; it becomes this session's current job of its kind.

    Over a queue cap it shows the one-line reason (:class:`core.jobs.runner.QueueFull`) and
    returns None.
    """
    try:
        job = jobs.submit(kind, args, owner=owner_tag())
    except jobs.QueueFull as exc:
        st.error(str(exc))
        return None
    _live_jobs()[job.id] = job
    st.session_state[f"job_{kind}"] = job.id
    return job


def my_job(kind: str) -> jobs.Job | None:
    """This session's current (or last) job of ``kind``, or None."""
    job_id = st.session_state.get(f"job_{kind}")
    if not job_id and single_user():  # after a reload: the job this user's trainer runs
        info = jobs.slot_info(jobs.KINDS[kind][2])
        job_id = info.running if info.owner == SINGLE_USER_TAG else None
    if not job_id:
        return None
    job = _live_jobs().get(job_id)
    if job is None:
        try:
            job = jobs.open_job(job_id)
        except ValueError:
            st.session_state.pop(f"job_{kind}", None)
            return None
    return job if job.owner == owner_tag() else None


def is_mine(owner: str | None) -> bool:
    """True if ``owner`` (a job's or run's owner tag) is this session (in single-user mode:
    everything, command-line runs included)."""
    return single_user() or (bool(owner) and owner == owner_tag())
