"""Real browser: work survives a reload, opens from the private link in another browser, and stays
invisible to a third.

The live server (tests/conftest.py ``app_url``) is ``streamlit run app.py``, which serves the
``st.App`` in app.py: the workspace cookie middleware and the ``/workspace/<secret>`` route. Each
Playwright context is a separate browser (its own cookies).
"""

from pets_zip import import_pets_and_pick_quick_demo
from playwright.sync_api import expect
from visitors import new_page

from components import session

# Cold start on 2 busy cores: import TensorFlow, convert the offline weights, build and trace.
TRAIN_MS = 480_000


def test_a_run_survives_a_reload_and_opens_from_the_private_link_only(app_url, browser, tmp_path):
    mine, page = new_page(browser)
    page.goto(app_url + "/data")  # a deep link: the cookie comes with the page
    (cookie,) = [c for c in mine.cookies() if c["name"] == session.COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    import_pets_and_pick_quick_demo(page, tmp_path, "ws-pets", seed=1)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.get_by_test_id("stProgress")).to_be_visible()

    # A reload while it runs: the same workspace, which finds its job again and watches it end.
    page.reload()
    outcome = page.get_by_text("Finished: test accuracy")
    expect(page.get_by_test_id("stProgress").or_(outcome)).to_be_visible()
    expect(outcome).to_be_visible(timeout=TRAIN_MS)
    run_name = outcome.inner_text().rsplit("saved as", 1)[-1].strip()
    assert "ws-pets" in run_name
    page.reload()
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(run_name)

    # The private link, in the sidebar's workspace panel once the visitor opens it.
    sidebar = page.get_by_test_id("stSidebar")
    code = sidebar.get_by_test_id("stCode")
    expect(code).to_be_hidden()  # the link shows only once the visitor opens the panel
    sidebar.get_by_text("Your workspace").click()
    expect(sidebar.get_by_text("of 2.00 GB used")).to_be_visible()
    expect(code).to_be_visible()
    link = code.inner_text().strip()
    assert link == f"{app_url}/workspace/{cookie['value']}"

    # Another browser opens the link: the same workspace, the same run.
    other, elsewhere = new_page(browser)
    elsewhere.goto(link)
    train_link = elsewhere.get_by_role("link", name="Train", exact=True).first
    expect(train_link).to_be_visible()
    assert "/workspace/" not in elsewhere.url  # redirected: the secret left the address bar
    train_link.click()
    expect(elsewhere.get_by_role("combobox", name="Run", exact=True)).to_have_value(run_name)

    # A third browser without the link sees none of it.
    stranger, page3 = new_page(browser)
    page3.goto(app_url + "/train")
    page3.get_by_role("combobox", name="Dataset", exact=True).click()
    expect(page3.get_by_role("option", name="cifar10")).to_be_visible(timeout=60_000)
    expect(page3.get_by_role("option", name="ws-pets")).to_have_count(0)
    page3.keyboard.press("Escape")
    runs = page3.get_by_role("combobox", name="Run", exact=True)
    none = page3.get_by_text("No saved runs yet")
    expect(runs.or_(none)).to_be_visible(timeout=60_000)
    if runs.count():  # runs started from the command line (other tests') are shared, read-only
        # (AppTest checks that no other workspace's run is listed: tests/test_workspaces.py)
        expect(runs).not_to_have_value(run_name, timeout=60_000)
    for context in (mine, other, stranger):
        context.close()
