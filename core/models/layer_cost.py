"""B0's stages as data, and each layer's parameters and multiply-adds exactly as Keras builds them.

Keras's ``keras/src/applications/efficientnet.py`` scales channels with :func:`round_filters` and
layer repeats with :func:`round_repeats`; :func:`stage_table` walks the scaled network stage by
stage (the paper's Table 1 layout) and counts each layer: the parameter total equals Keras's
``model.count_params()`` for a model built with ``weights=None``. :mod:`core.models.scaling`
turns compound-scaling coefficients into the (width, depth, resolution) this takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEPTH_DIVISOR = 8
STEM_FILTERS = 32
HEAD_FILTERS = 1280
# Keras's stem has a Normalization layer whose mean (3), variance (3) and count (1) are weights.
INPUT_NORMALIZATION_PARAMS = 3 + 3 + 1
BN_PARAMS_PER_CHANNEL = 4  # gamma, beta, moving mean, moving variance


@dataclass(frozen=True)
class BaseStage:
    """One MBConv stage of the B0 base network (the paper's Table 1, stages 2-8)."""

    operator: str
    kernel: int
    stride: int
    expand: int
    channels_in: int
    channels_out: int
    repeats: int
    se_ratio: float


BASE_STAGES: tuple[BaseStage, ...] = (
    BaseStage("MBConv1", 3, 1, 1, 32, 16, 1, 0.25),
    BaseStage("MBConv6", 3, 2, 6, 16, 24, 2, 0.25),
    BaseStage("MBConv6", 5, 2, 6, 24, 40, 2, 0.25),
    BaseStage("MBConv6", 3, 2, 6, 40, 80, 3, 0.25),
    BaseStage("MBConv6", 5, 1, 6, 80, 112, 3, 0.25),
    BaseStage("MBConv6", 5, 2, 6, 112, 192, 4, 0.25),
    BaseStage("MBConv6", 3, 1, 6, 192, 320, 1, 0.25),
)


@dataclass(frozen=True)
class StageRow:
    """One row of the per-stage table (the paper's Table 1 layout), with its cost."""

    stage: int
    operator: str
    resolution: int  # input height = width
    channels: int  # output channels
    layers: int
    kernel: int
    stride: int
    params: int
    flops: int  # multiply-adds


def round_filters(filters: int, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """Scale a channel count by ``width`` and round it as Keras's EfficientNet does.

    Rounds to the nearest multiple of ``divisor`` (at least ``divisor``, also for widths below 1),
    then adds one more ``divisor`` if that rounding lost more than 10 % of the scaled value.
    """
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's layer count by ``depth``, rounding up as Keras's EfficientNet does (so a
    depth below 1 still keeps at least one layer per stage)."""
    return math.ceil(depth * repeats)


def _conv(k: int, c_in: int, c_out: int, bias: bool = False) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def _bn(c: int) -> int:
    return BN_PARAMS_PER_CHANNEL * c


def _mbconv(
    c_in: int, c_out: int, kernel: int, stride: int, expand: int, se_ratio: float, res_in: int
) -> tuple[int, int, int]:
    """Params, multiply-adds and output size of one MBConv block (Keras's ``block``)."""
    hidden = c_in * expand
    res_out = math.ceil(res_in / stride)  # "same" and Keras's correct_pad both give ceil(r / s)
    params = flops = 0
    if expand != 1:
        params += _conv(1, c_in, hidden) + _bn(hidden)
        flops += res_in**2 * c_in * hidden
    params += kernel * kernel * hidden + _bn(hidden)  # depthwise
    flops += res_out**2 * kernel * kernel * hidden
    if 0 < se_ratio <= 1:
        squeezed = max(1, int(c_in * se_ratio))  # Keras squeezes from the block input channels
        params += _conv(1, hidden, squeezed, bias=True) + _conv(1, squeezed, hidden, bias=True)
        flops += 2 * hidden * squeezed
    params += _conv(1, hidden, c_out) + _bn(c_out)
    flops += res_out**2 * hidden * c_out
    return params, flops, res_out


def stage_table(width: float, depth: float, resolution: int, classes: int) -> tuple[StageRow, ...]:
    """The network scaled by ``width`` and ``depth`` at ``resolution`` px, one row per stage
    (stem, the seven MBConv stages, head) with its parameters and multiply-adds. The inputs are
    taken as checked (see :func:`core.models.scaling.network`)."""
    rows: list[StageRow] = []
    stem = round_filters(STEM_FILTERS, width)
    res = math.ceil(resolution / 2)
    rows.append(
        StageRow(
            1,
            "Conv3x3",
            resolution,
            stem,
            1,
            3,
            2,
            INPUT_NORMALIZATION_PARAMS + _conv(3, 3, stem) + _bn(stem),
            res**2 * _conv(3, 3, stem),
        )
    )
    for i, base in enumerate(BASE_STAGES, start=2):
        c_in = round_filters(base.channels_in, width)
        c_out = round_filters(base.channels_out, width)
        layers = round_repeats(base.repeats, depth)
        res_in, params, flops = res, 0, 0
        for j in range(layers):  # the first layer strides and changes channels, the rest keep them
            p, f, res = _mbconv(
                c_in if j == 0 else c_out,
                c_out,
                base.kernel,
                base.stride if j == 0 else 1,
                base.expand,
                base.se_ratio,
                res,
            )
            params, flops = params + p, flops + f
        rows.append(
            StageRow(
                i,
                f"{base.operator}, k{base.kernel}x{base.kernel}",
                res_in,
                c_out,
                layers,
                base.kernel,
                base.stride,
                params,
                flops,
            )
        )
    head = round_filters(HEAD_FILTERS, width)
    c_last = rows[-1].channels
    rows.append(
        StageRow(
            len(rows) + 1,
            "Conv1x1 & Pooling & FC",
            res,
            head,
            1,
            1,
            1,
            _conv(1, c_last, head) + _bn(head) + head * classes + classes,
            res**2 * c_last * head + head * classes,
        )
    )
    return tuple(rows)
