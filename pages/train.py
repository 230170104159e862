"""Train page: train an EfficientNet classifier in a background worker process and watch it learn.

Controls (generated from :mod:`core.training.options`, or a preset) → ``TrainConfig`` → a job
(:mod:`core.jobs.runner`) owned by this workspace. Jobs queue for the one trainer, workspaces
taking turns, within the server's caps (:mod:`core.platform.limits`: jobs per workspace, epochs,
resolution, batch; the number controls stop at them); other visitors see that it is busy but can
neither see nor stop this workspace's run.
The job panel (:mod:`components.job_panel`) shows it, live curves included, and this page draws
its outcome. Below: this workspace's runs (and runs started from the command line) to compare,
inspect, download and delete.
"""

import streamlit as st

from components import (
    analysis,
    charts,
    dataset_panel,
    errors,
    exports,
    job_panel,
    no_paths,
    plain,
    session,
)
from components.job_panel import fmt_seconds
from core import training
from core.jobs import runner as jobs
from core.models.weights import SOURCES, list_weights_files
from core.platform.errors import UserError
from core.platform.workspaces import QuotaError
from core.training import runs
from pages import ICONS

CIFAR10 = "cifar10"
CONTROL_KEYS = [f"train_{name}" for name, _, _ in training.options()]


# ----- widget state ↔ TrainConfig values ------------------------------------------------------
def control_state(values: dict) -> dict:
    """TrainConfig-style ``values`` → the session-state values of this page's widgets."""
    return {
        f"train_{name}": ("" if value is None and name == "name" else value)
        for name, value in values.items()
        if name in training.DEFAULTS
    }


def apply_preset(key: str) -> None:
    """Button callback: fill every control from the defaults plus the preset (before they render)."""
    preset = training.PRESETS[key]
    st.session_state.update(control_state({**training.DEFAULTS, **preset.values}))
    st.session_state["train_notice"] = f"Filled the controls with the {preset.label} preset."


def _choices(name: str, opt: training.Option) -> list:
    if opt.widget == "data":  # this session's datasets and the operator's (see dataset_panel)
        return [CIFAR10, *dataset_panel.visible_datasets()]
    if opt.widget == "weights":
        return [*SOURCES, *(str(p) for p in list_weights_files())]
    return list(opt.allowed())


def render_option(col, name: str, opt: training.Option):
    """One control, drawn from its Option; returns its TrainConfig value."""
    key = f"train_{name}"
    disabled = (
        bool(opt.only_for) and st.session_state.get(f"train_{opt.only_for[0]}") != opt.only_for[1]
    )
    common = dict(key=key, help=opt.help, disabled=disabled)
    if opt.widget in ("select", "data", "weights"):
        choices = _choices(name, opt)
        if st.session_state.get(key) not in choices:  # e.g. a dataset deleted since
            st.session_state[key] = choices[0]
        fmt = {"weights": lambda v: v.rsplit("/", 1)[-1], "data": session.dataset_label}.get(
            opt.widget, str
        )
        return col.selectbox(opt.label, choices, format_func=fmt, **common)
    if opt.widget == "radio":
        return col.radio(opt.label, list(opt.allowed()), horizontal=True, **common)
    if opt.widget == "toggle":
        return col.toggle(opt.label, **common)
    if opt.widget == "text":
        return col.text_input(opt.label, placeholder=opt.none_means, **common).strip() or None
    bounds = {}
    if opt.low is not None and not opt.low_open:
        bounds["min_value"] = opt.kind(opt.low)
    if opt.high is not None and not opt.high_open:
        bounds["max_value"] = opt.kind(opt.high)
    cap = training.server_cap(name)  # this server's limit, e.g. 100 epochs
    if cap is not None and cap[0] < bounds.get("max_value", cap[0] + 1):
        bounds["max_value"] = opt.kind(cap[0])
        value = st.session_state.get(key)
        if value is not None and value > cap[0]:  # a default or preset above this server's cap
            st.session_state[key] = opt.kind(cap[0])
    return col.number_input(
        opt.label,
        step=opt.kind(opt.step or 1),
        placeholder=opt.none_means or None,
        format="%g" if opt.kind is float else None,
        **bounds,
        **common,
    )


def controls() -> dict:
    """Every training option's control, four to a row, the advanced ones under "More options";
    returns the TrainConfig values."""
    values = {}

    def grid(options):
        row = []
        for i, (name, opt, _) in enumerate(options):
            if i % 4 == 0:
                row = st.columns(4)
            values[name] = render_option(row[i % 4], name, opt)

    grid([o for o in training.options() if not o[1].advanced])
    with st.expander("More options: optimizer, validation, subsets, seed, run name…"):
        grid([o for o in training.options() if o[1].advanced])
    return values


