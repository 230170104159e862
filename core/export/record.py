"""An export's record, typed: what ``model.json`` says about the file beside it, and the parity
check's figures.

The record crosses process boundaries (the export runs as a job; the pages and ``python -m core
export`` read it) and lives on disk as ``model.json`` in the export folder, so
:class:`ExportRecord` has ``to_dict()`` and ``from_dict()`` for its JSON form. That form is the one
model.json has always had; fields added since (``compute``, ``disagreement_max_margin``) read
with their old meaning when an older folder lacks them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Parity:
    """How the exported file agrees with the Keras model on held-out images.

    Attributes:
        images: Images compared.
        agree: Those with the same top-1 class.
        agreement: ``agree / images``.
        max_abs_diff, mean_abs_diff: The largest and mean probability difference.
        disagreement_max_margin: The largest gap between the Keras model's two most probable
            classes among the images where the export disagrees (None when it never does): a
            small one means the export only flips near-ties.
        target: What the format must reach (``agreement``, and ``max_abs_diff`` for float).
        meets_target: Whether it does.
        keras_accuracy, export_accuracy: Top-1 accuracy of each on the images' labels (None
            when the images have no labels).
        runtime: The runtime and its version the file ran in.
        images_from: Where the images came from, in words.
        seconds: How long running the file took.
    """

    images: int
    agree: int
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    disagreement_max_margin: float | None
    target: dict
    meets_target: bool
    keras_accuracy: float | None = None
    export_accuracy: float | None = None
    runtime: str = ""
    images_from: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The JSON form (accuracies only when the images had labels)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("keras_accuracy", "export_accuracy"):
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, values: dict) -> Parity:
        """From the JSON form."""
        known = {f.name for f in fields(cls)}
        return cls(
            **{"disagreement_max_margin": None, **{k: v for k, v in values.items() if k in known}}
        )


@dataclass(frozen=True)
class ExportRecord:
    """One finished export (``model.json``, plus where its folder is).

    Attributes:
        format, format_label, file: The format's key and label, and the model file's name.
        input, output: What the graph takes and returns (name, shape, dtype, meaning).
        classes: The class names, in output order.
        preprocessing: The crop and resize to apply before the graph, and a note saying how.
        quantization: How weights are quantized (None: float32).
        int8: For the int8 format, what :func:`core.export.quantize.quantize` chose and on which
            images (None otherwise).
        compute: The precision the graph computes in, and why when it differs from training.
        source: What was exported (a run and its facts, or the ImageNet model).
        parity: The check against the Keras model.
        export_s: Seconds writing the file took.
        size_bytes: The model file's (or folder's) size.
        created, keras, device: When, with which Keras, on which device.
        usage: The usage snippet beside it.
        dir: The export folder (not in model.json: where it was found or written).
    """

    format: str
    format_label: str
    file: str
    input: dict
    output: dict
    classes: tuple[str, ...]
    preprocessing: dict
    quantization: str | None
    int8: dict | None
    compute: str
    source: dict
    parity: Parity
    export_s: float
    size_bytes: int
    created: str
    keras: str
    device: str
    usage: str
    dir: str = ""

    def model_json(self) -> dict:
        """What ``model.json`` holds: the JSON form without ``dir`` (and ``int8`` only for
        int8)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "dir"}
        out.update(classes=list(self.classes), parity=self.parity.to_dict())
        if out["int8"] is None:
            del out["int8"]
        return out

    def to_dict(self) -> dict:
        """The JSON form: ``model.json`` plus ``dir`` (a job's result)."""
        return {**self.model_json(), "dir": self.dir}

    @classmethod
    def from_dict(cls, values: dict, folder: str | None = None) -> ExportRecord:
        """From the JSON form, or from ``model.json`` found in ``folder``.

        Raises:
            KeyError, TypeError, ValueError: Not an export record.
        """
        return cls(
            format=values["format"],
            format_label=values["format_label"],
            file=values["file"],
            input=values["input"],
            output=values["output"],
            classes=tuple(values["classes"]),
            preprocessing=values["preprocessing"],
            quantization=values.get("quantization"),
            int8=values.get("int8"),
            compute=values.get("compute", "float32"),
            source=values["source"],
            parity=Parity.from_dict(values["parity"]),
            export_s=values["export_s"],
            size_bytes=values["size_bytes"],
            created=values.get("created", ""),
            keras=values.get("keras", ""),
            device=values.get("device", ""),
            usage=values.get("usage", "predict.py"),
            dir=str(folder) if folder is not None else values.get("dir", ""),
        )
