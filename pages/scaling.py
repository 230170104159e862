"""Scaling page: EfficientNet compound scaling as an exact, interactive calculator, and where it
meets reality.

Inputs (phi from -3, alpha, beta, gamma, base resolution, formula or official) -> one core
computation (:mod:`core.models.scaling`) -> metrics, stage table, the network drawn over B0's
outline, charts, and the phi the released networks imply. On demand, as background jobs of this session:
a forward-pass timing of this network (:mod:`core.experiments.measure`), a measured-cost sweep
over several networks (:mod:`core.experiments.sweep`) and the paper's alpha/beta/gamma search at
small scale (:mod:`core.experiments.search`), each shown by the job panel
(:mod:`components.job_panel`) with its own rendering of the result.
"""

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import pages
from components import errors, job_panel, plain, session
from components import scaling_charts as charts
from core.experiments import search, sweep
from core.models import scaling
from core.models.timing import Timing
from core.platform.errors import UserError
from core.platform.progress import JobStatus

PHI_MIN, PHI_MAX = -3.0, 7.0
PHI_GRID = [i / 20 for i in range(int(PHI_MIN * 20), int(PHI_MAX * 20) + 1)]  # the slider's steps
SWEEP_PHIS = [-3, -2, -1, 0, 1, 2, 3]
SEARCH_STEPS = [1.0, 1.05, 1.1, 1.15, 1.2, 1.3]
GAP_TEXT = (
    "Why the released networks don't follow α^φ, β^φ and γ^φ: their coefficients were picked by "
    "hand, not computed. B2's depth 1.2 and width 1.1 are exactly the paper's φ = 1 and B1 sits "
    "near φ = ½, so the names run ahead of the formula; from B4 on, width and resolution grow "
    "faster than depth (B7: width φ 7.3, resolution 7.0, depth only 6.2). Three roundings widen "
    "the gap: the coefficients have one decimal (width 1.4, depth 1.8, …), the resolutions are "
    "round numbers chosen per model (240, 260, 300, 380, 456, 528, 600 instead of 224·1.15^φ), "
    "and Keras rounds channels to multiples of 8 and layers up, so the network built differs "
    "again from its multipliers (see the stage table)."
)


def flops_text(flops: int) -> str:
    """Multiply-adds for people: "0.39 B" or, for tiny inputs, "9.7 M"."""
    return f"{flops / 1e9:.2f} B" if flops >= 1e8 else f"{flops / 1e6:.1f} M"


@dataclass(frozen=True)
class Choice:
    """The calculator's inputs and the networks computed from them."""

    official: bool  # show the released network at the nearest integer φ, not the formula's
    phi: float  # the slider's φ
    formula_phi: float  # where the formula is evaluated (the nearest integer when official)
    alpha: float
    beta: float
    gamma: float
    base: int
    variant: str  # the released network at the nearest integer φ ("b0" … "b7")
    mult: scaling.Multipliers
    formula: scaling.ScaledNetwork  # the formula's network at formula_phi
    net: scaling.ScaledNetwork  # the network shown: the formula's or the released one
    b0: scaling.ScaledNetwork
    train_variant: str  # the released backbone the Train page would train for it


def choose() -> Choice | None:
    """The calculator's inputs → the networks (None, with a message, for values it refuses)."""
    mode = st.radio("Networks", ["Formula", "Official B0–B7"], horizontal=True, key="scaling_mode")
    phi = st.slider(
        "φ (compound coefficient; below 0: smaller than B0)",
        PHI_MIN,
        PHI_MAX,
        0.0,
        0.05,
        key="scaling_phi",
    )
    cols = st.columns(4)
    alpha = cols[0].slider("α (depth)", 1.0, 2.0, scaling.ALPHA, 0.01, key="scaling_alpha")
    beta = cols[1].slider("β (width)", 1.0, 2.0, scaling.BETA, 0.01, key="scaling_beta")
    gamma = cols[2].slider("γ (resolution)", 1.0, 2.0, scaling.GAMMA, 0.01, key="scaling_gamma")
    base = cols[3].slider(
        "Base resolution", 32, 512, scaling.BASE_RESOLUTION, 8, key="scaling_base"
    )

    official = mode != "Formula"
    nearest = min(7, max(0, int(phi + 0.5)))  # the released network at the nearest integer phi
    variant = f"b{nearest}"
    try:
        formula_phi = nearest if official else phi
        mult = scaling.multipliers(formula_phi, alpha, beta, gamma, base)
        formula = scaling.network(mult.width, mult.depth, mult.resolution)
        net = scaling.official_network(variant) if official else formula
    except UserError as exc:
        st.error(plain(exc))
        return None
    b0 = scaling.official_network("b0")
    return Choice(
        official=official,
        phi=phi,
        formula_phi=formula_phi,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        base=base,
        variant=variant,
        mult=mult,
        formula=formula,
        net=net,
        b0=b0,
        train_variant=variant if official else scaling.nearest_variant(net.flops),
    )


