"""Inference: real ImageNet accuracy, every image mode through one preprocessing path, bad inputs."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core import inference
from core.inference import ImageError, center_crop, load_image
from core.labels import imagenet_labels, imagenet_synsets


def _bytes(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def classifier():
    return inference.load_classifier("imagenet", "auto")


def test_labels_and_synsets_are_the_standard_1000():
    labels, synsets = imagenet_labels(), imagenet_synsets()
    assert len(labels) == len(synsets) == 1000
    assert synsets == sorted(synsets)  # Keras's class index = position in the sorted synsets
    assert labels[0] == "tench" and synsets[0] == "n01440764"


def test_classifies_imagenet_samples(classifier, imagenet_samples_dir):
    files = sorted(imagenet_samples_dir.glob("*.JPEG"))
    assert len(files) == 20
    synsets = imagenet_synsets()
    truth = [synsets.index(f.name.split("_")[0]) for f in files]
    preds = classifier.classify([load_image(f) for f in files], top=5)
    top1 = sum(p.top[0]["index"] == t for p, t in zip(preds, truth))
    top5 = sum(t in [d["index"] for d in p.top] for p, t in zip(preds, truth))
    assert top1 >= 17, f"top-1 {top1}/20"
    assert top5 == 20, f"top-5 {top5}/20"
    assert all(abs(sum(d["prob"] for d in p.top) - 1) < 1 for p in preds)
    assert all(p.top[0]["prob"] >= p.top[1]["prob"] for p in preds)


def test_top_k_and_batching_agree(classifier, imagenet_samples_dir):
    files = sorted(imagenet_samples_dir.glob("*.JPEG"))[:5]
    images = [load_image(f) for f in files]
    one_by_one = [classifier.classify([im], top=3)[0] for im in images]
    batched = classifier.classify(images, top=3, batch_size=2)
    for a, b in zip(one_by_one, batched):
        assert [d["index"] for d in a.top] == [d["index"] for d in b.top]
        assert len(a.top) == 3
        np.testing.assert_allclose([d["prob"] for d in a.top], [d["prob"] for d in b.top], atol=1e-4)


# ----- preprocessing: every mode becomes 8-bit RGB -------------------------------------------------
def test_center_crop_takes_the_middle():
    array = np.zeros((100, 200, 3), dtype=np.uint8)
    array[:, 75:125] = 255  # a white band in the middle of a wide image
    out = center_crop(Image.fromarray(array), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # shorter side 100 -> 32/0.875 = 36.6 px; the band (50/100 of the height) covers the centre
    assert out[:, 16].min() > 200 and out[:, 0].max() < 60


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
    return raw[:start] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[end:]


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, I am a text file\n" * 20, "not an image"),
    (_png_with_size(30000, 30000), "decompression bomb"),
])
def test_bad_inputs_are_refused_clearly(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_truncated_image_is_refused():
    data = _bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


def test_too_big_file_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:
        f.truncate(inference.MAX_FILE_BYTES + 1)
    with pytest.raises(ImageError, match="limit"):
        load_image(path)
    with pytest.raises(ImageError, match="limit"):
        load_image(b"\xff" * 2048, max_bytes=1024)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path)  # a folder, not a file
