"""EffNet Lab: the Streamlit entry point (``streamlit run app.py``). It only builds the navigation."""

import os

import streamlit as st

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

st.set_page_config(page_title="EffNet Lab", page_icon="🧪", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/train.py", title="Train", icon="🏋️", url_path="train"),
    st.Page("pages/classify.py", title="Classify", icon="🔎", url_path="classify"),
    st.Page("pages/scaling.py", title="Scaling", icon="📐", url_path="scaling"),
]
st.navigation(pages).run()