def numbers(c: Choice) -> None:
    """The numbers: FLOPs growth, the released network next to the formula, metrics, stages."""
    mult, formula, net, b0, variant = c.mult, c.formula, c.net, c.b0, c.variant
    st.write(
        f"α·β²·γ² = **{mult.constraint:.3f}**, so FLOPs grow ×{mult.flops_factor:.2f} "
        f"at φ = {c.formula_phi:g} (2^φ = {mult.ideal_flops_factor:.2f})."
    )
    if abs(mult.constraint - 2) > 0.2:
        st.warning(
            f"α·β²·γ² = {mult.constraint:.2f} is far from 2: each step of φ multiplies "
            f"FLOPs by {mult.constraint:.2f} instead of doubling them."
        )

    if c.official:
        implied = scaling.implied_phi(variant)
        st.subheader(f"EfficientNet-{variant.upper()} next to the formula at φ = {c.formula_phi}")
        st.dataframe(
            pd.DataFrame(
                {
                    f"Official {variant.upper()}": [
                        f"{net.width:g}",
                        f"{net.depth:g}",
                        f"{net.resolution}",
                        f"{net.params:,}",
                        flops_text(net.flops),
                    ],
                    f"Formula φ = {c.formula_phi}": [
                        f"{formula.width:.3f}",
                        f"{formula.depth:.3f}",
                        f"{formula.resolution}",
                        f"{formula.params:,}",
                        flops_text(formula.flops),
                    ],
                    "φ implied by the official value": [
                        f"{implied.width:.2f}",
                        f"{implied.depth:.2f}",
                        f"{implied.resolution:.2f}",
                        "",
                        "",
                    ],
                },
                index=["width ×", "depth ×", "resolution", "parameters", "FLOPs"],
            )
        )
        st.caption(
            f"Implied φ uses the paper's α = {scaling.ALPHA}, β = {scaling.BETA}, "
            f"γ = {scaling.GAMMA} and 224 px: φ_d = ln d / ln α, φ_w = ln w / ln β, "
            "φ_r = ln(r / 224) / ln γ. The tab **Implied φ** below explains the gap."
        )
    else:
        st.caption(
            f"Resolution = round({c.base} · γ^φ) = {net.resolution} px. "
            f"Nearest released network by FLOPs: {c.train_variant.upper()}."
        )
        if c.phi < 0:
            st.caption(
                f"Smaller than B0: Keras's rounding keeps at least 8 channels and one layer "
                f"per stage, so FLOPs fall to ×{net.flops / b0.flops:.2f} of B0 rather than "
                f"the formula's ×{mult.flops_factor:.2f}."
            )

    top = st.columns(2)
    top[0].metric(
        "Parameters", f"{net.params:,}", f"×{net.params / b0.params:.2f} vs B0", delta_color="off"
    )
    top[1].metric(
        "FLOPs", flops_text(net.flops), f"×{net.flops / b0.flops:.2f} vs B0", delta_color="off"
    )
    low = st.columns(3)
    low[0].metric("Depth ×", f"{net.depth:.3f}")
    low[1].metric("Width ×", f"{net.width:.3f}")
    low[2].metric("Resolution", f"{net.resolution} px")

    st.dataframe(
        pd.DataFrame(
            [
                {
                    "stage": r.stage,
                    "operator": r.operator,
                    "resolution": f"{r.resolution}×{r.resolution}",
                    "channels": r.channels,
                    "layers": r.layers,
                    "parameters": r.params,
                    "MFLOPs": round(r.flops / 1e6, 1),
                }
                for r in net.stages
            ]
        ),
        hide_index=True,
    )


