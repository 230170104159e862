"""Workspaces: expiry removes exactly an expired workspace, quotas refuse before writing, names
never cross workspaces, accounts map to one workspace, and the cookie/private-link server glue.

AppTest has no cookies: a test acts as the workspace whose secret is ``token`` by setting
``session_state["session_token"]`` (components.session's documented test hook).
"""

from __future__ import annotations

import asyncio
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from app_session import open_page
from conftest import make_run, texts
from PIL import Image
from streamlit.testing.v1 import AppTest

from components import session, web
from core.data import catalog, datasets
from core.jobs import expiry
from core.jobs import runner as jobs
from core.platform import workspaces
from core.platform.progress import JobStatus
from core.training import runs
from core.training.run_writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]
DATA_PAGE, TRAIN_PAGE = "data", "train"
DAY = 86400


@pytest.fixture
def isolated(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EFFNET_LAB_SINGLE_USER", raising=False)
    return tmp_path


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def fill(tag: str, kind: str = "anonymous") -> None:
    """A workspace with a record, a run holding an export, and a dataset with an image."""
    workspaces.ensure(tag, kind)
    run = make_run(workspaces.runs_root(tag), "run-1", owner=tag)
    (run / "exports" / "onnx").mkdir(parents=True)
    (run / "exports" / "onnx" / "model.onnx").write_bytes(b"x" * 1000)
    datasets.create("pets", tag, classes=["cat"])
    datasets.add_images(catalog.dataset_ref("pets", tag), "cat", [("a.jpg", jpeg(1))], tag)


def page(name: str, token: str) -> AppTest:
    """The app opened on page ``name`` by the visitor whose workspace secret is ``token``."""
    return open_page(name, token=token)


# ----- expiry -----------------------------------------------------------------------------------
@pytest.mark.slow  # real worker jobs
def test_expiry_removes_everything_of_an_expired_workspace_and_nothing_else(isolated, cifar10_dir):
    old, fresh, account = session.tag_of("old"), session.tag_of("fresh"), "acc0000000000000"
    for tag in (old, fresh):
        fill(tag)
    fill(account, "account")
    long_ago = time.time() - 30 * DAY
    workspaces.touch(old, "anonymous", now=long_ago)
    workspaces.touch(account, "account", now=long_ago)  # accounts never expire
    make_run(isolated / "runs", "from-the-cli")  # the command line's: shared
    datasets.create("shared", None, classes=["a"])
    # A live job of the old workspace, queued (a record) behind a real data check that holds
    # the "data" slot; the checks queued behind it read a missing folder (they end at once).
    holder = jobs.submit("data_check", {"data": str(cifar10_dir), "use_cache": False}, owner="cli")
    try:
        deadline = time.time() + 60
        while time.time() < deadline and holder.snapshot().status is not JobStatus.RUNNING:
            time.sleep(0.2)
        assert holder.snapshot().status is JobStatus.RUNNING, holder.log_tail()
        job = jobs.submit("data_check", {"data": str(isolated / "missing")}, owner=old)
        mine = jobs.submit("data_check", {"data": str(isolated / "missing")}, owner=fresh)
        assert job.snapshot().status is JobStatus.QUEUED and mine.snapshot().active

        assert expiry.expire() == [old]

        assert job.snapshot().status is JobStatus.CANCELLED  # its job was ended
        assert mine.snapshot().status is JobStatus.QUEUED  # the other workspace's job goes on
    finally:
        for live in (locals().get("mine"), holder):
            if live is not None:
                live.kill()
    assert not workspaces.runs_root(old).exists() and not workspaces.data_root(old).exists()
    assert workspaces.read_record(old) is None
    for tag in (fresh, account):  # untouched, exports included
        assert [r.name for r in runs.list_runs(workspaces.runs_root(tag))] == ["run-1"]
        assert (workspaces.runs_root(tag) / "run-1" / "exports" / "onnx" / "model.onnx").is_file()
        assert datasets.info(catalog.dataset_ref("pets", tag)).classes == {"cat": 1}
    assert [r.name for r in runs.list_runs()] == ["from-the-cli"]
    assert catalog.list_datasets() == ["shared"]
    # No leftovers of the removal next to the workspaces.
    assert sorted(p.name for p in (isolated / "runs" / "w").iterdir()) == sorted([fresh, account])


def test_a_workspace_opened_again_is_kept(isolated):
    tag = session.tag_of("back")
    fill(tag)
    workspaces.touch(tag, "anonymous", now=time.time() - 13 * DAY)
    assert expiry.expire() == []  # 13 of 14 days
    assert expiry.expire(now=time.time() + 2 * DAY) == [tag]


def test_a_folder_without_a_record_is_never_removed(isolated):
    stray = workspaces.runs_root("0123456789abcdef")
    stray.mkdir(parents=True)
    assert expiry.expire(now=time.time() + 365 * DAY) == [] and stray.is_dir()


def test_app_replicas_on_one_store_take_turns_at_expiry(isolated):
    """Every app replica runs the hourly expiry: while one holds the store's expiry lock, another
    one's round does nothing (None), and the next round removes what is due."""
    tag = session.tag_of("gone")
    fill(tag)
    workspaces.touch(tag, "anonymous", now=time.time() - 30 * DAY)
    with workspaces.expiry_turn() as first:
        assert first
        with workspaces.expiry_turn() as second:
            assert not second
        assert web.expire_once() is None  # another replica's round is under way
        assert workspaces.read_record(tag) is not None and workspaces.runs_root(tag).is_dir()
    assert web.expire_once() == [tag]
    assert workspaces.read_record(tag) is None and not workspaces.runs_root(tag).exists()


# ----- quotas -----------------------------------------------------------------------------------
def test_quota_refuses_before_writing(isolated, monkeypatch):
    tag = session.tag_of("alice")
    fill(tag)
    used = workspaces.usage(tag)
    assert used > 1000  # the dataset, the run and its export all count
    monkeypatch.setenv("EFFNET_LAB_WORKSPACE_QUOTA_GB", str((used + 500) / 1e9))
    workspaces.require_room(tag, 400, "this")
    with pytest.raises(workspaces.QuotaError, match="Delete a run or a dataset"):
        workspaces.require_room(tag, 600, "this upload")
    monkeypatch.setenv("EFFNET_LAB_WORKSPACE_QUOTA_GB", "2")
    monkeypatch.setenv("EFFNET_LAB_WORKSPACES_TOTAL_GB", str(used / 1e9))
    with pytest.raises(workspaces.QuotaError, match="space for workspaces is full"):
        workspaces.require_room(session.tag_of("bob"), 1, "a new dataset")


def test_the_data_page_refuses_uploads_over_the_quota_and_writes_nothing(isolated, monkeypatch):
    tag = session.tag_of("alice")
    datasets.create("pets", tag, classes=["cat"])
    ref = catalog.dataset_ref("pets", tag)
    monkeypatch.setenv("EFFNET_LAB_WORKSPACE_QUOTA_GB", str(2000 / 1e9))  # 2 kB
    at = page(DATA_PAGE, "alice").run()
    at.file_uploader(key="data_upload_0").set_value(
        [(f"{i}.jpg", jpeg(i), "image/jpeg") for i in range(3)]
    )
    at.run()
    at.button(key="data_add_images").click().run()
    assert not at.exception
    assert "Delete a run or a dataset" in texts(at.error)
    assert datasets.info(ref).classes == {"cat": 0}
    # Too many files in one round: refused too, whatever the quota.
    monkeypatch.setenv("EFFNET_LAB_WORKSPACE_QUOTA_GB", "2")
    monkeypatch.setenv("EFFNET_LAB_UPLOAD_FILES", "2")
    at.file_uploader(key="data_upload_0").set_value(
        [(f"{i}.jpg", jpeg(i), "image/jpeg") for i in range(3)]
    )
    at.run()
    at.button(key="data_add_images").click().run()
    assert "smaller rounds" in texts(at.error)
    assert datasets.info(ref).classes == {"cat": 0}


def test_training_is_refused_before_a_job_starts_when_the_workspace_is_full(isolated, monkeypatch):
    tag = session.tag_of("alice")
    fill(tag)
    monkeypatch.setenv("EFFNET_LAB_WORKSPACE_QUOTA_GB", str(workspaces.usage(tag) / 1e9))
    at = page(TRAIN_PAGE, "alice").run()
    at.button(key="train_start").click().run()
    assert not at.exception
    assert "Cannot start: Your workspace holds" in texts(at.error)
    assert "job_train" not in at.session_state
    assert not [d for d in jobs.jobs_dir().iterdir() if d.name != "queue"]


# ----- names ------------------------------------------------------------------------------------
def test_names_never_leak_across_workspaces(isolated):
    alice, bob = session.tag_of("alice"), session.tag_of("bob")
    workspaces.ensure(alice, "anonymous")
    make_run(workspaces.runs_root(alice), "secret-run", owner=alice)
    a = page(DATA_PAGE, "alice").run()
    a.text_input(key="data_new_name").set_value("secret-data").run()
    a.button(key="data_create").click().run()
    assert "Created dataset secret-data" in texts(a.success)

    b = page(DATA_PAGE, "bob").run()  # the same names: no "already exists" to learn from
    b.text_input(key="data_new_name").set_value("secret-data").run()
    b.button(key="data_create").click().run()
    assert not b.error and "Created dataset secret-data" in texts(b.success)
    assert b.selectbox(key="data_pick").options == ["secret-data"]  # only his own
    b.button(key="data_create").click().run()  # his own name again: that he may be told
    assert "already exists" in texts(b.error)
    assert datasets.owner_of(catalog.dataset_ref("secret-data", bob)) == bob

    writer = RunWriter.reserve(workspaces.runs_root(bob), "secret-run", "x")
    assert writer.path.parent == workspaces.runs_root(bob)  # run names are per workspace too
    writer.release()
    t = page(TRAIN_PAGE, "bob").run()
    assert "No saved runs yet" in texts(t.info)
    assert t.selectbox(key="train_data").options == ["cifar10", "secret-data"]
    t = page(TRAIN_PAGE, "alice").run()
    assert list(t.dataframe[0].value["run"]) == ["secret-run"]


def test_a_shared_dataset_named_like_mine_is_told_apart(isolated):
    datasets.create("pets", None, classes=["a"])
    a = page(DATA_PAGE, "alice").run()
    a.text_input(key="data_new_name").set_value("pets").run()
    a.button(key="data_create").click().run()
    assert a.selectbox(key="data_pick").options == ["pets", "pets (shared)"]


# ----- who is which workspace -------------------------------------------------------------------
def test_an_account_maps_to_one_workspace():
    user = {"is_logged_in": True, "iss": "https://accounts.example", "sub": "1234", "email": "a@x"}
    tag = session.account_tag(user)
    assert workspaces.TAG_RE.match(tag)
    assert session.account_tag({**user, "email": "changed@x"}) == tag  # the stable id counts
    assert session.account_tag({**user, "sub": "5678"}) != tag
    assert session.account_tag({**user, "iss": "https://other.example"}) != tag
    assert session.account_tag({k: v for k, v in user.items() if k != "sub"}) is not None
    assert session.account_tag({**user, "is_logged_in": False}) is None
    assert session.account_tag({}) is None


def test_secrets_are_long_and_only_their_hash_is_kept():
    secret = session.new_secret()
    assert session.SECRET_RE.match(secret) and len(secret) * 6 >= 128
    assert session.tag_of(secret) != secret and secret not in session.tag_of(secret)


def test_the_sidebar_panel_shows_usage_expiry_and_the_link_once_opened(isolated):
    tag = session.tag_of("alice")
    fill(tag)
    at = page("home", "alice").run()
    assert not at.exception
    panel = texts(at.sidebar.caption)
    assert "Removed with its runs and datasets if nobody opens it for 14 days" in panel
    assert "MB of 2.00 GB used" in texts(at.sidebar.markdown)
    # The private link, in the panel, which stays closed until the visitor opens it.
    (expander,) = at.sidebar.expander
    assert expander.label == "Your workspace" and not expander.proto.expanded
    assert [c.value for c in expander.code] == ["/workspace/alice"]


# ----- the server glue: cookie middleware and private-link route ---------------------------------
def _call(asgi, path: str, cookie: str | None = None) -> list[dict]:
    headers = [(b"cookie", cookie.encode())] if cookie else []
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers, "scheme": "http"}
    scope.update(query_string=b"", root_path="", server=("t", 80), path_params={})
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    # In a thread of its own: Playwright's sync API may hold this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, asgi(scope, receive, send)).result()
    return sent


