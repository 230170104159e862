"""Remove anonymous workspaces nobody opened for the set number of days
(:func:`core.platform.workspace_settings.expiry_days`): their jobs are ended, then their runs,
exports and datasets and their record are removed. Account workspaces are never removed, and
nothing outside ``<root>/w/<tag>`` folders with a record is touched.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from core.jobs import runner
from core.platform import workspaces

_KILL_WAIT_S = 10.0


def due(now: float | None = None) -> list[workspaces.Record]:
    """Records of the anonymous workspaces whose time is up."""
    now = time.time() if now is None else now
    return [r for r in workspaces.records() if (r.expires() or float("inf")) <= now]


def expire(now: float | None = None) -> list[str]:
    """Remove every expired workspace; returns their tags."""
    removed = []
    for record in due(now):
        fresh = workspaces.read_record(record.tag)  # opened meanwhile? then it stays
        if fresh is None or (fresh.expires() or float("inf")) > (now or time.time()):
            continue
        remove(record.tag)
        removed.append(record.tag)
    return removed


def stop_jobs(tag: str) -> int:
    """End every live job the workspace started (at once: its files are about to go);
    returns how many were running or queued."""
    ended = []
    for job_dir in runner.jobs_dir().iterdir():
        if not (job_dir / "spec.json").is_file():
            continue
        try:
            job = runner.open_job(job_dir.name)
        except (ValueError, OSError):
            continue
        if job.owner == tag and job.snapshot().active:
            job.kill()
            ended.append(job)
    deadline = time.monotonic() + _KILL_WAIT_S
    while ended and time.monotonic() < deadline and any(j.snapshot().active for j in ended):
        time.sleep(0.2)
    return len(ended)


def remove(tag: str) -> None:
    """Remove one workspace now: its jobs, runs, exports, datasets and record."""
    workspaces.check_tag(tag)
    stop_jobs(tag)
    for folder in (workspaces.runs_root(tag), workspaces.data_root(tag)):
        _remove_tree(folder)
    workspaces.remove_record(tag)


def _remove_tree(folder: Path) -> None:
    """Rename the folder away first (it vanishes at once), then delete it."""
    if not folder.exists():
        return
    gone = folder.with_name(f".gone-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.rename(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)
