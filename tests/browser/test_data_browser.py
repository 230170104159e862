"""Real browser: import a zip on the Data page, check it, then train on it from the Train page.

The live server (tests/conftest.py ``app_url``) keeps datasets under the session's temporary
data root (EFFNET_LAB_DATA). Datasets belong to the browser session that made them, so the test
moves between pages by the navigation links (a reload would be a new session).
"""

from pets_zip import pets_zip
from playwright.sync_api import expect

# Cold start on 2 busy cores: import TensorFlow, convert the offline weights, build and trace.
TRAIN_MS = 480_000
IMPORT_MS = 60_000  # start a worker process, then read and decode 24 images, on busy cores


def test_import_check_and_train(app_url, page, tmp_path):
    page.goto(app_url + "/data")
    name = page.locator(".st-key-data_zip_name input")
    name.fill("browser-pets")
    name.press("Enter")
    page.locator(".st-key-data_zip_0 input[type=file]").set_input_files(
        str(pets_zip(tmp_path, "browser-pets", folder="pets", junk=True))
    )
    expect(page.get_by_text("browser-pets.zip")).to_be_visible()
    page.get_by_role("button", name="Import", exact=True).click()
    # The import is a job in a worker process: the panel shows it until it ends.
    imported = page.get_by_text("Imported browser-pets: 24 images in 2 classes")
    expect(imported).to_be_visible(timeout=IMPORT_MS)
    expect(page.get_by_text("Skipped entries")).to_be_visible()

    page.get_by_role("button", name="Check this dataset").click()
    leaks = page.get_by_test_id("stMetric").filter(has_text="Leaks")
    expect(leaks).to_be_visible(timeout=120_000)
    expect(page.get_by_test_id("stMetric").filter(has_text="Images")).to_contain_text("24")

    page.get_by_role("link", name="Train").first.click()
    page.get_by_role("button", name="quick demo").click()
    expect(page.get_by_text("Filled the controls with the quick demo preset")).to_be_visible()
    page.get_by_role("combobox", name="Dataset", exact=True).click()
    page.get_by_role("option", name="browser-pets").click()
    expect(page.get_by_text("Dataset check: browser-pets")).to_be_visible()
    page.get_by_role("button", name="Start", exact=True).click()
    outcome = page.get_by_text("Finished: test accuracy")
    expect(outcome).to_be_visible(timeout=TRAIN_MS)
    assert "browser-pets" in outcome.inner_text()  # the run is named after its dataset