# ----- the training job ----------------------------------------------------------------------
def trainer_notice() -> None:
    """Say when another visitor's job holds the trainer (no details, no Stop)."""
    info = jobs.slot_info("trainer")
    if info.running and not session.is_mine(info.owner):
        waiting = len(info.queued)
        st.info(
            f"The trainer is busy with another visitor's run"
            f"{f' ({waiting} waiting)' if waiting else ''}. Start joins the queue and begins "
            "on its own when the trainer is free.",
            icon=":material/hourglass_top:",
        )


def live_curves(job, snap) -> None:
    """The curves so far (per batch and per epoch), with the phase marks of two-phase training."""
    if snap.epochs or snap.batches:
        on_test = job.args.get("config", {}).get("validation") == "test"
        st.plotly_chart(
            charts.curves_figure(
                snap.epochs,
                snap.batches,
                marks=snap.marks,
                val_name="test (blog protocol)" if on_test else "validation",
            ),
            key="train_live_chart",
        )


def training_outcome(job, snap) -> None:
    """A finished or stopped training job: its accuracy and saved run, then its curves."""
    result = snap.result
    if result.get("test_accuracy") is not None:
        verb = "Stopped early" if result["stopped"] else "Finished"
        val = result.get("val_accuracy")
        st.success(
            f"{verb}: test accuracy {result['test_accuracy']:.2%}"
            f"{f' (validation {val:.2%})' if val is not None else ''} after "
            f"{result['epochs']} epoch(s) in {fmt_seconds(result['wall_s'])} · saved as "
            f"{plain(result['run_dir'].rsplit('/', 1)[-1])}"
        )
    else:
        st.warning("Stopped before training began: no model was saved.")
    if snap.device:
        weights = f" · weights: {no_paths(result['weights'])}" if result.get("weights") else ""
        st.caption(f"Device: {plain(snap.device)}{plain(weights)}")
    live_curves(job, snap)


def start(values: dict) -> None:
    """Validate the options and start this session's job; problems become messages."""
    current = session.my_job("train")
    if current is not None and current.snapshot().active:
        st.warning(
            "Your run is still going: stop it or wait for it before starting another.",
            icon=":material/hourglass_top:",
        )
        return
    try:
        config = training.TrainConfig(**values)
        config.validate()  # nothing is started for a bad value
    except UserError as exc:
        errors.show(exc, "Cannot start: ")
        return
    try:
        session.start_job(
            "train",
            {
                "config": config.to_dict(),
                "owner": session.owner_tag(),
                **session.dataset_args(),  # a dataset ref, checked again in the worker
            },
        )
    except (QuotaError, jobs.QueueFull) as exc:
        st.error(f"Cannot start: {plain(exc)}")


# ----- learning-rate finder --------------------------------------------------------------------
def use_lr(value: float) -> None:
    """Button callback: put the suggested learning rate into the lr control (before it renders)."""
    st.session_state["train_lr"] = value
    st.session_state["train_notice"] = f"Learning rate set to {value:g} (the finder's suggestion)."


def start_lr_find(values: dict) -> None:
    """Validate the options and start this session's learning-rate finder job."""
    current = session.my_job("lr_find")
    if current is not None and current.snapshot().active:
        return
    try:
        config = training.TrainConfig(**values)
        config.validate()
    except UserError as exc:
        errors.show(exc, "Cannot start the finder: ")
        return
    try:
        session.start_job(
            "lr_find",
            {
                "config": config.to_dict(),
                "owner": session.owner_tag(),
                **session.dataset_args(),
            },
        )
    except jobs.QueueFull as exc:
        errors.show(exc, "Cannot start the finder: ")


def lr_live(job, snap) -> None:
    """The finder's raw loss so far."""
    if snap.batches:
        st.plotly_chart(
            charts.lr_figure([b["lr"] for b in snap.batches], [b["loss"] for b in snap.batches]),
            key="train_lr_chart",
        )


