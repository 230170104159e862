"""The Scaling page under AppTest: sliders drive the numbers; modes, hand-over and timing work."""

import json
import os

import pytest
from app_session import open_page
from streamlit.testing.v1 import AppTest

from core.jobs import runner as jobs
from core.models import scaling
from core.platform.progress import JobStatus


@pytest.fixture
def app() -> AppTest:
    at = open_page("scaling", 120).run()
    assert not at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def table_with(at: AppTest, column: str):
    """The first dataframe on the page that has ``column``."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def figure(at: AppTest, key: str) -> dict:
    """The Plotly figure (as JSON) of the chart drawn with widget key ``key``."""
    charts = [e for e in at.get("plotly_chart") if key in e.proto.id]
    assert charts, f"no chart {key}"
    return json.loads(charts[0].proto.spec)


def test_defaults_show_b0(app):
    shown = metrics(app)
    assert shown["Parameters"] == f"{scaling.official_network('b0').params:,}"
    assert shown["Resolution"] == "224 px" and shown["FLOPs"] == "0.39 B"
    assert not app.main.warning  # the paper's bases give 1.92, close enough to 2


def test_moving_phi_changes_the_numbers(app):
    before = metrics(app)
    app.slider(key="scaling_phi").set_value(2.5).run()
    after = metrics(app)
    expected = scaling.formula_network(2.5)
    assert after["Parameters"] == f"{expected.params:,}" != before["Parameters"]
    assert after["Resolution"] == f"{expected.resolution} px"
    assert after["Depth ×"] == f"{1.2**2.5:.3f}"
    stages = table_with(app, "layers")
    assert list(stages["layers"]) == [r.layers for r in expected.stages]


def test_official_mode_shows_the_variant_beside_the_formula(app):
    app.radio(key="scaling_mode").set_value("Official B0–B7")
    app.slider(key="scaling_phi").set_value(2.6).run()  # nearest integer phi is 3
    assert metrics(app)["Parameters"] == f"{scaling.official_network('b3').params:,}"
    table = table_with(app, "Official B3")
    assert list(table.columns) == [
        "Official B3",
        "Formula φ = 3",
        "φ implied by the official value",
    ]
    implied = scaling.implied_phi("b3")
    assert table.loc["resolution"].tolist() == [
        "300",
        str(scaling.multipliers(3).resolution),
        f"{implied.resolution:.2f}",
    ]
    assert table.loc["depth ×"].tolist()[2] == "1.85"  # ln 1.4 / ln 1.2


def test_negative_phi_gives_a_network_smaller_than_b0(app):
    app.slider(key="scaling_phi").set_value(-3.0).run()
    assert not app.exception and not app.error
    expected = scaling.formula_network(-3)
    shown = metrics(app)
    assert shown["Parameters"] == f"{expected.params:,}" and shown["Resolution"] == "147 px"
    assert any("Smaller than B0" in c.value for c in app.caption)
    app.radio(key="scaling_mode").set_value("Official B0–B7").run()  # no B-3: B0 is nearest
    assert not app.exception and metrics(app)["Parameters"] == "5,330,571"


def test_network_picture_has_b0s_outline_and_the_scaled_stages(app):
    app.slider(key="scaling_phi").set_value(2.0).run()
    fig = figure(app, "scaling_network")
    names = [t["name"] for t in fig["data"]]
    assert names.count("B0 outline") == 2
    assert sum(n.startswith("stage ") for n in names) == 2 * len(scaling.formula_network(2).stages)


def test_implied_phi_tab_lists_every_released_network(app):
    table = table_with(app, "φ from depth")
    assert list(table["network"]) == [v.upper() for v in scaling.OFFICIAL]
    assert list(table["φ from width"])[-1] == pytest.approx(7.27)
    assert any("picked by hand" in c.value for c in app.caption)
    assert figure(app, "scaling_implied_chart")["data"][0]["name"].startswith("the formula")


def test_sweep_and_search_refuse_bad_input_without_starting(app):
    app.radio(key="scaling_sweep_over").set_value(
        "φ values (this page's α, β, γ, base resolution)"
    ).run()  # enables the φ picker
    app.slider(key="scaling_base").set_value(32)
    app.multiselect(key="scaling_sweep_phis").set_value([-3, 0]).run()
    app.button(key="scaling_sweep_start").click().run()
    assert any("21 px" in e.value for e in app.error)
    assert "job_sweep" not in app.session_state
    app.multiselect(key="scaling_search_steps").set_value([1.3]).run()  # α would be 0.7
    assert any("no candidate satisfies" in w.value for w in app.warning)
    app.button(key="scaling_search_start").click().run()
    assert any("Cannot start" in e.value for e in app.error)
    assert "job_search" not in app.session_state


def test_constraint_far_from_two_warns(app):
    app.slider(key="scaling_alpha").set_value(1.6).run()
    assert any("far from 2" in w.value for w in app.warning)


def test_train_button_hands_over_nearest_variant_and_resolution(app):
    app.slider(key="scaling_phi").set_value(3.0).run()
    app.button(key="scaling_train").click().run()  # the Train page applies the choice, once
    net = scaling.formula_network(3.0)
    assert app.selectbox(key="train_backbone").value == scaling.nearest_variant(net.flops)
    assert app.number_input(key="train_resolution").value == net.resolution
    assert "train_preset" not in app.session_state


def test_train_button_opens_the_train_page_with_the_choice():
    at = open_page("scaling", 120).run()
    at.slider(key="scaling_phi").set_value(2.0).run()
    at.button(key="scaling_train").click().run()
    assert not at.exception
    net = scaling.formula_network(2.0)
    assert any("Train" in t.value for t in at.title)
    assert any(
        scaling.nearest_variant(net.flops) in i.value and str(net.resolution) in i.value
        for i in at.info
    )


@pytest.mark.slow
def test_measure_times_batch_1_and_32(app, tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path))
    app.slider(key="scaling_base").set_value(32).run()  # a 32-px B0 keeps the timing quick
    app.button(key="scaling_measure_start").click().run()
    assert app.button(key="scaling_measure_stop").label == "Stop"  # running in the background
    job = jobs.open_job(app.session_state["job_measure"])
    assert job.wait(timeout=240).status is JobStatus.DONE
    app.run()
    assert not app.exception
    table = table_with(app, "ms per pass")
    assert list(table["batch"]) == [1, 32]
    assert (table["ms per pass"] > 0).all() and (table["images/s"] > 0).all()
    assert not app.button(key="scaling_measure_start").disabled


@pytest.mark.slow
def test_sweep_section_times_networks_and_plots_them(app, tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path))
    app.radio(key="scaling_sweep_over").set_value(
        "φ values (this page's α, β, γ, base resolution)"
    ).run()  # enables the φ picker
    app.slider(key="scaling_base").set_value(64)
    app.multiselect(key="scaling_sweep_phis").set_value([-1, 0])
    app.multiselect(key="scaling_sweep_batches").set_value([1]).run()
    app.button(key="scaling_sweep_start").click().run()
    assert app.button(key="scaling_sweep_stop").label == "Stop"
    job = jobs.open_job(app.session_state["job_sweep"])
    assert job.wait(timeout=300).status is JobStatus.DONE
    app.run()
    assert not app.exception
    table = table_with(app, "ms/image @ batch 1")
    assert list(table["network"]) == ["φ = -1", "φ = 0"]
    assert (table["ms/image @ batch 1"] > 0).all()
    fig = figure(app, "scaling_sweep_chart")
    assert "Measured on" in fig["layout"]["title"]["text"]
    assert [t["name"] for t in fig["data"]] == ["batch 1", "batch 1"]  # FLOPs, params


@pytest.mark.slow
def test_search_section_runs_a_small_search(app, tmp_path, monkeypatch, tiny_cifar):
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    os.symlink(tiny_cifar, tmp_path / "data" / "tiny")
    app.run()  # the dataset list is read when the page runs
    app.selectbox(key="scaling_search_data").set_value("tiny")
    app.multiselect(key="scaling_search_steps").set_value([1.0])  # one candidate: α = 2
    app.number_input(key="scaling_search_budget").set_value(60)
    app.number_input(key="scaling_search_subset").set_value(100).run()
    app.button(key="scaling_search_start").click().run()
    job = jobs.open_job(app.session_state["job_search"])
    assert job.wait(timeout=600).status is JobStatus.DONE, job.snapshot().error
    app.run()
    assert not app.exception
    table = table_with(app, "starts from")
    assert list(table["candidate"]) == ["α 2 · β 1 · γ 1"]
    assert list(table["α·β²·γ²"]) == [2.0]
    assert list(table["starts from"]) == ["B0's ImageNet weights"]
    assert table["validation accuracy"][0].endswith("%") and table["test accuracy (once)"][
        0
    ].endswith("%")
    assert any(i.value.startswith("How noisy") for i in app.info)


def test_the_search_lists_only_this_workspaces_datasets_and_rechecks(tmp_path, monkeypatch):
    """Like the Train page's picker: the workspace's own datasets and the shared ones, never
    another workspace's; a search job on one is refused in the worker anyway, and a job's ref
    to a shared dataset cannot reach a workspace's."""
    import hashlib

    from core.data import catalog, datasets
    from core.experiments import search

    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    alice = hashlib.sha256(b"alice").hexdigest()[:16]
    bob = hashlib.sha256(b"bob").hexdigest()[:16]
    datasets.create("alices", alice)
    datasets.create("bobs", bob)
    datasets.create("shared", None)
    at = open_page("scaling", 120, token="alice").run()
    assert not at.exception
    picker = at.selectbox(key="scaling_search_data")
    assert picker.options == ["cifar10", "alices", "shared"]  # shown by name
    train_picker = open_page("train", 120, token="alice").run().selectbox(key="train_data")
    assert picker.options == train_picker.options  # the Train page's rule
    bobs = catalog.dataset_ref("bobs", bob)
    for ref in (bobs, "bobs"):
        with pytest.raises(ValueError) as refused:
            search.search({"data": ref, "managed": True, "user": alice})
        assert str(refused.value) == catalog.gone_message("bobs")
