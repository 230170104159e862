"""Models out: classify serves exactly what a run was trained on, and every export format writes a
complete folder whose file agrees with the Keras model in its own runtime (core/export/exporter.py,
``python -m core export``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_run, no_temp_files, tiny_model

from core.cli import main as cli_main
from core.export import exporter as export
from core.export import parity_images
from core.export.folder import list_exports, load_runner, predict_script, zip_bytes

REPO = Path(__file__).resolve().parents[1]
FLOAT = [k for k, f in export.FORMATS.items() if not f.quantization]


def run_cli(*args: str, env=None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ----- bad input: one line, exit 2, nothing written --------------------------------------------
@pytest.fixture
def runs_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("EFFNET_LAB_RUNS", str(root))
    root.mkdir()
    return root


@pytest.mark.parametrize(
    "args, message",
    [
        (["imagenet", "--format", "keras2"], "unknown format 'keras2'"),
        (["imagenet", "--format", "onnx", "--images", "199"], "at least 200"),
        (["{root}/no-such-run", "--format", "onnx"], "neither 'imagenet' nor a run folder"),
        (["{root}", "--format", "onnx"], "not a training run folder"),
        (["{root}/no-model", "--format", "litert"], "has no saved model"),
        (["{root}/running", "--format", "onnx"], "still training"),
        (["{root}/with-model", "--format", "onnx", "--out", "{root}"], "holds other files"),
        (
            ["{root}/with-model", "--format", "onnx", "--out", "{root}/with-model/config.json"],
            "is a file",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_two(runs_root, capsys, args, message):
    make_run(runs_root, "no-model")
    make_run(runs_root, "with-model", model=tiny_model())
    make_run(runs_root, "running", status="running", model=tiny_model())
    before = sorted(p.relative_to(runs_root) for p in runs_root.rglob("*"))
    status = cli_main(["export", *(a.format(root=runs_root) for a in args)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.relative_to(runs_root) for p in runs_root.rglob("*")) == before


def test_a_hostile_class_name_cannot_shift_labels(tmp_path):
    from core.export.folder import write_folder

    write_folder(tmp_path, export.FORMATS["onnx"], ["cat", "evil\nname", "dog"], 8)
    assert (tmp_path / "labels.txt").read_text().splitlines() == ["cat", "evil name", "dog"]
    compile((tmp_path / "predict.py").read_text(), "predict.py", "exec")


def test_every_usage_snippet_compiles():
    for fmt in export.FORMATS.values():
        compile(predict_script(fmt, 32), f"predict-{fmt.key}.py", "exec")


def test_parity_figures():
    ref = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5 - 1e-9]])
    got = ref + np.array([[0.0, 0.0], [0.0, 0.0], [-2e-5, 2e-5]])
    check = export.parity(ref, got, export.FORMATS["onnx"], np.array([0, 1, 1]))
    assert check["agree"] == 2 and check["agreement"] == pytest.approx(2 / 3)
    assert check["max_abs_diff"] == pytest.approx(2e-5)
    assert not check["meets_target"]  # float needs 100 %
    assert check["keras_accuracy"] == pytest.approx(2 / 3) and check["export_accuracy"] == 1.0
    assert check["disagreement_max_margin"] == pytest.approx(1e-9)  # only the tie flipped
    int8 = export.parity(ref[:2], got[:2] + 0.05, export.FORMATS["litert-int8"], None)
    assert int8["meets_target"] and "keras_accuracy" not in int8  # int8: agreement only


def test_views_make_enough_distinct_held_out_inputs():
    from PIL import Image

    from core.data.images import Preprocessing

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)) for _ in range(20)]
    prep = Preprocessing(16, 0.875, "bilinear")
    x = parity_images.views(images, prep, 200)
    assert x.shape == (200, 16, 16, 3) and x.dtype == np.uint8
    assert np.array_equal(x[0], prep.apply(images[0]))  # first the model's own preprocessing
    assert len({a.tobytes() for a in x}) == 200  # every view is a different input


def test_sample_photos_cannot_be_stretched_past_their_views(imagenet_samples_dir):
    from core.data.images import Preprocessing

    with pytest.raises(ValueError, match="not enough held-out images"):
        parity_images.sample_photo_inputs(Preprocessing.imagenet(32), 10_000)


@pytest.mark.slow
def test_jax_backend_says_tensorflow_is_needed(runs_root):
    pytest.importorskip("jax", reason="jax is not installed (pip install -r requirements-dev.txt)")
    run = make_run(runs_root, "with-model", model=tiny_model())
    out = run_cli("export", str(run), "--format", "onnx", env={"KERAS_BACKEND": "jax"})
    assert out.returncode == 2, out.stderr
    assert "error: onnx export needs Keras's TensorFlow backend" in out.stderr
    assert "KERAS_BACKEND=tensorflow" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_gpu_run_saved_with_mixed_precision_exports_in_float32(
    runs_root, imagenet_samples_dir, tmp_path
):
    """GPU runs save mixed_float16 layers: onnxruntime rejects such a graph and LiteRT cannot
    convert it, so exports compute in float32 (and say so). This run has no dataset recorded,
    so its parity images are the sample photos' views, and model.json says why."""
    import keras

    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Resizing(24, 24)(inputs)
        x = keras.layers.Rescaling(1 / 255)(x)
        x = keras.layers.Conv2D(8, 3, activation="relu")(x)
        x = keras.layers.BatchNormalization()(keras.layers.GlobalAveragePooling2D()(x))
        outputs = keras.layers.Dense(3, activation="softmax", dtype="float32")(x)
        model = keras.Model(inputs, outputs)
    finally:
        keras.config.set_dtype_policy("float32")
    run = make_run(runs_root, "gpu-run", model=model)
    for fmt in ("onnx", "litert"):
        meta = export.export(str(run), fmt, tmp_path / fmt)
        assert meta["parity"]["meets_target"], meta["parity"]
        assert "mixed-precision" in meta["compute"]
        assert "sample photos" in meta["parity"]["images_from"]
        assert "the run records no dataset" in meta["parity"]["images_from"]


