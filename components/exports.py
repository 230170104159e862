"""The Export section (Train page for a run, Classify page for the ImageNet model): pick a format,
export in a background job (:mod:`core.export.exporter`, kind "export") owned by this session, then see
each export's parity with the Keras model and download its folder as a zip."""

from __future__ import annotations

import streamlit as st

from components import plain, session
from core.export import exporter as export
from core.export import quantize
from core.export.folder import zip_bytes
from core.platform.progress import JobStatus

KIND = "export"


def parity_text(meta: dict) -> str:
    """One line on an export's parity (Markdown-safe: only numbers and our own labels)."""
    check = meta["parity"]
    target = check["target"]
    line = (
        f"{check['agree']}/{check['images']} held-out images agree at top-1 "
        f"({check['agreement']:.2%}) · max |prob diff| {check['max_abs_diff']:.1e} · "
        f"{meta['size_bytes'] / 1e6:.1f} MB · exported in {meta['export_s']:.0f} s"
    )
    if check.get("disagreement_max_margin") is not None:
        line += (
            f" · the disagreements are all where the Keras model's top two classes are "
            f"within {check['disagreement_max_margin']:.1%}"
        )
    if not check["meets_target"]:
        wanted = f"{target['agreement']:.0%} agreement" + (
            f" and diff ≤ {target['max_abs_diff']:g}" if "max_abs_diff" in target else ""
        )
        line += f" · **below the target** ({wanted})"
    return line


def int8_text(meta: dict) -> str:
    """For an int8 export: which layers stayed float32 and what they were chosen on ("" else)."""
    chosen = meta.get("int8")
    return plain(f" {quantize.summary(chosen, limit=4)}.") if chosen else ""


def _progress_text(snap) -> str:
    if snap.status is JobStatus.QUEUED:
        return f"Queued: position {snap.queue_position} (another export is running)"
    if snap.status is JobStatus.STOPPING:
        return "Stopping…"
    if snap.total and snap.done < snap.total:
        return f"{snap.phase}: {snap.done}/{snap.total} {snap.unit}"
    return f"{snap.phase or 'Starting'}…"


def _panel(source: str, name: str, weights: str) -> None:
    """The section's body (a fragment, polled while this session's export runs)."""
    job = session.my_job(KIND)
    snap = job.snapshot() if job is not None else None
    busy = snap is not None and snap.active
    here = job is not None and job.args.get("source") == source
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    fmt = left.selectbox(
        "Format",
        list(export.FORMATS),
        key="export_format",
        format_func=lambda k: export.FORMATS[k].label,
    )
    if right.button(
        "Export",
        key="export_start",
        icon=":material/ios_share:",
        disabled=busy,
        width="stretch",
        help="Your other export is still running" if busy else None,
    ):
        job = session.start_job(KIND, {"source": source, "format": fmt, "weights": weights})
        if job is not None:  # else start_job showed why not (a queue cap)
            st.rerun()  # the whole page: the section polls from now on
    if export.FORMATS[fmt].quantization:
        st.caption(f"int8 here means {export.FORMATS[fmt].quantization}.")
    if here and busy:
        st.progress(snap.fraction, text=_progress_text(snap))
    elif here and snap.status is JobStatus.ERROR:
        st.error(f"Export failed: {plain(snap.error)}")
    for meta in export.source_exports(source, weights):
        ok = meta["parity"]["meets_target"]
        text, button = st.columns([4, 1], vertical_alignment="center")
        text.markdown(
            f"{':material/check_circle:' if ok else ':material/warning:'} "
            f"**{plain(meta['format_label'])}**: {parity_text(meta)}"
        )
        text.caption(
            f"Checked in {plain(meta['parity']['runtime'])} on "
            f"{plain(meta['parity']['images_from'])}." + int8_text(meta)
        )
        top = f"{name}-{meta['format']}"
        button.download_button(
            "Download zip",
            data=lambda d=meta["dir"], top=top: zip_bytes(d, top),
            file_name=f"{top}.zip",
            mime="application/zip",
            key=f"export_download_{meta['format']}",
            on_click="ignore",
            icon=":material/download:",
        )
    # The job just ended: rerun the page once, to stop polling.
    if here and not busy and st.session_state.get("export_polling"):
        st.session_state["export_polling"] = False
        st.rerun()
    st.session_state["export_polling"] = here and busy


def export_section(source: str, name: str, weights: str = "auto") -> None:
    """Export ``source`` (a finished run's folder, or "imagenet" with ``weights``) from the page."""
    st.markdown("**Export**")
    st.caption(
        "ONNX, LiteRT or SavedModel, checked in its own runtime right after export. Raw "
        "RGB uint8 pixels go in (cropped and resized as model.json says), class "
        "probabilities come out; predict.py in the zip shows how."
    )
    try:
        export.resolve_source(source)
    except ValueError as exc:
        st.caption(plain(exc))
        return
    job = session.my_job(KIND)
    polling = job is not None and job.args.get("source") == source and job.snapshot().active
    st.fragment(_panel, run_every=1.0 if polling else None)(source, name, weights)
