"""The app's pages (one file each) and the navigation ``app.py`` builds from :data:`PAGES`.

The folder is named ``components`` rather than ``pages`` so that Streamlit's legacy "pages
directory" router never sees it: with ``st.navigation`` the app defines its pages itself, and a
deep link such as ``/train`` as the first request gets the real navigation.
"""

import re

import streamlit as st

from components import _streamlit_private, session

_streamlit_private.install()

PAGES = (
    # (script, title, icon, url path)
    ("pages/home.py", "Home", ":material/home:", None),
    ("pages/data.py", "Data", ":material/dataset:", "data"),
    ("pages/train.py", "Train", ":material/model_training:", "train"),
    ("pages/classify.py", "Classify", ":material/image_search:", "classify"),
    ("pages/scaling.py", "Scaling", ":material/straighten:", "scaling"),
)
ICONS = {title: icon for _, title, icon, _ in PAGES}


_MARKDOWN_SPECIAL = set("\\`*_{}[]<>()#+-.!|~$:=^&\"'")


def plain(text) -> str:
    """``text`` escaped so that Streamlit's Markdown shows it literally (user text: file, class,
    dataset and run names), e.g. ``a*b*`` stays ``a*b*`` instead of turning italic."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in str(text)).replace("\n", " ")


_SERVER_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)*([\w.@+-]+)")


def no_paths(text) -> str:
    """``text`` with each absolute server path cut to its last part (``/srv/x/cifar10`` →
    ``cifar10``): visitors see what a run used, not where the server keeps it."""
    return _SERVER_PATH.sub(r"\1", str(text))


def run_navigation() -> None:
    """Set up the app shell (config, navigation) and run the selected page."""
    st.set_page_config(page_title="EffNet Lab", page_icon=":material/science:", layout="wide")
    pages = [
        st.Page(script, title=title, icon=icon, url_path=url, default=url is None)
        for script, title, icon, url in PAGES
    ]
    page = st.navigation(pages)
    refused = session.single_user_refused()
    if refused:  # on every page: the operator asked for something this server will not do
        st.warning(refused, icon=":material/group:")
    page.run()
