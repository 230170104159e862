"""EffNet Lab: the Streamlit entry point (``streamlit run app.py``).

``streamlit run`` finds ``app`` below (an ``st.App``) and serves it: Streamlit plus the
workspace cookie, the private-link route and hourly workspace expiry (:mod:`components.web`). Each page view then runs
this file as the script (``__name__ == "__main__"``), which only builds the navigation.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any page imports TensorFlow

import streamlit as st
from starlette.middleware import Middleware

from components import web

app = st.App(
    "app.py",
    routes=web.routes(),
    middleware=[Middleware(web.WorkspaceCookie)],
    lifespan=web.lifespan,
)

if __name__ == "__main__":
    from components import run_navigation

    run_navigation()
