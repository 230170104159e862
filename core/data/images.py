"""Image decoding and resizing: the one path every image takes, for training and classification.

:func:`load_image` decodes a file or bytes safely (size and pixel limits, EXIF orientation, any
mode to 8-bit RGB); :class:`Preprocessing` turns such an image into the square uint8 array a model
takes. Datasets (:mod:`core.data.loading`) and classification (:mod:`core.serving.inference`) both go through here,
so a trained model sees at classification time exactly what it saw in training.

Memory stays bounded whatever a file claims to hold: the file size and the decoded pixel count are
checked before decoding, every mode converts to RGB with about one more copy of the image, and a
resize always crops to the target's square first, so a 1×60000 strip is never scaled up to a huge
image.

A model's input is the plain resize of the full-resolution RGB image (``Image.resize`` of the crop
box, the preprocessing's filter, no reducing gap). Only an image at least :data:`EXACT_FACTOR`
times larger than the input decodes at a reduced scale (a box reduction after the conversion to
RGB; DCT scaling for a greyscale JPEG), and there the input differs by rounding only: at most ±1
(tests/test_images.py compares both paths on the sample photos).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from core.data.reduced import (
    EXACT_FACTOR,
    _covered,
    _origin_corner,
    _resize_covered,
    _whole_factor,
)
from core.platform.errors import UserError

# Larger files are refused before decoding (the Streamlit upload limit matches, in
# .streamlit/config.toml).
MAX_FILE_BYTES = 25 * 1024 * 1024
# Larger images are refused before decoding (decompression bombs). 40 megapixels is a large
# phone or camera photo; decoded as RGB it takes 120 MB.
MAX_PIXELS = 40_000_000
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO")
EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
# The standard ImageNet evaluation crop: the central 87.5 % of the shorter side.
IMAGENET_CROP = 0.875
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class ImageError(UserError):
    """An input that cannot be used as an image; the message is meant for the user."""


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes a model's input: a central square crop, resized.

    The crop is taken in the source image first (a square of ``crop`` times its shorter side),
    then resized to ``size`` × ``size``: the same geometry as "shorter side to size / crop, then
    centre crop", with no intermediate image larger than the output.

    Attributes:
        size: Side of the square output, in pixels.
        crop: Fraction of the shorter side kept (1.0: the largest central square; 0.875: the
            ImageNet evaluation crop).
        resample: "bilinear" or "bicubic".
        range: Pixel values the model takes; always "0..255" (normalisation is inside models).
        flip_tta: Predictions average the image's and its mirror image's (flip test-time
            augmentation), as the run was evaluated.
    """

    size: int
    crop: float = 1.0
    resample: str = "bilinear"
    range: str = "0..255"
    flip_tta: bool = False

    def __post_init__(self):
        if not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise UserError(
                f"preprocessing size must be a positive whole number, got {self.size!r}"
            )
        if not 0 < float(self.crop) <= 1:
            raise UserError(f"preprocessing crop must be in (0, 1], got {self.crop!r}")
        if self.resample not in _RESAMPLE:
            raise UserError(f"preprocessing resample must be one of {', '.join(_RESAMPLE)}")

    @classmethod
    def imagenet(cls, size: int) -> Preprocessing:
        """The ImageNet evaluation preprocessing at ``size`` (bilinear: the Lite0 weights were
        evaluated that way; measured 20/20 top-5 on the samples, bicubic 19/20)."""
        return cls(int(size), IMAGENET_CROP, "bilinear")

    def to_dict(self) -> dict:
        """JSON-ready dict (saved with every run)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        """The inverse of :meth:`to_dict`; unknown keys are ignored."""
        return cls(
            int(values["size"]),
            float(values.get("crop", 1.0)),
            str(values.get("resample", "bilinear")),
            flip_tta=bool(values.get("flip_tta", False)),
        )

    def min_side(self) -> int:
        """The shortest source side that still needs no upscaling."""
        return math.ceil(self.size / self.crop)

    def decode_side(self) -> int:
        """The shorter side a decode for this input may be reduced to (``min_side`` of
        :func:`load_image`): :data:`EXACT_FACTOR` × :meth:`min_side`, so the reduced-scale
        shortcut changes the input by rounding only, and ordinary photos decode at full scale."""
        return EXACT_FACTOR * self.min_side()

    def box(self, width: float, height: float) -> tuple[float, float, float, float]:
        """The crop, ``(left, top, right, bottom)``, in an image of ``width`` × ``height``."""
        side = min(width, height) * self.crop
        left, top = (width - side) / 2, (height - side) / 2
        return left, top, left + side, top + side

    def apply(self, image: Image.Image) -> np.ndarray:
        """Crop and resize an RGB image; returns uint8 (size, size, 3).

        An image that :func:`load_image` decoded at a reduced scale says which part of the
        source its pixels cover (``info["source_box"]``): the crop is taken where it lies in the
        source, and a last row or column that stands for fewer source pixels weighs that much
        less (:func:`_resize_covered`), so the result is the full-scale one up to rounding. An
        image transformed after decoding (mirrored, rotated) must drop that key.
        """
        resample = _RESAMPLE[self.resample]
        covered = image.info.get("source_box")
        if covered is None or "source_size" not in image.info:
            out = image.resize(
                (self.size, self.size), resample, box=self.box(*image.size), reducing_gap=None
            )
            return np.asarray(out, dtype=np.uint8)
        return _resize_covered(
            image, self.size, resample, self.box(*image.info["source_size"]), covered
        )

    def batch(self, images: list[Image.Image]) -> np.ndarray:
        """:meth:`apply` to each image, stacked as a float32 batch of 0..255 pixels."""
        return np.stack([self.apply(im) for im in images]).astype("float32")


def _read(source, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise ImageError(
                    f"file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB"
                )
            data = path.read_bytes()
        except OSError as exc:  # missing, a folder, no permission, I/O error
            raise ImageError(f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise ImageError("file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(
            f"file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB"
        )
    return data


def load_image(
    source: str | os.PathLike | bytes,
    *,
    max_bytes: int = MAX_FILE_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int | None = None,
) -> Image.Image:
    """Decode an image file or bytes to an RGB PIL image, safely.

    EXIF orientation is applied; palette, grayscale, alpha (composited on white), CMYK and
    16-bit images become 8-bit RGB; an animated GIF gives its first frame. The image's
    ``info["source_size"]`` is the file's own (width, height), upright, whatever ``min_side``
    decoded; after a reduced-scale decode, ``info["source_box"]`` is the part of that source the
    pixels cover (:meth:`Preprocessing.apply` crops by it).

    Args:
        source: File path or raw bytes.
        max_bytes: Larger inputs are refused without decoding.
        max_pixels: Images with more pixels are refused before decoding (decompression bombs).
        min_side: If given, the image may come back smaller by a whole factor, its shorter side
            still at least this many pixels: a greyscale JPEG decodes at a reduced scale (1/2,
            1/4, 1/8), and any image is box-reduced after its conversion to RGB (so the result
            averages exactly the pixels the full decode shows). A model input asks for
            :meth:`Preprocessing.decode_side`.

    Raises:
        ImageError: Empty, too big, not an image, truncated, or a decompression bomb.
    """
    data = _read(source, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise ImageError(f"unsupported image format {image.format}")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image is {width}×{height} = {width * height / 1e6:.0f} megapixels; "
                    f"the limit is {max_pixels / 1e6:.0f} (possible decompression bomb)"
                )
            scale = 1
            # DCT scaling averages grey levels as a box reduction would (within ±1). A colour
            # JPEG is not drafted: its scaled decode averages YCbCr before the conversion to RGB
            # clips, so saturated areas come out up to 3 levels off the full decode's average.
            if min_side and image.format in ("JPEG", "MPO") and image.mode == "L":
                factor = _whole_factor(min(width, height), min_side, limit=8)
                if factor >= 2:
                    drafted = image.draft(image.mode, (width // factor, height // factor))
                    if drafted:
                        scale = round(width / drafted[1][2])
            image.seek(0)  # first frame of animations
            image.load()
            # Phones store their rotation in EXIF; read from the file, as a reduced copy has none.
            turn = _TURNS.get(image.getexif().get(ExifTags.Base.Orientation, 1))
            image = to_rgb(image)
            factor = _whole_factor(min(image.size), min_side) if min_side else 1
            if factor >= 2:
                image = image.reduce(factor)
                scale *= factor
            if turn is not None:  # turned after reducing: fewer pixels to move
                image = _without_orientation(image.transpose(turn))
                if turn in _SWAPS:  # turned a quarter: so is the source
                    width, height = height, width
            image.info["source_size"] = (width, height)  # before any reduced-scale decoding
            if scale > 1:
                image.info["source_box"] = _covered(
                    (width, height), image.size, scale, _origin_corner(turn)
                )
            return image
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"image is too large to decode safely (decompression bomb): {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not an image (or an unsupported format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageError(f"image is damaged or truncated: {exc}") from exc


# EXIF orientation → the transpose that makes the image upright (as ImageOps.exif_transpose).
_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS = (
    Image.Transpose.TRANSPOSE,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90,
)


def _without_orientation(image: Image.Image) -> Image.Image:
    """Drop the metadata that says how to turn an image already turned upright."""
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "Raw profile type exif"):
        image.info.pop(key, None)
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha composited on white, 16-bit scaled down).

    Memory stays near one more copy of the image, so a 40-megapixel image converts at full
    scale: levels are scaled a band of rows at a time, and alpha is pasted onto a white canvas
    (the same pixels as compositing in RGBA, without its two RGBA copies).
    """
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    if image.mode in ("P", "PA"):
        image = image.convert(
            "RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB"
        )
    elif image.mode in ("RGBa", "La"):  # premultiplied
        image = image.convert(image.mode.upper())
    if image.mode in ("RGBA", "LA"):
        canvas = Image.new(image.mode[:-1], image.size, (255,) * (len(image.mode) - 1))
        canvas.paste(image, mask=image)
        image = canvas
    return image.convert("RGB") if image.mode != "RGB" else image


