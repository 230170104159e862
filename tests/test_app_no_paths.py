"""No server path reaches a visitor: every element of every page, walked through AppTest's element
tree (each element's protobuf strings: text, captions, help and tooltips, options, chart specs;
and each table's cells), with a workspace's dataset, run and jobs that failed with path-bearing
errors, and the sidebar's workspace panel with its private link shown."""

from __future__ import annotations

import hashlib
import io
import json
import re
import site
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from app_session import open_page
from conftest import make_run, tiny_model
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.data import catalog, datasets
from core.jobs import runner as jobs
from core.platform import paths, workspaces
from core.training.options import TrainConfig
from pages import PAGES

TOKEN = "alice"
TAG = hashlib.sha256(TOKEN.encode()).hexdigest()[:16]
PETS, EMPTY = catalog.dataset_ref("pets", TAG), catalog.dataset_ref("empty", TAG)


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


# ----- the walk ---------------------------------------------------------------------------------
def _proto_strings(value, out: list[str]) -> None:
    """Every string in a protobuf message, nested messages, lists and maps included (bytes
    skipped: Arrow tables are read as tables, below)."""
    if isinstance(value, str):
        out.append(value)
        if value[:1] in "{[":  # a chart's JSON spec: its strings escape "/" as \u002f
            try:
                _proto_strings(json.loads(value), out)
            except ValueError:
                pass
    elif value is None or isinstance(value, (bytes, int, float)):  # bool is an int
        return
    elif hasattr(value, "ListFields"):
        for _, field_value in value.ListFields():
            _proto_strings(field_value, out)
    elif hasattr(value, "items"):
        for key, item in value.items():
            _proto_strings(key, out)
            _proto_strings(item, out)
    else:
        for item in value:
            _proto_strings(item, out)


def shown_strings(at: AppTest) -> list[str]:
    """All text an AppTest run would send to the browser: each node's protobuf strings, and
    every dataframe's and table's cells, column names and index."""
    out: list[str] = []

    def visit(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "ListFields"):
            _proto_strings(proto, out)
        if getattr(node, "type", None) in ("dataframe", "arrow_data_frame", "arrow_table", "table"):
            out.append(node.value.to_csv())
        for child in getattr(node, "children", {}).values():
            visit(child)

    visit(at._tree)
    return [re.sub(r"\\(.)", r"\1", s) for s in out]  # Markdown escapes of user text removed


def server_paths(tmp_path: Path) -> list[str]:
    """Folders whose paths must never be shown: the test's data/runs/cache roots, the project,
    the home folder and the Python packages."""
    found = {
        str(tmp_path),
        str(tmp_path.resolve()),
        str(paths.PROJECT_ROOT),
        str(Path.home()),
        sysconfig.get_paths()["purelib"],
        *site.getsitepackages(),
    }
    return sorted(p for p in found if len(p) > 1)


def leaks(at: AppTest, forbidden: list[str]) -> list[str]:
    """The shown strings holding a forbidden path (shortened, for the failure message)."""
    return [s[:300] for s in shown_strings(at) if any(p in s for p in forbidden)]


# ----- a world with something in every state ------------------------------------------------------
@pytest.fixture
def world(tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))
    datasets.create("pets", TAG, classes=["cat", "dog"])  # in Alice's workspace
    for c in ("cat", "dog"):
        datasets.add_images(PETS, c, [(f"{i}.jpg", jpeg(i + 7 * len(c))) for i in range(4)], TAG)
    datasets.create("empty", TAG)  # no classes: training on it fails with a data error
    make_run(
        workspaces.runs_root(TAG),
        "alice-run",
        owner=TAG,
        model=tiny_model(),
        # as runs recorded them before their messages named things instead of paths
        results={
            "data_source": f"image folder {workspaces.data_root(TAG) / 'pets'} (cache hit)",
            "weights": f"local weights file {tmp_path / 'data' / 'weights' / 'b0.weights.h5'}",
        },
    )
    app = {"managed": True, "user": TAG}  # as session.dataset_args() makes them
    train = {
        "config": TrainConfig(data=EMPTY, epochs=1).to_dict(),
        "owner": TAG,
        "runs_root": str(workspaces.runs_root(TAG)),
        **app,
    }
    failed = {
        "data_check": jobs.submit("data_check", {"data": EMPTY, **app}, owner=TAG),
        "train": jobs.submit("train", train, owner=TAG),
        "search": jobs.submit("search", {"data": EMPTY, "budget_s": 60, **app}, owner=TAG),
    }
    for kind, job in failed.items():
        snap = job.wait(timeout=240)
        # The check reports an empty dataset's problems; the others fail on its data.
        assert snap.status.value == ("done" if kind == "data_check" else "error"), (kind, snap)
    return failed


