"""The sidebar's workspace panel, drawn once for every page by the navigation: how much of the
quota this workspace uses, when an anonymous one will be removed, and the private link that
reopens it in another browser or on another device (the panel starts closed: nothing of it is on
screen until the visitor opens it)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import streamlit as st

from components import session
from core.platform import workspace_settings, workspaces

ICON = ":material/folder_shared:"


@st.cache_data(ttl=30, show_spinner=False)
def _usage(tag: str) -> int:
    """The workspace's bytes (a walk of its folders; at most every 30 s per workspace)."""
    return workspaces.usage(tag)


def private_link() -> str | None:
    """The private link as the visitor can paste it: this app's address plus
    ``/workspace/<secret>`` (None when the workspace has no secret)."""
    path = session.private_path()
    if path is None:
        return None
    try:
        url = urlsplit(st.context.url or "")
    except Exception:  # AppTest has no request: the path alone still works on this server
        url = None
    return f"{url.scheme}://{url.netloc}{path}" if url and url.netloc else path


def expiry_text(record: workspaces.Record | None) -> str:
    """When the anonymous workspace goes, in one line."""
    days = workspace_settings.expiry_days()
    if record is None:
        return (
            "Nothing saved yet. Once it holds something, it is removed with everything in it "
            f"when nobody opens it for {days:g} days."
        )
    when = time.strftime("%Y-%m-%d", time.localtime(record.expires()))
    return (
        f"Removed with its runs and datasets if nobody opens it for {days:g} days "
        f"(next: {when}; opening it again pushes that back)."
    )


def render() -> None:
    """The panel (nothing for the single user, who has the whole server)."""
    ws = session.workspace()
    if ws.kind == "local":
        return
    record = session.touch()
    used, quota = _usage(ws.tag), workspace_settings.workspace_quota_bytes()
    with st.sidebar.expander("Your workspace", icon=ICON):
        # Text, not st.progress: a page's own progress bar stays the only one on the page.
        st.markdown(
            f"**{workspaces.gb(used)} of {workspaces.gb(quota)} used** ({used / quota:.0%})"
        )
        if ws.kind == "account":
            st.caption("Signed in: your runs and datasets follow your account on any browser.")
            return
        st.caption(
            "Your runs and datasets stay here across reloads and tabs in this browser. "
            + expiry_text(record)
        )
        if ws.kind == "tab":
            st.warning(
                "This browser keeps no cookie for this app: a reload starts a new workspace. "
                "Keep the private link to come back.",
                icon=":material/cookie_off:",
            )
        # The link sits in the panel itself, which the visitor opens (it starts closed): no
        # widget of its own. A toggle needs a full rerun, and Streamlit can lose one while a job
        # panel polls: it drops the output of a run whose ScriptRunner the fragment's next
        # auto-rerun replaced, and no fragment run redraws the sidebar. A nested expander keeps
        # its open state in the browser, and that was reset under the same polling. The link
        # goes only to this visitor's own browser, which sends its secret in a cookie anyway.
        st.code(private_link(), language=None, wrap_lines=True)
        st.caption(
            "Your private link: open it in another browser or device to work in this workspace "
            "there. Anyone with it can see, change and delete your work: keep it private."
        )
