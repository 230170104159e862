"""Is a process still the one we started? A PID together with its start time and the boot id.

A PID alone is not enough: after a process dies its PID is reused, and a dead run would then look
alive for ever. Linux gives each process a start time (clock ticks since boot, ``/proc/PID/stat``
field 22) and each boot an id, so ``(pid, start, boot)`` names one process for good. Elsewhere we
fall back to the PID alone.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def boot_id() -> str | None:
    """This boot's id (Linux), or None where there is none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from field 3 (the state) on, or None if unreadable."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its end.
    return stat[stat.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None if unknown/gone.

    A zombie (ended, not yet reaped by its parent) counts as gone.
    """
    fields = _stat_fields(pid)
    try:
        return None if fields[0] in ("Z", "X") else int(fields[19])  # field 22 overall
    except (TypeError, IndexError, ValueError):
        return None


def identity(pid: int | None = None) -> dict:
    """A JSON-ready identity of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else int(pid)
    return {"pid": pid, "start": start_time(pid), "boot": boot_id()}


def alive(ident: dict | None) -> bool:
    """True if the process ``ident`` names (from :func:`identity`) still runs."""
    if not isinstance(ident, dict) or not isinstance(ident.get("pid"), int):
        return False
    pid = ident["pid"]
    if ident.get("boot") and boot_id() and ident["boot"] != boot_id():
        return False  # the machine restarted since
    if ident.get("start") is not None and start_time(pid) is not None:
        return start_time(pid) == ident["start"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    # /proc works but the process has no entry: gone (or a zombie)
    return not (
        start_time(pid) is None and ident.get("start") is not None and Path("/proc").is_dir()
    )
