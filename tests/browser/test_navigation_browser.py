"""Real browser: a fresh server's first visitor opens a deep link and gets the app, with its own
navigation; the Home page's links show whole descriptions.

Streamlit runs a folder named ``pages`` as its legacy multipage app until a session calls
``st.navigation``, so only a server nobody has visited yet shows what the first deep link gets:
each case here starts its own (tests/conftest.py ``live_app``) instead of the shared ``app_url``.
"""

import os

import pytest
from conftest import live_app
from playwright.sync_api import expect

import pages

# Cold start on 2 busy cores: the first page run imports TensorFlow.
FIRST_RUN_MS = 240_000


def nav_paths(page, url: str) -> list[str]:
    """The URL paths the sidebar navigation links to, top to bottom."""
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    return [link.get_attribute("href").removeprefix(url) for link in links.all()]


@pytest.mark.parametrize(
    "name, heading, marker",
    [
        ("train", "Train", "Transfer learning: an ImageNet EfficientNet backbone"),
        ("classify", "Classify", "Upload one or more images to classify them."),
    ],
)
def test_a_deep_link_first_on_a_fresh_server_gets_the_app(
    name, heading, marker, page, _isolated_env, tmp_path
):
    with live_app({**os.environ, **_isolated_env}, tmp_path / "server.log") as url:
        page.goto(f"{url}/{name}")  # the server's very first request
        expect(page.get_by_text(marker)).to_be_visible(timeout=FIRST_RUN_MS)
        expect(page.get_by_role("heading", name=heading)).to_have_count(1)  # drawn once
        assert page.url == f"{url}/{name}"
        # The app's navigation, not the legacy router's (which would add app.py as "app").
        nav = page.get_by_test_id("stSidebarNav")
        expect(nav.get_by_role("link")).to_have_count(len(pages.PAGES))
        assert nav_paths(page, url) == [
            "/" + ("" if row.name == pages.HOME else row.name) for row in pages.PAGES
        ]
        for row in pages.PAGES:
            expect(nav.get_by_role("link", name=row.title)).to_be_visible()

        # The navigation works from there, and the way back keeps the app.
        nav.get_by_role("link", name="Home").click()
        expect(page.get_by_text("Keras backend")).to_be_visible(timeout=FIRST_RUN_MS)
        nav.get_by_role("link", name=heading).click()
        expect(page.get_by_text(marker)).to_be_visible()
        assert page.url == f"{url}/{name}"


# True when some element inside overflows its box: its text is cut (Streamlit clips a page link's
# label to one line) rather than shown whole.
CUT = "e => [e, ...e.querySelectorAll('*')].some(x => x.scrollWidth > x.clientWidth + 1)"


def test_home_links_show_whole_descriptions(app_url, page, tmp_path):
    page.goto(app_url)
    expect(page.get_by_text("Keras backend")).to_be_visible(timeout=FIRST_RUN_MS)
    main = page.get_by_test_id("stMain")
    for row in pages.PAGES:
        if row.name == pages.HOME:
            continue
        link = main.get_by_test_id("stPageLink").filter(has_text=row.title)
        expect(link).to_have_count(1)
        assert not link.evaluate(CUT), row.name
        description = main.get_by_text(row.blurb, exact=True)
        expect(description).to_be_visible()
        assert not description.evaluate(CUT), row.name
    page.screenshot(path=str(tmp_path / "home.png"), full_page=True)