@st.cache_data
def curves(alpha: float, beta: float, gamma: float, base: int) -> pd.DataFrame:
    """Parameters and FLOPs of the formula network over the phi grid."""
    nets = [scaling.formula_network(p, alpha, beta, gamma, base) for p in PHI_GRID]
    return pd.DataFrame(
        {"phi": PHI_GRID, "params": [n.params for n in nets], "flops": [n.flops for n in nets]}
    )


def chart_tabs(c: Choice) -> None:
    """The network drawn over B0, growth with φ, accuracy against FLOPs, and the implied φ."""
    net, b0, variant = c.net, c.b0, c.variant
    offs = {v: scaling.official_network(v) for v in scaling.OFFICIAL}
    curve = curves(c.alpha, c.beta, c.gamma, c.base)
    tab_net, tab_growth, tab_acc, tab_implied = st.tabs(
        ["Network", "Growth with φ", "Accuracy vs FLOPs", "Implied φ"]
    )
    with tab_net:
        st.caption(
            "Stage by stage, in colour, over B0's dashed outline: a block's length is its "
            "layers (depth), its height its channels (width); below, each stage's input "
            "feature-map size (resolution). Hover a block for the numbers."
        )
        st.plotly_chart(charts.network_figure(net, b0), key="scaling_network")
    with tab_growth:
        for column, title in (("params", "Parameters"), ("flops", "FLOPs (multiply-adds)")):
            fig = go.Figure(
                [
                    go.Scatter(x=curve["phi"], y=curve[column], name="formula", mode="lines"),
                    go.Scatter(
                        x=list(range(8)),
                        y=[getattr(n, column) for n in offs.values()],
                        name="official B0–B7 (at their name's φ)",
                        mode="markers+text",
                        text=[v.upper() for v in offs],
                        textposition="bottom right",
                    ),
                    go.Scatter(
                        x=[c.formula_phi],
                        y=[getattr(net, column)],
                        name="this configuration",
                        mode="markers",
                        marker={"size": 14, "symbol": "star"},
                    ),
                ]
            )
            fig.update_layout(title=title, xaxis_title="φ", yaxis_type="log", height=360)
            st.plotly_chart(fig, key=f"scaling_{column}")
    with tab_acc:
        fig = go.Figure(
            go.Scatter(
                x=list(scaling.PAPER_FLOPS.values()),
                y=list(scaling.PAPER_TOP1.values()),
                mode="lines+markers+text",
                text=[v.upper() for v in scaling.PAPER_TOP1],
                textposition="bottom right",
                name="paper, Table 2",
            )
        )
        top1 = list(scaling.PAPER_TOP1.values())
        fig.add_scatter(
            x=[net.flops, net.flops],
            y=[min(top1) - 0.5, max(top1) + 0.5],
            mode="lines",
            line={"dash": "dash", "color": "gray"},
            name="this configuration",
        )
        if c.official:
            fig.add_scatter(
                x=[scaling.PAPER_FLOPS[variant]],
                y=[scaling.PAPER_TOP1[variant]],
                mode="markers",
                marker={"size": 16, "symbol": "star"},
                name=variant.upper(),
            )
        fig.update_layout(
            xaxis={"title": "FLOPs (multiply-adds)", "type": "log"},
            yaxis_title="ImageNet top-1 (%)",
            height=380,
        )
        st.plotly_chart(fig, key="scaling_accuracy")
        st.caption(
            "Accuracies are the paper's (Table 2); the dashed line marks this network's FLOPs."
        )
    with tab_implied:
        implied_rows = [scaling.implied_phi(v) for v in scaling.OFFICIAL]
        st.plotly_chart(charts.implied_phi_figure(implied_rows), key="scaling_implied_chart")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "network": r.variant.upper(),
                        "φ (name)": r.formula,
                        "depth ×": scaling.OFFICIAL[r.variant].depth,
                        "φ from depth": round(r.depth, 2),
                        "width ×": scaling.OFFICIAL[r.variant].width,
                        "φ from width": round(r.width, 2),
                        "resolution": scaling.OFFICIAL[r.variant].resolution,
                        "φ from resolution": round(r.resolution, 2),
                    }
                    for r in implied_rows
                ]
            ),
            hide_index=True,
            key="scaling_implied_table",
        )
        st.caption(
            f"With the paper's α = {scaling.ALPHA}, β = {scaling.BETA}, γ = {scaling.GAMMA} "
            f"and 224 px. {GAP_TEXT}"
        )


