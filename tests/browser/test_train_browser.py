"""Real browser: start a quick-demo run on the Train page, watch it learn, stop it, see it listed.

The server (tests/conftest.py ``app_url``) trains on the local CIFAR-10 copy in a worker process;
this test only drives the page, as a person would.
"""

from playwright.sync_api import expect

from core.training.presets import PRESETS

# Points on the live chart's "train (per epoch)" curve (0 before the chart exists).
EPOCH_POINTS = """() => {
    const plot = document.querySelector('.st-key-train_live_chart .js-plotly-plot');
    const trace = plot && plot.data && plot.data.find(t => t.name === 'train (per epoch)');
    return trace ? trace.x.length : 0;
}"""
# Cold start on 2 busy cores: import TensorFlow, decode 60 000 JPEGs once, build and trace B0.
FIRST_EPOCH_MS = 480_000


def test_start_watch_stop_and_listed(app_url, page, cifar10_dir):
    page.goto(app_url + "/train")
    page.get_by_role("button", name="quick demo").click()
    expect(page.get_by_text("Filled the controls with the quick demo preset")).to_be_visible()
    subset = str(PRESETS["quick"].values["subset"])
    expect(page.get_by_label("Training subset (images)", exact=True)).to_have_value(subset)
    # Frozen quick demo trains a head on cached features in well under a second per epoch: ask for
    # many epochs so that Stop surely lands during training (the run keeps what it learned).
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.fill("200")
    epochs.press("Enter")
    page.get_by_role("button", name="Start", exact=True).click()

    progress = page.get_by_test_id("stProgress")
    expect(progress).to_be_visible()
    expect(progress).to_contain_text("Training", timeout=FIRST_EPOCH_MS)
    page.wait_for_function(f"({EPOCH_POINTS})() >= 1", timeout=120_000)
    points, text = page.evaluate(EPOCH_POINTS), progress.inner_text()
    page.wait_for_function(f"({EPOCH_POINTS})() > {points}", timeout=120_000)  # the curve grows
    expect(progress).not_to_have_text(text)  # and the counter, img/s and ETA move
    expect(progress).to_contain_text("img/s")

    # Switching pages leaves the worker alone: back on Train, the same run has gone on.
    points = page.evaluate(EPOCH_POINTS)
    page.get_by_role("link", name="Home").first.click()
    expect(page.get_by_text("Keras backend")).to_be_visible(timeout=120_000)
    page.get_by_role("link", name="Train").first.click()
    expect(progress).to_contain_text("Training")
    page.wait_for_function(f"({EPOCH_POINTS})() > {points}", timeout=120_000)

    page.get_by_role("button", name="Stop", exact=True).click()
    outcome = page.get_by_text("Stopped early: test accuracy")
    expect(outcome).to_be_visible(timeout=180_000)
    run_name = outcome.inner_text().rsplit("saved as", 1)[-1].strip()
    assert "cifar10" in run_name and "frozen" in run_name

    # The runs section now lists it, selected in the details with its status and accuracy.
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(run_name)
    expect(page.get_by_test_id("stMetricValue").filter(has_text="stopped")).to_be_visible()
    expect(page.get_by_test_id("stMetricValue").filter(has_text="%").first).to_be_visible()
    expect(page.get_by_role("button", name="Download model.keras")).to_be_visible()
