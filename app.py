"""EffNet Lab: the Streamlit entry point (``streamlit run app.py``) and its router.

The pages are functions (``render`` in pages/<name>.py), listed once in :data:`pages.PAGES`;
:func:`main` builds the navigation from that table and runs the visitor's page. A page file that
Streamlit's legacy ``pages/`` router runs as a script calls :func:`main` too (see :mod:`pages`).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any page imports TensorFlow

import streamlit as st

import pages
from components import _streamlit_private


def main() -> None:
    """The app shell (page config, the navigation of :data:`pages.PAGES`), then the page."""
    _streamlit_private.install()
    st.set_page_config(page_title="EffNet Lab", page_icon=":material/science:", layout="wide")
    st.navigation([pages.page(row.name) for row in pages.PAGES]).run()


if __name__ == "__main__":
    main()
