"""Error analysis of a finished run (Train page, run details): per-class precision, recall and
F1, the confusion matrix (click a cell, or pick a pair, to see its test images), the most-confused
pairs, and the misclassified gallery, each image optionally with its Grad-CAM heatmap."""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from components import charts, no_paths, plain
from core.serving import explain, inference
from core.training import evaluation, runs

_GALLERY_PX = 96  # stored test images are small (32 px for CIFAR-10): shown at this size


@st.cache_resource(max_entries=2, show_spinner="Loading the run's model for the heatmaps…")
def run_classifier(path: str, _version: float) -> inference.Classifier:
    """A run's model, loaded once per (run, model file version)."""
    return inference.load_classifier(path)


@st.cache_data(max_entries=8, show_spinner="Computing Grad-CAM heatmaps…")
def heatmap_gallery(path: str, version: float, indices: tuple[int, ...]) -> list[np.ndarray]:
    """The kept test images ``indices`` of a run with their Grad-CAM heatmaps over them, at
    :data:`_GALLERY_PX` pixels."""
    saved = runs.predictions(path)
    classifier = run_classifier(path, version)
    where = np.searchsorted(saved.kept, indices)
    shown = [
        Image.fromarray(saved.images[w]).resize(
            (_GALLERY_PX, _GALLERY_PX), Image.Resampling.BICUBIC
        )
        for w in where
    ]
    cams = classifier.explain([Image.fromarray(saved.images[w]) for w in where])
    return [
        np.asarray(explain.overlay(im, explain.place(cam, classifier.preprocessing, im.size)))
        for im, cam in zip(shown, cams)
    ]


def gallery(items: list[dict], run, heatmaps: bool) -> None:
    """Test images with "true → predicted (confidence)" captions, optionally with heatmaps."""
    captions = [f"{plain(m['true'])} → {plain(m['pred'])} ({m['prob']:.0%})" for m in items]
    pictures = [m["image"] for m in items]
    if heatmaps and items and run.has_model:
        try:
            pictures = heatmap_gallery(
                str(run.path),
                (run.path / "model.keras").stat().st_mtime,
                tuple(m["index"] for m in items),
            )
        except Exception as exc:  # a model that cannot run: a message, not a traceback
            st.error(f"Could not compute heatmaps: {plain(no_paths(exc))}")
    st.image(pictures, width=_GALLERY_PX, caption=captions)


def error_analysis(run) -> None:
    """Per-class precision/recall/F1, the confusion matrix (click a cell, or pick a pair, to see
    its test images), the most-confused pairs and the misclassified gallery."""
    names = run.class_names or [str(i) for i in range(len(run.confusion))]
    metrics = evaluation.class_metrics(run.confusion, names)
    left, right = st.columns([3, 2])
    event = left.plotly_chart(
        charts.confusion_figure(run.confusion, names),
        key="train_confusion",
        on_select="rerun",
        selection_mode="points",
    )
    rows = charts.class_metrics_rows(metrics)
    right.dataframe(
        rows,
        hide_index=True,
        key="train_per_class",
        height=min(35 * len(rows) + 38, 460),
        column_config={
            c: st.column_config.NumberColumn(c, format="%.3f")
            for c in ("precision", "recall", "f1")
        },
    )
    macro = metrics["macro"]
    right.caption(
        f"Test split. Macro averages (every class counts the same): precision "
        f"{macro['precision']:.3f}, recall {macro['recall']:.3f}, F1 {macro['f1']:.3f}."
    )
    pairs = evaluation.most_confused(run.confusion, names)
    saved = runs.predictions(run.path) if run.status != "running" else None
    heat = st.toggle(
        "Grad-CAM heatmaps on the test images below",
        key="train_gallery_cam",
        disabled=saved is None or not run.has_model,
        help="where the model looked for the class it predicted (bright: raised its score most)",
    )
    pairs_col, cell_col = st.columns([2, 3])
    pairs_col.markdown("**Most-confused pairs** (pick a row to see its images)")
    picked_row = None
    if pairs:
        rows = pairs_col.dataframe(
            pairs,
            hide_index=True,
            key="train_pairs",
            on_select="rerun",
            selection_mode="single-row",
            column_config={
                "share": st.column_config.NumberColumn("share of true class", format="percent")
            },
        )
        picked_row = next(iter(rows.selection.rows), None)
    else:
        pairs_col.caption("No mistakes on the test split.")
    # A new click on a cell, or a newly picked pair, fills the pickers (once per click).
    clicked = charts.selected_cell(event)
    for seen, choice in (
        ("train_cell_clicked", clicked and (names[clicked[0]], names[clicked[1]])),
        (
            "train_pair_clicked",
            None if picked_row is None else (pairs[picked_row]["true"], pairs[picked_row]["pred"]),
        ),
    ):
        if choice and choice != st.session_state.get(seen):
            st.session_state["train_cell_true"], st.session_state["train_cell_pred"] = choice
        st.session_state[seen] = choice
    for key, default in (
        ("train_cell_true", pairs[0]["true"] if pairs else names[0]),
        ("train_cell_pred", pairs[0]["pred"] if pairs else names[0]),
    ):
        if st.session_state.get(key) not in names:
            st.session_state[key] = default
    with cell_col:
        st.markdown("**Test images of one cell** (click a cell of the matrix, or pick a pair)")
        a, b = st.columns(2)
        true = a.selectbox("True class", names, key="train_cell_true")
        pred = b.selectbox("Predicted class", names, key="train_cell_pred")
        if saved is None:
            st.caption(
                "This run kept no test predictions (it was saved before they were kept, "
                "or has not finished)."
            )
        else:
            items, total = saved.cell(names.index(true), names.index(pred))
            st.caption(
                f"{total} test image(s) are {'correctly ' if true == pred else ''}"
                f"{'classified as' if true == pred else 'true'} {plain(true)}"
                f"{'' if true == pred else f', predicted {plain(pred)}'}; "
                f"{'the ' + str(len(items)) + ' most confident shown' if items else 'none to show'}."
            )
            gallery(items, run, heat)
    mistakes = (
        saved.mistakes()
        if saved is not None
        else (runs.misclassified(run.path) if run.status != "running" else [])
    )
    if mistakes:
        st.markdown(
            "**Misclassified test images**, most confident mistakes first "
            "(true → predicted, confidence)"
        )
        gallery(mistakes, run, heat and saved is not None)
