"""Per-visitor state: whose workspace this browser is in, and the jobs it started.

A visitor works in a **workspace** (:mod:`core.platform.workspaces`) that outlives the browser
tab: its datasets, runs and exports live in its own folders, and job and run files record its
*owner tag*, a hash of its secret, never the secret itself. Which workspace a session is in:

1. ``EFFNET_LAB_SINGLE_USER=1`` on a server that listens on loopback only: one person uses this
   app; every session is the operator ("local"), working in the shared runs and data roots,
   command-line runs included.
2. Streamlit's own sign-in is configured (``st.login``, OIDC in ``secrets.toml``) and the visitor
   is signed in: the account's workspace (:func:`account_tag`), on any browser.
3. The browser's workspace cookie (:data:`COOKIE`, set by the server, :mod:`components.web`):
   the same workspace after a reload, in a new tab, and in any browser that opened the private
   link (:func:`private_path`).
4. No cookie (a browser that refuses cookies, or AppTest, which has none): a secret kept in
   ``st.session_state["session_token"]`` for this tab only. **Test hook**: an AppTest sets
   ``at.session_state["session_token"] = "alice"`` to act as the workspace whose secret is
   "alice" (its tag is :func:`tag_of` of it).

Anything in ``st.cache_resource`` is shared by every visitor, so this module keeps the shared
part (the live job handles, by id) behind functions that only ever hand a workspace its own jobs.

``EFFNET_LAB_SINGLE_USER=1`` is honoured only while the server listens on loopback alone
(Streamlit's ``server.address`` set to 127.x, ::1 or localhost): a server others can reach keeps
a workspace per visitor, with a warning (:func:`single_user_refused`), since the single user is
the operator and would hand every stranger everyone's work.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core.data import catalog, datasets
from core.jobs import runner as jobs
from core.platform import workspace_settings, workspaces
from core.training import runs

SINGLE_USER_TAG = "local"
COOKIE = "effnet_lab_workspace"
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")  # what new_secret makes: 192 random bits
_TOUCH_EVERY_S = 600  # note "opened now" at most this often per session
_WRITING_KINDS = {"train": "a training run", "export": "an export"}


@dataclass(frozen=True)
class Workspace:
    """The workspace this session works in.

    Attributes:
        tag: Its owner tag (16 hex digits; "local" for the single user).
        kind: "local", "account", "anonymous" (a browser cookie) or "tab" (no cookie).
        secret: What the private link carries (anonymous and tab workspaces), else None.
    """

    tag: str
    kind: str
    secret: str | None = None

    @property
    def record_kind(self) -> str:
        """The kind the server records ("account" never expires)."""
        return "account" if self.kind == "account" else "anonymous"


def new_secret() -> str:
    """A fresh workspace secret: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def tag_of(secret: str) -> str:
    """The owner tag of a workspace secret: the server stores and records only this hash."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def account_tag(user: Mapping) -> str | None:
    """The owner tag of a signed-in account (``st.user``): a hash of its issuer and stable
    subject id (``sub``; the e-mail address when the provider gives no ``sub``), or None when
    the user is not signed in or has neither."""
    if not user.get("is_logged_in"):
        return None
    stable = user.get("sub") or user.get("email")
    if not stable:
        return None
    return hashlib.sha256(f"account\0{user.get('iss', '')}\0{stable}".encode()).hexdigest()[:16]


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
            "workspace."
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


def _signed_in_user() -> Mapping:
    try:
        return st.user.to_dict()
    except Exception:  # no sign-in configured, or no script context: nobody is signed in
        return {}


def _cookie_secret() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # AppTest and bare mode have no request
        return None
    return value if isinstance(value, str) and SECRET_RE.match(value) else None


def workspace() -> Workspace:
    """This session's workspace (see the module docstring for the order of the rules)."""
    if single_user():
        return Workspace(SINGLE_USER_TAG, "local")
    account = account_tag(_signed_in_user())
    if account:
        return Workspace(account, "account")
    secret = _cookie_secret()
    if secret:
        return Workspace(tag_of(secret), "anonymous", secret)
    token = st.session_state.setdefault("session_token", new_secret())
    return Workspace(tag_of(token), "tab", token)


def owner_tag() -> str:
    """This workspace's owner tag, recorded with its jobs and runs."""
    return workspace().tag


def data_owner() -> str | None:
    """Who this session is to :mod:`core.data.datasets`: the workspace's tag (its own data root),
    or None (the operator, the shared data root) for the single user."""
    return None if single_user() else owner_tag()


def runs_root() -> Path | None:
    """Where this workspace's runs go (None: the shared runs folder, for the single user)."""
    return None if single_user() else workspaces.runs_root(owner_tag())


def private_path() -> str | None:
    """The private link's path (``/workspace/<secret>``), or None (accounts, the single user)."""
    ws = workspace()
    return f"/workspace/{ws.secret}" if ws.secret else None


def touch() -> workspaces.Record | None:
    """Note that this workspace was opened (at most every few minutes per session); returns its
    record (None: nothing saved in it yet)."""
    ws = workspace()
    if ws.kind == "local":
        return None
    last = st.session_state.get("workspace_touched")
    if last and last[0] == ws.tag and time.time() - last[1] < _TOUCH_EVERY_S:
        return workspaces.read_record(ws.tag)
    record = workspaces.touch(ws.tag, ws.record_kind)
    st.session_state["workspace_touched"] = (ws.tag, time.time())
    return record