# ----- background jobs of this session: start buttons; the job panel shows them --------------
def start_button(kind: str, label: str, key: str, args_for) -> None:
    """A Start button for a ``kind`` job, disabled while this session's job of that kind runs;
    ``args_for()`` gives the job's args or raises UserError with a sentence; a start refused
    by a queue cap says why the same way."""
    job = session.my_job(kind)
    running = job is not None and job.snapshot().active
    if st.button(label, key=key, disabled=running) and not running:
        try:
            # A bad setting, or a queue cap (core.jobs.runner.QueueFull): both one line.
            session.start_job(kind, args_for())
        except UserError as exc:
            errors.show(exc, "Cannot start: ")


# ----- measure this network on this machine
def render_timings(job, snap) -> None:
    """The timings next to the FLOPs estimate."""
    timings = [Timing.from_dict(t) for t in snap.result or []]
    args = job.args
    if timings:
        st.caption(
            f"Width ×{args['width']:.3f}, depth ×{args['depth']:.3f}, "
            f"{args['resolution']} px on {snap.device}: {flops_text(args['flops'])} "
            "multiply-adds per image."
        )
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "batch": t.batch,
                        "ms per pass": round(t.seconds * 1000, 1),
                        "images/s": round(t.images_per_s, 1),
                        "achieved GMAC/s": round(t.gmacs_per_s, 1),
                        "timed passes": t.runs,
                    }
                    for t in timings
                ]
            ),
            hide_index=True,
        )
    if snap.status is JobStatus.STOPPED:
        st.info("Stopped before every batch size was timed.")


def measure_section(net: scaling.ScaledNetwork) -> None:
    """Time a forward pass of the network shown, as a job."""
    st.subheader("Measure on this machine", anchor=False)
    st.caption(
        f"Times a forward pass of this network with random weights on this machine, in a "
        f"background process. Batch 32 is {32 * net.flops / 1e9:.0f} B multiply-adds per pass: "
        f"large networks take a while on a CPU, and Stop ends the timing after the current pass."
    )
    start_button(
        "measure",
        "Measure forward pass (batch 1 and 32)",
        "scaling_measure_start",
        lambda: {
            "width": net.width,
            "depth": net.depth,
            "resolution": net.resolution,
            "flops": net.flops,
            "batch_sizes": [1, 32],
        },
    )
    job_panel.show("measure", "scaling_measure", result=render_timings, failed="The timing failed")


# ----- measured cost: a sweep over several networks
def sweep_args(over: str, phis: list, batches: list, budget: float, c: Choice) -> dict:
    """The sweep's job arguments from its controls (the φ values scale with the page's α, β, γ
    and base resolution), checked (UserError with a sentence)."""
    args = {"batch_sizes": sorted(batches), "budget_s": float(budget)}
    if over.startswith("B0"):
        args["variants"] = list(sweep.DEFAULT_VARIANTS)
    else:
        args.update(
            phis=sorted(phis), alpha=c.alpha, beta=c.beta, gamma=c.gamma, base_resolution=c.base
        )
    if not args.get("batch_sizes") or ("phis" in args and not args["phis"]):
        raise UserError("pick at least one φ value and one batch size.")
    sweep.plan(args)
    return args


