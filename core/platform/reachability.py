"""Fail-fast network probes, so offline machines fall back to local copies instead of hanging."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit


def unreachable_reason(url: str, timeout: float) -> str | None:
    """None if ``url``'s host accepts a TCP connection on port 443 within ``timeout`` seconds,
    else a short reason ("timed out", "[Errno -2] Name or service not known", ...).

    The attempt runs in a daemon thread that we stop waiting for: name resolution ignores socket
    timeouts, so joining with a timeout is what bounds the whole check.
    """
    host = urlsplit(url).hostname
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, 443), timeout=max(timeout, 0.001)).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(str(exc) or exc.__class__.__name__)

    thread = threading.Thread(target=attempt, name=f"probe-{host}", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    return outcome[0] if outcome else f"no connection within {timeout:g} s"