def int8_tensors(path: Path) -> int:
    """How many per-channel int8 weight tensors a .tflite file holds (as LiteRT reads it)."""
    from ai_edge_litert.interpreter import Interpreter

    return sum(
        t["dtype"] == np.int8 and len(t["quantization_parameters"]["scales"]) > 1
        for t in Interpreter(model_path=str(path)).get_tensor_details()
    )


# ----- a real trained run ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(mini_cifar, tmp_path_factory) -> Path:
    """Fine-tuned Lite0 on mini CIFAR-10: stored at 32 px, resized to 64 inside the model, with
    augmentation, dropout and a head BatchNormalization (what trips a plain model.export)."""
    from core.training import TrainConfig, train

    config = TrainConfig(
        data=str(mini_cifar),
        backbone="lite0",
        weights="lite0",
        mode="finetune",
        finetune_blocks=1,
        resolution=64,
        epochs=2,
        batch_size=32,
        name="ft",
    )
    result = train(config, runs_root=tmp_path_factory.mktemp("export-runs"))
    assert result.test_accuracy is not None
    return Path(result.run_dir)


@pytest.mark.slow
def test_classify_reproduces_the_runs_test_accuracy(trained_run, mini_cifar):
    """``python -m core classify --model RUN`` over the test files scores what training reported.

    Training evaluates on the decoded test arrays (through cached feature maps of the frozen
    layers when fine-tuning), classify decodes each file itself and runs the whole model: the
    pixels are the same (both use the run's saved preprocessing), the arithmetic order is not,
    so a prediction sitting on a tie may flip: at most one image of difference is allowed.
    """
    files = sorted(str(p) for p in (mini_cifar / "test").glob("*/*"))
    out = run_cli("classify", "--model", str(trained_run), "--top", "1", *files)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    right = sum(line["top"][0]["label"] == Path(line["file"]).parent.name for line in lines)
    reported = json.loads((trained_run / "results.json").read_text())["test_accuracy"]
    assert len(lines) == len(files) == 100
    assert abs(right - round(reported * len(files))) <= 1, (right, reported)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(export.FORMATS))
def test_trained_run_exports_and_matches(trained_run, fmt, tmp_path):
    out = tmp_path / "export"
    meta = export.export(str(trained_run), fmt, out)
    spec = export.FORMATS[fmt]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [spec.file, "labels.txt", "model.json", "predict.py"]
    )
    assert meta == {**json.loads((out / "model.json").read_text()), "dir": str(out)}
    assert meta["input"] == {
        "name": "image",
        "shape": [None, 32, 32, 3],
        "dtype": "uint8",
        "range": "0..255",
        "layout": "NHWC, RGB",
    }
    classes = json.loads((trained_run / "classes.json").read_text())
    assert meta["classes"] == classes == (out / "labels.txt").read_text().splitlines()
    assert meta["preprocessing"]["size"] == 32
    assert "largest central square, resize it to 32x32" in meta["preprocessing"]["notes"]
    check = meta["parity"]
    assert check["images"] >= 200 and "test images" in check["images_from"]
    if spec.quantization:
        # This two-epoch model is unsure of most images (plain dynamic-range int8 agreed on
        # 94 %); the layers that flip its near-ties stay float32, chosen on training images.
        assert check["agreement"] >= 0.98 and check["meets_target"], check
        chosen = meta["int8"]
        assert chosen["calibration_from"] == "20 validation and 180 training images of the run"
        assert chosen["int8_layers"] == int8_tensors(out / spec.file) > 0, chosen
    else:
        assert check["agreement"] == 1.0 and check["max_abs_diff"] <= 1e-4, check
        assert check["meets_target"] and check["disagreement_max_margin"] is None
    assert no_temp_files(out) and not list(tmp_path.glob(".*"))