def _set_cookies(messages) -> list[str]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    return [v.decode() for k, v in start["headers"] if k == b"set-cookie"]


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_new_browser_gets_a_secret_cookie_and_a_known_one_keeps_it():
    app = web.WorkspaceCookie(_ok)
    (cookie,) = _set_cookies(_call(app, "/train"))
    secret = cookie.split(";")[0].split("=", 1)[1]
    assert session.SECRET_RE.match(secret)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert _set_cookies(_call(app, "/", cookie=f"{session.COOKIE}={secret}")) == []
    assert _set_cookies(_call(app, "/", cookie=f"{session.COOKIE}=short")) != []  # malformed


def test_the_private_link_sets_the_cookie_and_redirects():
    from starlette.routing import Router

    router = Router(routes=web.routes())
    secret = session.new_secret()
    messages = _call(router, f"/workspace/{secret}")
    start = messages[0]
    assert start["status"] == 303 and (b"location", b"/") in start["headers"]
    (cookie,) = _set_cookies(messages)
    assert cookie.startswith(f"{session.COOKIE}={secret};")
    assert _set_cookies(_call(router, "/workspace/not-a-secret")) == []


def test_a_signed_in_visitor_works_in_the_accounts_workspace(isolated, monkeypatch):
    """With Streamlit's sign-in configured, ``st.user`` names the account; AppTest has no OIDC
    provider, so the user Streamlit would report is given here (the rest is the real app)."""
    user = {"is_logged_in": True, "iss": "https://accounts.example", "sub": "42"}
    monkeypatch.setattr(session, "_signed_in_user", lambda: user)
    tag = session.account_tag(user)
    at = page("data", "any-tab-secret").run()
    at.text_input(key="data_new_name").set_value("mine").run()
    at.button(key="data_create").click().run()
    assert catalog.list_datasets(tag) == ["mine"]  # in the account's workspace, not the tab's
    assert (
        workspaces.read_record(tag).kind == "account"
        and workspaces.read_record(tag).expires() is None
    )
    assert "follow your account" in texts(at.sidebar.caption)
    assert not at.sidebar.code  # no link to share
    again = page("data", "another-browser").run()  # another browser, same account
    assert again.selectbox(key="data_pick").options == ["mine"]