def lr_outcome(job, snap) -> None:
    """The finder's curve and its suggestion, with a button that puts it into the lr control."""
    result = snap.result
    if not result.get("lrs"):
        st.warning("The finder stopped before its first step: nothing to suggest.")
        return
    suggested = result.get("suggested")
    st.plotly_chart(
        charts.lr_figure(result["lrs"], result["losses"], result["smoothed"], suggested),
        key="train_lr_chart",
    )
    if suggested:
        value = float(f"{suggested:.2g}")
        st.button(
            f"Use learning rate {value:g}",
            key="train_lr_use",
            on_click=use_lr,
            args=(value,),
            icon=":material/check:",
            help=f"steepest descent {result['steepest'] or 0:.2g}; minimum loss / 10 "
            f"{result['min_over_10']:.2g}: the lower of the two",
        )
    else:
        st.warning("The sweep was too short to suggest a learning rate: try more steps.")


# ----- saved runs ------------------------------------------------------------------------------
def visible_runs() -> dict:
    """This workspace's runs and runs started outside the app (command line), by name."""
    return session.visible_runs()


def run_details(run) -> None:
    """One saved run: accuracy, confusion matrix, per-class accuracy, mistakes, download, delete."""
    cfg = run.config or {}
    res = run.results
    val = res.get("val_accuracy")
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric(
        "Test accuracy",
        "—" if run.test_accuracy is None else f"{run.test_accuracy:.2%}",
        help=res.get("protocol"),
    )
    c2.metric(
        "Validation accuracy",
        "—" if val is None else f"{val:.2%}",
        help=f"best epoch: {res['best_epoch']}" if res.get("best_epoch") else None,
    )
    c3.metric("Status", run.status)
    c4.metric("Epochs", len(run.history))
    c5.metric(f"Backbone at {cfg.get('resolution', '?')} px", cfg.get("backbone", "?"))
    facts = [
        f"weights: {no_paths(res['weights'])}" if res.get("weights") else None,
        f"device: {res['device']}" if res.get("device") else None,
        f"data: {no_paths(res['data_source'])} ({no_paths(res.get('split', ''))})"
        if res.get("data_source")
        else None,
        f"{res['skipped']} unreadable image file(s) skipped" if res.get("skipped") else None,
        f"wall time {fmt_seconds(res['wall_s'])}" if res.get("wall_s") is not None else None,
    ]
    st.text(" · ".join(f for f in facts if f))
    if cfg.get("validation") == "test":
        st.warning(
            "The blog's protocol: the test split picked the best epoch, so this test "
            "accuracy is optimistic.",
            icon=":material/info:",
        )
    if run.status in ("error", "interrupted"):
        st.error(
            f"This run {'failed' if run.status == 'error' else 'was interrupted'}: "
            f"{plain(no_paths(run.error))}"
        )
    if run.history:  # the saved curves, with the phase boundary of two-phase fine-tuning
        st.plotly_chart(
            charts.curves_figure(
                run.history,
                marks=charts.phase_marks(run.history),
                val_name="test (blog protocol)"
                if cfg.get("validation") == "test"
                else "validation",
            ),
            key="train_run_curves",
        )
    if run.confusion:
        analysis.error_analysis(run)
    model_file = run.path / "model.keras"
    left, right = st.columns([1, 4])
    if model_file.exists():
        left.download_button(
            "Download model.keras",
            data=model_file.read_bytes,  # read on click
            file_name=f"{run.name}.keras",
            mime="application/octet-stream",
            key="train_download",
            on_click="ignore",
        )
        exports.export_section(str(run.path), run.name)
    if not session.is_mine(run.owner):
        right.caption("Started from the command line: read-only here.")
        return
    busy = run.status == "running"
    with right.popover(
        "Delete run…", disabled=busy, help="Stop the run before deleting it" if busy else None
    ):
        st.text(f"Delete {run.name} and all its files? This cannot be undone.")
        if st.button("Yes, delete it", type="primary", key="train_delete"):
            try:
                runs.delete_run(run.path)
            except (UserError, OSError) as exc:
                errors.show(exc, "Could not delete the run: ")
            else:
                st.session_state["train_notice"] = f"Deleted run {run.name}."
                st.session_state.pop("train_run_pick", None)
                st.rerun()


