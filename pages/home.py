"""Home page: what EffNet Lab does, a link to each page, and what this machine runs it on."""

import streamlit as st

import pages
from components import no_paths
from core.models import weights
from core.platform import runtime


@st.cache_data(ttl=60, show_spinner="Checking the runtime…")
def _runtime():
    return runtime.runtime_info(), weights.status()


def render() -> None:
    """The Home page: the app in two sentences, the other pages, the runtime and the weights."""
    st.title(":material/science: EffNet Lab", anchor=False)
    st.markdown(
        "Train or load an **EfficientNet** image classifier, watch it learn, classify your own "
        "images, and explore how EfficientNet scales depth, width and resolution together."
    )
    # A link's label stays on one line (Streamlit cuts what does not fit), so each link is just
    # the page's name; its description goes below it, where it can wrap.
    others = [row for row in pages.PAGES if row.name != pages.HOME]
    for col, row in zip(st.columns(len(others)), others):
        col.page_link(pages.page(row.name), label=f"**{row.title}**", icon=row.icon)
        col.caption(row.blurb)

    info, weight_rows = _runtime()
    st.subheader("Runtime")
    c1, c2, c3 = st.columns(3)
    c1.metric("Keras backend", info["backend"], help=f"Keras {info['keras']}")
    c2.metric(
        "Framework",
        f"TensorFlow {info['tensorflow']}"
        if "tensorflow" in info
        else f"JAX {info.get('jax', '?')}",
    )
    c3.metric("Device", "GPU" if info["gpus"] else "CPU", help=info["device"])
    st.caption(f"Device: {info['device']} · Python {info['python']}")
    if not info["gpus"]:
        st.info(
            "No GPU found: everything works on the CPU, training is just slower. See the README "
            "for GPU set-up."
        )

    st.subheader("ImageNet weights")
    st.dataframe(
        [{**row, "where": no_paths(row["where"])} for row in weight_rows],  # file names only
        hide_index=True,
        column_config={"available": st.column_config.CheckboxColumn("available")},
    )
    st.caption(
        "With weights = auto, the official Keras B0 weights are used when cached or "
        "downloadable; otherwise the offline EfficientNet-Lite0 weights."
    )


if __name__ == "__main__":  # run by the legacy pages/ router: see pages/__init__.py
    import app

    app.main()
