"""The geometry of the reduced-scale decode shortcut (:mod:`core.data.images`).

An image at least :data:`EXACT_FACTOR` times larger than a model's input may decode at a reduced
scale; these functions choose the reduction, say which part of the upright source the reduced
pixel grid covers (a turn by EXIF orientation can move the partial last row or column to the
near side), and resize a crop box of the source from that grid, weighting partial edge pixels by
the share of the source they stand for, so the result matches the full-scale resize within ±1.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# A model input is resized from a reduced-scale decode only when that decode still has at least
# this many pixels per input pixel. Box-averaging before a resize that then shrinks r times more
# damps detail near the input's finest scale by about (π/r)²/6: 0.6 % at r = 16, and on mosaics of
# the sample photos (hard edges included) no value moved by more than 1; at r = 8 a few moved by
# 2, at r = 4 by up to 4. The shortcut is for speed only (memory is bounded at full scale): a
# 4000-px photo still reduces 7-fold for a 32-px input, while a photo for a 224-px ImageNet input
# (256-px crop) would need a shorter side of 8192 px, more than 40 megapixels allow.
EXACT_FACTOR = 16


def _resize_covered(
    image: Image.Image,
    size: int,
    resample: Image.Resampling,
    box: tuple[float, float, float, float],
    covered: tuple[float, float, float, float],
) -> np.ndarray:
    """Resize the ``box`` of a source (its coordinates) from a reduced decode of it.

    ``covered`` is the part of the source the pixel grid spans: it may overhang the source by
    less than a pixel on each axis (the reduction's last block was partial). Such a pixel is the
    mean of the source pixels it has; weighting it by the share it has (premultiplied by a
    coverage alpha, divided out after the resize) keeps its weight in the filter that of the
    source pixels it stands for, as in the full-scale resize.
    """
    width, height = image.size
    x0, y0, x1, y1 = covered
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    source_w, source_h = image.info["source_size"]
    left, top, right, bottom = box
    box = (
        max(0.0, (left - x0) * sx),
        max(0.0, (top - y0) * sy),
        min(float(width), (right - x0) * sx),
        min(float(height), (bottom - y0) * sy),
    )
    # Share of each row and column inside the source: 1 but for a partial first or last one.
    cover_x, cover_y = np.ones(width), np.ones(height)
    cover_x[0] += min(0.0, x0) * sx
    cover_x[-1] -= max(0.0, x1 - source_w) * sx
    cover_y[0] += min(0.0, y0) * sy
    cover_y[-1] -= max(0.0, y1 - source_h) * sy
    if cover_x.min() == 1 and cover_y.min() == 1:
        out = image.resize((size, size), resample, box=box, reducing_gap=None)
        return np.asarray(out, dtype=np.uint8)
    weighted = image.convert("RGBa")  # alpha 255 everywhere: the same values, premultiplied
    for row in {0, height - 1}:  # only the partial rows and columns change
        if cover_y[row] < 1:
            _weigh(weighted, image, (0, row, width, row + 1), cover_y[row] * cover_x)
    for col in {0, width - 1}:
        if cover_x[col] < 1:
            _weigh(weighted, image, (col, 0, col + 1, height), cover_y * cover_x[col])
    out = np.asarray(weighted.resize((size, size), resample, box=box), dtype=np.float32)
    weight = np.maximum(out[..., 3:], 1.0)
    return np.clip(out[..., :3] * 255 / weight + 0.5, 0, 255).astype(np.uint8)


def _weigh(weighted: Image.Image, image: Image.Image, box: tuple, share: np.ndarray) -> None:
    """Write ``image``'s one-pixel-wide ``box`` into ``weighted`` premultiplied by ``share``
    (one value per pixel along it), with that share as alpha."""
    strip = np.asarray(image.crop(box), dtype=np.float32).reshape(-1, 3)
    values = np.hstack([strip * share[:, None], 255 * share[:, None]]) + 0.5
    size = (box[2] - box[0], box[3] - box[1])
    weighted.paste(Image.frombytes("RGBa", size, values.astype(np.uint8).tobytes()), box[:2])


def _whole_factor(side: int, min_side: int, limit: int | None = None) -> int:
    """The largest reduction (a power of two up to ``limit`` when given) keeping ``side`` at
    least ``min_side``."""
    factor = max(1, side // max(1, int(min_side)))
    if limit is None:
        return factor
    return max(f for f in (1, 2, 4, 8) if f <= min(factor, limit))


def _origin_corner(turn) -> tuple[int, int]:
    """Where the stored image's top-left corner lands after ``turn``: (0 left | 1 right,
    0 top | 1 bottom)."""
    if turn is None:
        return 0, 0
    marker = Image.new("L", (2, 2))
    marker.putpixel((0, 0), 1)
    y, x = np.argwhere(np.asarray(marker.transpose(turn)))[0]
    return int(x), int(y)


def _covered(
    source: tuple[int, int], size: tuple[int, int], scale: int, corner: tuple[int, int]
) -> tuple[float, float, float, float]:
    """The part of an upright ``source`` (width, height) that an image of ``size`` reduced by
    ``scale`` covers: pixel i stands for source pixels [scale·i, scale·(i + 1)) counted from the
    stored origin, so the grid overhangs the far side by up to scale − 1 pixels (the last row
    or column averages fewer); a turn can put that overhang at the near side."""
    box = []
    for length, reduced, flipped in zip(source, size, corner):
        span = scale * reduced
        start = length - span if flipped else 0
        box.append((start, start + span))
    (x0, x1), (y0, y1) = box
    return float(x0), float(y0), float(x1), float(y1)
