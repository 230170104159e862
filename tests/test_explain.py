"""Grad-CAM (core/serving/explain.py): the heat lies on the object, for the ImageNet model and a trained
run's nested model, on TensorFlow and (through the CLI) on JAX; heatmaps at the input's size."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.images import Preprocessing, load_image
from core.serving import explain

REPO = Path(__file__).resolve().parents[1]
CANVAS = (480, 400)  # wider than tall: the centre crop cuts the sides, the map must say where


def canvas_with(photo: Path, side: str) -> Image.Image:
    """The photo, shrunk to 190 px, on one side of a blank white canvas."""
    obj = load_image(photo)
    obj.thumbnail((190, 190))
    canvas = Image.new("RGB", CANVAS, (255, 255, 255))
    x = 60 if side == "left" else CANVAS[0] - 60 - obj.width
    canvas.paste(obj, (x, (CANVAS[1] - obj.height) // 2))
    return canvas


def left_share(heat: np.ndarray) -> float:
    """The share of all heat in the left half."""
    heat = heat.astype(np.float64)
    half = heat.shape[1] // 2
    return heat[:, :half].sum() / heat.sum()


@pytest.fixture(scope="module")
def imagenet(lite0_imagenet_classifier):
    return lite0_imagenet_classifier


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["n07747607_orange", "n04399382_teddy"])
def test_heat_lies_on_the_side_with_the_object(imagenet, imagenet_samples_dir, photo):
    shares = {}
    for side in ("left", "right"):
        image = canvas_with(imagenet_samples_dir / f"{photo}.JPEG", side)
        [cam] = imagenet.explain([image])
        heat = explain.place(cam, imagenet.preprocessing, image.size)
        assert heat.shape == (CANVAS[1], CANVAS[0]) and heat.dtype == np.uint8
        shares[side] = left_share(heat)
    assert shares["left"] > 0.8, shares
    assert shares["right"] < 0.2, shares


@pytest.mark.slow
def test_grad_cam_uses_the_last_conv_and_gives_the_models_probabilities(
    imagenet, imagenet_samples_dir
):
    cm = explain.cam_model(imagenet.model)
    assert cm.layer == "top_activation" and cm.side == (7, 7)
    x = imagenet.preprocessing.batch([load_image(imagenet_samples_dir / "n01440764_tench.JPEG")])
    cams, probs = explain.grad_cam(cm, x)
    np.testing.assert_allclose(probs, imagenet.model.predict_on_batch(x), atol=1e-5)
    assert cams.shape == (1, 7, 7) and cams.max() == pytest.approx(1.0) and cams.min() >= 0


@pytest.mark.slow
def test_trained_runs_nested_backbone_is_found_below_its_top():
    """A run's model nests the backbone; at 96 px its 3×3 top is too coarse: block5c (6×6)."""
    from core.training.network import build_network
    from core.training.options import TrainConfig

    for resolution, layer, side in ((96, "block5c_add", (6, 6)), (32, "block3b_add", (4, 4))):
        net = build_network(
            TrainConfig(backbone="lite0", weights="none", mode="finetune", resolution=resolution),
            10,
            32,
        )
        x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
        cm = explain.cam_model(net.model)
        assert (cm.layer, cm.side) == (layer, side)
        cams, probs = explain.grad_cam(cm, x, classes=[0, 1, 2])
        np.testing.assert_allclose(probs, net.model.predict_on_batch(x), atol=1e-5)
        assert cams.shape == (3, *side)
    assert explain.cam_model(net.model, "top_activation").side == (1, 1)
    with pytest.raises(ValueError, match="not a block output"):
        explain.cam_model(net.model, "no_such_layer")


