"""Real browser: export a finished run from the Train page and download the export as a zip.

The run is trained here, in the test process, into the live server's runs folder (as a command
line run would be), so the page lists it read-only with its Export section; the export itself
runs in the server's worker process, as it does for visitors.
"""

import json
import zipfile
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

RUN = "export-browser"


def _choose(page, pick, name: str, tries: int = 5) -> None:
    """Pick ``name`` in a select box; a rerun that closes the open list is retried, not fatal."""
    for _ in range(tries):
        if pick.input_value() == name:
            return
        try:
            pick.click()
            page.get_by_role("option", name=name, exact=True).click(timeout=10_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    expect(pick).to_have_value(name)


def test_export_a_run_and_download_the_zip(app_url, page, tiny_cifar, _isolated_env, tmp_path):
    from core.training import TrainConfig, train

    config = TrainConfig(
        data=str(tiny_cifar),
        backbone="lite0",
        weights="lite0",
        mode="frozen",
        resolution=32,
        epochs=1,
        name=RUN,
    )
    train(config, runs_root=Path(_isolated_env["EFFNET_LAB_RUNS"]))

    page.goto(app_url + "/train")
    # The page has run to its end (a click while it still renders may close the list again).
    expect(page.get_by_role("button", name="Export", exact=True)).to_be_visible(timeout=180_000)
    pick = page.get_by_role("combobox", name="Run", exact=True)
    _choose(page, pick, RUN)

    page.get_by_role("button", name="Export", exact=True).click()  # ONNX, the first format
    expect(page.get_by_test_id("stProgress")).to_be_visible()
    done = page.get_by_text("held-out images agree at top-1")
    expect(done).to_be_visible(timeout=420_000)
    expect(done).to_contain_text("200/200")
    expect(page.get_by_text("Checked in onnxruntime")).to_contain_text("test images")

    with page.expect_download() as info:
        page.get_by_role("button", name="Download zip").click()
    download = info.value
    assert download.suggested_filename == f"{RUN}-onnx.zip"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert {
            f"{RUN}-onnx/{n}" for n in ("model.onnx", "labels.txt", "model.json", "predict.py")
        } <= names
        meta = json.loads(archive.read(f"{RUN}-onnx/model.json"))
        labels = archive.read(f"{RUN}-onnx/labels.txt").decode().splitlines()
    assert meta["format"] == "onnx" and meta["file"] == "model.onnx"
    assert meta["input"]["shape"] == [None, 32, 32, 3] and meta["input"]["dtype"] == "uint8"
    assert labels == meta["classes"] and len(labels) == 10
    assert meta["parity"]["meets_target"] and meta["parity"]["agreement"] == 1.0
