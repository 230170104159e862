"""Image decoding and resizing: the one path every image takes, for training and classification.

:func:`load_image` decodes a file or bytes safely (size and pixel limits, EXIF orientation, any
mode to 8-bit RGB); :class:`Preprocessing` turns such an image into the square uint8 array a model
takes. Datasets (:mod:`core.data.loading`) and classification (:mod:`core.serving.inference`) both go through here,
so a trained model sees at classification time exactly what it saw in training.

Memory stays bounded whatever a file claims to hold: the file size and the decoded pixel count are
checked before decoding, JPEGs decode at a reduced scale when that is enough, and a resize always
crops to the target's square first, so a 1×60000 strip is never scaled up to a huge image.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
        """The shortest source side that still needs no upscaling (JPEG draft decoding target)."""
        return math.ceil(self.size / self.crop)

    def box(self, width: float, height: float) -> tuple[float, float, float, float]:
        """The crop, ``(left, top, right, bottom)``, in an image of ``width`` × ``height``."""
        side = min(width, height) * self.crop
        left, top = (width - side) / 2, (height - side) / 2
        return left, top, left + side, top + side

    def apply(self, image: Image.Image) -> np.ndarray:
        """Crop and resize an RGB image; returns uint8 (size, size, 3)."""
        out = image.resize(
            (self.size, self.size), _RESAMPLE[self.resample], box=self.box(*image.size)
        )
        return np.asarray(out, dtype=np.uint8)

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
    decoded.

    Args:
        source: File path or raw bytes.
        max_bytes: Larger inputs are refused without decoding.
        max_pixels: Images with more pixels are refused before decoding (decompression bombs).
        min_side: If given, the image may come back smaller, its shorter side still at least
            this many pixels: a JPEG decodes at a reduced scale, any other image is box-reduced
            before its colours are converted (faster, and far less memory; the caller resizes
            anyway).

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
            if min_side and image.format in ("JPEG", "MPO") and min(width, height) > min_side:
                scale = min_side / min(width, height)
                image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
            image.seek(0)  # first frame of animations
            image.load()
            if min_side:
                image = _reduce(image, min_side)
            reduced = image.size
            if "exif" in image.info or image.getexif():
                image = ImageOps.exif_transpose(image)  # phones store their rotation in EXIF
            if image.size != reduced:  # turned a quarter: so is the source
                width, height = height, width
            image = to_rgb(image)
            image.info["source_size"] = (width, height)  # before any reduced-scale decoding
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


_REDUCIBLE = ("RGB", "RGBA", "L", "LA", "I", "F", "CMYK", "I;16")


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    """Box-reduce by a whole factor that keeps the shorter side at least ``min_side``."""
    factor = min(image.size) // min_side
    if factor < 2 or image.mode not in _REDUCIBLE:
        return image
    return image.reduce(factor)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha composited on white, 16-bit scaled down)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        scaled = (array - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(array)
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_file(path: str | os.PathLike, preprocessing: Preprocessing) -> np.ndarray:
    """Decode one image file straight to ``preprocessing``'s uint8 (size, size, 3) array.

    Raises:
        ImageError: The file is not a usable image.
    """
    return preprocessing.apply(load_image(path, min_side=preprocessing.min_side()))


def thumbnail(image: Image.Image, side: int = 512) -> Image.Image:
    """A copy no larger than ``side`` on its longer side, for showing in the UI."""
    out = image.copy()
    out.thumbnail((side, side))
    return out
