"""Real browser: two app replicas (two ``streamlit run app.py`` servers on two loopback ports)
share one store, so a workspace opened on either shows the same datasets, runs and jobs.

Replica A imports a dataset and starts a quick-demo run on it; another browser opens the
workspace's private link on replica B (a browser of its own: cookies do not separate ports, so the
same browser would carry A's cookie anyway) and sees the dataset, the run and its job there;
it stops the job from B, and A shows the run stopped. Both servers use one runs root and one data
root (``EFFNET_LAB_RUNS``, ``EFFNET_LAB_DATA``: runs, exports, job records, the queue and the
workspace records) of this test's own, and nothing else is shared between them: no per-server
secret, the workspace tag being a hash of the secret alone.
"""

import os
import re
from urllib.parse import urlsplit

from conftest import live_app
from pets_zip import import_pets_and_pick_quick_demo
from playwright.sync_api import expect
from visitors import new_page

from components import session

# Cold start of the worker on busy cores: import TensorFlow, convert the offline weights (once per
# cache), build Lite0 at 128 px and extract the features of 24 images.
TRAINING_MS = 240_000
# A replica's first Train page on busy cores takes longer than expect's 5 s default.
PAGE_MS = 60_000


def test_a_workspace_on_two_replicas_sees_one_run_and_stops_it_from_either(
    browser, tmp_path, _isolated_env
):
    store = tmp_path / "store"
    env = {
        **os.environ,
        **_isolated_env,  # the session's cache (converted weights) and CIFAR-10 copy
        "EFFNET_LAB_RUNS": str(store / "runs"),
        "EFFNET_LAB_DATA": str(store / "data"),
        # A frozen head on 24 images takes milliseconds per epoch: enough epochs that the run
        # surely still trains when replica B stops it.
        "EFFNET_LAB_MAX_EPOCHS": "10000",
    }
    with live_app(env, tmp_path / "a.log") as url_a, live_app(env, tmp_path / "b.log") as url_b:
        assert urlsplit(url_a).port != urlsplit(url_b).port

        # ----- replica A: a dataset, then a run on it
        mine, a = new_page(browser)
        a.goto(url_a + "/data")
        (cookie,) = [c for c in mine.cookies() if c["name"] == session.COOKIE]
        import_pets_and_pick_quick_demo(a, tmp_path, "rep-pets", seed=2)
        epochs = a.get_by_label("Epochs", exact=True)
        epochs.fill("10000")
        epochs.press("Enter")
        expect(epochs).to_have_value("10000")
        a.get_by_role("button", name="Start", exact=True).click()
        progress_a = a.get_by_test_id("stProgress")
        expect(progress_a).to_contain_text("Training", timeout=TRAINING_MS)

        sidebar = a.get_by_test_id("stSidebar")
        code = sidebar.get_by_test_id("stCode")
        expect(code).to_be_hidden()  # the link shows only once the visitor opens the panel
        sidebar.get_by_text("Your workspace").click()
        expect(code).to_be_visible()
        link = code.inner_text().strip()
        assert link == f"{url_a}/workspace/{cookie['value']}"

        # ----- replica B, another browser, through the private link: the same workspace
        other, b = new_page(browser)
        b.goto(url_b + urlsplit(link).path)
        assert urlsplit(b.url).port == urlsplit(url_b).port and "/workspace/" not in b.url
        (cookie_b,) = [c for c in other.cookies() if c["name"] == session.COOKIE]
        assert cookie_b["value"] == cookie["value"]
        b.get_by_role("link", name="Train", exact=True).first.click()
        progress_b = b.get_by_test_id("stProgress")
        expect(progress_b).to_contain_text("Training", timeout=PAGE_MS)  # A's job, live on B
        run_b = b.get_by_role("combobox", name="Run", exact=True)
        expect(run_b).to_have_value(re.compile("rep-pets"), timeout=PAGE_MS)  # the running run
        b.get_by_role("combobox", name="Dataset", exact=True).click()
        expect(b.get_by_role("option", name="rep-pets")).to_be_visible(timeout=PAGE_MS)
        b.keyboard.press("Escape")

        # ----- stop it from B; A sees it stopped, with the run it kept
        b.get_by_role("button", name="Stop", exact=True).click()
        outcome_a = a.get_by_text("Stopped early: test accuracy")
        expect(outcome_a).to_be_visible(timeout=120_000)
        run_name = outcome_a.inner_text().rsplit("saved as", 1)[-1].strip()
        assert "rep-pets" in run_name
        expect(b.get_by_text("Stopped early: test accuracy")).to_contain_text(
            run_name, timeout=PAGE_MS
        )
        b.reload()
        expect(b.get_by_role("combobox", name="Run", exact=True)).to_have_value(
            run_name, timeout=PAGE_MS
        )
        expect(b.get_by_test_id("stMetricValue").filter(has_text="stopped")).to_be_visible(
            timeout=PAGE_MS
        )

        # ----- a stranger on B sees none of it
        stranger, c = new_page(browser)
        c.goto(url_b + "/train")
        expect(c.get_by_text("No saved runs yet")).to_be_visible(timeout=PAGE_MS)
        for context in (mine, other, stranger):
            context.close()