def runs_section() -> None:
    """This session's saved runs (and the command line's): table, comparison, cost, details."""
    st.header("Runs", anchor=False)
    saved = visible_runs()
    if not saved:
        st.info(
            "No saved runs yet: press Start above (the quick demo preset takes about a minute "
            "on 2 CPU cores)."
        )
        return
    st.dataframe(
        charts.runs_rows(saved.values()),
        hide_index=True,
        key="train_runs_table",
        column_config={
            "val accuracy": st.column_config.NumberColumn("val accuracy", format="percent"),
            "test accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        },
    )
    st.session_state["train_compare"] = [
        n for n in st.session_state.get("train_compare", [*saved][:1]) if n in saved
    ]
    picked = st.multiselect("Compare runs", list(saved), key="train_compare")
    if picked:
        st.plotly_chart(
            charts.compare_figure({n: saved[n].history for n in picked}),
            key="train_compare_chart",
        )
    costed = [run for run in saved.values() if run.test_accuracy is not None]
    if len(costed) >= 2:  # accuracy against cost, with the Pareto front (issue 12)
        st.subheader("Accuracy against cost", anchor=False)
        st.plotly_chart(charts.accuracy_cost_figure(costed), key="train_cost_chart")
        untimed = sum(1 for run in costed if run.results.get("latency_ms") is None)
        st.caption(
            "Stars: the Pareto front, runs that no other run beats on both accuracy and cost. "
            "Latency is one image through the saved model (batch 1), timed when training ended"
            + (f"; {untimed} older or stopped run(s) have none." if untimed else ".")
        )
    if st.session_state.get("train_run_pick") not in saved:
        st.session_state.pop("train_run_pick", None)
    st.subheader("Run details", anchor=False)
    run_details(saved[st.selectbox("Run", list(saved), key="train_run_pick")])


# ----- the page -------------------------------------------------------------------------------
def render() -> None:
    """The Train page: controls (or a preset) → Start → the job's progress → the saved runs."""
    # ----- inputs
    st.title(f"{ICONS['train']} Train", anchor=False)
    st.caption(
        "Transfer learning: an ImageNet EfficientNet backbone with a new classifier head, "
        "trained on CIFAR-10 or a dataset from the data folder. Training runs in a background "
        "process; switch pages freely."
    )
    # Streamlit forgets widget values when another page is shown; "train_kept" brings them back.
    for key, value in {
        **control_state(training.DEFAULTS),
        **st.session_state.get("train_kept", {}),
    }.items():
        st.session_state.setdefault(key, value)
    cols = st.columns(len(training.PRESETS) + 1)
    cols[0].markdown("**Presets**")
    for col, (key, preset) in zip(cols[1:], training.PRESETS.items()):
        col.button(
            preset.label,
            key=f"train_preset_{key}",
            on_click=apply_preset,
            args=(key,),
            help=f"{preset.description}: "
            + ", ".join(f"{k}={v}" for k, v in preset.values.items()),
            width="stretch",
        )
    notices = st.container()  # always there: one-off messages don't shift (remount) the widgets
    handoff = st.session_state.pop("train_preset", None)  # set once by the Scaling page
    if handoff:
        try:
            training.TrainConfig(**{**training.DEFAULTS, **handoff}).validate()
        except (TypeError, ValueError) as exc:
            notices.warning(f"Could not apply the Scaling page's choice: {plain(no_paths(exc))}")
        else:
            st.session_state.update(control_state(handoff))
            choice = ", ".join(f"{k} {v}" for k, v in handoff.items())
            notices.info(
                f"Applied the Scaling page's choice: {plain(choice)}. Check the rest, then "
                "press Start."
            )
    if "train_notice" in st.session_state:
        notices.success(plain(st.session_state.pop("train_notice")))
    values = controls()
    dataset_panel.check_section(values["data"])
    st.session_state["train_kept"] = {
        k: st.session_state[k] for k in CONTROL_KEYS if k in st.session_state
    }
    if values.get("validation") == "test":
        st.caption(
            "Validation on the test split (the blog's protocol): the test split picks the best "
            "epoch, so the reported test accuracy will be optimistic."
        )

    # ----- one core call: start a job (guarded by validation and one job per session)
    if st.button("Start", type="primary", key="train_start", icon=ICONS["train"]):
        start(values)

    with st.expander("Learning-rate finder", icon=":material/search:"):
        st.caption(
            "Loss against a rising learning rate (1e-6 to 1, 100 batches) for these settings, "
            "on cached features of up to 100 batches of training images; the suggestion is "
            "where the loss falls fast, well before it blows up. It queues for the trainer "
            "like a run."
        )
        if st.button("Find a learning rate", key="train_lr_find", icon=":material/search:"):
            start_lr_find(values)
        job_panel.show(
            "lr_find", "train_lr", result=lr_outcome, live=lr_live, failed="The finder failed"
        )

    # ----- render: the live job, then the saved runs
    snap = job_panel.show(
        "train", "train", result=training_outcome, live=live_curves, failed="Training failed"
    )
    if snap is None or not snap.active:
        trainer_notice()
    runs_section()


if __name__ == "__main__":  # run by the legacy pages/ router: see pages/__init__.py
    import app

    app.main()