def session(page: str, failed: dict) -> AppTest:
    """Alice's session of the app on ``page`` (a name in ``pages.PAGES``), her failed jobs in it."""
    at = open_page(page, 120, token=TOKEN)
    for kind, job in failed.items():
        at.session_state[f"job_{kind}"] = job.id
    return at.run()


@pytest.mark.slow  # three worker jobs and every page
def test_no_page_shows_a_server_path(world, tmp_path):
    forbidden = server_paths(tmp_path)
    seen = {}

    home = session("home", world)
    assert [e.label for e in home.sidebar.expander] == ["Your workspace"]  # the panel is there
    link = [c.value for c in home.sidebar.code]
    assert link and link[0].startswith("/workspace/"), link  # the private link is shown
    seen["home, the workspace panel and its private link"] = home

    data = session("data", world)
    data.selectbox(key="data_pick").set_value(EMPTY).run()
    seen["data, a failed check"] = data

    train = session("train", world)
    seen["train, a failed run and a run"] = train
    train.selectbox(key="train_run_pick").set_value("alice-run").run()
    seen["train, the run's details"] = train

    classify = session("classify", world)
    choice = next(o for o in classify.selectbox(key="classify_model").options if "alice-run" in o)
    classify.selectbox(key="classify_model").set_value(choice).run()
    classify.file_uploader(key="classify_uploads").set_value(
        ("cat.jpg", jpeg(1), "image/jpeg")
    ).run()
    seen["classify, a run's model"] = classify

    seen["scaling, a failed search"] = session("scaling", world)

    for where, at in seen.items():
        assert not at.exception, (where, at.exception)
        assert shown_strings(at), where  # the walk saw the page
    found = {where: leaks(at, forbidden) for where, at in seen.items()}
    assert not {where: shown for where, shown in found.items() if shown}
    # The failed jobs were on the pages (their messages named the dataset, not its folder).
    shown = " ".join(" ".join(shown_strings(at)) for at in seen.values())
    assert "dataset 'empty'" in shown
    assert TAG not in shown  # nor the workspace's tag: refs are shown by their names


def test_the_walk_finds_a_planted_path(tmp_path):
    """The walk sees help strings, captions, markdown, table cells and chart specs."""
    planted = str(tmp_path / "secret")
    scripts = [
        f"st.caption('fine', help={planted!r})",
        f"st.markdown('see {planted}')",
        f"st.dataframe(pd.DataFrame({{'where': [{planted!r}]}}))",
        f"st.selectbox('pick', ['a', {planted!r}])",
        f"st.plotly_chart(go.Figure(go.Bar(x=[1], y=[1], name={planted!r})))",
        f"st.metric('m', 1, help={planted!r})",
    ]
    for line in scripts:
        at = AppTest.from_string(
            "import pandas as pd\nimport plotly.graph_objects as go\nimport streamlit as st\n"
            + line
        ).run()
        assert not at.exception, line
        assert leaks(at, [planted]), line
    clean = AppTest.from_string("import streamlit as st\nst.caption('fine', help='no path')").run()
    assert not leaks(clean, [planted])


# ----- another workspace's names --------------------------------------------------------------------
OTHER_TAG = hashlib.sha256(b"bob").hexdigest()[:16]
OTHER_NAMES = ("zz-other-secret-ds", "zz-other-secret-run")
PAGE_NAMES = [row.name for row in PAGES]


@pytest.fixture
def two_workspaces(tmp_path, monkeypatch) -> None:
    """Alice's workspace with a dataset and a run; Bob's with a dataset and a run whose names are
    unique strings that must never reach Alice."""
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))
    for tag, (ds, run) in ((TAG, ("pets", "alice-run")), (OTHER_TAG, OTHER_NAMES)):
        workspaces.ensure(tag, "anonymous")
        datasets.create(ds, tag, classes=["cat", "dog"])
        ref = catalog.dataset_ref(ds, tag)
        for c in ("cat", "dog"):
            datasets.add_images(ref, c, [(f"{i}.jpg", jpeg(i + 7 * len(c))) for i in range(3)], tag)
        make_run(workspaces.runs_root(tag), run, owner=tag)


@pytest.mark.slow  # every page, each with its imports
def test_no_page_shows_another_workspaces_names(two_workspaces):
    seen = {page: open_page(page, 120, token=TOKEN).run() for page in PAGE_NAMES}
    for where, at in seen.items():
        assert not at.exception, (where, at.exception)
        assert shown_strings(at), where
    found = {where: leaks(at, list(OTHER_NAMES + (OTHER_TAG,))) for where, at in seen.items()}
    assert not {where: shown for where, shown in found.items() if shown}
    # The walk looked where such names would be: her own dataset and run are shown there.
    assert seen["data"].selectbox(key="data_pick").options == ["pets"]
    assert "alice-run" in " ".join(shown_strings(seen["train"]))
