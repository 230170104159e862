"""Workspace settings: each one once, with its default, its environment variable and why.

Read on every use (no restart needed in tests); a bad value raises ValueError naming the variable
(:func:`core.platform.paths.positive_number`).
"""

from __future__ import annotations

from core.platform.paths import positive_number

GB = 10**9
MB = 10**6


def workspace_quota_bytes() -> int:
    """Disk one workspace may fill: its datasets, runs and their exports.
    ``EFFNET_LAB_WORKSPACE_QUOTA_GB``, default 2 (a few datasets and a dozen runs)."""
    return int(positive_number("EFFNET_LAB_WORKSPACE_QUOTA_GB", 2.0, "gigabytes") * GB)


def total_quota_bytes() -> int:
    """Disk all workspaces together may fill, so visitors cannot fill the server's disk.
    ``EFFNET_LAB_WORKSPACES_TOTAL_GB``, default 20."""
    return int(positive_number("EFFNET_LAB_WORKSPACES_TOTAL_GB", 20.0, "gigabytes") * GB)


def expiry_days() -> float:
    """Days an anonymous workspace nobody opened is kept before it is removed with everything
    in it (account workspaces never expire). ``EFFNET_LAB_WORKSPACE_EXPIRY_DAYS``, default 14."""
    return float(positive_number("EFFNET_LAB_WORKSPACE_EXPIRY_DAYS", 14.0, "days"))


def upload_files_per_round() -> int:
    """Image files one upload may add at once (a browser round trip holds them all in memory).
    ``EFFNET_LAB_UPLOAD_FILES``, default 200."""
    return int(positive_number("EFFNET_LAB_UPLOAD_FILES", 200, "files"))


def job_reserve_bytes() -> int:
    """Room a training or export job must find free in its workspace before it starts (a run
    saves a model, predictions and images; an export a model copy or two).
    ``EFFNET_LAB_JOB_RESERVE_MB``, default 100."""
    return int(positive_number("EFFNET_LAB_JOB_RESERVE_MB", 100.0, "megabytes") * MB)
