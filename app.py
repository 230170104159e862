"""EffNet Lab: the Streamlit entry point (``streamlit run app.py``). It only builds the navigation."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any page imports TensorFlow

from components import run_navigation

run_navigation()
