"""Scaling page: EfficientNet compound scaling as an exact, interactive calculator.

Inputs (phi, alpha, beta, gamma, base resolution, formula or official) -> one core computation
(:mod:`core.scaling`) -> metrics, stage table, charts; plus, on demand, a forward-pass timing of
the configured model on this machine (:mod:`core.measure`, as a background job of this session).
"""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages import ICONS, plain, session
from core import scaling
from core.measure import Timing
from core.progress import JobStatus

PHI_GRID = [i / 20 for i in range(141)]  # 0 to 7 in the slider's steps, for the curves


def flops_text(flops: int) -> str:
    """Multiply-adds for people: "0.39 B" or, for tiny inputs, "9.7 M"."""
    return f"{flops / 1e9:.2f} B" if flops >= 1e8 else f"{flops / 1e6:.1f} M"


st.title(f"{ICONS['Scaling']} Compound scaling", anchor=False)
st.caption("Tan & Le (2019) scale depth by α^φ, width by β^φ and resolution by γ^φ under "
           "α·β²·γ² ≈ 2, so FLOPs grow about 2^φ. Parameters and FLOPs below are computed layer "
           "by layer, with Keras's channel and repeat rounding.")

# ----- inputs ----------------------------------------------------------------------------------
mode = st.radio("Networks", ["Formula", "Official B0–B7"], horizontal=True, key="scaling_mode")
phi = st.slider("φ (compound coefficient)", 0.0, 7.0, 0.0, 0.05, key="scaling_phi")
cols = st.columns(4)
alpha = cols[0].slider("α (depth)", 1.0, 2.0, scaling.ALPHA, 0.01, key="scaling_alpha")
beta = cols[1].slider("β (width)", 1.0, 2.0, scaling.BETA, 0.01, key="scaling_beta")
gamma = cols[2].slider("γ (resolution)", 1.0, 2.0, scaling.GAMMA, 0.01, key="scaling_gamma")
base = cols[3].slider("Base resolution", 32, 512, scaling.BASE_RESOLUTION, 8, key="scaling_base")

# ----- guard + core ----------------------------------------------------------------------------
official = mode != "Formula"
variant = f"b{int(phi + 0.5)}"  # the released network at the nearest integer phi
try:
    formula_phi = int(phi + 0.5) if official else phi
    mult = scaling.multipliers(formula_phi, alpha, beta, gamma, base)
    formula = scaling.network(mult.width, mult.depth, mult.resolution)
    net = scaling.official_network(variant) if official else formula
except ValueError as exc:
    st.error(str(exc))
    st.stop()
b0 = scaling.official_network("b0")
train_variant = variant if official else scaling.nearest_variant(net.flops)

# ----- render: numbers -------------------------------------------------------------------------
st.write(f"α·β²·γ² = **{mult.constraint:.3f}**, so FLOPs grow ×{mult.flops_factor:.2f} "
         f"at φ = {formula_phi:g} (2^φ = {mult.ideal_flops_factor:.2f}).")
if abs(mult.constraint - 2) > 0.2:
    st.warning(f"α·β²·γ² = {mult.constraint:.2f} is far from 2: each step of φ multiplies "
               f"FLOPs by {mult.constraint:.2f} instead of doubling them.")

if official:
    st.subheader(f"EfficientNet-{variant.upper()} next to the formula at φ = {formula_phi}")
    st.dataframe(pd.DataFrame({
        f"Official {variant.upper()}": [f"{net.width:g}", f"{net.depth:g}", f"{net.resolution}",
                                         f"{net.params:,}", flops_text(net.flops)],
        f"Formula φ = {formula_phi}": [f"{formula.width:.3f}", f"{formula.depth:.3f}",
                                       f"{formula.resolution}", f"{formula.params:,}",
                                       flops_text(formula.flops)],
    }, index=["width ×", "depth ×", "resolution", "parameters", "FLOPs"]))
