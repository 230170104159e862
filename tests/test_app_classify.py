"""AppTest for the start page and the Classify page (the real model, no mocks)."""

import io
from pathlib import Path

import pytest
from app_session import open_page
from conftest import texts
from PIL import Image
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_home_page_shows_runtime_and_weights():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert {"Keras backend", "Framework", "Device"} <= set(labels)
    weights = at.dataframe[0].value
    assert "Lite0" in " ".join(weights["weights"])
    assert not any(where.startswith("/") or " /" in where for where in weights["where"])  # no paths


@pytest.mark.slow
def test_classify_upload_good_and_bad_files(imagenet_samples_dir):
    at = open_page("classify", 180).run()
    assert not at.exception
    assert any("Upload" in info.value for info in at.info)
    tench = (imagenet_samples_dir / "n01440764_tench.JPEG").read_bytes()
    swan = (imagenet_samples_dir / "n01860187_black_swan.JPEG").read_bytes()
    at.file_uploader(key="classify_uploads").set_value(
        [
            ("tench.jpg", tench, "image/jpeg"),
            ("broken.jpg", b"not an image", "image/jpeg"),
            ("empty.png", b"", "image/png"),
            ("swan.jpg", swan, "image/jpeg"),
        ]
    ).run()
    assert not at.exception
    errors = texts(at.error)
    assert "broken.jpg" in errors and "not an image" in errors
    assert "empty.png" in errors and "empty" in errors
    markdown = texts(at.markdown)
    assert "tench" in markdown and "black swan" in markdown
    table = at.dataframe[0].value
    assert list(table["file"]) == ["tench.jpg", "swan.jpg"]
    assert list(table["top-1"]) == ["tench", "black swan"]


@pytest.mark.slow
def test_classify_top_k_and_weights_selector(imagenet_samples_dir):
    at = open_page("classify", 180).run()
    at.selectbox(key="classify_weights").set_value("lite0")
    at.slider(key="classify_topk").set_value(3)
    buf = io.BytesIO()
    Image.open(imagenet_samples_dir / "n07747607_orange.JPEG").convert("LA").save(buf, "PNG")
    at.file_uploader(key="classify_uploads").set_value(
        ("orange_gray.png", buf.getvalue(), "image/png")
    ).run()
    assert not at.exception and not at.error
    assert any("lite0" in c.value for c in at.caption)
    bars = at.get("progress")  # the top-k as bars, best first, each labelled with its class
    assert len(bars) == 3
    values = [bar.proto.value for bar in bars]
    assert values == sorted(values, reverse=True) and "orange" in bars[0].proto.text
    assert len(at.dataframe) == 0  # one image: no results table


@pytest.mark.slow
def test_file_names_and_class_names_are_plain_text(tmp_path, monkeypatch, imagenet_samples_dir):
    """A hostile file name shows literally: no italics, links or HTML from it."""
    at = open_page("classify", 180).run()
    at.file_uploader(key="classify_uploads").set_value(
        [("*evil* [x](http://e.x) <b>.jpg", b"not an image", "image/jpeg")]
    ).run()
    assert not at.exception
    [error] = at.error
    assert "\\*evil\\*" in error.value and "\\[x\\]" in error.value and "\\<b\\>" in error.value
    assert texts(at.error).startswith("*evil* [x](http://e.x) <b>.jpg: not an image")


@pytest.mark.slow
def test_too_many_files_are_cut_with_a_message(imagenet_samples_dir, monkeypatch):
    from core.serving import inference

    monkeypatch.setattr(inference, "MAX_FILES", 2)
    at = open_page("classify", 180).run()
    photo = (imagenet_samples_dir / "n01440764_tench.JPEG").read_bytes()
    at.file_uploader(key="classify_uploads").set_value(
        [(f"{i}.jpg", photo, "image/jpeg") for i in range(3)]
    ).run()
    assert not at.exception
    assert "only the first 2" in texts(at.warning)
    assert list(at.dataframe[0].value["file"]) == ["0.jpg", "1.jpg"]
