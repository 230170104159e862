"""AppTest for the Train page: controls generated from the options, presets, the Scaling hand-off,
bad values, a real tiny run in a worker process, and two visitors sharing one trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_session import go, open_page
from conftest import make_run, texts
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import training
from core.jobs import runner as jobs
from core.platform.progress import JobStatus
from core.training import runs

# Option.widget → the AppTest element kind that draws it.
KINDS = {
    "select": "selectbox",
    "data": "selectbox",
    "weights": "selectbox",
    "radio": "radio",
    "number": "number_input",
    "toggle": "toggle",
    "text": "text_input",
}


def widget(at: AppTest, field: str):
    opt = dict((name, o) for name, o, _ in training.options())[field]
    return getattr(at, KINDS[opt.widget])(key=f"train_{field}")


@pytest.fixture
def isolated(monkeypatch, tmp_path) -> Path:
    """An empty runs folder and data root of its own."""
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("EFFNET_LAB_DOWNLOAD_TIMEOUT", "1")
    return tmp_path


@pytest.fixture
def app(isolated) -> AppTest:
    """A session of the app on the Train page (not run yet)."""
    return open_page("train")


def my_job(at: AppTest) -> jobs.Job:
    return jobs.open_job(at.session_state["job_train"])


def test_every_option_has_its_generated_control(app):
    at = app.run()
    assert not at.exception and not at.error
    for name, opt, default in training.options():
        control = widget(at, name)
        assert control.label == opt.label, name
        assert control.value == ("" if default is None and opt.widget == "text" else default), name
        if opt.only_for:  # e.g. fine-tune blocks: disabled unless mode is finetune
            assert control.disabled == (training.DEFAULTS[opt.only_for[0]] != opt.only_for[1]), name
    assert {b.label for b in at.button} >= {p.label for p in training.PRESETS.values()} | {"Start"}
    assert "No saved runs yet" in texts(at.info)


def test_number_bounds_come_from_the_options(app):
    at = app.run()
    # The option allows 1024 px and 10 000 epochs; this server's limits (core.platform.limits)
    # stop the controls at 512 and 100.
    assert widget(at, "resolution").min == 32 and widget(at, "resolution").max == 512
    assert widget(at, "epochs").min == 1 and widget(at, "epochs").max == 100
    widget(at, "mode").set_value("finetune").run()
    assert not widget(at, "finetune_blocks").disabled and not widget(at, "augment").disabled
    widget(at, "mode").set_value("frozen").run()
    assert widget(at, "finetune_blocks").disabled and widget(at, "augment").disabled


def test_a_lower_server_limit_caps_the_control_and_its_default(isolated, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_MAX_EPOCHS", "20")
    at = open_page("train").run()
    assert not at.exception and not at.error
    assert widget(at, "epochs").max == 20 and widget(at, "epochs").value == 20  # default 50


def test_renders_inside_the_app_shell(isolated):
    at = open_page("train").run()
    assert not at.exception
    assert [t.value for t in at.title] == [":material/model_training: Train"]
    assert at.button(key="train_start").label == "Start"
    widget(at, "seed").set_value(7).run()
    go(at, "home")
    go(at, "train")  # the settings survive a visit to another page
    assert widget(at, "seed").value == 7


@pytest.mark.parametrize("key", list(training.PRESETS))
def test_preset_fills_the_controls(app, key):
    at = app.run()
    widget(at, "seed").set_value(7)
    widget(at, "name").set_value("my-run")
    at.button(key=f"train_preset_{key}").click().run()
    assert not at.exception
    expected = {**training.DEFAULTS, **training.PRESETS[key].values}
    for field in training.DEFAULTS:  # a preset is a whole recipe: the rest go back to defaults
        value = expected[field] or "" if field == "name" else expected[field]
        assert widget(at, field).value == value, field
    assert training.PRESETS[key].label in texts(at.success)


def test_datasets_and_weights_are_picked_from_the_data_root(app, isolated):
    for name in ("flowers", "pets"):
        (isolated / "data" / name / "a").mkdir(parents=True)
    (isolated / "data" / "weights").mkdir(parents=True)
    (isolated / "data" / "weights" / "mine.weights.h5").write_bytes(b"x")
    at = app.run()
    assert widget(at, "data").options == ["cifar10", "flowers", "pets"]
    weights = widget(at, "weights").options
    assert weights[:4] == ["auto", "imagenet", "lite0", "none"]
    assert weights[4:] == ["mine.weights.h5"]  # shown by file name; no path is ever typed
    assert [t.key for t in at.text_input] == ["train_name"]  # the only free text: a run name


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
    assert widget(at, "backbone").value == training.DEFAULTS["backbone"]  # nothing applied


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lr": 0.0}, "learning rate"),
        ({"dropout": 1.0}, "dropout"),
        ({"name": "bad name/with slash"}, "run name"),
    ],
)
def test_bad_value_gives_an_error_not_an_exception(app, change, message):
    at = app.run()
    for field, value in change.items():
        widget(at, field).set_value(value)
    at.button(key="train_start").click().run()
    assert not at.exception
    assert message in texts(at.error)
    assert "job_train" not in at.session_state  # nothing was started


@pytest.mark.slow
def test_data_problem_in_the_worker_is_an_error_message(app, isolated):
    (isolated / "data" / "one-class" / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(isolated / "data" / "one-class" / "cats" / "a.png")
    at = app.run()
    widget(at, "data").set_value("one-class")
    widget(at, "weights").set_value("none")
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error  # valid options: the worker finds the problem
    snap = my_job(at).wait(timeout=300)
    at.run()
    assert not at.exception
    message = texts(at.error)
    assert message.startswith("Training failed:") and "class" in message
    assert snap.status is JobStatus.ERROR and snap.error_kind == "input"


def tiny_settings(at: AppTest, **extra) -> None:
    values = dict(
        subset=100,
        test_subset=100,
        resolution=32,
        epochs=1,
        batch_size=32,
        weights="lite0",
        backbone="lite0",
    )
    for field, value in {**values, **extra}.items():
        widget(at, field).set_value(value)


@pytest.mark.slow
def test_tiny_run_is_listed_and_deletable(app, cifar10_dir, monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_CIFAR10_DIR", str(cifar10_dir))
    at = app.run()
    tiny_settings(at)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    at.button(key="train_start").click().run()  # a second start while the first is going
    assert not at.exception
    assert "still going" in texts(at.warning)

    snap = my_job(at).wait(timeout=600)
    assert snap.status is JobStatus.DONE, snap.error
    at.run()
    assert not at.exception and not at.error
    assert "Finished: test accuracy" in texts(at.success)

    run = runs.load_run(snap.result["run_dir"])  # in this visitor's workspace
    assert [r.name for r in runs.list_runs(run.path.parent)] == [run.name]
    table = at.dataframe[0].value
    row = table[table["run"] == run.name].iloc[0]
    assert row["status"] == "done"
    assert row["test accuracy"] == pytest.approx(run.test_accuracy)
    assert row["test accuracy"] == pytest.approx(snap.result["test_accuracy"])
    assert row["epochs"] == 1 and row["subset"] == 100
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == f"{run.test_accuracy:.2%}"
    assert metrics["Status"] == "done"
    assert at.download_button(key="train_download").label == "Download model.keras"

    at.button(key="train_delete").click().run()  # the confirmation inside the Delete popover
    assert not at.exception
    assert runs.list_runs(run.path.parent) == [] and not run.path.exists()
    assert "Deleted run" in texts(at.success)
    assert "No saved runs yet" in texts(at.info)


@pytest.mark.slow
def test_two_visitors_share_one_trainer_safely(isolated, cifar10_dir, monkeypatch):
    """B sees that A's run is busy but cannot stop it or see it; B's Start queues and can be
    cancelled; neither sees the other's messages or runs."""
    monkeypatch.setenv("EFFNET_LAB_CIFAR10_DIR", str(cifar10_dir))
    make_run(isolated / "runs", "from-the-cli")  # no owner: visible (read-only) to everyone
    a = open_page("train").run()
    tiny_settings(a, epochs=100, subset=200)
    widget(a, "name").set_value("a-run")
    a.button(key="train_start").click().run()
    job_a = my_job(a)
    for _ in range(600):  # until A has trained an epoch
        if job_a.snapshot().epochs:
            break
        job_a.wait(timeout=0.5)
    a.run()
    assert a.button(key="train_stop")

    b = open_page("train").run()
    assert not b.exception
    assert "busy with another visitor's run" in texts(b.info)
    assert not [x for x in b.button if x.key == "train_stop"]
    assert "a-run" not in texts(b.success) + texts(b.info) + texts(b.error)
    assert list(b.dataframe[0].value["run"]) == ["from-the-cli"]  # not A's run

    tiny_settings(b, epochs=1)
    b.button(key="train_start").click().run()
    job_b = my_job(b)
    assert job_b.owner != job_a.owner
    for _ in range(240):
        if job_b.snapshot().status is JobStatus.QUEUED:
            break
        job_b.wait(timeout=0.5)
    b.run()
    assert "Queued: position 1" in texts(b.info)
    b.button(key="train_cancel").click().run()
    assert job_b.wait(timeout=60).status is JobStatus.CANCELLED
    assert job_a.snapshot().active  # B's actions never touched A's run

    a.button(key="train_stop").click().run()
    snap = job_a.wait(timeout=120)
    assert snap.status is JobStatus.STOPPED
    a.run()
    assert "Stopped early" in texts(a.success)
    assert set(a.dataframe[0].value["run"]) == {"a-run", "from-the-cli"}
    b.run()
    assert "Stopped early" not in texts(b.success) and "Cancelled" in texts(b.info)
    assert list(b.dataframe[0].value["run"]) == ["from-the-cli"]