def render_sweep(job, snap) -> None:
    """Latency against FLOPs and parameters, and the table behind it."""
    result = snap.result
    if result["points"]:
        st.plotly_chart(charts.cost_figure(result), key="scaling_sweep_chart")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "network": p["label"],
                        "resolution": p["resolution"],
                        "parameters": p["params"],
                        "MFLOPs": round(p["flops"] / 1e6, 1),
                        **{
                            f"ms/image @ batch {b}": round(ms, 2)
                            for b, ms in p["ms_per_image"].items()
                        },
                    }
                    for p in result["points"]
                ]
            ),
            hide_index=True,
            key="scaling_sweep_table",
        )
    if result["skipped"]:
        why = "stopped" if result["stopped"] else f"the budget of {result['budget_s']:g} s ran out"
        st.info(f"Not timed ({why}): {', '.join(result['skipped'])}.")
    st.caption(
        f"Device: {result['device']} · wall {result['wall_s']:.0f} s · median of up to 5 "
        "passes after an untimed warm-up. Other work on the machine slows every point."
    )


def sweep_section(c: Choice) -> None:
    """Time several networks one after the other, as a job; plot time against FLOPs."""
    st.subheader("Measured cost: FLOPs against time on this machine", anchor=False)
    st.caption(
        "Times forward passes (random weights) of several networks one after the other and "
        "plots milliseconds per image against FLOPs and parameters. FLOPs predict time only "
        "roughly: depthwise convolutions, memory traffic and small batches cost more than "
        "their multiply-adds suggest."
    )
    cols = st.columns([2, 2, 1])
    sweep_over = cols[0].radio(
        "Networks",
        ["B0–B3 (their own resolutions)", "φ values (this page's α, β, γ, base resolution)"],
        key="scaling_sweep_over",
    )
    sweep_phis = cols[1].multiselect(
        "φ values",
        SWEEP_PHIS,
        default=[-2, -1, 0, 1],
        key="scaling_sweep_phis",
        disabled=sweep_over.startswith("B0"),
    )
    sweep_batches = cols[1].multiselect(
        "Batch sizes", [1, 8, 32], default=[1, 8], key="scaling_sweep_batches"
    )
    sweep_budget = cols[2].number_input(
        "Budget (s)", 10, 1800, int(sweep.DEFAULT_BUDGET_S), 10, key="scaling_sweep_budget"
    )
    start_button(
        "sweep",
        "Run the sweep",
        "scaling_sweep_start",
        lambda: sweep_args(sweep_over, sweep_phis, sweep_batches, sweep_budget, c),
    )
    job_panel.show("sweep", "scaling_sweep", result=render_sweep, failed="The sweep failed")


# ----- the paper's method at small scale
def search_args(data: str, steps: list, budget: float, subset: int) -> dict:
    """The search's job arguments from its controls, checked (UserError with a sentence)."""
    if not steps:
        raise UserError("pick at least one step for β and γ.")
    args = {
        "data": data,
        "steps": sorted(steps),
        "budget_s": float(budget),
        "subset": int(subset),
        **session.dataset_args(),
    }
    search.grid(args["steps"])
    search.settings(args)
    return args


def render_search(job, snap) -> None:
    """The candidates' table and chart, the repeats, and how noisy it is."""
    result = search.SearchResult.from_dict(snap.result)
    repeats = {r.candidate: r for r in result.repeats}
    setup = result.setup  # None: stopped while the data loaded

    def pct(value) -> str:
        return "—" if value is None else f"{100 * value:.1f} %"

    def fact(name: str):
        return "?" if setup is None else getattr(setup, name)

    if result.candidates:
        st.plotly_chart(charts.search_figure(result), key="scaling_search_chart")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "candidate": c.label,
                        "α·β²·γ²": round(c.constraint, 3),
                        "resolution": c.resolution,
                        "MFLOPs": round(c.flops / 1e6, 1),
                        "starts from": "B0's ImageNet weights"
                        if c.start == "imagenet"
                        else "scratch",
                        "status": c.status,
                        "epochs": c.outcome.epochs_done if c.outcome else None,
                        "validation accuracy": pct(c.val_accuracy),
                        "± (1 s.e.)": pct(c.stderr),
                        "another seed": pct(
                            repeats[c.index].val_accuracy if c.index in repeats else None
                        ),
                        "test accuracy (once)": pct(c.test_accuracy),
                    }
                    for c in result.candidates
                ]
            ),
            hide_index=True,
            key="scaling_search_table",
        )
    st.info(f"How noisy: {result.noise}", icon=":material/info:")
    st.caption(
        f"Data {plain(result.data)}: {fact('train_images')} training, "
        f"{fact('val_images')} validation and "
        f"{fact('test_images')} test images at a base of "
        f"{fact('base_resolution')} px · weights: "
        f"{plain(fact('weights'))} · {result.device} · wall "
        f"{result.wall_s:.0f} s of a {result.budget_s:g} s budget. Candidates from "
        "ImageNet weights have a head start that a short training does not remove: the "
        "comparison is between architecture-and-start pairs, not architectures alone. "
        "Candidates are ranked on validation; each test accuracy is measured once and "
        "never used to pick."
    )
    if result.stopped:
        st.info("Stopped: candidates not trained show as skipped.")


