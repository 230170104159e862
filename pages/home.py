"""Start page: what EffNet Lab does, and what this machine runs it on."""

import streamlit as st

from components import ICONS
from core.models import weights
from core.platform import runtime


@st.cache_data(ttl=60, show_spinner="Checking the runtime…")
def _runtime():
    return runtime.runtime_info(), weights.status()


st.title(":material/science: EffNet Lab", anchor=False)
st.markdown(
    "Train or load an **EfficientNet** image classifier, watch it learn, classify your own images, "
    "and explore how EfficientNet scales depth, width and resolution together."
)
col0, col1, col2, col3 = st.columns(4)
col0.page_link(
    "pages/data.py",
    label="**Data** — import a zip or build a dataset, check it",
    icon=ICONS["Data"],
)
col1.page_link(
    "pages/train.py",
    label="**Train** — transfer learning with live curves",
    icon=ICONS["Train"],
)
col2.page_link(
    "pages/classify.py",
    label="**Classify** — upload images, see the top 5",
    icon=ICONS["Classify"],
)
col3.page_link(
    "pages/scaling.py",
    label="**Scaling** — φ, α, β, γ and the network they give",
    icon=ICONS["Scaling"],
)

info, weight_rows = _runtime()
st.subheader("Runtime")
c1, c2, c3 = st.columns(3)
c1.metric("Keras backend", info["backend"], help=f"Keras {info['keras']}")
c2.metric(
    "Framework",
    f"TensorFlow {info['tensorflow']}" if "tensorflow" in info else f"JAX {info.get('jax', '?')}",
)
c3.metric("Device", "GPU" if info["gpus"] else "CPU", help=info["device"])
st.caption(f"Device: {info['device']} · Python {info['python']}")
if not info["gpus"]:
    st.info(
        "No GPU found: everything works on the CPU, training is just slower. See the README for GPU set-up."
    )

st.subheader("ImageNet weights")
st.dataframe(
    weight_rows,
    hide_index=True,
    column_config={"available": st.column_config.CheckboxColumn("available")},
)
st.caption(
    "With weights = auto, the official Keras B0 weights are used when cached or downloadable; "
    "otherwise the offline EfficientNet-Lite0 weights."
)
