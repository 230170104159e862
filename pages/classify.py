"""Classify page: upload images (or take a photo), see the top-k classes of an ImageNet model or a
trained run. Images are decoded, classified and released a batch at a time."""

from pathlib import Path

import pandas as pd
import streamlit as st

from components import errors, exports, no_paths, plain, session
from core.data import images
from core.platform.errors import UserError
from core.serving import explain, inference
from pages import ICONS

IMAGENET = "ImageNet (1000 classes)"


@st.cache_resource(
    show_spinner="Loading the model (the first start converts the offline weights)…", max_entries=3
)
def get_classifier(model: str, weights: str, _version: float = 0.0) -> inference.Classifier:
    """One loaded model per (model, weights); ``_version`` busts the cache when a run is rewritten."""
    return inference.load_classifier(model, weights)


def trained_runs() -> dict[str, tuple[str, float]]:
    """This workspace's finished runs with a model, and command-line runs: label → (path, mtime)."""
    found = {}
    for name, run in session.visible_runs().items():
        model_file = run.path / "model.keras"
        if model_file.exists() and run.status in ("done", "stopped", "interrupted"):
            acc = f"{run.test_accuracy:.1%}" if run.test_accuracy is not None else "n/a"
            if (run.config or {}).get("validation") == "test":
                acc += ", blog protocol: optimistic"
            found[f"Run {name} ({len(run.class_names)} classes, test acc {acc})"] = (
                str(run.path),
                model_file.stat().st_mtime,
            )
    return found


def top_bars(where, top: list[dict]) -> None:
    """The top-k classes as bars, best first: Streamlit's own progress bars, not a Plotly chart,
    because eight visitors' browsers drawing Plotly charts took more CPU than the server's
    classification (benchmarks/load_test.py); labels as plain text, never Markdown."""
    for row in top:
        where.progress(
            min(max(row["prob"], 0.0), 1.0), text=f"{plain(row['label'])} · {row['prob']:.1%}"
        )


def render() -> None:
    """The Classify page: model and images → guard → one classification pass, shown as it goes."""
    # ----- inputs
    st.title(f"{ICONS['classify']} Classify", anchor=False)
    runs_available = trained_runs()
    left, mid, right = st.columns([3, 2, 2])
    choice = left.selectbox("Model", [IMAGENET, *runs_available], key="classify_model")
    weights = mid.selectbox(
        "ImageNet weights",
        ["auto", "imagenet", "lite0"],
        key="classify_weights",
        disabled=choice != IMAGENET,
        help="auto: official Keras B0 if cached or downloadable, else the offline Lite0 weights",
    )
    top_k = right.slider("Top-k", 1, 10, 5, key="classify_topk")
    uploads = st.file_uploader(
        "Images",
        type=list(images.EXTENSIONS),
        accept_multiple_files=True,
        key="classify_uploads",
        max_upload_size=images.MAX_FILE_BYTES // 2**20,
        help=f"JPEG, PNG, WebP, BMP, GIF (first frame), TIFF · up to "
        f"{images.MAX_FILE_BYTES // 2**20} MB and "
        f"{images.MAX_PIXELS // 10**6} megapixels each · at most "
        f"{inference.MAX_FILES} files at once",
    )
    with st.expander("Export this model", icon=":material/ios_share:"):
        if choice == IMAGENET:
            exports.export_section("imagenet", f"imagenet-{weights}", weights)
        else:
            exports.export_section(runs_available[choice][0], Path(runs_available[choice][0]).name)
    if st.toggle("Use the camera", key="classify_camera_on"):
        photo = st.camera_input("Take a photo", key="classify_camera")
        if photo is not None:
            uploads = [*uploads, photo]

    # ----- guard
    if not uploads:
        st.info("Upload one or more images to classify them.")
        return
    if len(uploads) > inference.MAX_FILES:
        st.warning(
            f"{len(uploads)} files were given; only the first {inference.MAX_FILES} are "
            "classified. Remove some, or classify the rest in another round."
        )
        uploads = uploads[: inference.MAX_FILES]
    try:
        if choice == IMAGENET:
            classifier = get_classifier("imagenet", weights)
        else:
            path, version = runs_available[choice]
            classifier = get_classifier(path, "auto", version)
    except UserError as exc:
        errors.show(exc, "Could not load the model: ")
        return
    prep = classifier.preprocessing
    st.caption(
        f"Model: {plain(choice)} · weights: {plain(classifier.weights)} · input {prep.size}×{prep.size} "
        f"({'centre crop ' + format(prep.crop, '.3g') if prep.crop < 1 else 'largest centre square'}, "
        f"{prep.resample})",
        help=no_paths(classifier.detail),
    )

    # ----- one core call, rendered as results arrive (one batch in memory at a time)
    rows = []
    # Heatmaps cost a backward pass: computed only while some image's toggle is on.
    wants_cam = any(st.session_state.get(f"classify_cam_{i}") for i in range(len(uploads)))
    try:
        for index, item in enumerate(
            classifier.classify_files(
                ((u.name, u.getvalue()) for u in uploads),
                top=top_k,
                previews=True,
                explain=wants_cam,
            )
        ):
            with st.container(border=True):
                if item.error:
                    st.error(
                        errors.message(item.error, f"{plain(item.name)}: "),
                        icon=":material/warning:",
                    )
                    continue
                pic, chart = st.columns([1, 2])
                show_cam = pic.toggle(
                    "Grad-CAM heatmap",
                    key=f"classify_cam_{index}",
                    help="where the model looked for its top class (Grad-CAM): "
                    "bright = raised the score most",
                )
                if show_cam and item.cam is not None:
                    heat = explain.place(item.cam, prep, item.preview.size)
                    pic.image(explain.overlay(item.preview, heat), width="stretch")
                else:
                    pic.image(item.preview, width="stretch")
                pic.text(item.name)
                best = item.prediction.top[0]
                chart.markdown(
                    f"**{plain(best['label'])}** · {best['prob']:.1%} · "
                    f"{item.prediction.seconds * 1000:.0f} ms"
                )
                top_bars(chart, item.prediction.top)
                rows.append(
                    {
                        "file": item.name,
                        "top-1": best["label"],
                        "probability": best["prob"],
                        "top-5": ", ".join(t["label"] for t in item.prediction.top[:5]),
                        "ms": round(item.prediction.seconds * 1000, 1),
                    }
                )
    except Exception as exc:  # e.g. a saved run whose model cannot run: a message, not a traceback
        errors.show(exc, "The model could not classify these images: ")
        return
    if len(rows) > 1:
        st.subheader("All results", anchor=False)
        st.dataframe(pd.DataFrame(rows), hide_index=True)


if __name__ == "__main__":  # run by the legacy pages/ router: see pages/__init__.py
    import app

    app.main()
