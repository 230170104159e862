"""Classify page: upload images (or take a photo), see the top-k classes of an ImageNet model or a trained run."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import inference
from pages import ensure_navigation

ensure_navigation()

IMAGENET = "ImageNet (1000 classes)"


@st.cache_resource(show_spinner="Loading the model (the first start converts the offline weights)…", max_entries=3)
def get_classifier(model: str, weights: str, _version: float = 0.0) -> inference.Classifier:
    """One loaded model per (model, weights); ``_version`` busts the cache when a run is rewritten."""
    return inference.load_classifier(model, weights)


def trained_runs() -> dict[str, tuple[str, float]]:
    """Finished training runs with a saved model: label → (path, mtime)."""
    try:
        from core import runs
    except ImportError:
        return {}
    found = {}
    for run in runs.list_runs():
        model_file = run.path / "model.keras"
        if model_file.exists() and run.status in ("done", "stopped"):
            acc = f"{run.test_accuracy:.1%}" if run.test_accuracy is not None else "n/a"
            found[f"Run {run.name} ({len(run.class_names)} classes, test acc {acc})"] = (
                str(run.path), model_file.stat().st_mtime)
    return found


def top_chart(top: list[dict]) -> go.Figure:
    """Horizontal bars, best class on top."""
    rows = list(reversed(top))
    fig = go.Figure(go.Bar(x=[r["prob"] for r in rows], y=[r["label"] for r in rows], orientation="h",
                           text=[f"{r['prob']:.1%}" for r in rows], textposition="auto",
                           marker_color="#2f6fde"))
    fig.update_layout(height=60 + 36 * len(rows), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(range=[0, 1], tickformat=".0%"))
    return fig


# ----- inputs ---------------------------------------------------------------------------------
st.title("🔎 Classify")
runs_available = trained_runs()
left, mid, right = st.columns([3, 2, 2])
choice = left.selectbox("Model", [IMAGENET, *runs_available], key="classify_model")
weights = mid.selectbox("ImageNet weights", ["auto", "imagenet", "lite0"], key="classify_weights",
                        disabled=choice != IMAGENET,
                        help="auto: official Keras B0 if cached or downloadable, else the offline Lite0 weights")
top_k = right.slider("Top-k", 1, 10, 5, key="classify_topk")
uploads = st.file_uploader("Images", type=list(inference.EXTENSIONS), accept_multiple_files=True,
                           key="classify_uploads",
                           help=f"JPEG, PNG, WebP, BMP, GIF (first frame), TIFF · up to "
                                f"{inference.MAX_FILE_BYTES // 2**20} MB each")
if st.toggle("Use the camera", key="classify_camera_on"):
    photo = st.camera_input("Take a photo", key="classify_camera")
    if photo is not None:
        uploads = [*uploads, photo]

# ----- guard ----------------------------------------------------------------------------------
if not uploads:
    st.info("Upload one or more images to classify them.")
    st.stop()
try:
    if choice == IMAGENET:
        classifier = get_classifier("imagenet", weights)
    else:
        path, version = runs_available[choice]
        classifier = get_classifier(path, "auto", version)
except ValueError as exc:
    st.error(f"Could not load the model: {exc}")
    st.stop()
st.caption(f"Model: {choice} · weights: {classifier.weights} · input {classifier.resolution}×"
           f"{classifier.resolution}", help=classifier.detail)

# ----- one core call: decode every file (bad ones get a message), classify the rest -----------
images, names, errors = [], [], []
for upload in uploads:
    try:
        images.append(inference.load_image(upload.getvalue()))
        names.append(upload.name)
    except inference.ImageError as exc:
        errors.append((upload.name, str(exc)))
try:
    predictions = classifier.classify(images, top=top_k)
except Exception as exc:  # e.g. a saved run whose model cannot run: a message, not a traceback
    st.error(f"The model could not classify these images: {exc}")
    st.stop()

# ----- render ---------------------------------------------------------------------------------
for name, message in errors:
    st.error(f"**{name}**: {message}", icon="⚠️")
for name, image, pred in zip(names, images, predictions):
    with st.container(border=True):
        pic, chart = st.columns([1, 2])
        pic.image(image, caption=name, width="stretch")
        chart.markdown(f"**{pred.top[0]['label']}** · {pred.top[0]['prob']:.1%} · "
                       f"{pred.seconds * 1000:.0f} ms")
        chart.plotly_chart(top_chart(pred.top), key=f"chart_{name}_{id(pred)}")
if len(predictions) > 1:
    st.subheader("All results")
    st.dataframe(pd.DataFrame([
        {"file": n, "top-1": p.top[0]["label"], "probability": p.top[0]["prob"],
         "top-5": ", ".join(t["label"] for t in p.top[:5]), "ms": round(p.seconds * 1000, 1)}
        for n, p in zip(names, predictions)
    ]), hide_index=True)
