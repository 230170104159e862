"""The app's pages and its navigation, shared by ``app.py`` and every page.

Why pages call :func:`ensure_navigation`: with a ``pages/`` folder beside ``app.py``, Streamlit
(up to at least 1.67) routes the first request after a server start with its legacy "pages
directory" router until some session has run ``st.navigation``. A deep link such as
``/train`` as the very first request would then run ``pages/train.py`` alone, without our
navigation, titles or layout. Each page therefore starts by calling :func:`ensure_navigation`,
which detects that case, runs the real navigation (which serves the requested page) and stops.
"""

import streamlit as st
from streamlit.runtime.scriptrunner import script_runner

# Streamlit calls keras.backend.clear_session() after every script run, and the Train page reruns
# its progress fragment every second. Under a training thread that resets Keras's global state
# (layer names, dtype policy) mid-build and costs ~0.5 s of CPU per rerun with TensorFlow loaded,
# starving the worker. Our models live in core's worker thread and st.cache_resource, not in
# script state, so skip it. (The matching post-run garbage collection is off in config.toml.)
script_runner._clean_problem_modules = lambda: None

PAGES = (
    # (script, title, icon, url path)
    ("pages/home.py", "Home", "🏠", None),
    ("pages/train.py", "Train", "🏋️", "train"),
    ("pages/classify.py", "Classify", "🔎", "classify"),
    ("pages/scaling.py", "Scaling", "📐", "scaling"),
)


def run_navigation() -> None:
    """Set up the app shell (config, navigation) and run the selected page."""
    st.set_page_config(page_title="EffNet Lab", page_icon="🧪", layout="wide")
    pages = [st.Page(script, title=title, icon=icon, url_path=url, default=url is None)
             for script, title, icon, url in PAGES]
    st.navigation(pages).run()


def ensure_navigation() -> None:
    """Run the real navigation instead, if Streamlit's legacy router ran this page directly."""
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        run_navigation()
        st.stop()
