"""Weight-only int8 LiteRT files: int8 weights, float32 compute, parity kept.

TensorFlow Lite's own dynamic-range quantization flipped 4-9 % of our runs' predictions
(docs/benchmarks.md). Two causes, both measured: the converter folds the head's
BatchNormalization into the classifier's weights, which scales each *input* column by γ/σ, so the
one-step-per-output-channel int8 grid is set by a few large columns (on the best CPU run that
layer alone took agreement from 98.9 % to 90.8 %); and in a model that is unsure of many images a
handful of layers (the first blocks' linear projections) move the probabilities enough to flip
near-ties.

So the float32 file that Keras's ``model.export`` writes is rewritten here instead of asking the
converter to quantize:

1. Every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED weight tensor of at least
   :data:`MIN_ELEMENTS` values (the converter's own threshold) becomes int8 with one scale per
   output channel (symmetric, ``max|w| / 127``), feeding a DEQUANTIZE op. LiteRT evaluates a
   DEQUANTIZE of a constant once, when the model is prepared, so compute stays float32: the file
   is about 3.6x smaller and runs as fast as the float one.
2. On calibration images that the parity check never sees, each layer's harm is measured alone
   (the probability change it causes, on :data:`SENSITIVITY_IMAGES` of them, when it is the
   only int8 layer); then the fewest most harmful
   layers are kept float32 until the file agrees with the float model on :data:`GOAL` of the
   calibration images, within a budget of :data:`MAX_FLOAT_SHARE` of the weights (the facts
   returned say, in ``budget_reached``, when the budget, not the goal, ended the choice).
   Models that are sure of their images keep every layer int8.

The tensors and ops are edited through TensorFlow's own flatbuffer schema, a private API reached
only through :mod:`core.platform._tensorflow_private`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from core.platform import _tensorflow_private as tf_private

MIN_ELEMENTS = 1024
GOAL = 0.99
MAX_FLOAT_SHARE = 0.25
SENSITIVITY_IMAGES = 64
_DEQUANTIZE_VERSION = 5  # LiteRT's version of DEQUANTIZE for per-channel int8 inputs


def _channel_axes() -> dict[int, int]:
    """The output-channel axis of each op's weights, by builtin operator code: CONV_2D
    [out, kh, kw, in], DEPTHWISE_CONV_2D [1, kh, kw, channels], FULLY_CONNECTED [out, in]."""
    op = tf_private.tflite_schema().BuiltinOperator
    return {op.CONV_2D: 0, op.DEPTHWISE_CONV_2D: 3, op.FULLY_CONNECTED: 0}


@dataclass(frozen=True)
class Weight:
    """One weight tensor that can become int8.

    Attributes:
        tensor: Its index in the subgraph.
        name: The Keras layer it comes from (for people), e.g. ``block2a_project_conv``.
        elements: How many values it holds.
        axis: Its output-channel axis (one int8 scale per channel).
    """

    tensor: int
    name: str
    elements: int
    axis: int


def layer_name(tensor_name: str) -> str:
    """The Keras layer behind a converted weight tensor's name (which lists every op fused into
    it, e.g. ``…/block2a_project_bn_1/…;…/block2a_project_conv_1/convolution``)."""
    parts = [re.sub(r"_\d+$", "", p) for p in re.split(r"[;/]", tensor_name)]
    for part in reversed(parts):
        if part.endswith(("conv", "_se_reduce", "_se_expand")) or part in ("predictions", "dense"):
            return part
    return tensor_name.split(";")[0][-60:]


def weights(content: bytes) -> list[Weight]:
    """The weight tensors of ``content`` (a float32 .tflite file) that can become int8.

    Only the main subgraph's; each tensor once, with its own buffer: a tensor that several ops
    read with different channel axes, or whose buffer another tensor shares (the converter
    dedupes identical constants), stays float32.
    """
    return _weights(tf_private.read_tflite(content))


def _weights(model) -> list[Weight]:
    """:func:`weights` of a parsed model (a schema ``ModelT``)."""
    float32 = tf_private.tflite_schema().TensorType.FLOAT32
    channel_axis = _channel_axes()
    graph = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    users: dict[int, int] = {}
    for sub in model.subgraphs:
        for tensor in sub.tensors:
            users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    axes: dict[int, set[int]] = {}
    for op in graph.operators:
        axis = channel_axis.get(codes[op.opcodeIndex])
        if axis is not None and op.inputs is not None and len(op.inputs) >= 2:
            axes.setdefault(int(op.inputs[1]), set()).add(axis)
    found = []
    for index, kinds in axes.items():
        tensor = graph.tensors[index]
        elements = int(np.prod(tensor.shape))
        if (
            len(kinds) == 1
            and tensor.type == float32
            and model.buffers[tensor.buffer].data is not None
            and users.get(tensor.buffer) == 1
            and elements >= MIN_ELEMENTS
        ):
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            found.append(Weight(index, layer_name(name), elements, kinds.pop()))
    return found


def int8_grid(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 of ``w``: (int8 values, float32 scales), ``w ≈ q * scale``."""
    others = tuple(i for i in range(w.ndim) if i != axis)
    scale = np.abs(w).max(axis=others, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale


def rewrite(content: bytes, int8: set[int]) -> bytes:
    """``content`` with the weight tensors whose indices are in ``int8`` stored as int8.

    Each becomes an int8 tensor (per-channel scales, zero points 0) and a DEQUANTIZE op, placed
    first, writes the original float32 tensor, which the layer reads as before.
    """
    fb = tf_private.tflite_schema()
    model = tf_private.read_tflite(content)
    graph = model.subgraphs[0]
    axes = {w.tensor: w.axis for w in _weights(model)}
    unknown = set(int8) - set(axes)
    if unknown:
        raise ValueError(f"tensors {sorted(unknown)} are not weights that can become int8")
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.DEQUANTIZE
    code.version = _DEQUANTIZE_VERSION
    model.operatorCodes.append(code)
    dequantize_ops = []
    for index in sorted(int8):
        tensor = graph.tensors[index]
        w = np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.float32).reshape(
            tensor.shape
        )
        q, scale = int8_grid(w, axes[index])
        buffer = fb.BufferT()
        buffer.data = np.frombuffer(q.tobytes(), np.uint8)
        model.buffers.append(buffer)
        quant = fb.QuantizationParametersT()
        quant.scale, quant.zeroPoint = scale.ravel().tolist(), [0] * scale.size
        quant.quantizedDimension = axes[index]
        stored = fb.TensorT()
        stored.shape, stored.type = list(tensor.shape), fb.TensorType.INT8
        stored.buffer, stored.name = len(model.buffers) - 1, tensor.name + b"_int8"
        stored.quantization = quant
        graph.tensors.append(stored)
        model.buffers[tensor.buffer].data = None  # now DEQUANTIZE's output
        op = fb.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = (
            len(model.operatorCodes) - 1,
            [len(graph.tensors) - 1],
            [index],
        )
        dequantize_ops.append(op)
    graph.operators = dequantize_ops + list(graph.operators)
    return tf_private.write_tflite(model)


