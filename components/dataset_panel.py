"""Datasets as this browser session sees them, and their health-check panel (Train and Data pages).

Datasets are private like runs: a workspace sees (and may train on) the datasets it created or
imported, plus those without an owner (imported from the command line or placed in the data
folder by the operator), which every session sees read-only. The health check runs as a
background job (kind "data_check", one at a time on the machine), shown by the job panel
(:mod:`components.job_panel`); its report is cached by the dataset's contents, so checking an
unchanged dataset again is instant.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from components import errors, job_panel, plain, session
from components.charts import plotly_text
from core.data import augment, health
from core.data.health_report import HealthReport
from core.jobs.runner import QueueFull

ICON = ":material/health_and_safety:"
SPLIT_COLORS = {"train": "#2f6fde", "val": "#ff7f0e", "test": "#2ca02c"}
MAX_CLASSES_SHOWN = 20  # classes in the sample grid


def visible_datasets() -> list[str]:
    """Refs of the datasets this workspace may see: its own, and those without an owner
    (:func:`components.session.visible_datasets`; show them with ``session.dataset_label``)."""
    return session.visible_datasets()


def check_section(spec: str) -> None:
    """The Train page's compact health section for the picked dataset."""
    with st.expander(f"Dataset check: {plain(session.dataset_label(spec))}", icon=ICON):
        check_panel(spec, "train_health")


def check_panel(spec: str, key: str) -> None:
    """A Check button, then this session's check of ``spec`` in the job panel: its place in the
    queue or its progress, then the report."""
    job = _my_check(spec)
    busy = job is not None and job.snapshot().active
    if (
        st.button(
            "Check again" if job is not None else "Check this dataset",
            key=f"{key}_start",
            icon=ICON,
            disabled=busy,
            help="Reads every image once: duplicates, leaks between splits, "
            "unreadable files, odd sizes",
        )
        and not busy
    ):
        try:
            session.start_job("data_check", {"data": spec, **session.dataset_args()})
        except QueueFull as exc:  # this workspace (or everyone) has too many jobs waiting
            errors.show(exc)
    job_panel.show(
        "data_check",
        key,
        result=lambda job, snap: render_report(spec, HealthReport.from_dict(snap.result), key),
        failed="The check failed",
        when=lambda job: job.args.get("data") == spec,
    )


def _my_check(spec: str):
    job = session.my_job("data_check")
    return job if job is not None and job.args.get("data") == spec else None