def search_section() -> None:
    """The paper's α, β, γ grid search, small, on a dataset, as a job."""
    st.subheader("Search α, β, γ on your data (the paper's method, small)", anchor=False)
    st.caption(
        "Tan & Le fixed φ = 1 and grid-searched α, β, γ under α·β²·γ² ≈ 2. Here: candidates on "
        "that surface (β and γ from the steps you pick, α solved for), each a B0 scaled by "
        "them and trained briefly on a subset, with an equal share of the time budget. "
        "Candidates with B0's width start from B0's ImageNet weights (official B0 if cached, "
        "else the offline Lite0 — then every candidate is a Lite0-style network); the others "
        "start from scratch. The best and the worst are trained again with another seed to "
        "show how noisy this is. It holds the trainer while it runs."
    )
    cols = st.columns(4)
    search_data = cols[0].selectbox(  # this workspace's datasets and the shared ones
        "Dataset",
        ["cifar10", *session.visible_datasets()],
        key="scaling_search_data",
        format_func=session.dataset_label,
    )
    search_steps = cols[1].multiselect(
        "β and γ steps",
        SEARCH_STEPS,
        default=list(search.DEFAULT_STEPS),
        key="scaling_search_steps",
    )
    search_budget = cols[2].number_input(
        "Budget (s)", 60, 7200, int(search.DEFAULT_BUDGET_S), 60, key="scaling_search_budget"
    )
    search_subset = cols[3].number_input(
        "Training images", 100, 50_000, search.DEFAULTS["subset"], 100, key="scaling_search_subset"
    )
    try:
        grid = search.grid(search_steps) if search_steps else []
    except ValueError as exc:
        grid = []
        st.warning(errors.message(exc))
    if grid:
        st.caption(
            f"{len(grid)} candidates: "
            + "; ".join(f"α {c.alpha:g}, β {c.beta:g}, γ {c.gamma:g}" for c in grid)
            + ". On a 2-core CPU, "
            "compiling each candidate's training step alone takes 30–90 s, so a budget of 10 "
            "minutes fits about four candidates; those that don't fit show as skipped."
        )
    start_button(
        "search",
        "Run the search",
        "scaling_search_start",
        lambda: search_args(search_data, search_steps, search_budget, search_subset),
    )
    job_panel.show("search", "scaling_search", result=render_search, failed="The search failed")


# ----- the page
def render() -> None:
    """The Scaling page: inputs → the networks → numbers and charts; then the jobs."""
    st.title(f"{pages.ICONS['scaling']} Compound scaling", anchor=False)
    st.caption(
        "Tan & Le (2019) scale depth by α^φ, width by β^φ and resolution by γ^φ under "
        "α·β²·γ² ≈ 2, so FLOPs grow about 2^φ. Parameters and FLOPs below are computed layer "
        "by layer, with Keras's channel and repeat rounding."
    )
    choice = choose()
    if choice is None:
        return
    numbers(choice)
    chart_tabs(choice)
    measure_section(choice.net)
    sweep_section(choice)
    search_section()

    # ----- hand over to training
    net, variant = choice.net, choice.train_variant
    if st.button(
        f"Train this configuration ({variant.upper()}, {net.resolution} px)", key="scaling_train"
    ):
        st.session_state["train_preset"] = {"backbone": variant, "resolution": net.resolution}
        st.switch_page(pages.page("train"))


if __name__ == "__main__":  # run by the legacy pages/ router: see pages/__init__.py
    import app

    app.main()
