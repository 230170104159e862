"""Training end to end on a tiny slice of the real CIFAR-10 images (32×32, Lite0, 1–2 epochs).

The slice (conftest's ``mini_cifar``) is a folder of symlinks to 20 train + 10 test images per
class, so decoding is instant; the session's cache folder shares the one-off Lite0 conversion.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import no_temp_files

from core import training
from core.data.loading import load_dataset
from core.experiments.bench import fit_blog_way
from core.platform.progress import Progress
from core.training import TrainConfig, runs, train
from core.training.features import cached_features

RUN_FILES = {
    "status.json",
    "config.json",
    "classes.json",
    "preprocessing.json",
    "history.csv",
    "model.keras",
    "confusion.json",
    "results.json",
    "predictions.npz",
}


@pytest.fixture(scope="module")
def mini(mini_cifar) -> Path:
    return mini_cifar


def config(mini, **overrides) -> TrainConfig:
    values = dict(
        data=str(mini),
        backbone="lite0",
        weights="lite0",
        mode="frozen",
        resolution=32,
        epochs=2,
        batch_size=32,
        lr=1e-3,
        schedule="constant",
        seed=1,
        cache_features=False,
    )
    return TrainConfig(**{**values, **overrides})


def test_accuracy(model, ds) -> float:
    probs = model.predict(ds.x_test.astype("float32"), batch_size=64, verbose=0)
    return float((probs.argmax(axis=1) == ds.y_test).mean())


test_accuracy.__test__ = False  # a helper, not a test


def saved_model(result, mini, cfg):
    """The run's saved model, checked to give the test accuracy the run reported."""
    model, _, _ = runs.load_run_model(result.run_dir)
    ds = load_dataset(str(mini), seed=cfg.seed)
    assert test_accuracy(model, ds) == pytest.approx(result.test_accuracy, abs=1e-9)
    return model


def trained_and_imagenet_backbones(model):
    """A finetuned run's Lite0 backbone, and the ImageNet Lite0 it started from."""
    from core.models.weights import load_backbone

    original, _ = load_backbone(
        "lite0", "lite0", input_shape=(32, 32, 3), include_top=False, pooling="avg"
    )
    return model.get_layer("efficientnetlite0"), original


# ----- configuration ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("backbone", "b9", "backbone must be one of b0, b1"),
        ("weights", "/no/such/file.h5", "weights must be one of"),
        ("mode", "half", "mode must be one of"),
        ("resolution", 16, "resolution must be a whole number from 32"),
        ("resolution", 64.5, "resolution must be a whole number"),
        ("epochs", 0, "epochs must be"),
        ("batch_size", -1, "batch_size must be"),
        ("lr", 0.0, "lr .learning rate. must be"),
        ("lr", float("nan"), "lr .learning rate. must be"),
        ("optimizer", "rmsprop", "optimizer must be one of"),
        ("schedule", "step", "schedule must be one of"),
        ("subset", 0, "subset must be"),
        ("finetune_blocks", 0, "finetune_blocks must be"),
        ("augment", "yes", "augment must be true or false"),
        ("dropout", 1.0, "dropout must be"),
        ("name", "../escape", "run name"),
        ("data", "/no/such/folder", "does not exist"),
        ("epochs", 101, "epochs must be at most 100 on this server .EFFNET_LAB_MAX_EPOCHS."),
        ("resolution", 520, "resolution must be at most 512 on this server"),
        ("batch_size", 2048, "batch_size must be at most 1024 on this server"),
    ],
)
def test_bad_config_values(field, value, message):
    cfg = TrainConfig(**{field: value})
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_server_limits_are_settings(monkeypatch):
    """The training caps come from core.platform.limits: an administrator raises them with the
    environment variable the message names, and a nonsense value is refused by name."""
    TrainConfig(data="cifar10", epochs=100).validate()
    monkeypatch.setenv("EFFNET_LAB_MAX_EPOCHS", "500")
    TrainConfig(data="cifar10", epochs=500).validate()
    monkeypatch.setenv("EFFNET_LAB_MAX_EPOCHS", "many")
    with pytest.raises(ValueError, match="EFFNET_LAB_MAX_EPOCHS must be a number"):
        TrainConfig(data="cifar10", epochs=5).validate()