@pytest.fixture
def server_address():
    """Set Streamlit's ``server.address`` option for one test (restored after)."""
    from streamlit import config

    before = config.get_option("server.address")
    yield lambda address: config.set_option("server.address", address)
    config.set_option("server.address", before)


def test_single_user_mode_keeps_runs_yours_across_sessions(isolated, monkeypatch, server_address):
    """EFFNET_LAB_SINGLE_USER=1 on a loopback-only server: a reloaded tab (a new session) still
    owns the runs, and command-line runs can be deleted from the page."""
    monkeypatch.setenv("EFFNET_LAB_SINGLE_USER", "1")
    server_address("127.0.0.1")
    make_run(isolated / "runs", "from-the-cli")
    make_run(isolated / "runs", "from-the-app", owner="local")
    at = open_page("train").run()
    assert "EFFNET_LAB_SINGLE_USER" not in texts(at.warning)
    assert not at.sidebar.expander  # the single user has the whole server: no workspace panel
    assert set(at.dataframe[0].value["run"]) == {"from-the-cli", "from-the-app"}
    at.selectbox(key="train_run_pick").set_value("from-the-cli").run()
    assert at.button(key="train_delete")  # not read-only
    monkeypatch.delenv("EFFNET_LAB_SINGLE_USER")
    other = open_page("train").run()
    assert list(other.dataframe[0].value["run"]) == ["from-the-cli"]


