"""core.data.images: every mode becomes 8-bit RGB, the crop-then-resize geometry, bounded memory, and
bad inputs refused with a message."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.data import images
from core.data.images import ImageError, Preprocessing, decode_file, load_image


def _bytes(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


# ----- preprocessing: every mode becomes 8-bit RGB -------------------------------------------------
def test_imagenet_crop_takes_the_middle():
    array = np.zeros((100, 200, 3), dtype=np.uint8)
    array[:, 75:125] = 255  # a white band in the middle of a wide image
    out = Preprocessing.imagenet(32).apply(Image.fromarray(array))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # the crop is the central 87.5 x 87.5 px; the band (x 75..125) covers 57 % of its middle
    assert out[:, 16].min() > 200 and out[:, 0].max() < 60 and out[:, -1].max() < 60
    band = (out[16, :, 0] > 128).sum()
    assert abs(band - 32 * 50 / 87.5) <= 2


def test_full_square_crop_keeps_the_whole_shorter_side():
    array = np.zeros((30, 90, 3), dtype=np.uint8)
    array[:, 30:60] = 255  # exactly the central square of a 3:1 image
    out = Preprocessing(10, 1.0, "bicubic").apply(Image.fromarray(array))
    assert (
        out.shape == (10, 10, 3) and out[:, 1:-1].min() > 250 and out.min() > 200
    )  # edges: filter support


def test_preprocessing_round_trips_and_checks_its_values():
    prep = Preprocessing(96, 0.875, "bicubic")
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    assert prep.min_side() == 110  # ceil(96 / 0.875)
    for bad in (
        dict(size=0),
        dict(size=8, crop=0),
        dict(size=8, crop=1.5),
        dict(size=8, resample="nearest"),
    ):
        with pytest.raises(ValueError, match="preprocessing"):
            Preprocessing(**bad)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16", "1"])
def test_modes_become_rgb(mode):
    base = Image.new("RGB", (40, 30), (200, 100, 50))
    if mode == "I;16":
        image = Image.fromarray(np.full((30, 40), 65535, dtype=np.uint16))
        fmt = "PNG"
    else:
        image = base.convert(mode)
        fmt = "TIFF" if mode == "CMYK" else "PNG"
    out = load_image(_bytes(image, fmt))
    assert out.mode == "RGB" and out.size == (40, 30)
    if mode == "I;16":
        assert np.asarray(out).min() == 255  # full-scale 16-bit white stays white


def test_alpha_is_composited_on_white():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    out = np.asarray(load_image(_bytes(image, "PNG")))
    assert (out == 255).all()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    out = load_image(_bytes(image, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 60)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_formats(fmt):
    out = load_image(_bytes(Image.new("RGB", (33, 21), (1, 2, 3)), fmt))
    assert out.size == (33, 21) and out.mode == "RGB"


def test_gif_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(load_image(buf.getvalue()))
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


# ----- bad inputs -------------------------------------------------------------------------------
def _png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height (a decompression bomb's signature)."""
    raw = _bytes(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    start = raw.index(b"IHDR") - 4
    end = start + 4 + len(chunk) + 4
    return (
        raw[:start]
        + struct.pack(">I", 13)
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + raw[end:]
    )


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, I am a text file\n" * 20, "not an image"),
        (_png_with_size(30000, 30000), "decompression bomb"),
    ],
)
def test_bad_inputs_are_refused_clearly(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_truncated_image_is_refused():
    data = _bytes(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)),
        "JPEG",
    )
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


def test_too_big_file_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:
        f.truncate(images.MAX_FILE_BYTES + 1)
    with pytest.raises(ImageError, match="limit"):
        load_image(path)
    with pytest.raises(ImageError, match="limit"):
        load_image(b"\xff" * 2048, max_bytes=1024)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path)  # a folder, not a file


def test_thin_image_is_never_scaled_up_whole():
    """A 1×60000 strip: the square crop is 1×1 px, resized to the output, never a 256×15M image."""
    strip = _bytes(Image.new("RGB", (60000, 1), (9, 99, 199)), "PNG")
    image = load_image(strip)
    out = Preprocessing.imagenet(224).apply(image)
    assert out.shape == (224, 224, 3) and tuple(out[0, 0]) == (9, 99, 199)


def test_jpeg_decodes_at_a_reduced_scale_when_enough(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1500), (10, 20, 30)).save(path, quality=90)
    assert load_image(path).size == (2000, 1500)
    small = load_image(path, min_side=300)
    assert min(small.size) >= 300 and small.size[0] < 2000  # JPEG draft: 1/4 scale
    assert decode_file(path, Preprocessing(32)).shape == (32, 32, 3)


def test_pixel_budget_refuses_before_decoding():
    with pytest.raises(ImageError, match="megapixels"):
        load_image(_bytes(Image.new("L", (100, 100)), "PNG"), max_pixels=5000)
    assert images.MAX_PIXELS <= 50_000_000
