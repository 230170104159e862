"""The Scaling page under AppTest: sliders drive the numbers; modes, hand-over and timing work."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs, scaling
from core.progress import JobStatus

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "app_pages" / "scaling.py")


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def table_with(at: AppTest, column: str):
    """The first dataframe on the page that has ``column``."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_defaults_show_b0(app):
    shown = metrics(app)
    assert shown["Parameters"] == f"{scaling.official_network('b0').params:,}"
    assert shown["Resolution"] == "224 px" and shown["FLOPs"] == "0.39 B"
    assert not app.warning  # the paper's bases give 1.92, close enough to 2


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
    assert list(table.columns) == ["Official B3", "Formula φ = 3"]
    assert table.loc["resolution"].tolist() == ["300", str(scaling.multipliers(3).resolution)]


def test_constraint_far_from_two_warns(app):
    app.slider(key="scaling_alpha").set_value(1.6).run()
    assert any("far from 2" in w.value for w in app.warning)


def test_train_button_hands_over_nearest_variant_and_resolution(app):
    app.slider(key="scaling_phi").set_value(3.0).run()
    app.button(key="scaling_train").click().run()
    net = scaling.formula_network(3.0)
    assert app.session_state["train_preset"] == {
        "backbone": scaling.nearest_variant(net.flops), "resolution": net.resolution}


def test_train_button_opens_the_train_page_with_the_choice():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/scaling.py").run()
    at.slider(key="scaling_phi").set_value(2.0).run()
    at.button(key="scaling_train").click().run()
    assert not at.exception
    net = scaling.formula_network(2.0)
    assert any("Train" in t.value for t in at.title)
    assert any(scaling.nearest_variant(net.flops) in i.value and str(net.resolution) in i.value
               for i in at.info)


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