@pytest.mark.slow
def test_export_folder_works_on_its_own(trained_run, mini_cifar, tmp_path):
    """predict.py, run as people run it, prepares photos exactly as the app does and gives the
    Keras model's probabilities; a second export replaces the first; the app's zip holds it all."""
    from core.data.images import decode_file, load_image
    from core.serving.inference import load_classifier

    out = tmp_path / "onnx"
    stale = tmp_path / ".onnx.tmp-999999999"  # what a killed export leaves (no such process)
    stale.mkdir()
    export.export(str(trained_run), "onnx", out)
    assert not stale.exists()
    first = (out / "model.json").read_text()
    export.export(str(trained_run), "onnx", out)  # an earlier export folder is replaced
    assert (out / "model.json").read_text() != first and not list(tmp_path.glob(".onnx*"))

    files = sorted((mini_cifar / "test").glob("*/*"))[::10]
    result = subprocess.run(
        [sys.executable, str(out / "predict.py"), *map(str, files)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    classifier = load_classifier(str(trained_run))
    keras_top = [
        p.top[0]["label"] for p in classifier.classify([load_image(f) for f in files], top=1)
    ]
    assert [line.split(": ")[1].split(" ")[0] for line in result.stdout.splitlines()] == keras_top

    sys.path.insert(0, str(out))
    try:
        import predict  # the snippet itself: same pixels as the app's decoding
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("predict", None)
    prep = classifier.preprocessing
    for f in files:
        assert np.array_equal(
            predict.prepare(f, prep.size, prep.crop, prep.resample), decode_file(f, prep)
        )
    x = np.stack([decode_file(f, prep) for f in files])
    probs = load_runner(out, "model.onnx")(x)
    assert np.abs(probs - classifier.model.predict(x.astype("float32"), verbose=0)).max() <= 1e-4

    names = zipfile.ZipFile(io.BytesIO(zip_bytes(out, "ft-onnx"))).namelist()
    assert sorted(names) == [
        "ft-onnx/labels.txt",
        "ft-onnx/model.json",
        "ft-onnx/model.onnx",
        "ft-onnx/predict.py",
    ]


@pytest.mark.slow
def test_cli_export_reports_parity(trained_run, tmp_path):
    out = run_cli("export", str(trained_run), "--format", "litert", "--out", str(tmp_path / "l"))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["parity"]["agreement"] == 1.0 and summary["file"] == "model.tflite"
    assert "top-1 agreement 100.00% (200/200)" in out.stderr and "target met" in out.stderr
    assert list_exports(tmp_path)[0]["format"] == "litert"


# ----- the ImageNet model ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(export.FORMATS))
def test_imagenet_model_exports_and_matches(fmt, imagenet_samples_dir, request, tmp_path):
    if export.FORMATS[fmt].quantization:
        request.getfixturevalue("cifar10_dir")  # its calibration photos
    out = tmp_path / fmt
    meta = export.export("imagenet", fmt, out, weights="lite0")
    check = meta["parity"]
    assert meta["input"]["shape"] == [None, 224, 224, 3] and len(meta["classes"]) == 1000
    assert meta["preprocessing"]["crop"] == 0.875
    assert check["images"] == 200 and "20 ImageNet sample photos" in check["images_from"]
    if export.FORMATS[fmt].quantization:
        # Chosen on CIFAR-10 training photos, never the sample photos the check uses.
        assert check["agreement"] >= 0.98 and check["meets_target"], check
        chosen = meta["int8"]
        assert chosen["calibration_from"] == "256 CIFAR-10 training images"
        assert chosen["int8_layers"] == int8_tensors(out / meta["file"]) > 0, chosen
        assert meta["size_bytes"] < 10e6, chosen  # the float32 file: 18.6 MB
    else:
        assert check["agreement"] == 1.0 and check["max_abs_diff"] <= 1e-4, check
        assert check["meets_target"]


# ----- the Export section (AppTest) ---------------------------------------------------------------
@pytest.mark.slow
def test_export_section_runs_a_job_and_offers_the_zip(runs_root, imagenet_samples_dir, monkeypatch):
    from app_session import open_page

    from core.jobs import runner as jobs

    monkeypatch.setenv("EFFNET_LAB_DATA", str(runs_root.parent / "data"))
    make_run(runs_root, "cli-run", model=tiny_model())
    at = open_page("train").run()
    assert not at.exception
    assert at.selectbox(key="export_format").value == "onnx"
    at.button(key="export_start").click().run()
    assert not at.exception and not at.error
    snap = jobs.open_job(at.session_state["job_export"]).wait(timeout=600)
    assert snap.result and snap.result["parity"]["meets_target"], snap.error
    at.run()
    assert not at.exception and not at.error
    shown = " ".join(str(m.value) for m in at.markdown)
    assert "ONNX" in shown and "held-out images agree at top-1" in shown
    assert at.get("download_button")  # the zip (its label: "Download zip")
    assert (runs_root / "cli-run" / "exports" / "onnx" / "model.onnx").is_file()


def test_export_section_waits_for_a_running_run(runs_root):
    from app_session import open_page

    make_run(runs_root, "cli-run", status="running", model=tiny_model())
    at = open_page("train").run()
    assert not at.exception
    assert "still training" in " ".join(str(c.value) for c in at.caption)
    with pytest.raises(KeyError):
        at.button(key="export_start")  # nothing to start until it has finished
