"""Real browser: clicking a confusion-matrix cell on the Train page shows that cell's test images."""

import os
from pathlib import Path

from conftest import make_run
from playwright.sync_api import expect


def test_click_a_confusion_cell_to_see_its_images(app_url, page):
    make_run(Path(os.environ["EFFNET_LAB_RUNS"]), "analysis-run")
    page.goto(app_url + "/train")
    expect(page.get_by_text("Most-confused pairs")).to_be_visible(timeout=120_000)
    expect(page.get_by_text("1 test image(s) are true cat, predicted dog")).to_be_visible()
    # The cells' markers, row by row (true cat, dog, bird × predicted cat, dog, bird): click
    # "true bird, predicted bird", the 9th.
    cell = page.locator(".st-key-train_confusion .scatterlayer .point").nth(8)
    cell.click(force=True)
    expect(page.get_by_text("2 test image(s) are correctly classified as bird")).to_be_visible()
    expect(page.get_by_role("combobox", name="True class")).to_have_value("bird")
