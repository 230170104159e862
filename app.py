"""EffNet Lab: the Streamlit entry point (``streamlit run app.py``) and its router.

The pages are functions (``render`` in pages/<name>.py), listed once in :data:`pages.PAGES`;
:func:`main` builds the navigation from that table and runs the visitor's page. A page file that
Streamlit's legacy ``pages/`` router runs as a script calls :func:`main` too (see :mod:`pages`).

``streamlit run`` finds ``app`` below (an ``st.App``) and serves it: Streamlit plus the workspace
cookie, the private-link route and hourly workspace expiry (:mod:`components.web`); each page
view then runs this file as the script (``__name__ == "__main__"``).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any page imports TensorFlow

import streamlit as st
from starlette.middleware import Middleware

import pages
from components import _streamlit_private, errors, executor, session, web, workspace_panel

app = st.App(
    "app.py",
    routes=web.routes(),
    middleware=[Middleware(web.WorkspaceCookie)],
    lifespan=web.lifespan,
)


def main() -> None:
    """The app shell (page config, the navigation of :data:`pages.PAGES`, a warning when
    single-user mode is refused), then the page."""
    _streamlit_private.install()
    st.set_page_config(page_title="EffNet Lab", page_icon=":material/science:", layout="wide")
    page = st.navigation([pages.page(row.name) for row in pages.PAGES])
    refused = session.single_user_refused()
    if refused:  # on every page: the operator asked for something this server will not do
        st.warning(refused, icon=":material/group:")
    unreachable = executor.problem()
    if unreachable:  # on every page: jobs cannot start (EFFNET_LAB_EXECUTOR=ray, no cluster)
        errors.show(unreachable, "Background jobs cannot start: ")
    workspace_panel.render()  # the sidebar's workspace panel, on every page
    page.run()


if __name__ == "__main__":
    main()
