"""The server side of workspaces: the cookie that keeps a browser in its workspace, and the
private link that brings another browser into it. Mounted by ``app.py``'s ``st.App`` (which
``streamlit run app.py`` finds and serves); no Streamlit script code runs here.

- Every browser that arrives without the workspace cookie gets one with a fresh secret
  (:class:`WorkspaceCookie`), so a reload, a new tab or a restarted browser stays in the same
  workspace: the page reads it with ``st.context.cookies`` (:mod:`components.session`).
- ``/workspace/<secret>`` (the private link) puts that secret in this browser's cookie and
  redirects to the app (:func:`open_workspace`); a malformed secret changes nothing.

The cookie is HttpOnly (page scripts cannot read it), SameSite=Lax (other sites' requests do not
carry it), Secure when the request came over HTTPS, and lasts 400 days (browsers' longest); the
server keeps only the secret's hash.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from components import executor
from components.session import COOKIE, SECRET_RE, new_secret
from core.jobs import expiry
from core.platform import workspaces

MAX_AGE_S = 400 * 24 * 3600
# Requests that never need a workspace: health checks and static files.
_SKIP_PREFIXES = ("/workspace/", "/_stcore/health", "/_stcore/host-config", "/static/")


def cookie_header(secret: str, secure: bool) -> str:
    """The ``Set-Cookie`` value that stores ``secret`` in the browser."""
    return f"{COOKIE}={secret}; Path=/; Max-Age={MAX_AGE_S}; HttpOnly; SameSite=Lax" + (
        "; Secure" if secure else ""
    )


def _has_cookie(headers: list[tuple[bytes, bytes]]) -> bool:
    for key, value in headers:
        if key == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header: treat as none of ours
                continue
            if COOKIE in jar and SECRET_RE.match(jar[COOKIE].value):
                return True
    return False


class WorkspaceCookie:
    """ASGI middleware: an HTTP response to a browser without a (well-formed) workspace cookie
    carries a new one. WebSocket and lifespan traffic passes through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path.startswith(_SKIP_PREFIXES)
            or _has_cookie(scope.get("headers", []))
        ):
            await self.app(scope, receive, send)
            return
        header = cookie_header(new_secret(), scope.get("scheme") == "https").encode("latin-1")

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"set-cookie", header)],
                }
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def open_workspace(request: Request) -> Response:
    """``/workspace/<secret>``: store the secret in this browser's cookie, then go to the app
    (without the secret in the address bar, the history's last entry or a Referer)."""
    secret = request.path_params["secret"]
    response = RedirectResponse("/", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    if SECRET_RE.match(secret):
        response.headers["set-cookie"] = cookie_header(secret, request.url.scheme == "https")
    return response


def routes() -> list[Route]:
    """The routes ``st.App`` mounts beside Streamlit's."""
    return [Route("/workspace/{secret}", open_workspace, methods=["GET"])]


EXPIRY_EVERY_S = 3600


def expire_once() -> list[str] | None:
    """Remove the expired workspaces (their tags), or None when another server on the same
    store (an app replica) is doing it right now."""
    with workspaces.expiry_turn() as mine:
        return expiry.expire() if mine else None


def _expiry_loop(stop: threading.Event) -> None:
    """Remove expired workspaces now, then every hour until the server stops (replicas on one
    store take turns: :func:`expire_once`)."""
    while True:
        try:
            removed = expire_once()
            if removed:
                logging.getLogger(__name__).info("removed %d expired workspace(s)", len(removed))
        except Exception:  # a disk hiccup must not end the loop (or the server)
            logging.getLogger(__name__).exception("workspace expiry failed")
        if stop.wait(EXPIRY_EVERY_S):
            return


@asynccontextmanager
async def lifespan(app):
    """``st.App`` lifespan: workspace expiry runs in a background thread from server start, and
    with the Ray executor the cluster is joined at once (an unreachable one is logged in one
    line within seconds, and every page then says so)."""
    found = await asyncio.to_thread(executor.problem)
    if found:
        logging.getLogger(__name__).error("jobs cannot start: %s", found)
    stop = threading.Event()
    threading.Thread(
        target=_expiry_loop, args=(stop,), daemon=True, name="workspace-expiry"
    ).start()
    yield None
    stop.set()
