"""Train page: train an EfficientNet classifier in a background thread and watch it learn.

Controls (or a preset) → ``TrainConfig`` → ``core.training.JOBS.start`` (one job per process, in a
worker thread, so reruns and page switches leave it alone). A fragment polls the job's progress
once a second while it runs. Below: the saved runs from ``core.runs`` to compare, inspect,
download and delete.
"""

import dataclasses

import streamlit as st

from core import runs, training
from core.models import VARIANTS
from core.weights import SOURCES
from pages import _train_charts as charts
from pages import ensure_navigation

ensure_navigation()


DEFAULTS = {f.name: f.default for f in dataclasses.fields(training.TrainConfig)}
CIFAR10, FOLDER = "CIFAR-10", "Image folder"
WEIGHTS_FILE = "file…"
ACTIVE = ("running", "stopping")


@st.cache_resource
def jobs() -> training.TrainingJobs:
    """The process-wide job runner: one training at a time per app process, surviving reruns."""
    return training.JOBS


def job_running(status: str) -> bool:
    """True while the job starts, runs or stops (its thread may outlive a finished status briefly)."""
    return jobs().busy and status in ("idle", *ACTIVE)


def control_state(values: dict) -> dict:
    """TrainConfig-style ``values`` → the session-state values of this page's widgets."""
    state = {}
    for field, value in values.items():
        if field == "data":
            folder = str(value).lower() != "cifar10"
            state["train_data_kind"] = FOLDER if folder else CIFAR10
            if folder:
                state["train_data_path"] = str(value)
        elif field == "weights":
            state["train_weights"] = value if value in SOURCES else WEIGHTS_FILE
            if value not in SOURCES:
                state["train_weights_path"] = str(value)
        elif field == "name":
            state["train_name"] = value or ""
        elif field in DEFAULTS:  # every other option's widget key is "train_<field>"
            state[f"train_{field}"] = value
    return state


CONTROL_KEYS = {*control_state(DEFAULTS), "train_data_path", "train_weights_path"}


def apply_preset(name: str) -> None:
    """Button callback: fill every control from the defaults plus the preset (before they render)."""
    st.session_state.update(control_state({**DEFAULTS, **training.PRESETS[name]}))
    st.session_state["train_notice"] = f"Filled the controls with the **{name}** preset."


def fmt_seconds(seconds) -> str:
    """``75`` → ``"1:15"``; unknown → ``"…"``."""
    if seconds is None:
        return "…"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def step_text(snap: dict) -> str:
    """What the job does now: the counted phase while it runs, else the latest message."""
    total, done, unit = snap["total"], snap["done"], snap["unit"]
    if snap["status"] == "stopping":
        return "**Stopping** at the end of this batch…"
    if snap["phase"] and total and done < total:  # a finished phase means the message is newer
        text = f"**{snap['phase']}**: {done}/{total} {unit}"
        if snap["rate"]:
            text += f" · {snap['rate']:.0f} {unit}/s · ETA {fmt_seconds(snap['eta_s'])}"
        return text
    return f"**{snap['message'] or snap['phase'] or 'Starting'}**…"