_ROWS = 256  # rows per band when scaling levels: float64 temporaries stay a few MB


def _to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float image as 8-bit grey: 16-bit scaled from 0..65535, 32-bit from
    0..255 or, when it holds more, 0..65535 (both rounded); float from its own range (truncated)."""
    if image.mode == "F":
        lo, hi = image.getextrema()
    else:  # Pillow has no extrema for 16-bit modes; their range is 0..65535 anyway
        lo, hi = 0, (65535 if image.mode != "I" or image.getextrema()[1] > 255 else 255)
    width, height = image.size
    out = np.empty((height, width), dtype=np.uint8)
    for top in range(0, height, _ROWS):
        band = np.asarray(image.crop((0, top, width, min(height, top + _ROWS))), np.float64)
        if image.mode == "F":
            scaled = (band - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(band)
        else:
            scaled = band / hi * 255.0 + 0.5
        out[top : top + _ROWS] = np.clip(scaled, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


def decode_file(path: str | os.PathLike, preprocessing: Preprocessing) -> np.ndarray:
    """Decode one image file straight to ``preprocessing``'s uint8 (size, size, 3) array.

    Raises:
        ImageError: The file is not a usable image.
    """
    return preprocessing.apply(load_image(path, min_side=preprocessing.decode_side()))
