"""The Export section (Train page for a run, Classify page for the ImageNet model): pick a format,
export in a background job (:mod:`core.export.exporter`, kind "export") owned by this session and
shown by the job panel (:mod:`components.job_panel`), then see each export's parity with the
Keras model and download its folder as a zip."""

from __future__ import annotations

import streamlit as st

from components import job_panel, no_paths, plain, session
from core.export import exporter as export
from core.export import quantize
from core.export.folder import zip_bytes
from core.export.record import ExportRecord
from core.jobs.runner import QueueFull
from core.platform.workspaces import QuotaError

KIND = "export"


def parity_text(meta: ExportRecord) -> str:
    """One line on an export's parity (Markdown-safe: only numbers and our own labels)."""
    check = meta.parity
    target = check.target
    line = (
        f"{check.agree}/{check.images} held-out images agree at top-1 "
        f"({check.agreement:.2%}) · max |prob diff| {check.max_abs_diff:.1e} · "
        f"{meta.size_bytes / 1e6:.1f} MB · exported in {meta.export_s:.0f} s"
    )
    if check.disagreement_max_margin is not None:
        line += (
            f" · the disagreements are all where the Keras model's top two classes are "
            f"within {check.disagreement_max_margin:.1%}"
        )
    if not check.meets_target:
        wanted = f"{target['agreement']:.0%} agreement" + (
            f" and diff ≤ {target['max_abs_diff']:g}" if "max_abs_diff" in target else ""
        )
        line += f" · **below the target** ({wanted})"
    return line


def int8_text(chosen: dict | None) -> str:
    """For an int8 export (``chosen``: its record's ``int8``): which layers stayed float32 and
    what they were chosen on ("" for other formats)."""
    return plain(f" {quantize.summary(chosen, limit=4)}.") if chosen else ""


def _body(source: str, name: str, weights: str) -> None:
    """The section's body (a fragment: picking a format reruns only this section)."""
    job = session.my_job(KIND)
    busy = job is not None and job.snapshot().active
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    fmt = left.selectbox(
        "Format",
        list(export.FORMATS),
        key="export_format",
        format_func=lambda k: export.FORMATS[k].label,
    )
    if (
        right.button(
            "Export",
            key="export_start",
            icon=":material/ios_share:",
            disabled=busy,
            width="stretch",
            help="Your other export is still running" if busy else None,
        )
        and not busy
    ):
        try:
            session.start_job(KIND, {"source": source, "format": fmt, "weights": weights})
        except (QuotaError, QueueFull) as exc:
            st.error(f"Cannot export: {plain(exc)}")
        else:
            st.rerun()  # the whole page: the Export button is disabled while the job runs
    if export.FORMATS[fmt].quantization:
        st.caption(f"int8 here means {export.FORMATS[fmt].quantization}.")
    job_panel.show(
        KIND, "export", failed="Export failed", when=lambda job: job.args.get("source") == source
    )
    for meta in export.source_exports(source, weights):
        ok = meta.parity.meets_target
        text, button = st.columns([4, 1], vertical_alignment="center")
        text.markdown(
            f"{':material/check_circle:' if ok else ':material/warning:'} "
            f"**{plain(meta.format_label)}**: {parity_text(meta)}"
        )
        text.caption(
            f"Checked in {plain(meta.parity.runtime)} on "
            f"{plain(meta.parity.images_from)}." + int8_text(meta.int8)
        )
        top = f"{name}-{meta.format}"
        button.download_button(
            "Download zip",
            data=lambda d=meta.dir, top=top: zip_bytes(d, top),
            file_name=f"{top}.zip",
            mime="application/zip",
            key=f"export_download_{meta.format}",
            on_click="ignore",
            icon=":material/download:",
        )


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
        st.caption(plain(no_paths(exc)))
        return
    st.fragment(_body)(source, name, weights)
