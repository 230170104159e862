"""Real browser: upload a photo on the Classify page and see its label (headless Debian chromium)."""

from playwright.sync_api import expect


def test_upload_photo_shows_label(app_url, page, imagenet_samples_dir, tmp_path):
    page.goto(app_url + "/classify")
    expect(page.get_by_text("Upload one or more images")).to_be_visible(timeout=120_000)
    # A deep link served our navigation (titles), not Streamlit's legacy pages/ file list.
    expect(page.get_by_role("link", name="Scaling").first).to_be_visible()
    expect(page.get_by_role("link", name="train charts")).to_have_count(0)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"definitely not a jpeg")
    page.locator("input[type=file]").first.set_input_files(
        [str(imagenet_samples_dir / "n01860187_black_swan.JPEG"), str(broken)]
    )
    # The first prediction converts the offline weights and loads the model: allow time on 2 cores.
    expect(page.get_by_text("black swan ·").first).to_be_visible(timeout=180_000)
    expect(page.get_by_text("broken.jpg: not an image")).to_be_visible()
    page.screenshot(path=str(tmp_path / "classify.png"), full_page=True)


def test_home_page_lists_pages_and_runtime(app_url, page):
    page.goto(app_url)
    expect(page.get_by_text("Keras backend")).to_be_visible(timeout=120_000)
    for name in ("Train", "Classify", "Scaling"):
        expect(page.get_by_role("link", name=name).first).to_be_visible()