@pytest.mark.parametrize("address", [None, "0.0.0.0", "example.org"])
def test_single_user_mode_is_refused_beyond_loopback(
    isolated, monkeypatch, server_address, address
):
    """A server others can reach (unset address: every interface) keeps a workspace per visitor,
    with a one-line warning: the single user is the operator, and would hand every stranger
    everyone's runs."""
    monkeypatch.setenv("EFFNET_LAB_SINGLE_USER", "1")
    server_address(address)
    make_run(isolated / "runs", "from-the-app", owner="local")
    at = open_page("train").run()
    assert not at.exception
    shown = [run for frame in at.dataframe for run in frame.value.get("run", [])]
    assert "from-the-app" not in shown  # "local" owns it, and this visitor is not "local"
    assert [e.label for e in at.sidebar.expander] == ["Your workspace"]  # a workspace's panel
    for page in ("train", "home"):  # the shell warns once, on whichever page is open
        if page != "train":
            go(at, page)
            assert not at.exception
        warnings = [w.value for w in at.warning if "EFFNET_LAB_SINGLE_USER" in w.value]
        assert len(warnings) == 1 and "\n" not in warnings[0], page


def test_run_details_never_show_server_paths(isolated):
    """Visitors see which data a run used, not where the server keeps it."""
    make_run(
        isolated / "runs",
        "cli-run",
        results={
            "data_source": "local CIFAR-10 copy: image folder /srv/secret/datasets/cifar10 (cache hit)",
            "split": "45000/5000/10000 train/validation/test",
        },
    )
    at = open_page("train").run()
    shown = texts(at.text)
    assert "image folder cifar10 (cache hit)" in shown and "45000/5000/10000" in shown
    assert "/srv" not in shown and "secret" not in shown