def test_multiscale_backbone_is_cut_where_every_pooled_output_depends_on_the_cut():
    """A multi-scale run pools the ends of stages 5 and 6 beside the top: at 160 px the
    deepest block output that all three depend on is block5c (10×10), not the 5×5 top."""
    from core.training.network import build_network
    from core.training.options import TrainConfig

    net = build_network(
        TrainConfig(
            backbone="lite0", weights="none", mode="frozen", resolution=160, multiscale=True
        ),
        10,
        32,
    )
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    cm = explain.cam_model(net.model)
    assert (cm.layer, cm.side) == ("block5c_add", (10, 10))
    cams, probs = explain.grad_cam(cm, x, classes=[0, 1])
    assert cams.shape == (2, 10, 10)
    np.testing.assert_allclose(probs, net.model.predict_on_batch(x), atol=1e-5)
    with pytest.raises(ValueError, match="not a block output"):
        explain.cam_model(net.model, "top_activation")  # the stage pools do not pass through it


def test_place_covers_only_the_crop_the_model_saw():
    cam = np.ones((7, 7), dtype="float32")
    heat = explain.place(cam, Preprocessing(224, 0.5), (400, 200))
    assert heat.shape == (200, 400)
    cols = np.flatnonzero(heat.max(axis=0))
    rows = np.flatnonzero(heat.max(axis=1))
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (150, 249, 50, 149)
    assert explain.overlay(Image.new("RGB", (400, 200)), heat).size == (400, 200)


def test_source_size_is_the_upright_original_whatever_the_decoding_scale():
    image = Image.new("RGB", (1200, 800), (10, 200, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90°: shown as 800×1200
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    decoded = load_image(buf.getvalue(), min_side=100)
    assert max(decoded.size) < 1200  # decoded at a reduced scale
    assert decoded.info["source_size"] == (800, 1200)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_cli_explain_writes_a_heatmap_at_the_inputs_size(imagenet_samples_dir, tmp_path, backend):
    if backend == "jax":
        pytest.importorskip(
            "jax", reason="jax is not installed (pip install -r requirements-dev.txt)"
        )
    left = tmp_path / "left.png"
    canvas_with(imagenet_samples_dir / "n04399382_teddy.JPEG", "left").save(left)
    right = tmp_path / "right.jpg"
    canvas_with(imagenet_samples_dir / "n04399382_teddy.JPEG", "right").save(right)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "cams"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "classify",
            "--weights",
            "lite0",
            "--top",
            "5",
            "--explain",
            str(out),
            str(left),
            str(bad),
            str(right),
        ],
        cwd=REPO,
        env={**os.environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr  # the bad file
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert "teddy bear" in [t["label"] for t in lines[0]["top"]] and "error" in lines[1]
    assert lines[0]["cam"] == str(out / "left.cam.png") and lines[2]["cam"] == str(
        out / "right.cam.png"
    )
    assert sorted(p.name for p in out.iterdir()) == ["left.cam.png", "right.cam.png"]
    for name, expect_left in (("left", True), ("right", False)):
        with Image.open(out / f"{name}.cam.png") as png:
            assert png.mode == "L" and png.size == CANVAS
            share = left_share(np.asarray(png))
        assert share > 0.8 if expect_left else share < 0.2, (backend, name, share)


@pytest.mark.slow
def test_classify_page_overlay_toggle_per_image(imagenet_samples_dir):
    from app_session import open_page

    at = open_page("classify", 180).run()
    buf = io.BytesIO()
    canvas_with(imagenet_samples_dir / "n04399382_teddy.JPEG", "left").save(buf, "PNG")
    tench = (imagenet_samples_dir / "n01440764_tench.JPEG").read_bytes()
    at.file_uploader(key="classify_uploads").set_value(
        [("canvas.png", buf.getvalue(), "image/png"), ("tench.jpg", tench, "image/jpeg")]
    ).run()
    assert not at.exception and not at.error
    assert [t.key for t in at.toggle if t.key.startswith("classify_cam_")] == [
        "classify_cam_0",
        "classify_cam_1",
    ]
    before = [img.proto.imgs[0].url for img in at.get("image")]
    at.toggle(key="classify_cam_0").set_value(True).run()
    assert not at.exception and not at.error
    after = [img.proto.imgs[0].url for img in at.get("image")]
    assert after[0] != before[0] and after[1] == before[1]  # only the first image changed