def predict(content: bytes, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Run a .tflite file held in memory over uint8 images ``x`` in ai-edge-litert."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=os.cpu_count() or 1)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    result = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        interpreter.resize_tensor_input(inp["index"], chunk.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], chunk.astype(inp["dtype"]))
        interpreter.invoke()
        result.append(np.array(interpreter.get_tensor(out["index"]), np.float64))
    return np.concatenate(result)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


def quantize(
    content: bytes,
    calibration: np.ndarray | None,
    progress=None,
    goal: float = GOAL,
    max_float_share: float = MAX_FLOAT_SHARE,
) -> tuple[bytes, dict]:
    """Weight-only int8 of a float32 .tflite file, keeping float32 the fewest layers that bring
    the calibration agreement with the float file up to ``goal``.

    Args:
        content: The float32 file (from ``model.export(format="litert")``).
        calibration: uint8 images the model takes, none of them used by the parity check; None
            or empty: every layer becomes int8 (nothing to measure harm on).
        progress: A :class:`core.platform.progress.Progress` (phases, stop requests), or None.
        goal: Top-1 agreement with the float file to reach on ``calibration``.
        max_float_share: The largest share of the weights that may stay float32.

    Returns:
        (the int8 file, facts for model.json: layers int8 and float32, the share of weights
        stored as int8, the calibration agreement reached, how many images it used, the goal,
        the float32 budget and ``budget_reached``: True when the budget, not the goal, ended
        the choice).
    """
    candidates = weights(content)
    every = {w.tensor for w in candidates}
    total = sum(w.elements for w in candidates)

    def facts(kept: list[Weight], agreement: float | None, budget_reached: bool = False) -> dict:
        return {
            "int8_layers": len(candidates) - len(kept),
            "float32_layers": [w.name for w in kept],
            "int8_weight_share": round(1 - sum(w.elements for w in kept) / total, 4)
            if total
            else 0.0,
            "calibration_images": 0 if calibration is None else len(calibration),
            "calibration_agreement": agreement,
            "goal": goal,
            "max_float32_share": max_float_share,
            "budget_reached": budget_reached,
        }

    if calibration is None or not len(calibration) or not candidates:
        return rewrite(content, every), facts([], None)
    _phase(progress, "Int8: float reference on calibration images", 0)
    reference = predict(content, calibration)
    _stop(progress)
    first = rewrite(content, every)
    agreement = _agreement(reference, predict(first, calibration))
    if agreement >= goal:
        return first, facts([], agreement)

    # Each layer's harm alone: the summed probability change when only it is int8.
    # An evenly spread sample: calibration images may come ordered by class.
    spread = np.linspace(0, len(calibration) - 1, min(SENSITIVITY_IMAGES, len(calibration)))
    pick = np.unique(spread.round().astype(int))
    sample, ref_sample = calibration[pick], reference[pick]
    _phase(progress, "Int8: measuring each layer's effect", len(candidates))
    harm = []
    for i, w in enumerate(candidates):
        got = predict(rewrite(content, {w.tensor}), sample)
        harm.append(float(np.abs(got - ref_sample).sum(1).mean()))
        _step(progress, i + 1)
    order = [candidates[i] for i in np.argsort(harm, kind="stable")[::-1]]

    # The most harmful layers that fit the budget of max_float_share of the weights (a large
    # layer that does not fit is skipped, not the end of the list), so the file stays small
    # even for a model unsure of every calibration image (the ImageNet model on CIFAR-10
    # photos); then the budget, not the goal, ends the choice.
    _phase(progress, "Int8: choosing the layers that stay float32", 0)
    fits, used = [], 0
    for w in order:
        if used + w.elements <= max_float_share * total:
            fits.append(w)
            used += w.elements
    if not fits:
        return first, facts([], agreement, budget_reached=True)
    capped = rewrite(content, every - {w.tensor for w in fits})
    tried = {len(fits): (capped, _agreement(reference, predict(capped, calibration)))}
    _stop(progress)
    if tried[len(fits)][1] < goal:
        return capped, facts(fits, tried[len(fits)][1], budget_reached=True)
    # A binary search for a short prefix that reaches the goal: agreement mostly, not strictly,
    # grows with each layer kept, so this finds a passing prefix, not always the shortest.
    low, high = 1, len(fits)
    while low < high:
        k = (low + high) // 2
        candidate = rewrite(content, every - {w.tensor for w in fits[:k]})
        tried[k] = (candidate, _agreement(reference, predict(candidate, calibration)))
        _stop(progress)
        low, high = (low, k) if tried[k][1] >= goal else (k + 1, high)
    final, reached = tried[low]
    return final, facts(fits[:low], reached)


def summary(chosen: dict, limit: int | None = None) -> str:
    """One line on what an int8 export chose (``model.json``'s ``int8``), naming at most
    ``limit`` of the float32 layers (all when None)."""
    kept = chosen["float32_layers"]
    shown = kept if limit is None else kept[:limit]
    line = (
        f"{chosen['int8_layers']} layers int8 ({chosen['int8_weight_share']:.0%} of the weights); "
    )
    more = ", …" if len(kept) > len(shown) else ""
    line += (
        f"{len(kept)} kept float32 ({', '.join(shown)}{more}), "
        if kept
        else ("none kept float32, ")
    )
    line += f"chosen on {chosen['calibration_from']}"
    if chosen["calibration_agreement"] is not None:
        line += f" (agreement there {chosen['calibration_agreement']:.1%})"
    if chosen.get("budget_reached"):
        line += (
            f"; the budget of {chosen['max_float32_share']:.0%} of the weights in float32 "
            f"ended the choice before the {chosen['goal']:.0%} goal"
        )
    return line


def _phase(progress, text: str, total: int) -> None:
    if progress is not None:
        progress.start(text, total, "" if not total else "layer" if "layer" in text else "img")


def _step(progress, done: int) -> None:
    if progress is not None:
        progress.set_done(done)
        progress.check_stop()


def _stop(progress) -> None:
    if progress is not None:
        progress.check_stop()