def test_defaults_and_presets_are_valid():
    TrainConfig().validate()
    for key in training.PRESETS:
        cfg = training.preset_config(key)
        cfg.validate()
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    blog = training.preset_config("blog")
    assert (
        blog.mode,
        blog.resolution,
        blog.epochs,
        blog.batch_size,
        blog.lr,
        blog.optimizer,
        blog.schedule,
        blog.head_dropout,
    ) == ("frozen", 32, 50, 64, 1e-3, "adam", "constant", 0.0)
    with pytest.raises(ValueError, match="Unknown preset"):
        training.preset_config("fastest")


# ----- frozen mode ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def frozen_run(mini, tmp_path_factory):
    cfg = config(mini)
    progress = Progress()
    result = train(cfg, progress, runs_root=tmp_path_factory.mktemp("runs"))
    return cfg, result, progress


@pytest.mark.slow
def test_frozen_run_writes_everything(frozen_run):
    cfg, result, progress = frozen_run
    assert not result.stopped and result.epochs == 2
    assert 0.0 <= result.test_accuracy <= 1.0
    assert result.weights.startswith("lite0")
    assert set(os.listdir(result.run_dir)) == RUN_FILES
    assert no_temp_files(result.run_dir)
    info = runs.load_run(result.run_dir)
    assert info.status == "done" and info.test_accuracy == result.test_accuracy
    assert info.config == cfg.to_dict()
    assert [row["epoch"] for row in info.history] == [1, 2]
    assert np.array(info.confusion).sum() == 100 and len(info.class_names) == 10
    results = json.loads((result.run_dir / "results.json").read_text())
    assert (results["train_images"], results["val_images"], results["test_images"]) == (
        180,
        20,
        100,
    )
    # The best epoch is the one with the best validation accuracy; the test split is separate.
    best = max(info.history, key=lambda r: r["val_accuracy"])
    assert (
        results["best_epoch"] == best["epoch"] and results["val_accuracy"] == best["val_accuracy"]
    )
    assert (
        result.val_accuracy == results["val_accuracy"] and "validation split" in results["protocol"]
    )
    assert set(results["per_class_accuracy"]) == set(info.class_names)
    wrong = runs.misclassified(result.run_dir)
    assert len(wrong) == min(36, round((1 - result.test_accuracy) * 100))
    assert all(w["true"] != w["pred"] for w in wrong)
    # Error analysis: per-class precision/recall/F1 from the same confusion matrix, and every
    # test image's prediction kept.
    assert [r["class"] for r in results["class_metrics"]] == info.class_names
    recalls = {r["class"]: r["recall"] for r in results["class_metrics"]}
    assert recalls == pytest.approx(results["per_class_accuracy"])
    assert 0 <= results["macro"]["f1"] <= 1
    saved = runs.predictions(result.run_dir)
    assert len(saved.true) == 100 and (saved.true == saved.pred).mean() == pytest.approx(
        result.test_accuracy
    )

    snap = progress.snapshot()
    assert snap.status == "done" and snap.result["test_accuracy"] == result.test_accuracy
    assert [e["epoch"] for e in snap.epochs] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s"} <= set(
        snap.epochs[0]
    )
    assert snap.batches and snap.batches[-1]["epoch"] == 2
    assert snap.device == result.device


@pytest.mark.slow
def test_reloaded_model_gives_the_same_test_accuracy(frozen_run, mini):
    cfg, result, _ = frozen_run
    model, classes, prep = runs.load_run_model(result.run_dir)
    ds = load_dataset(str(mini), seed=cfg.seed)
    assert prep.size == 32 and classes == ds.class_names
    assert test_accuracy(model, ds) == pytest.approx(result.test_accuracy, abs=1e-9)


