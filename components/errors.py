"""Errors on a page: the one way a page tells a visitor that what they gave is wrong.

A page catches :class:`~core.platform.errors.UserError` (bad data, names, images, weights,
options; ``OSError`` where a file operation may fail) around its one core call and hands it to
:func:`show`: one ``st.error`` line with the message, never a traceback, with server paths cut to
their last part (visitors see what they gave, not where the server keeps it) and the text shown
literally (user-chosen names may hold Markdown).
"""

from __future__ import annotations

import streamlit as st

from components import no_paths, plain
from core.platform.errors import error_message


def message(error: BaseException | str, prefix: str = "") -> str:
    """The line :func:`show` displays: ``prefix`` (our own text, Markdown allowed) and the error's
    one-line message, literal and without server paths."""
    text = error if isinstance(error, str) else error_message(error)
    return prefix + plain(no_paths(text))


def show(error: BaseException | str, prefix: str = "", *, container=st) -> None:
    """Show ``error`` (an exception, or a job's error message) as one ``st.error`` line.

    Args:
        error: What went wrong.
        prefix: Our own words before it, e.g. ``"Cannot start: "``.
        container: Where to show it (default: the page; a column or ``st.container()``).
    """
    container.error(message(error, prefix))
