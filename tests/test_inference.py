"""Inference: real ImageNet accuracy with the offline weights, top-k, batching, and classifying
files a batch at a time (the path the CLI and the Classify page share)."""

import numpy as np
import pytest

from core.data.images import IMAGENET_CROP, load_image
from core.models.labels import imagenet_labels, imagenet_synsets
from core.serving import inference


@pytest.fixture(scope="module")
def classifier(lite0_imagenet_classifier):
    return lite0_imagenet_classifier


def test_labels_and_synsets_are_the_standard_1000():
    labels, synsets = imagenet_labels(), imagenet_synsets()
    assert len(labels) == len(synsets) == 1000
    assert synsets == sorted(synsets)  # Keras's class index = position in the sorted synsets
    assert labels[0] == "tench" and synsets[0] == "n01440764"


@pytest.mark.slow  # 20 photos through a 224-px network: seconds on a CPU
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
    assert all(p.top[i]["prob"] >= p.top[i + 1]["prob"] for p in preds for i in range(4))
    assert classifier.preprocessing.crop == IMAGENET_CROP and classifier.resolution == 224


@pytest.mark.slow
def test_all_classes_form_a_probability_distribution(classifier, imagenet_samples_dir):
    image = load_image(sorted(imagenet_samples_dir.glob("*.JPEG"))[0])
    [pred] = classifier.classify([image], top=5000)  # more than there are: all 1000 come back
    probs = np.array([d["prob"] for d in pred.top])
    assert len(probs) == 1000 and len({d["index"] for d in pred.top}) == 1000
    assert (probs >= 0).all() and probs.sum() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_top_k_and_batching_agree(classifier, imagenet_samples_dir):
    files = sorted(imagenet_samples_dir.glob("*.JPEG"))[:5]
    images = [load_image(f) for f in files]
    one_by_one = [classifier.classify([im], top=3)[0] for im in images]
    batched = classifier.classify(images, top=3, batch_size=2)
    for a, b in zip(one_by_one, batched):
        assert [d["index"] for d in a.top] == [d["index"] for d in b.top]
        assert len(a.top) == 3
        np.testing.assert_allclose(
            [d["prob"] for d in a.top], [d["prob"] for d in b.top], atol=1e-4
        )


@pytest.mark.slow
def test_classify_files_keeps_order_reports_errors_and_batches(classifier, imagenet_samples_dir):
    files = sorted(imagenet_samples_dir.glob("*.JPEG"))[:5]
    inputs = (
        [(f.name, f) for f in files[:2]]
        + [("junk.jpg", b"not an image")]
        + [(f.name, f.read_bytes()) for f in files[2:]]
    )
    out = list(classifier.classify_files(inputs, top=2, batch_size=2, previews=True))
    assert [o.name for o in out] == [name for name, _ in inputs]
    assert out[2].prediction is None and "not an image" in out[2].error
    direct = classifier.classify([load_image(f) for f in files], top=2)
    got = [o.prediction for o in out if o.error is None]
    assert [p.top[0]["index"] for p in got] == [p.top[0]["index"] for p in direct]
    assert all(max(o.preview.size) <= inference.PREVIEW_SIDE for o in out if o.preview)


def test_unknown_model_and_none_weights_are_clear_errors():
    with pytest.raises(ValueError, match="neither 'imagenet'"):
        inference.load_classifier("/no/such/run")
    with pytest.raises(ValueError, match="random predictions"):
        inference.load_classifier("imagenet", "none")