@pytest.mark.slow
def test_frozen_features_give_the_same_model_as_the_blog_way(frozen_run, mini):
    """Cached features + head training == training the full network with the backbone inside."""
    cfg, result, _ = frozen_run
    fast, _, _ = runs.load_run_model(result.run_dir)
    slow, rows = fit_blog_way(cfg)
    assert len(rows) == cfg.epochs
    history = runs.load_run(result.run_dir).history
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in history], rtol=1e-4)
    for layer in ("head_bn", "predictions"):
        for a, b in zip(fast.get_layer(layer).get_weights(), slow.get_layer(layer).get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    # The head really trained (it is not just the shared initialisation).
    assert not np.allclose(fast.get_layer("head_bn").get_weights()[0], 1.0)
    ds = load_dataset(str(mini), seed=cfg.seed)
    x = ds.x_test.astype("float32")
    np.testing.assert_allclose(fast.predict(x, verbose=0), slow.predict(x, verbose=0), atol=1e-4)


@pytest.mark.slow
def test_blog_protocol_validates_on_the_test_split_and_says_so(mini, tmp_path):
    result = train(config(mini, validation="test", epochs=3), runs_root=tmp_path)
    info = runs.load_run(result.run_dir)
    best = info.history[info.results["best_epoch"] - 1]
    # The test split picked the epoch: the reported test accuracy is that epoch's validation score.
    assert result.test_accuracy == pytest.approx(best["val_accuracy"], abs=1e-6)
    assert info.results["train_images"] == 200 and info.results["val_images"] == 100
    assert (
        "blog's protocol" in info.results["protocol"] and "optimistic" in info.results["protocol"]
    )


@pytest.mark.slow
def test_early_stopping_ends_patience_epochs_after_the_best(mini, tmp_path):
    result = train(config(mini, epochs=40, patience=2, lr=3e-3), runs_root=tmp_path)
    info = runs.load_run(result.run_dir)
    epochs, best = len(info.history), info.results["best_epoch"]
    assert epochs < 40 and epochs == best + 2
    assert info.results["early_stopped"] and not result.stopped
    assert (
        max(r["val_accuracy"] for r in info.history[best:])
        <= info.history[best - 1]["val_accuracy"]
    )


@pytest.mark.slow
def test_existing_run_name_is_refused(frozen_run, mini):
    _, result, _ = frozen_run
    cfg = config(mini, name=result.run_dir.name)
    with pytest.raises(ValueError, match="already exists"):
        train(cfg, runs_root=result.run_dir.parent)


# ----- fine-tuning ------------------------------------------------------------------------------
@pytest.mark.slow
def test_finetune_on_cached_prefix_trains_only_the_top(mini, tmp_path):
    cfg = config(
        mini, mode="finetune", augment=False, finetune_blocks=1, epochs=1, cache_features=True
    )
    cached = Path(os.environ["EFFNET_LAB_CACHE"]) / "features"
    before = set(cached.glob("*.npy")) if cached.is_dir() else set()
    phases = PhaseLog()
    result = train(cfg, phases, runs_root=tmp_path)
    assert phases.phases[-4:] == [
        "Extracting features (train)",
        "Extracting features (validation)",
        "Extracting features (test)",
        "Training",
    ]
    assert len(set(cached.glob("*.npy")) - before) == 3  # train, validation and test maps cached
    model = saved_model(result, mini, cfg)
    backbone, original = trained_and_imagenet_backbones(model)
    for name in ("stem_conv", "block6d_project_conv"):  # frozen: untouched
        np.testing.assert_array_equal(
            backbone.get_layer(name).get_weights()[0], original.get_layer(name).get_weights()[0]
        )
    for name in ("block7a_project_conv", "top_conv"):  # the top stage and top conv trained
        assert not np.allclose(
            backbone.get_layer(name).get_weights()[0], original.get_layer(name).get_weights()[0]
        )
    np.testing.assert_array_equal(
        backbone.get_layer("top_bn").get_weights()[0],  # BN frozen
        original.get_layer("top_bn").get_weights()[0],
    )


@pytest.mark.slow
@pytest.mark.parametrize("augment", [False, True])
def test_two_phase_fine_tuning_trains_the_head_first_then_the_top(mini, tmp_path, augment):
    cfg = config(
        mini, mode="finetune", augment=augment, finetune_blocks=1, head_epochs=2, epochs=2, lr=3e-3
    )
    phases = PhaseLog()
    result = train(cfg, phases, runs_root=tmp_path)
    assert phases.phases[-2:] == ["Training the head", "Fine-tuning"]
    assert phases.phases.count("Extracting features (train)") == 1
    snap = phases.snapshot()
    assert snap.marks == ({"epoch": 2, "label": "fine-tuning starts"},)  # drawn on the live curve
    assert [b["epoch"] for b in snap.batches][-1] == 4  # batches number on across phases
    info = runs.load_run(result.run_dir)
    assert [(r["epoch"], r["phase"]) for r in info.history] == [
        (1, "head"),
        (2, "head"),
        (3, "finetune"),
        (4, "finetune"),
    ]  # saved runs show the phases
    best = max(info.history, key=lambda r: r["val_accuracy"])
    assert info.results["best_epoch"] == best["epoch"] and result.epochs == 4
    model = saved_model(result, mini, cfg)
    backbone, original = trained_and_imagenet_backbones(model)
    top_trained = not np.allclose(
        backbone.get_layer("top_conv").get_weights()[0],
        original.get_layer("top_conv").get_weights()[0],
    )
    assert top_trained == (best["phase"] == "finetune")  # a head-phase best keeps ImageNet's top


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_flip_tta_validates_and_tests_on_images_and_mirrors(mini, tmp_path, mode):
    from core.serving.inference import load_classifier

    cfg = config(mini, mode=mode, augment=False, finetune_blocks=1, epochs=2, flip_tta=True)
    phases = PhaseLog()
    result = train(cfg, phases, runs_root=tmp_path)
    assert {
        "Extracting features (validation, mirrored)",
        "Extracting features (test, mirrored)",
    } <= set(phases.phases)
    model, _, prep = runs.load_run_model(result.run_dir)
    assert prep.flip_tta
    ds = load_dataset(str(mini), seed=cfg.seed)
    x = ds.x_test.astype("float32")
    probs = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    assert float((probs.argmax(1) == ds.y_test).mean()) == pytest.approx(result.test_accuracy)
    # Classifying with the run averages the same two predictions.
    from PIL import Image

    classifier = load_classifier(str(result.run_dir))
    [pred] = classifier.classify([Image.fromarray(ds.x_test[0])], top=1)
    assert pred.top[0]["prob"] == pytest.approx(float(probs[0].max()), abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mode, head_epochs", [("frozen", 0), ("finetune", 1)])
def test_flip_augmentation_on_cached_features(mini, tmp_path, mode, head_epochs):
    cfg = config(
        mini,
        mode=mode,
        augment=False,
        finetune_blocks=1,
        epochs=2,
        head_epochs=head_epochs,
        flip_features=True,
    )
    phases = PhaseLog()
    result = train(cfg, phases, runs_root=tmp_path)
    assert phases.phases.count("Extracting features (train, mirrored)") == 1
    if head_epochs:  # the head phase pools both the maps and the mirrored maps
        assert "Pooling the top blocks' output (train, 2/2)" in phases.phases
    plain = train(
        config(
            mini, mode=mode, augment=False, finetune_blocks=1, epochs=2, head_epochs=head_epochs
        ),
        runs_root=tmp_path,
    )
    info, other = runs.load_run(result.run_dir), runs.load_run(plain.run_dir)
    assert info.history[-1]["loss"] != other.history[-1]["loss"]  # it trained on other inputs
    saved_model(result, mini, cfg)  # the saved model gives the reported test accuracy


class PhaseLog(Progress):
    """A Progress that remembers every phase it went through."""

    def __init__(self):
        super().__init__()
        self.phases = []

    def start(self, phase, total, unit="img"):
        self.phases.append(phase)
        super().start(phase, total, unit)


FROZEN_MULTISCALE = dict(mode="frozen", multiscale=True)
FINETUNE_CACHED = dict(mode="finetune", augment=False, finetune_blocks=2, flip_features=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", [FROZEN_MULTISCALE, FINETUNE_CACHED], ids=["frozen", "finetune"])
def test_bfloat16_features_train_and_the_test_split_is_measured_as_the_saved_model_computes(
    mini, tmp_path, path
):
    """feature_precision=bfloat16 on both cached paths (multi-scale pooled features; the
    fine-tuned top's feature maps): train and validation features come from the bfloat16
    extractor, the test split from float32 (what the saved model computes), so the reloaded
    model gives exactly the run's test accuracy; every cache entry is its own."""
    cfg = config(
        mini,
        resolution=48,
        feature_precision="bfloat16",
        flip_tta=True,
        cache_features=True,
        **path,
    )
    phases = PhaseLog()
    result = train(cfg, phases, runs_root=tmp_path)
    assert result.test_accuracy > 0.15  # 10 classes, 20 images each, 2 epochs: above chance
    model, _, _ = runs.load_run_model(result.run_dir)
    if path is FROZEN_MULTISCALE:  # top + block6d + block5c pooled
        assert model.get_layer("head_bn").input.shape[-1] == 1584
    ds = load_dataset(str(mini), seed=cfg.seed)
    x = ds.x_test.astype("float32")
    probs = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    assert float((probs.argmax(1) == ds.y_test).mean()) == pytest.approx(result.test_accuracy)
    again = PhaseLog()
    train(cfg, again, runs_root=tmp_path)  # everything from the cache the first run wrote
    extracting = [p for p in again.phases if p.startswith("Extracting")]
    assert extracting and all(p.endswith("(cached)") for p in extracting)
    plain = PhaseLog()
    train(config(mini, resolution=48, cache_features=True, **path), plain, runs_root=tmp_path)
    assert "Extracting features (train)" in plain.phases  # float32: a new entry


def test_feature_cache_reuses_features_keyed_by_images_and_model(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("EFFNET_LAB_CACHE", str(tmp_path))
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    x = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    key = {"model": "mean", "resolution": 8}

    def features(images, key, progress):
        return cached_features(model, images, key, progress, "Extracting", 4, use_cache=True)

    first, second, other_key, other_images = PhaseLog(), PhaseLog(), PhaseLog(), PhaseLog()
    a = features(x, key, first)
    np.testing.assert_allclose(a, x.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(features(x, key, second), a)
    features(x, {**key, "resolution": 16}, other_key)
    features(x[::-1].copy(), key, other_images)
    assert (first.phases, second.phases) == (["Extracting"], ["Extracting (cached)"])
    assert other_key.phases == other_images.phases == ["Extracting"]
    assert len(list((tmp_path / "features").glob("*.npy"))) == 3
    assert no_temp_files(tmp_path)


# ----- stop, best-so-far saving, errors ---------------------------------------------------------
class StopAfterFirstBatch(Progress):
    """Requests a stop as soon as the first training batch is logged."""

    def log_batch(self, **metrics):
        super().log_batch(**metrics)
        self.request_stop()


@pytest.mark.slow
def test_stop_in_the_first_epoch_keeps_the_model(mini, tmp_path):
    cfg = config(mini, mode="finetune", augment=True, finetune_blocks=1, epochs=50, batch_size=16)
    progress = StopAfterFirstBatch()
    result = train(cfg, progress, runs_root=tmp_path)
    snap = progress.snapshot()
    assert snap.error is None, snap.error
    assert snap.status == "stopped" and result.stopped and result.epochs == 1
    info = runs.load_run(result.run_dir)
    assert info.status == "stopped" and info.has_model and len(info.history) == 1
    model, _, _ = runs.load_run_model(info.path)
    ds = load_dataset(str(mini), seed=cfg.seed)
    assert test_accuracy(model, ds) == pytest.approx(result.test_accuracy, abs=1e-9)


@pytest.mark.slow
def test_each_new_best_is_saved_as_it_happens(mini, tmp_path):
    """Saving after each improvement: the model file exists from the first epoch on."""
    seen = []

    class Spy(Progress):
        def log_epoch(self, **metrics):
            super().log_epoch(**metrics)
            [run] = [p for p in tmp_path.iterdir() if p.is_dir()]
            seen.append(
                (run / "model.keras").stat().st_mtime_ns if (run / "model.keras").exists() else None
            )

    result = train(config(mini, epochs=3), Spy(), runs_root=tmp_path)
    # Epoch e is logged before its own save: seen[e] shows what epochs before e saved.
    assert seen[0] is None and seen[1] is not None  # epoch 1, always a new best, was saved
    history = runs.load_run(result.run_dir).history
    if history[1]["val_accuracy"] > history[0]["val_accuracy"]:
        assert seen[2] > seen[1]  # a better epoch 2 replaced the file


class StopDuringExtraction(Progress):
    """Requests a stop right after the first batch of feature extraction."""

    def advance(self, n=1):
        super().advance(n)
        if self.snapshot().phase.startswith("Extracting"):
            self.request_stop()


@pytest.mark.slow
def test_stop_during_feature_extraction_records_a_stopped_run_without_model(mini, tmp_path):
    progress = StopDuringExtraction()
    result = train(config(mini, batch_size=16), progress, runs_root=tmp_path)
    assert result.stopped and result.test_accuracy is None and result.epochs == 0
    info = runs.load_run(result.run_dir)
    assert info.status == "stopped" and not info.has_model and info.history == []
    snap = progress.snapshot()
    assert snap.status == "stopped" and snap.phase == "Extracting features (train)"
    assert 0 < snap.done < snap.total  # it stopped part-way, between batches


def test_data_errors_are_reported_and_leave_no_run(tmp_path):
    empty = tmp_path / "data"
    (empty / "only-class").mkdir(parents=True)
    progress = Progress()
    with pytest.raises(ValueError):
        train(
            TrainConfig(data=str(empty), weights="none", epochs=1),
            progress,
            runs_root=tmp_path / "runs",
        )
    snap = progress.snapshot()
    assert snap.status == "error" and snap.error
    assert runs.list_runs(tmp_path / "runs") == []


# ----- bounded memory: features larger than the budget live on disk ---------------------------
@pytest.mark.slow
def test_features_over_the_memory_budget_spill_to_disk_and_train_the_same(
    mini, tmp_path, monkeypatch
):
    cfg = config(mini, mode="finetune", augment=False, finetune_blocks=1, epochs=2)
    in_memory = train(cfg, runs_root=tmp_path / "a")
    monkeypatch.setenv("EFFNET_LAB_FEATURE_MEMORY_GB", "0.000001")  # ~1 KB: everything spills
    phases = PhaseLog()
    spilled = train(cfg, phases, runs_root=tmp_path / "b")
    a = runs.load_run(in_memory.run_dir).history
    b = runs.load_run(spilled.run_dir).history
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-4)
    assert spilled.test_accuracy == pytest.approx(in_memory.test_accuracy, abs=0.011)
    assert "Extracting features (train)" in phases.phases
    leftovers = list((Path(os.environ["EFFNET_LAB_CACHE"]) / "features").glob(".features.*"))
    assert leftovers == []  # cache off: the disk-backed arrays were removed


@pytest.mark.slow
def test_features_that_fit_nowhere_are_refused_with_the_numbers(mini, tmp_path, monkeypatch):
    from core.training import feature_memory

    monkeypatch.setenv("EFFNET_LAB_FEATURE_MEMORY_GB", "0.000001")
    monkeypatch.setattr(
        feature_memory, "free_disk_bytes", lambda folder: 1000
    )  # a nearly full disk
    cfg = config(mini, mode="finetune", augment=False, finetune_blocks=1, epochs=1)
    with pytest.raises(
        ValueError, match=r"would take .* GB .*images × .*memory budget.*free on the cache disk"
    ):
        train(cfg, runs_root=tmp_path)
    [run] = runs.list_runs(tmp_path)
    assert run.status == "error" and "Fine-tune fewer blocks" in run.error
