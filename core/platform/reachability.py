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
    return tcp_unreachable_reason(urlsplit(url).hostname, 443, timeout)


def tcp_unreachable_reason(host: str, port: int, timeout: float) -> str | None:
    """None if ``host`` accepts a TCP connection on ``port`` within ``timeout`` seconds, else a
    short reason (the same bounded check as :func:`unreachable_reason`, for any port: e.g. a Ray
    cluster's GCS before ``ray.init``, which would otherwise retry for a long time)."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=max(timeout, 0.001)).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(str(exc) or exc.__class__.__name__)

    thread = threading.Thread(target=attempt, name=f"probe-{host}", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    return outcome[0] if outcome else f"no connection within {timeout:g} s"
