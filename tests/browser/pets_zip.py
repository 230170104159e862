"""The zip the browser tests import: two classes of 12 smooth 40 px images (red-ish and blue-ish)."""

import zipfile

import numpy as np
from PIL import Image


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
