"""Per-visitor state: who this browser session is, and the jobs it started.

Anything in ``st.cache_resource`` is shared by every visitor, so this module keeps the shared
part (the live job handles, by id) behind functions that only ever hand a session its own jobs.
A session is known by a random token kept in ``st.session_state``; job and run files record only
a hash of it (:func:`owner_tag`), never the token itself. A browser tab's session ends when the
tab is reloaded or closed; its runs stay on the server, read-only from then on.

On a machine used by one person, ``EFFNET_LAB_SINGLE_USER=1`` makes every session the same
owner ("local"): runs and jobs stay yours across reloads, and command-line runs are yours too.
It is honoured only while the server listens on loopback alone (Streamlit's ``server.address``
set to 127.x, ::1 or localhost): a server others can reach stays per-visitor, with a warning
(:func:`single_user_refused`), since one shared owner would hand every stranger everyone's work.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import uuid

import streamlit as st

from core.jobs import runner as jobs

SINGLE_USER_TAG = "local"


def single_user() -> bool:
    """True when ``EFFNET_LAB_SINGLE_USER=1`` and the server listens on loopback only: one person
    uses this app."""
    return _single_user_asked() and _loopback_only()


def single_user_refused() -> str | None:
    """A one-line warning when single-user mode was asked for but refused, else None."""
    if _single_user_asked() and not _loopback_only():
        return (
            "EFFNET_LAB_SINGLE_USER=1 is ignored: this server listens beyond this machine "
            "(set server.address to 127.0.0.1 for one person), so every visitor keeps their own "
            "work."
        )
    return None


def _single_user_asked() -> bool:
    return os.environ.get("EFFNET_LAB_SINGLE_USER", "").strip() == "1"


def _loopback_only() -> bool:
    """Whether Streamlit's ``server.address`` is a loopback address (unset: all interfaces)."""
    address = str(st.get_option("server.address") or "").strip().strip("[]")
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # empty (every interface) or a host name that may resolve anywhere
        return False


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


def start_job(kind: str, args: dict) -> jobs.Job:
    """Start a job owned by this session; it becomes this session's current job of its kind."""
    job = jobs.submit(kind, args, owner=owner_tag())
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


def dataset_args() -> dict:
    """Job arguments that make a job's dataset a managed reference: resolved under the data root
    only and checked again in the worker for this visitor (:func:`core.data.datasets.managed_job`);
    in single-user mode the one user may use every dataset, like the operator."""
    return {"managed": True, "user": None if single_user() else owner_tag()}


def is_mine(owner: str | None) -> bool:
    """True if ``owner`` (a job's or run's owner tag) is this session (in single-user mode:
    everything, command-line runs included)."""
    return single_user() or (bool(owner) and owner == owner_tag())