else:
    st.caption(f"Resolution = round({base} · γ^φ) = {net.resolution} px. "
               f"Nearest released network by FLOPs: {train_variant.upper()}.")

top = st.columns(2)
top[0].metric("Parameters", f"{net.params:,}", f"×{net.params / b0.params:.2f} vs B0",
              delta_color="off")
top[1].metric("FLOPs", flops_text(net.flops), f"×{net.flops / b0.flops:.2f} vs B0",
              delta_color="off")
low = st.columns(3)
low[0].metric("Depth ×", f"{net.depth:.3f}")
low[1].metric("Width ×", f"{net.width:.3f}")
low[2].metric("Resolution", f"{net.resolution} px")

st.dataframe(pd.DataFrame([{
    "stage": r.stage, "operator": r.operator, "resolution": f"{r.resolution}×{r.resolution}",
    "channels": r.channels, "layers": r.layers, "parameters": r.params,
    "MFLOPs": round(r.flops / 1e6, 1)} for r in net.stages]),
    hide_index=True)


# ----- render: charts --------------------------------------------------------------------------
@st.cache_data
def curves(alpha: float, beta: float, gamma: float, base: int) -> pd.DataFrame:
    """Parameters and FLOPs of the formula network over the phi grid."""
    nets = [scaling.formula_network(p, alpha, beta, gamma, base) for p in PHI_GRID]
    return pd.DataFrame({"phi": PHI_GRID, "params": [n.params for n in nets],
                         "flops": [n.flops for n in nets]})


def network_figure(net: scaling.ScaledNetwork) -> go.Figure:
    """The input, then one bar per layer: height = feature-map size, width ~ sqrt(channels)."""
    bars, res = [("input", net.resolution, 3)], net.resolution
    for row in net.stages:
        for j in range(row.layers):
            res = -(-res // (row.stride if j == 0 else 1))  # ceil: the layer's output size
            bars.append((f"stage {row.stage}, {row.operator}", res, row.channels))
    widths = [c**0.5 for _, _, c in bars]
    x = [sum(widths[:i]) + 2 * i + w / 2 for i, w in enumerate(widths)]
    b7 = scaling.official_network("b7")  # fixed axes, at least B7's size, so the growth shows
    x_max = max(x[-1] + widths[-1], sum(r.layers * (r.channels**0.5 + 2) for r in b7.stages))
    y_max = max(net.resolution, b7.resolution) / 2 + 10
    fig = go.Figure(go.Bar(
        x=x, y=[h for _, h, _ in bars], base=[-h / 2 for _, h, _ in bars], width=widths,
        marker={"color": list(range(len(bars))), "colorscale": "Viridis"},
        hovertext=[f"{name}<br>{h}×{h}×{c}" for name, h, c in bars], hoverinfo="text"))
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False,
                      xaxis={"visible": False, "range": [0, x_max]},
                      yaxis={"title": "feature-map size (px)", "range": [-y_max, y_max]})
    return fig


offs = {v: scaling.official_network(v) for v in scaling.OFFICIAL}
curve = curves(alpha, beta, gamma, base)
tab_net, tab_growth, tab_acc = st.tabs(["Network", "Growth with φ", "Accuracy vs FLOPs"])
with tab_net:
    st.caption("Each bar is one layer: height follows its feature-map size, width its channels, "
               "and the number of bars the depth.")
    st.plotly_chart(network_figure(net), key="scaling_network")
with tab_growth:
    for column, title in (("params", "Parameters"), ("flops", "FLOPs (multiply-adds)")):
        fig = go.Figure([
            go.Scatter(x=curve["phi"], y=curve[column], name="formula", mode="lines"),
            go.Scatter(x=list(range(8)), y=[getattr(n, column) for n in offs.values()],
                       name="official B0–B7", mode="markers+text", text=[v.upper() for v in offs],
                       textposition="bottom right"),
            go.Scatter(x=[formula_phi], y=[getattr(net, column)], name="this configuration",
                       mode="markers", marker={"size": 14, "symbol": "star"}),
        ])
        fig.update_layout(title=title, xaxis_title="φ", yaxis_type="log", height=360)
        st.plotly_chart(fig, key=f"scaling_{column}")
