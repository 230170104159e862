"""The app's navigation under AppTest: one page table, every page reachable, and deep links that
Streamlit's legacy ``pages/`` router runs on a fresh server handed to the app's navigation.

``AppTest.from_file(app.py)`` starts each run the way a fresh server does: the ``pages`` folder
makes Streamlit run its legacy router (a page file executed as ``__main__``) until
``st.navigation`` is called. ``switch_page`` before the first run names the page by its file,
as the legacy router does for a deep link such as ``/train``.
"""

from pathlib import Path

import pytest
from app_session import open_page
from streamlit.testing.v1 import AppTest

import pages

APP = str(Path(__file__).resolve().parents[1] / "app.py")
HEADINGS = {  # each page's title, as the page draws it
    "home": ":material/science: EffNet Lab",
    "data": ":material/dataset: Data",
    "train": ":material/model_training: Train",
    "classify": ":material/image_search: Classify",
    "scaling": ":material/straighten: Compound scaling",
}


def test_the_table_lists_every_page_module_once():
    files = {p.stem for p in Path(pages.__file__).parent.glob("*.py")} - {"__init__"}
    assert [row.name for row in pages.PAGES] == list(HEADINGS)
    assert set(HEADINGS) == files
    assert len({row.title for row in pages.PAGES}) == len(pages.PAGES)
    assert pages.PAGES[0].name == pages.HOME
    for row in pages.PAGES:  # a Material icon each, and a description short enough for a line
        assert row.icon.startswith(":material/") and 10 < len(row.blurb) <= 50, row


@pytest.mark.parametrize("name", list(HEADINGS))
def test_each_page_renders_in_the_app(name, monkeypatch, tmp_path):
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    at = open_page(name).run()
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == [HEADINGS[name]]


@pytest.mark.parametrize("name", [n for n in HEADINGS if n != pages.HOME])
def test_a_deep_link_through_the_legacy_router_gets_the_apps_page(name, monkeypatch, tmp_path):
    """pages/<name>.py run as a script (the first request of a fresh server) hands over to
    app.main(): the same page, rendered once, by the app's navigation."""
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_DATA", str(tmp_path / "data"))
    at = AppTest.from_file(APP, default_timeout=60).switch_page(f"pages/{name}.py").run()
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == [HEADINGS[name]]
    at.run()  # and stays there on the next run
    assert [t.value for t in at.title] == [HEADINGS[name]]


def test_the_root_url_through_the_legacy_router_gets_home():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert [t.value for t in at.title] == [HEADINGS["home"]]


def test_home_links_every_other_page_with_its_whole_description():
    """Each link is the page's name (a link's label never wraps), its description a caption."""
    at = open_page("home").run()
    assert not at.exception
    others = [row for row in pages.PAGES if row.name != pages.HOME]
    links = at.get("page_link")
    assert [link.proto.label for link in links] == [f"**{row.title}**" for row in others]
    assert [link.proto.page for link in links] == [row.name for row in others]  # the URL paths
    captions = [c.value for c in at.caption]
    assert captions[: len(others)] == [row.blurb for row in others]


def test_an_unreachable_ray_cluster_is_one_line_on_every_page(monkeypatch, tmp_path):
    """EFFNET_LAB_EXECUTOR=ray with nothing at RAY_ADDRESS: each page still renders, under one
    error line naming the address (the check refuses before ray.init, so Ray is not joined)."""
    from components import executor

    monkeypatch.setenv("EFFNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EFFNET_LAB_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.9:1")
    monkeypatch.setattr(executor, "_last", {"at": None, "problem": None})  # no earlier answer
    at = open_page("scaling").run()
    assert not at.exception
    shown = [e.value.replace("\\", "") for e in at.error]  # plain(): Markdown escaped
    assert len(shown) == 1 and shown[0].startswith(
        "Background jobs cannot start: cannot reach the Ray cluster at 127.0.0.9:1 ("
    ), shown
    assert [t.value for t in at.title] == [HEADINGS["scaling"]]