def controls() -> dict:
    """Render the option widgets; return the TrainConfig keyword arguments they hold.

    Widgets only keep natural lower bounds; the real limits live in ``TrainConfig.validate``,
    whose message the page shows on Start.
    """
    frozen = st.session_state.get("train_mode") == "frozen"
    c1, c2, c3, c4 = st.columns(4)
    kind = c1.radio("Dataset", [CIFAR10, FOLDER], key="train_data_kind", horizontal=True)
    data = "cifar10"
    if kind == FOLDER:
        data = c1.text_input("Image folder", key="train_data_path",
                             placeholder="/path/to/images (one subfolder per class)").strip()
    backbone = c2.selectbox("Backbone", list(VARIANTS), key="train_backbone")
    weights = c3.selectbox("Weights", [*SOURCES, WEIGHTS_FILE], key="train_weights",
                           help="auto: official ImageNet weights if cached or downloadable, else the "
                                "offline EfficientNet-Lite0 weights; none: random initialisation")
    if weights == WEIGHTS_FILE:
        weights = c3.text_input("Weights file (.h5)", key="train_weights_path").strip()
    mode = c4.radio("Mode", list(training.MODES), key="train_mode", horizontal=True,
                    help="frozen: train only a new head on fixed ImageNet features (fast); "
                         "finetune: also train the top blocks")
    values = dict(data=data, backbone=backbone, weights=weights, mode=mode)
    c1, c2, c3, c4 = st.columns(4)
    values.update(
        resolution=c1.number_input("Resolution (px)", min_value=1, step=8, key="train_resolution",
                                   help="Input size the backbone sees; CIFAR-10's 32×32 images are "
                                        "upscaled inside the model"),
        epochs=c2.number_input("Epochs", min_value=1, key="train_epochs"),
        batch_size=c3.number_input("Batch size", min_value=1, step=16, key="train_batch_size"),
        lr=c4.number_input("Learning rate", min_value=0.0, step=1e-4, format="%g", key="train_lr"),
    )
    c1, c2, c3, c4 = st.columns(4)
    values.update(
        optimizer=c1.selectbox("Optimizer", list(training.OPTIMIZERS), key="train_optimizer"),
        schedule=c2.selectbox("Learning-rate schedule", list(training.SCHEDULES), key="train_schedule"),
        seed=c3.number_input("Seed", min_value=0, key="train_seed"),
        subset=c4.number_input("Training subset (images)", min_value=1, step=500, key="train_subset",
                               placeholder="all", help="A stratified subset for quick demos; "
                                                       "empty = the whole training set"),
    )
    c1, c2, c3, c4 = st.columns(4)
    values.update(
        test_subset=c1.number_input("Test subset (images)", min_value=1, step=500,
                                    key="train_test_subset", placeholder="all"),
        finetune_blocks=c2.number_input("Fine-tune top blocks", min_value=1, key="train_finetune_blocks",
                                        disabled=frozen, help="finetune mode: how many of the top "
                                                              "MBConv blocks train (B0 has 16)"),
        dropout=c3.number_input("Dropout", min_value=0.0, step=0.05, key="train_dropout",
                                placeholder="auto", help="before the classifier; empty = 0 for "
                                                         "frozen (the blog's head), 0.2 for finetune"),
        name=c4.text_input("Run name", key="train_name", placeholder="automatic").strip() or None,
    )
    c1, c2 = st.columns(2)
    values.update(
        augment=c1.toggle("Augment (flip + shift inside the model)", key="train_augment",
                          disabled=frozen, help="finetune mode only"),
        cache_features=c2.toggle("Cache extracted features on disk", key="train_cache_features",
                                 help="reuse them when the same data, backbone and resolution "
                                      "come again"),
    )
    return values


def start(values: dict) -> None:
    """Validate the options and start the job; problems become messages, not tracebacks."""
    try:
        jobs().start(training.TrainConfig(**values))  # validates first: ValueError, nothing started
    except training.Busy as exc:
        st.warning(f"{exc} (one training job at a time per app)", icon="⏳")
    except ValueError as exc:
        st.error(f"Cannot start: {exc}")


def job_panel() -> None:
    """The current (or last) job: Stop, progress, live curves, and the outcome once it ends."""
    progress = jobs().progress()
    if progress is None:
        return
    snap = progress.snapshot()
    if job_running(snap["status"]) and st.button("Stop", key="train_stop"):
        jobs().stop()
        snap = progress.snapshot()  # now "stopping"
    active = job_running(snap["status"])
    result = snap["result"] or {}
    if active:
        total, done = snap["total"], snap["done"]
        st.progress(min(done / total, 1.0) if total else 0.0, text=step_text(snap))
    elif snap["status"] == "error":
        st.error(f"Training failed: {snap['error']}")
    elif result.get("test_accuracy") is not None:
        verb = "Stopped early" if result["stopped"] else "Finished"
        st.success(f"{verb}: test accuracy **{result['test_accuracy']:.2%}** after {result['epochs']} "
                   f"epoch(s) in {fmt_seconds(result['wall_s'])} · saved as `{result['run_dir']}`")
    else:
        st.warning("Stopped before training began: no model was saved.")
    weights = f" · weights: {result['weights']}" if result.get("weights") else ""
    elapsed = f" · elapsed {fmt_seconds(snap['elapsed_s'])}" if active else ""
    st.caption(f"Device: {snap['device'] or '…'}{weights}{elapsed}")
    if snap["epochs"] or snap["batches"]:
        st.plotly_chart(charts.curves_figure(snap["epochs"], snap["batches"]), key="train_live_chart")
    # The job just ended: rerun the whole page once, to list the new run and stop polling.
    if not active and st.session_state.get("train_polling"):
        st.session_state["train_polling"] = False
        st.rerun()
    st.session_state["train_polling"] = active