# ----- the report ---------------------------------------------------------------------------------
def render_report(spec: str, r: HealthReport, key: str) -> None:
    """One health report: figures, problems, chart, lists, sample grid, augmentation preview."""
    cols = st.columns(7)
    cols[0].metric("Images", r.images)
    cols[1].metric("Classes", len(r.classes))
    cols[2].metric(
        "Imbalance",
        "—" if r.imbalance is None else f"{r.imbalance:g}×",
        help="Largest class over smallest class",
    )
    cols[3].metric("Unreadable", r.unreadable_count)
    cols[4].metric("Duplicates", r.duplicates_count, help="Same bytes (SHA-256)")
    cols[5].metric(
        "Near duplicates",
        r.near_duplicates_count,
        help=f"Perceptual hash within {r.settings.near_bits} bits, thumbnails "
        f"correlated ≥ {r.settings.near_correlation}",
    )
    cols[6].metric(
        "Leaks",
        r.leaks_count,
        help="Duplicates in different splits: the model would be tested on what it trained on",
    )
    for line in r.problems:
        st.warning(plain(line), icon=":material/warning:")
    if r.leaks_count:
        st.warning(
            f"{r.leaks_count} duplicate pair(s) sit in different splits: test accuracy "
            "will be optimistic. Remove one image of each pair.",
            icon=":material/warning:",
        )
    for line in r.notes:
        st.caption(plain(line))
    again = " (unchanged since the last check)" if r.cached else ""
    st.caption(f"{r.layout}; checked in {r.seconds} s{again}")
    tabs = st.tabs(
        ["Per class", "Samples", "Augmentation", "Duplicates and leaks", "Unreadable and odd sizes"]
    )
    with tabs[0]:
        st.plotly_chart(class_chart(r), key=f"{key}_chart")
    with tabs[1]:
        _samples(spec, r)
    with tabs[2]:
        _augmentation(spec, r, key)
    with tabs[3]:
        _table(
            f"Leaks ({r.leaks_count})",
            [
                {
                    "image": x.a,
                    "split": x.splits[0],
                    "duplicate": x.b,
                    "its split": x.splits[1],
                    "kind": x.kind,
                }
                for x in r.leaks
            ],
            f"{key}_leaks",
        )
        _table(
            f"Exact duplicates ({r.duplicates_count})",
            [{"image": a, "same bytes as": b} for a, b in r.duplicates],
            f"{key}_dups",
        )
        _table(
            f"Near duplicates ({r.near_duplicates_count})",
            [{"image": a, "looks like": b} for a, b in r.near_duplicates],
            f"{key}_near",
        )
    with tabs[4]:
        _table(
            f"Unreadable ({r.unreadable_count})",
            [{"file": x.file, "reason": x.reason} for x in r.unreadable],
            f"{key}_unreadable",
        )
        _table(
            f"Tiny: shorter side under {r.settings.tiny_side} px ({r.tiny_count})",
            [{"file": x.file, "width": x.width, "height": x.height} for x in r.tiny],
            f"{key}_tiny",
        )
        _table(
            f"Extreme aspect: over {r.settings.extreme_aspect:g}:1 ({r.extreme_aspect_count})",
            [{"file": x.file, "width": x.width, "height": x.height} for x in r.extreme_aspect],
            f"{key}_aspect",
        )


def class_chart(r: HealthReport) -> go.Figure:
    """Images per class, stacked by split (class names as plain text)."""
    fig = go.Figure()
    names = list(r.classes)
    for split, counts in r.splits.items():
        fig.add_trace(
            go.Bar(
                x=[plotly_text(c) for c in names],
                y=[counts.get(c, 0) for c in names],
                name=split,
                marker_color=SPLIT_COLORS.get(split, "#888888"),
            )
        )
    fig.update_layout(
        barmode="stack",
        height=320,
        margin={"t": 30, "b": 40},
        yaxis={"title": "images"},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def _table(title: str, rows: list[dict], key: str) -> None:
    st.markdown(f"**{title}**")
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key=key)
    else:
        st.caption("None.")


@st.cache_data(max_entries=32, ttl=600, show_spinner=False)
def _thumbs(spec: str, files: tuple[str, ...], size: int):
    return health.load_samples(health.dataset_root(spec), list(files), size)


def _samples(spec: str, r: HealthReport) -> None:
    shown = list(r.samples.items())[:MAX_CLASSES_SHOWN]
    for class_name, files in shown:
        st.text(f"{class_name} ({r.classes.get(class_name, 0)} images)")
        images = _thumbs(spec, tuple(files), 96)
        if images:
            st.image(images, width=72)
    if len(r.samples) > len(shown):
        st.caption(f"The first {len(shown)} of {len(r.samples)} classes.")


@st.cache_data(max_entries=8, ttl=600, show_spinner="Applying the augmentation…")
def _augmented(spec: str, files: tuple[str, ...]):
    images = health.load_samples(health.dataset_root(spec), list(files), 96)
    return augment.augmentation_preview(images, variants=5, seed=0) if images else None


def _augmentation(spec: str, r: HealthReport, key: str) -> None:
    st.caption(
        "What training shows the network in fine-tune mode with augmentation on: random "
        "horizontal flips and shifts of up to 10 % (the same Keras layers). Each row: one "
        "image, five draws."
    )
    if not st.toggle("Show the preview", key=f"{key}_augment"):
        return
    files = tuple(f for fs in list(r.samples.values())[:6] for f in fs[:1])
    grid = _augmented(spec, files)
    if grid is None:
        st.caption("No readable image to show.")
        return
    for row in grid:
        st.image(list(row), width=72)