def make_room(nbytes: int, what: str) -> None:
    """Before writing ``nbytes`` into this workspace: check its quota and the total, and give it
    its record and folders. The single user has no quota.

    Raises:
        core.platform.workspaces.QuotaError: It does not fit; the message says what to delete.
    """
    ws = workspace()
    if ws.kind == "local":
        return
    workspaces.require_room(ws.tag, nbytes, what)
    workspaces.ensure(ws.tag, ws.record_kind)


def check_upload_count(count: int) -> None:
    """Refuse an upload round of more than the allowed number of files (QuotaError)."""
    limit = workspace_settings.upload_files_per_round()
    if count > limit:
        raise workspaces.QuotaError(
            f"{count} files at once is more than the {limit} allowed: add them in smaller rounds."
        )


# ----- what this workspace sees -----------------------------------------------------------------
def visible_runs() -> dict[str, runs.RunInfo]:
    """This workspace's runs, then the command line's (shared, read-only), by the name shown;
    a shared run named like one of mine is shown as ``name (shared)``."""
    if single_user():
        return {run.name: run for run in runs.list_runs()}
    found = {run.name: run for run in runs.list_runs(runs_root())}
    for run in runs.list_runs():
        if run.owner is None:
            found[run.name if run.name not in found else f"{run.name} (shared)"] = run
    return found


def visible_datasets() -> list[str]:
    """Refs of the datasets this workspace may see: its own, and the data root's without an
    owner (shared, read-only). Show them with :func:`dataset_label`."""
    owner = data_owner()
    shared = [name for name, who in datasets.owners().items() if who is None]
    if owner is None:
        return list(datasets.owners()) if single_user() else shared
    return [catalog.dataset_ref(n, owner) for n in catalog.list_datasets(owner)] + shared


def dataset_label(ref: str) -> str:
    """A dataset ref as the page shows it: its name; a shared one named like one of mine gets
    `` (shared)``."""
    owner, name = catalog.split_ref(ref)
    if owner is None and not single_user() and name in catalog.list_datasets(data_owner()):
        return f"{name} (shared)"
    return name


# ----- jobs ---------------------------------------------------------------------------------------
@st.cache_resource
def _live_jobs() -> dict[str, jobs.Job]:
    """Every job this server process started, by id (shared: only reached through my_job)."""
    return {}


def start_job(kind: str, args: dict) -> jobs.Job:
    """Start a job owned by this workspace; it becomes this session's current job of its kind.
    A job that writes (training, export) must first find room in the workspace's quota, and a
    training run goes to the workspace's runs folder.

    Raises:
        core.platform.workspaces.QuotaError: No room for what the job will write.
        core.jobs.runner.QueueFull: The workspace (or the whole queue) is at its queue cap.

    Both are :class:`~core.platform.errors.UserError`: callers show the message in one line.
    """
    if kind in _WRITING_KINDS:
        make_room(workspace_settings.job_reserve_bytes(), _WRITING_KINDS[kind])
    if kind == "train" and runs_root() is not None:
        args = {**args, "runs_root": str(runs_root())}
    ref = args.get("data") or (args.get("config") or {}).get("data")
    if args.get("managed") and ref:  # the worker refuses a dataset replaced meanwhile
        args = {**args, "dataset_id": datasets.dataset_id(str(ref))}
    job = jobs.submit(kind, args, owner=owner_tag())
    _live_jobs()[job.id] = job
    st.session_state[f"job_{kind}"] = job.id
    return job


def my_job(kind: str) -> jobs.Job | None:
    """This workspace's current (or last) job of ``kind``, or None; after a reload or in another
    tab, the workspace's latest job of that kind that is still queued or running."""
    job_id = st.session_state.get(f"job_{kind}")
    if not job_id:
        job_id = _latest_active(kind)
        if job_id:
            st.session_state[f"job_{kind}"] = job_id
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


def _latest_active(kind: str) -> str | None:
    """The id of this workspace's newest live job of ``kind`` (this server's handles first,
    then the slot's holder and queue that every process shares)."""
    tag = owner_tag()
    live = [j for j in _live_jobs().values() if j.kind == kind and j.owner == tag]
    for job in sorted(live, key=lambda j: j.id, reverse=True):
        if job.snapshot().active:
            return job.id
    info = jobs.slot_info(jobs.KINDS[kind][2])
    for job_id in (info.running, *info.queued):
        if job_id and f"-{kind}-" in job_id:
            try:
                job = jobs.open_job(job_id)
            except ValueError:
                continue
            if job.owner == tag:
                return job.id
    return None


def dataset_args() -> dict:
    """Job arguments that make a job's dataset a managed reference: a workspace ref or a shared
    name, resolved under the data root only and checked again in the worker against this
    workspace (:func:`core.data.datasets.managed_job`); the single user, like the operator, may
    use every dataset."""
    return {"managed": True, "user": data_owner()}


def is_mine(owner: str | None) -> bool:
    """True if ``owner`` (a job's or run's owner tag) is this workspace (in single-user mode:
    everything, command-line runs included)."""
    return single_user() or (bool(owner) and owner == owner_tag())
