"""The app's five pages, one module each, and the one table that names them.

Each module here holds its page in one function, ``render``. :data:`PAGES` gives every page its
title, icon, URL path and the one-line description the Home page shows; :func:`page` turns a row
into the ``st.Page`` that app.py's navigation runs and that ``st.page_link`` and
``st.switch_page`` point at (one builder, so a link and the navigation always agree).

Why each page file ends with ``if __name__ == "__main__":``: Streamlit (1.67) runs a folder named
``pages`` next to the entry point as its legacy multipage app until some session calls
``st.navigation`` (``PagesManager.uses_pages_directory``, set once per server process). On a
fresh server, the first visitor who opens a deep link such as ``/train`` therefore gets
``pages/train.py`` executed as a script, named ``__main__``, instead of app.py. The guard hands
that run over to ``app.main()``, whose ``st.navigation`` resolves the same URL path to the same
page (the legacy router and ``st.Page`` both hash the URL path) and switches the server to the
app's navigation for good. Imported as ``pages.train``, the guard does nothing.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import streamlit as st


class PageRow(NamedTuple):
    """One page of the app.

    Attributes:
        name: Its module in this package and its URL path (``/train``).
        title: Its name in the navigation and on links.
        icon: A Material icon, ``:material/…:``.
        blurb: What it is for, in a few words (the Home page's link row, the navigation's
            tooltip).
    """

    name: str
    title: str
    icon: str
    blurb: str


PAGES = (
    PageRow("home", "Home", ":material/home:", "What EffNet Lab does, and the machine it runs on"),
    PageRow("data", "Data", ":material/dataset:", "Import a zip or build a dataset, then check it"),
    PageRow("train", "Train", ":material/model_training:", "Transfer learning with live curves"),
    PageRow("classify", "Classify", ":material/image_search:", "Upload images, see the top 5"),
    PageRow("scaling", "Scaling", ":material/straighten:", "φ, α, β, γ and the network they give"),
)
HOME = PAGES[0].name  # the default page, at the app's root URL
ICONS = {row.name: row.icon for row in PAGES}
_ROWS = {row.name: row for row in PAGES}


def page(name: str) -> st.Page:
    """The ``st.Page`` of page ``name``: its module's ``render`` with the table's title, icon,
    URL path and description (the Home page is the default, at ``/``)."""
    row = _ROWS[name]
    # Looked up by name, not imported at the top: every page module imports this table.
    module = importlib.import_module(f"{__name__}.{name}")
    return st.Page(
        module.render,
        title=row.title,
        icon=row.icon,
        url_path=row.name,
        default=name == HOME,
        help=row.blurb,
    )
