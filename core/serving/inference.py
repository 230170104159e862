"""Inference: classify images with an ImageNet model or a trained run, batch by batch.

Every image is decoded by :func:`core.data.images.load_image` and prepared by the classifier's own
:class:`core.data.images.Preprocessing` (the ImageNet evaluation crop for ImageNet models, the run's
saved preprocessing for trained runs), then :func:`predict` runs the model in batches.
:meth:`Classifier.classify_files` decodes, classifies and releases one batch at a time, so memory
stays bounded however many files come in; the CLI and the Classify page both use it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.images import ImageError, Preprocessing, load_image
from core.models import efficientnet as models
from core.models import labels as labels_mod
from core.models import weights as weights_mod
from core.platform.errors import UserError
from core.serving.explain import GradCam
from core.training import runs

# Files per classification request (one upload or one CLI call), so a request's work is bounded.
MAX_FILES = 64
PREVIEW_SIDE = 512


@dataclass
class Prediction:
    """Top-k result for one image."""

    top: list[dict]  # [{"index": int, "label": str, "prob": float}, ...]
    seconds: float  # inference time attributed to this image
    extra: dict = field(default_factory=dict)


def predict(
    model,
    images: list[Image.Image],
    labels: list[str],
    preprocessing: Preprocessing,
    *,
    top: int = 5,
    batch_size: int = 32,
) -> list[Prediction]:
    """Classify PIL images with a Keras softmax model.

    Args:
        model: Keras model taking 0..255 RGB pixels, ending in a softmax.
        images: RGB PIL images (from :func:`core.data.images.load_image`).
        labels: Class names, one per model output.
        preprocessing: How each image becomes the model's input.
        top: How many classes to report per image.
        batch_size: Images per forward pass.

    Returns:
        One :class:`Prediction` per image; ``seconds`` is each batch's time split evenly.
    """
    results: list[Prediction] = []
    for start in range(0, len(images), batch_size):
        t0 = time.perf_counter()
        x = preprocessing.batch(images[start : start + batch_size])
        results += _ranked(model, x, labels, preprocessing.flip_tta, top, t0)
    return results


def _ranked(
    model, x: np.ndarray, labels: list[str], flip_tta: bool, top: int, t0: float
) -> list[Prediction]:
    """The top-``top`` classes of each prepared input in ``x`` (one forward pass; two with flip
    test-time augmentation); ``seconds`` is the time since ``t0`` split evenly."""
    if not len(x):
        return []
    top = max(1, min(int(top), len(labels)))
    x = np.asarray(x, dtype="float32")
    probs = np.asarray(model.predict_on_batch(x), dtype="float64")
    if flip_tta:  # as the run was evaluated: with the mirror images too
        probs = (probs + np.asarray(model.predict_on_batch(x[:, :, ::-1]), dtype="float64")) / 2
    per_image = (time.perf_counter() - t0) / len(x)
    results = []
    for row in probs:
        order = np.argsort(-row)[:top]
        results.append(
            Prediction(
                top=[
                    {"index": int(i), "label": labels[int(i)], "prob": float(row[i])} for i in order
                ],
                seconds=per_image,
            )
        )
    return results


@dataclass
class ClassifiedFile:
    """The outcome for one input of :meth:`Classifier.classify_files`.

    Attributes:
        name: The name the caller gave (a file name; shown as plain text).
        prediction: The top-k result, or None when the file could not be used.
        error: Why the file could not be used (a message for people), else None.
        preview: A small copy of the decoded image for showing, when asked for.
        cam: When asked for, the Grad-CAM map of the top class (float32 (h, w) in 0..1, over
            the region the model saw; :func:`core.serving.explain.place` lays it over the image).
        source_size: The file's own (width, height), upright.
    """

    name: str
    prediction: Prediction | None = None
    error: str | None = None
    preview: Image.Image | None = None
    cam: np.ndarray | None = None
    source_size: tuple[int, int] | None = None


@dataclass
class Classifier:
    """A model ready to classify images, with its labels, preprocessing and weights.

    Attributes:
        model: Keras model taking 0..255 RGB pixels and returning class probabilities.
        labels: One name per output.
        preprocessing: How an image becomes this model's input (the crop and resize it was
            trained or evaluated with).
        name: What was asked for ("imagenet" or a run/model path).
        weights: Human label of the weights in use (e.g. "lite0: ImageNet (offline Lite0 package)").
        detail: Where the weights came from and why they were chosen.
        load_seconds: Time spent building/converting/loading.
    """

    model: object
    labels: list[str]
    preprocessing: Preprocessing
    name: str
    weights: str
    detail: str = ""
    load_seconds: float = 0.0
    _gradcam: object = field(default=None, repr=False)

    @property
    def resolution(self) -> int:
        """Side of the square input the model takes."""
        return self.preprocessing.size

    def classify(
        self, images: list[Image.Image], top: int = 5, batch_size: int = 32
    ) -> list[Prediction]:
        """Top-k predictions for RGB PIL images."""
        return predict(
            self.model, images, self.labels, self.preprocessing, top=top, batch_size=batch_size
        )

    def explain(self, images: list[Image.Image], classes=None) -> np.ndarray:
        """Grad-CAM maps (N, h, w) of RGB PIL images for ``classes`` (default: the top class);
        see :mod:`core.serving.explain`."""
        return self._explain_inputs(self.preprocessing.batch(images), classes)

    def _explain_inputs(self, x: np.ndarray, classes=None) -> np.ndarray:
        """Grad-CAM maps of prepared inputs ``x`` (N, size, size, 3)."""

        if self._gradcam is None:
            self._gradcam = GradCam(self.model)
        x = np.asarray(x, dtype="float32")
        cams = [
            self._gradcam(x[i : i + 16], None if classes is None else classes[i : i + 16])[0]
            for i in range(0, len(x), 16)
        ]  # 16 at a time: gradients take memory
        return np.concatenate(cams) if cams else np.zeros((0, 1, 1), "float32")

    def classify_files(
        self,
        files: Iterable[tuple[str, str | Path | bytes]],
        *,
        top: int = 5,
        batch_size: int = 32,
        previews: bool = False,
        explain: bool = False,
    ) -> Iterator[ClassifiedFile]:
        """Decode and classify ``(name, path or bytes)`` inputs, one batch in memory at a time.

        Yields one :class:`ClassifiedFile` per input, in input order; an unreadable input gets
        its ``error`` and never stops the others. With ``explain``, each also gets the Grad-CAM
        map of its top class (``cam``).
        """
        pending: list[ClassifiedFile] = []
        inputs: list[np.ndarray] = []  # model inputs, not images: a batch of photos stays small

        def flush() -> Iterator[ClassifiedFile]:
            usable = [item for item in pending if item.error is None]
            if usable:
                t0 = time.perf_counter()
                x = np.stack(inputs)
                preds = _ranked(self.model, x, self.labels, self.preprocessing.flip_tta, top, t0)
                for item, pred in zip(usable, preds):
                    item.prediction = pred
                if explain:
                    cams = self._explain_inputs(
                        x, [item.prediction.top[0]["index"] for item in usable]
                    )
                    for item, cam in zip(usable, cams):
                        item.cam = cam
            yield from pending
            pending.clear()
            inputs.clear()

        for name, source in files:
            item = ClassifiedFile(str(name))
            try:
                # Only an image many times larger than the model input decodes at a reduced
                # scale (see Preprocessing.decode_side); the preview needs less.
                need = self.preprocessing.decode_side()
                image = load_image(source, min_side=max(need, PREVIEW_SIDE) if previews else need)
                inputs.append(self.preprocessing.apply(image))
            except ImageError as exc:
                item.error = str(exc)
            else:
                item.source_size = image.info.get("source_size", image.size)
                if previews:  # in place: the model input is taken, the full image not needed
                    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
                    image.info.pop("source_box", None)  # a preview, not a model's source
                    item.preview = image
            pending.append(item)
            if len(inputs) >= batch_size:
                yield from flush()
        yield from flush()


def load_classifier(model: str = "imagenet", weights: str = "auto") -> Classifier:
    """Load the ImageNet classifier or a trained run.

    Args:
        model: "imagenet" (1000 classes; backbone B0 or, offline, Lite0), an ImageNet variant
            name ("b0".."b7", "lite0"), or a path to a training run folder or a ``.keras`` file.
        weights: For ImageNet models: "auto", "imagenet", "lite0" or a weights file path.

    Raises:
        ValueError: Unknown model or unusable weights (the message says what to do).
    """

    t0 = time.perf_counter()
    key = model.strip().lower()
    if key == "imagenet" or key in models.VARIANTS:
        variant = "b0" if key == "imagenet" else key
        if weights == "none":
            raise UserError(
                "weights 'none' gives random predictions; choose auto, imagenet, lite0 or a file"
            )
        net, info = weights_mod.load_backbone(variant, weights, include_top=True)  # WeightsError
        return _warmed(
            Classifier(
                net,
                labels_mod.imagenet_labels(),
                Preprocessing.imagenet(int(net.input_shape[1])),
                model,
                info.label,
                info.detail,
                time.perf_counter() - t0,
            )
        )
    path = Path(model).expanduser()
    if not path.exists():
        raise UserError(
            f"model {model!r} is neither 'imagenet', a backbone name, nor an existing run folder or .keras file"
        )

    try:
        net, class_names, preprocessing = runs.load_run_model(path)
    except Exception as exc:  # a broken run folder must read as a message, not a traceback
        raise UserError(f"cannot load the trained model {path.name!r}: {exc}") from exc
    return _warmed(
        Classifier(
            net,
            list(class_names),
            preprocessing,
            str(path),
            f"trained run {path.name}",
            f"the model saved by run {path.name}",
            time.perf_counter() - t0,
        )
    )


def _warmed(classifier: Classifier) -> Classifier:
    """Run one blank image through the model so the first real prediction is not charged for
    graph tracing (which takes longer than the prediction itself)."""
    t0 = time.perf_counter()
    size = classifier.resolution
    classifier.model.predict_on_batch(np.zeros((1, size, size, 3), dtype="float32"))
    classifier.load_seconds += time.perf_counter() - t0
    return classifier