with tab_acc:
    fig = go.Figure(go.Scatter(
        x=list(scaling.PAPER_FLOPS.values()), y=list(scaling.PAPER_TOP1.values()),
        mode="lines+markers+text", text=[v.upper() for v in scaling.PAPER_TOP1],
        textposition="bottom right", name="paper, Table 2"))
    top1 = list(scaling.PAPER_TOP1.values())
    fig.add_scatter(x=[net.flops, net.flops], y=[min(top1) - 0.5, max(top1) + 0.5], mode="lines",
                    line={"dash": "dash", "color": "gray"}, name="this configuration")
    if official:
        fig.add_scatter(x=[scaling.PAPER_FLOPS[variant]], y=[scaling.PAPER_TOP1[variant]],
                        mode="markers", marker={"size": 16, "symbol": "star"},
                        name=variant.upper())
    fig.update_layout(xaxis={"title": "FLOPs (multiply-adds)", "type": "log"},
                      yaxis_title="ImageNet top-1 (%)", height=380)
    st.plotly_chart(fig, key="scaling_accuracy")
    st.caption("Accuracies are the paper's (Table 2); the dashed line marks this network's FLOPs.")

# ----- measure on this machine -----------------------------------------------------------------
st.subheader("Measure on this machine")


st.caption(f"Times a forward pass of this network with random weights on this machine, in a "
           f"background process. Batch 32 is {32 * net.flops / 1e9:.0f} B multiply-adds per pass: "
           f"large networks take a while on a CPU, and Stop ends the timing after the current pass.")
job = session.my_job("measure")
running = job is not None and job.snapshot().active
if st.button("Measure forward pass (batch 1 and 32)", key="scaling_measure_start",
             disabled=running):
    job = session.start_job("measure", {"width": net.width, "depth": net.depth,
                                        "resolution": net.resolution, "flops": net.flops,
                                        "batch_sizes": [1, 32]})
    running = True


@st.fragment(run_every=1.0 if running else None)
def measure_panel() -> None:
    """Live progress while timing runs; the timings next to the FLOPs estimate after."""
    snap = job.snapshot()
    if snap.active:
        text = (f"Queued: position {snap.queue_position}" if snap.status is JobStatus.QUEUED
                else f"{snap.phase or snap.message or 'Starting'} on {snap.device or '…'}")
        st.progress(snap.fraction, text=text)
        st.button("Stop", key="scaling_measure_stop", on_click=job.stop)
        return
    if running:  # it just finished: rerun the page to re-enable the button and stop polling
        st.rerun()
    if snap.status is JobStatus.ERROR:
        st.error(f"Measuring failed: {plain(snap.error)}")
    timings = [Timing.from_dict(t) for t in snap.result or []]
    if timings:
        args = job.args
        st.caption(f"Width ×{args['width']:.3f}, depth ×{args['depth']:.3f}, "
                   f"{args['resolution']} px on {snap.device}: {flops_text(args['flops'])} "
                   "multiply-adds per image.")
        st.dataframe(pd.DataFrame([{
            "batch": t.batch, "ms per pass": round(t.seconds * 1000, 1),
            "images/s": round(t.images_per_s, 1), "achieved GMAC/s": round(t.gmacs_per_s, 1),
            "timed passes": t.runs} for t in timings]), hide_index=True)
    if snap.status is JobStatus.STOPPED:
        st.info("Stopped before every batch size was timed.")


if job:
    measure_panel()

# ----- hand over to training -------------------------------------------------------------------
if st.button(f"Train this configuration ({train_variant.upper()}, {net.resolution} px)",
             key="scaling_train"):
    st.session_state["train_preset"] = {"backbone": train_variant, "resolution": net.resolution}
    st.switch_page("app_pages/train.py")
