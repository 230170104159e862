"""AppTest for the Train page: defaults, presets, the Scaling hand-off, bad values, and a real tiny run.

The page runs in this process, so ``core.training.JOBS`` here is the page's job runner: tests wait
on it directly instead of sleeping.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import runs, training

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "train.py")
DEFAULTS = training.TrainConfig()
# TrainConfig field → the kind of widget that holds it (keys are "train_<field>").
WIDGETS = {
    "backbone": "selectbox", "weights": "selectbox", "mode": "radio", "resolution": "number_input",
    "epochs": "number_input", "batch_size": "number_input", "lr": "number_input",
    "optimizer": "selectbox", "schedule": "selectbox", "seed": "number_input",
    "subset": "number_input", "test_subset": "number_input", "finetune_blocks": "number_input",
    "dropout": "number_input", "augment": "toggle", "cache_features": "toggle", "name": "text_input",
}


def widget(at: AppTest, field: str):
    return getattr(at, WIDGETS[field])(key=f"train_{field}")


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


@pytest.fixture
def isolated(monkeypatch, tmp_path) -> None:
    """An empty runs folder of its own, once any job from another test has ended."""
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DOWNLOAD_TIMEOUT", "1")
    assert training.JOBS.join(timeout=600), "a training job from an earlier test is still running"


@pytest.fixture
def app(isolated) -> AppTest:
    """The Train page on its own."""
    return AppTest.from_file(PAGE, default_timeout=60)


def test_renders_with_defaults(app):
    at = app.run()
    assert not at.exception
    assert not at.error
    assert at.radio(key="train_data_kind").value == "CIFAR-10"
    for field in WIDGETS:
        expected = DEFAULTS.name or "" if field == "name" else getattr(DEFAULTS, field)
        assert widget(at, field).value == expected, field
    assert {b.label for b in at.button} >= {*training.PRESETS, "Start"}
    assert "No saved runs yet" in texts(at.info)


def test_renders_inside_the_app_shell(isolated):
    at = AppTest.from_file(str(Path(PAGE).parents[1] / "app.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert [t.value for t in at.title] == ["🏋️ Train"]
    assert at.button(key="train_start").label == "Start"
    widget(at, "seed").set_value(7).run()
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/train.py").run()  # the settings survive a visit to another page
    assert widget(at, "seed").value == 7


def test_every_config_field_has_a_control():
    assert set(WIDGETS) | {"data"} == {f.name for f in dataclasses.fields(training.TrainConfig)}


@pytest.mark.parametrize("preset", list(training.PRESETS))
def test_preset_fills_the_controls(app, preset):
    at = app.run()
    widget(at, "seed").set_value(7)
    widget(at, "name").set_value("my-run")
    at.button(key=f"train_preset_{preset}").click().run()
    assert not at.exception
    expected = {**dataclasses.asdict(DEFAULTS), **training.PRESETS[preset]}
    for field in WIDGETS:  # a preset is a whole recipe: fields it leaves out go back to defaults
        value = expected[field] or "" if field == "name" else expected[field]
        assert widget(at, field).value == value, field
    assert preset in texts(at.success)


def test_scaling_page_handoff_is_applied_once(app):
    app.session_state["train_preset"] = {"backbone": "b3", "resolution": 300}
    at = app.run()
    assert not at.exception
    assert widget(at, "backbone").value == "b3"
    assert widget(at, "resolution").value == 300
    assert "Scaling page" in texts(at.info)
    assert "train_preset" not in at.session_state
    at.run()  # applied once: the message goes, the values stay
    assert "Scaling page" not in texts(at.info)
    assert widget(at, "backbone").value == "b3"


def test_bad_scaling_page_handoff_is_a_warning(app):
    app.session_state["train_preset"] = {"backbone": "b3", "resolution": 5000}
    at = app.run()
    assert not at.exception
    assert "resolution" in texts(at.warning)
    assert widget(at, "backbone").value == DEFAULTS.backbone  # nothing applied


@pytest.mark.parametrize("change, message", [
    ({"lr": 0.0}, "learning rate"),
    ({"resolution": 16}, "resolution"),
    ({"dropout": 1.5}, "dropout"),
    ({"data": "/no/such/folder"}, "does not exist"),
    ({"name": "bad name/with slash"}, "run name"),
])
def test_bad_value_gives_an_error_not_an_exception(app, change, message):
    before = training.JOBS.progress()
    at = app.run()
    for field, value in change.items():
        if field == "data":
            at.radio(key="train_data_kind").set_value("Image folder").run()
            at.text_input(key="train_data_path").set_value(value)
        else:
            widget(at, field).set_value(value)
    at.button(key="train_start").click().run()
    assert not at.exception
    assert message in texts(at.error)
    assert training.JOBS.progress() is before  # nothing was started


def test_data_problem_in_the_worker_is_an_error_message(app, tmp_path):
    classes = tmp_path / "one-class"
    (classes / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(classes / "cats" / "a.png")
    at = app.run()
    at.radio(key="train_data_kind").set_value("Image folder").run()
    at.text_input(key="train_data_path").set_value(str(classes))
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error  # valid options: the worker finds the problem
    assert training.JOBS.join(timeout=300)
    at.run()
    assert not at.exception
    message = texts(at.error)
    assert message.startswith("Training failed:") and "class" in message
    assert training.JOBS.progress().snapshot()["error"] in message


def test_tiny_run_is_listed_busy_on_second_start_and_deletable(app, monkeypatch, cifar10_dir):
    monkeypatch.setenv("EFFNET_LAB_CIFAR10_DIR", str(cifar10_dir))
    at = app.run()
    for field, value in dict(subset=100, test_subset=100, resolution=32, epochs=1, batch_size=32,
                             weights="lite0").items():
        widget(at, field).set_value(value)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    assert training.JOBS.busy
    at.button(key="train_start").click().run()  # a second start while the first still loads
    assert not at.exception
    assert "already in progress" in texts(at.warning)

    assert training.JOBS.join(timeout=600)
    snap = training.JOBS.progress().snapshot()
    assert snap["status"] == "done", snap["error"]
    at.run()
    assert not at.exception and not at.error
    assert "Finished: test accuracy" in texts(at.success)

    [run] = runs.list_runs()
    table = at.dataframe[0].value
    row = table[table["run"] == run.name].iloc[0]
    assert row["status"] == "done"
    assert row["test accuracy"] == pytest.approx(run.test_accuracy)
    assert row["test accuracy"] == pytest.approx(snap["result"]["test_accuracy"])
    assert row["epochs"] == 1 and row["subset"] == 100
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == f"{run.test_accuracy:.2%}"
    assert metrics["Status"] == "done"
    assert at.download_button(key="train_download").label == "Download model.keras"

    at.button(key="train_delete").click().run()  # the confirmation inside the Delete popover
    assert not at.exception
    assert runs.list_runs() == []
    assert "Deleted run" in texts(at.success)
    assert "No saved runs yet" in texts(at.info)
