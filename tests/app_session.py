"""The app under AppTest, as a visitor's session sees it: opened on one page, moved between pages.

A page is a function listed in the page table (``pages.PAGES``), run by app.py's navigation, so an
AppTest of a page runs the app itself (:func:`app.main`) on that page. AppTest can switch only to
pages defined by files, so the small script below plays the visitor's click on a navigation link:
it hands ``st.session_state["test_open"]`` (a page's name) to ``st.switch_page``, which reruns the
app on that page as the link would.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _app_script() -> None:  # AppTest runs a copy of this function's source: imports inside
    import streamlit as st

    import app
    import pages

    wanted = st.session_state.pop("test_open", None)
    if wanted:
        st.switch_page(pages.page(wanted))
    app.main()


def open_page(name: str, timeout: float = 60, token: str | None = None) -> AppTest:
    """A new session of the app that opens page ``name`` on its first run (not run yet).

    Args:
        name: A page's name in ``pages.PAGES`` ("home", "data", "train", …).
        timeout: Seconds each run may take.
        token: This session's secret (``components.session``), to tell visitors apart.
    """
    at = AppTest.from_function(_app_script, default_timeout=timeout)
    at.session_state["test_open"] = name
    if token is not None:
        at.session_state["session_token"] = token
    return at


def go(at: AppTest, name: str) -> AppTest:
    """Move ``at``'s session to page ``name`` (as its navigation link would) and run it."""
    at.session_state["test_open"] = name
    return at.run()