def run_details(run) -> None:
    """One saved run: accuracy, confusion matrix, per-class accuracy, mistakes, download, delete."""
    cfg = run.config or {}
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Test accuracy", "—" if run.test_accuracy is None else f"{run.test_accuracy:.2%}")
    c2.metric("Status", run.status)
    c3.metric("Epochs", len(run.history))
    c4.metric("Backbone", f"{cfg.get('backbone', '?')} @ {cfg.get('resolution', '?')}px")
    res = run.results
    facts = [f"weights: {res['weights']}" if res.get("weights") else None,
             f"device: {res['device']}" if res.get("device") else None,
             f"data: {res['data_source']} ({res.get('split', '')})" if res.get("data_source") else None,
             f"{res['skipped']} unreadable image file(s) skipped" if res.get("skipped") else None,
             f"wall time {fmt_seconds(res['wall_s'])}" if res.get("wall_s") is not None else None]
    st.caption(" · ".join(f for f in facts if f), help=res.get("weights_detail"))
    if run.status == "error":
        st.error(f"This run failed: {run.error}")
    if run.confusion:
        left, right = st.columns([3, 2])
        left.plotly_chart(charts.confusion_figure(run.confusion, run.class_names), key="train_confusion")
        right.dataframe(charts.per_class_accuracy(run.confusion, run.class_names), hide_index=True,
                        key="train_per_class", column_config={
                            "accuracy": st.column_config.ProgressColumn(
                                "accuracy", format="percent", min_value=0.0, max_value=1.0)})
    mistakes = runs.misclassified(run.path) if run.status != "running" else []
    if mistakes:
        st.markdown("**Misclassified test images** (true → predicted, confidence)")
        st.image([m["image"] for m in mistakes], width=96,
                 caption=[f"{m['true']} → {m['pred']} ({m['prob']:.0%})" for m in mistakes])
    model_file = run.path / "model.keras"
    busy_run = run.status == "running" and jobs().busy
    left, right = st.columns([1, 4])
    if model_file.exists():
        left.download_button("Download model.keras", data=model_file.read_bytes,  # read on click
                             file_name=f"{run.name}.keras", mime="application/octet-stream",
                             key="train_download", on_click="ignore")
    with right.popover("Delete run…", disabled=busy_run,
                       help="Stop the job before deleting its run" if busy_run else None):
        st.write(f"Delete **{run.name}** and all its files? This cannot be undone.")
        if st.button("Yes, delete it", type="primary", key="train_delete"):
            try:
                runs.delete_run(run.path)
            except (ValueError, OSError) as exc:
                st.error(f"Could not delete the run: {exc}")
            else:
                st.session_state["train_notice"] = f"Deleted run **{run.name}**."
                st.session_state.pop("train_run_pick", None)
                st.rerun()


# ----- inputs ---------------------------------------------------------------------------------
st.title("🏋️ Train")
st.caption("Transfer learning: an ImageNet EfficientNet backbone with a new classifier head, trained "
           "on CIFAR-10 or your own image folder. Training runs in the background; switch pages freely.")
# Streamlit forgets widget values when another page is shown; "train_kept" brings them back.
for key, value in {**control_state(DEFAULTS), **st.session_state.get("train_kept", {})}.items():
    st.session_state.setdefault(key, value)
cols = st.columns(len(training.PRESETS) + 1)
cols[0].markdown("**Presets**")
for col, name in zip(cols[1:], training.PRESETS):
    col.button(name, key=f"train_preset_{name}", on_click=apply_preset, args=(name,),
               help=", ".join(f"{k}={v}" for k, v in training.PRESETS[name].items()),
               width="stretch")
notices = st.container()  # always present, so one-off messages don't shift (and remount) the widgets
handoff = st.session_state.pop("train_preset", None)  # set once by the Scaling page
if handoff:
    try:
        training.TrainConfig(**{**DEFAULTS, **handoff}).validate()
    except (TypeError, ValueError) as exc:
        notices.warning(f"Could not apply the Scaling page's choice {handoff}: {exc}")
    else:
        st.session_state.update(control_state(handoff))
        choice = ", ".join(f"{k} **{v}**" for k, v in handoff.items())
        notices.info(f"Applied the Scaling page's choice: {choice}. Check the rest, then press Start.")
if "train_notice" in st.session_state:
    notices.success(st.session_state.pop("train_notice"))
values = controls()
st.session_state["train_kept"] = {k: st.session_state[k] for k in CONTROL_KEYS if k in st.session_state}

# ----- one core call: start a job (guarded by validation and the one-job rule) ----------------
if st.button("Start", type="primary", key="train_start"):
    start(values)

# ----- render: the live job, then the saved runs ----------------------------------------------
current = jobs().progress()
polling = current is not None and job_running(current.snapshot()["status"])
st.fragment(job_panel, run_every=1.0 if polling else None)()

st.header("Runs")
saved = {run.name: run for run in runs.list_runs()}
if not saved:
    st.info("No saved runs yet: press Start above (the **quick demo** preset takes under a minute).")
    st.stop()
st.dataframe(charts.runs_rows(saved.values()), hide_index=True, key="train_runs_table", column_config={
    "test accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
    "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
})
st.session_state["train_compare"] = [n for n in st.session_state.get("train_compare", [*saved][:1])
                                     if n in saved]
picked = st.multiselect("Compare runs", list(saved), key="train_compare")
if picked:
    st.plotly_chart(charts.compare_figure({n: saved[n].history for n in picked}),
                    key="train_compare_chart")
if st.session_state.get("train_run_pick") not in saved:
    st.session_state.pop("train_run_pick", None)
st.subheader("Run details")
run_details(saved[st.selectbox("Run", list(saved), key="train_run_pick")])
