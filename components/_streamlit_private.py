"""The one private Streamlit API EffNet Lab touches, and why.

After every script run (fragment reruns included) Streamlit calls
``streamlit.runtime.scriptrunner.script_runner._clean_problem_modules``, which calls
``keras.backend.clear_session()`` whenever Keras is imported. In this app that is harmful: the
Train and Scaling pages rerun a progress fragment every second per visitor, each clear costs
about half a second of CPU with TensorFlow loaded, and clearing Keras's global state while
another visitor's session is building or running a cached classifier (sessions run in parallel
threads) can break it. Our models live in ``st.cache_resource`` and training runs in worker
processes, so nothing here needs the clear: :func:`install` makes it a no-op.
``tests/test_private_apis.py`` fails if Streamlit renames or moves the function.
"""

from streamlit.runtime.scriptrunner import script_runner

PATCHED = "_clean_problem_modules"


def install() -> None:
    """Turn Streamlit's per-run Keras ``clear_session`` into a no-op (idempotent)."""
    if not hasattr(script_runner, PATCHED):
        raise RuntimeError(
            f"streamlit.runtime.scriptrunner.script_runner.{PATCHED} is gone: "
            "check whether Streamlit still clears Keras after every run"
        )
    setattr(script_runner, PATCHED, _keep_keras_state)


def _keep_keras_state() -> None:
    """Replaces Streamlit's cleanup: keeps Keras's session (see the module docstring)."""
