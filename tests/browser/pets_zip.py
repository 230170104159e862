"""The zip the browser tests import: two classes of 12 smooth 40 px images (red-ish and blue-ish)."""

import zipfile

import numpy as np
from PIL import Image
from playwright.sync_api import expect


def pets_zip(tmp_path, name: str, *, folder: str = "", junk: bool = False, seed: int = 0):
    """Write ``tmp_path/<name>.zip``: ``[folder/]red/*.png`` and ``[folder/]blue/*.png``, plus a
    ``.DS_Store`` the import must skip when ``junk``; returns its path."""
    archive = tmp_path / f"{name}.zip"
    prefix = f"{folder}/" if folder else ""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(archive, "w") as z:
        for c, channel in (("red", 0), ("blue", 2)):
            for i in range(12):
                small = rng.integers(0, 120, (4, 4, 3), dtype=np.uint8)
                small[..., channel] += 120
                path = tmp_path / f"{c}{i}.png"
                Image.fromarray(small).resize((40, 40), Image.Resampling.BICUBIC).save(path)
                z.write(path, f"{prefix}{c}/{i}.png")
        if junk:
            z.writestr(f"{prefix}.DS_Store", b"junk")
    return archive


def import_pets_and_pick_quick_demo(page, tmp_path, name: str, seed: int) -> None:
    """On ``page`` (at the Data page): import a pets zip as dataset ``name``, then on the Train
    page fill the quick demo preset and pick that dataset (nothing started yet)."""
    field = page.locator(".st-key-data_zip_name input")
    field.fill(name)
    field.press("Enter")
    page.locator(".st-key-data_zip_0 input[type=file]").set_input_files(
        str(pets_zip(tmp_path, name, seed=seed))
    )
    expect(page.get_by_text(f"{name}.zip")).to_be_visible()
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_text(f"Imported {name}: 24 images in 2 classes")).to_be_visible()

    page.get_by_role("link", name="Train", exact=True).first.click()
    page.get_by_role("button", name="quick demo").click()
    expect(page.get_by_text("Filled the controls with the quick demo preset")).to_be_visible()
    page.get_by_role("combobox", name="Dataset", exact=True).click()
    page.get_by_role("option", name=name).click()
