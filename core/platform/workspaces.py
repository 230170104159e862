"""Workspaces: each visitor's own folders, the record of when it was last opened, and its disk
use against the quotas (:mod:`core.platform.workspace_settings`).

A workspace is named by its *tag*: 16 hex digits, a hash of the visitor's secret (or of their
account's id), never the secret itself. Its files live apart from everyone else's, so names
never meet: runs (with their exports) in ``<runs root>/w/<tag>/``, datasets in
``<data root>/w/<tag>/``. What the command line makes stays directly in the runs and data roots,
shared with every workspace (read-only in the app).

The record ``<runs root>/.workspaces/<tag>.json`` says what kind of workspace it is
("anonymous": a browser's secret; "account": a signed-in user's) and when it was created and
last opened; :mod:`core.jobs.expiry` removes anonymous workspaces nobody opened for
:func:`~core.platform.workspace_settings.expiry_days`. A workspace gets a record before its
first file (:func:`ensure`), so a folder without a record was not made by the app and is
never removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.platform import paths, workspace_settings
from core.platform.errors import UserError
from core.platform.fileio import write_json

FOLDER = "w"  # the sub-folder of the runs and data roots that holds the workspaces
TAG_RE = re.compile(r"^[0-9a-f]{16}$")
KINDS = ("anonymous", "account")
_RECORDS = ".workspaces"


class QuotaError(UserError):
    """Writing would take a workspace (or all of them) over its disk quota; nothing was
    written. The message says what to delete."""


@dataclass(frozen=True)
class Record:
    """What the server keeps about a workspace besides its files.

    Attributes:
        tag: Its tag (16 hex digits).
        kind: "anonymous" or "account" (accounts never expire).
        created: When it was made (seconds since the epoch).
        seen: When it was last opened.
    """

    tag: str
    kind: str
    created: float
    seen: float

    def expires(self) -> float | None:
        """When it will be removed if nobody opens it again (None: never)."""
        if self.kind != "anonymous":
            return None
        return self.seen + workspace_settings.expiry_days() * 86400


def check_tag(tag: str) -> str:
    """``tag`` if it can name a workspace folder; ValueError otherwise (never a path)."""
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise ValueError("not a workspace tag")
    return tag


def runs_root(tag: str) -> Path:
    """The workspace's runs folder (not created here)."""
    return paths.runs_dir() / FOLDER / check_tag(tag)


def data_root(tag: str) -> Path:
    """The workspace's data root: one folder per dataset (not created here)."""
    return paths.data_dir() / FOLDER / check_tag(tag)


def _records_dir() -> Path:
    return paths.runs_dir() / _RECORDS


def read_record(tag: str) -> Record | None:
    """The workspace's record, or None when it has none (nothing was ever saved in it)."""
    try:
        data = json.loads((_records_dir() / f"{check_tag(tag)}.json").read_text(encoding="utf-8"))
        return Record(tag, str(data["kind"]), float(data["created"]), float(data["seen"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def records() -> list[Record]:
    """Every workspace record."""
    folder = _records_dir()
    found = []
    for file in folder.glob("*.json") if folder.is_dir() else []:
        record = read_record(file.stem) if TAG_RE.match(file.stem) else None
        if record is not None:
            found.append(record)
    return found


def _write_record(record: Record) -> None:
    _records_dir().mkdir(parents=True, exist_ok=True)
    write_json(
        _records_dir() / f"{record.tag}.json",
        {"kind": record.kind, "created": record.created, "seen": record.seen},
    )


def touch(tag: str, kind: str, now: float | None = None) -> Record | None:
    """Note that the workspace was opened (``now``, default the current time); a workspace
    without a record (nothing saved yet) gets none, so a visitor who saves nothing leaves
    nothing behind. An account's record stays an account's."""
    record = read_record(tag)
    if record is None:
        return None
    kind = "account" if "account" in (kind, record.kind) else kind
    record = Record(tag, kind, record.created, time.time() if now is None else now)
    _write_record(record)
    return record


def ensure(tag: str, kind: str) -> Record:
    """Give the workspace its record and folders (before the first file is written in it)."""
    if kind not in KINDS:
        raise ValueError(f"workspace kind must be one of {KINDS}")
    record = touch(tag, kind)
    if record is None:
        now = time.time()
        record = Record(check_tag(tag), kind, now, now)
        _write_record(record)
    runs_root(tag).mkdir(parents=True, exist_ok=True)
    data_root(tag).mkdir(parents=True, exist_ok=True)
    return record


def remove_record(tag: str) -> None:
    """Forget the workspace (its folders must be gone already)."""
    (_records_dir() / f"{check_tag(tag)}.json").unlink(missing_ok=True)


@contextlib.contextmanager
def expiry_turn() -> Iterator[bool]:
    """Whether this process may remove expired workspaces now: True while it holds the store's
    expiry lock (``<runs root>/.workspaces/expiry.lock``), False when another process (another
    app replica on the same store) holds it. App replicas sharing a store each run the hourly
    expiry; the lock makes them take turns instead of removing the same workspace twice at once.
    Never blocks; the kernel releases the lock when its holder dies."""
    _records_dir().mkdir(parents=True, exist_ok=True)
    with open(_records_dir() / "expiry.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # closing the file releases the lock


# ----- disk use -----------------------------------------------------------------------------------
def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (links not followed; unreadable parts count 0)."""
    total = 0
    for top, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                continue
    return total


def usage(tag: str) -> int:
    """Bytes the workspace's datasets, runs and exports take."""
    return folder_bytes(runs_root(tag)) + folder_bytes(data_root(tag))


def total_usage() -> int:
    """Bytes all workspaces take together."""
    return folder_bytes(paths.runs_dir() / FOLDER) + folder_bytes(paths.data_dir() / FOLDER)


def require_room(tag: str, nbytes: int, what: str) -> None:
    """Check, before writing, that ``nbytes`` more fit the workspace's quota and the total.

    Args:
        tag: The workspace.
        nbytes: What the write will add (an estimate for jobs).
        what: The write, for the message ("this upload", "a training run").

    Raises:
        QuotaError: It would not fit; the message says what to delete.
    """
    used, quota = usage(tag), workspace_settings.workspace_quota_bytes()
    if used + nbytes > quota:
        raise QuotaError(
            f"Your workspace holds {gb(used)} of its {gb(quota)}: {what} "
            f"({gb(nbytes)}) does not fit. Delete a run or a dataset you no longer need first."
        )
    total, cap = total_usage(), workspace_settings.total_quota_bytes()
    if total + nbytes > cap:
        raise QuotaError(
            f"The server's space for workspaces is full ({gb(total)} of {gb(cap)}): {what} "
            "does not fit. Delete a run or a dataset you no longer need, or try again later."
        )


def gb(nbytes: float) -> str:
    """``1_234_000_000`` → ``"1.23 GB"``; small amounts in MB."""
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"
