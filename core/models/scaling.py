"""EfficientNet compound scaling, computed exactly and without TensorFlow.

Tan & Le (2019, arXiv 1905.11946) scale a base network's depth by ``alpha**phi``, its width by
``beta**phi`` and its input resolution by ``gamma**phi``, with ``alpha * beta**2 * gamma**2 ~ 2``
so that FLOPs grow about ``2**phi``. The released B1-B7 use hand-picked coefficients instead
(:data:`OFFICIAL`), and every network rounds channels to multiples of 8 and repeats up.

From compound-scaling coefficients this derives (width, depth, resolution), and from those the
per-stage table, the parameter count (equal to Keras's ``model.count_params()`` for a 1000-class
model built with ``weights=None``) and the multiply-add count: B0 as data and the exact cost of
each layer, rounded as ``keras/src/applications/efficientnet.py`` rounds, are
:mod:`core.models.layer_cost`.

Resolution rule for the formula: ``round(base_resolution * gamma**phi)`` with halves rounded up,
to a plain integer (no multiple-of-8 snapping), because the released resolutions (240, 260, 300,
...) are not multiples of 8 either and the per-stage sizes follow from any integer by ``ceil(r/2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from core.models.layer_cost import StageRow, stage_table
from core.platform.errors import UserError

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15  # the paper's grid-searched depth, width, resolution bases
BASE_RESOLUTION = 224
# Bounds on every input, so any value given is computed in milliseconds (φ = 100 would ask for
# 10^8 layers): φ, the three bases, the base resolution, and the multipliers they give. Negative
# φ shrinks B0 (down to 2^-3 = 0.125 with the largest bases); Keras's rounding keeps at least
# 8 channels and 1 layer per stage whatever the multiplier.
PHI_RANGE = (-3.0, 10.0)
BASE_RANGE = (1.0, 2.0)
BASE_RESOLUTION_RANGE = (32, 1024)
MULTIPLIER_MIN = 0.1
MULTIPLIER_MAX = 10.0
RESOLUTION_MAX = 8192
CLASSES = 1000


@dataclass(frozen=True)
class Variant:
    """The coefficients of a released EfficientNet.

    Attributes:
        width: Channel multiplier.
        depth: Layer-repeat multiplier.
        resolution: Input size the variant was trained at.
        dropout: Dropout rate before the classifier.
        lite: True for EfficientNet-Lite (no squeeze-excite, relu6 activations).
    """

    width: float
    depth: float
    resolution: int
    dropout: float
    lite: bool = False


OFFICIAL: dict[str, Variant] = {
    "b0": Variant(1.0, 1.0, 224, 0.2),
    "b1": Variant(1.0, 1.1, 240, 0.2),
    "b2": Variant(1.1, 1.2, 260, 0.3),
    "b3": Variant(1.2, 1.4, 300, 0.3),
    "b4": Variant(1.4, 1.8, 380, 0.4),
    "b5": Variant(1.6, 2.2, 456, 0.4),
    "b6": Variant(1.8, 2.6, 528, 0.5),
    "b7": Variant(2.0, 3.1, 600, 0.5),
}

# The paper's Table 2: FLOPs (billions of multiply-adds) and ImageNet top-1 (%) of B0-B7.
PAPER_FLOPS = {
    "b0": 0.39e9,
    "b1": 0.70e9,
    "b2": 1.0e9,
    "b3": 1.8e9,
    "b4": 4.2e9,
    "b5": 9.9e9,
    "b6": 19e9,
    "b7": 37e9,
}
PAPER_TOP1 = {
    "b0": 77.1,
    "b1": 79.1,
    "b2": 80.1,
    "b3": 81.6,
    "b4": 82.9,
    "b5": 83.6,
    "b6": 84.0,
    "b7": 84.3,
}


@dataclass(frozen=True)
class Multipliers:
    """What compound scaling gives for one phi."""

    phi: float
    depth: float  # alpha ** phi
    width: float  # beta ** phi
    resolution_factor: float  # gamma ** phi
    resolution: int  # round(base_resolution * gamma ** phi)
    constraint: float  # alpha * beta**2 * gamma**2 (2 in the paper)
    flops_factor: float  # constraint ** phi
    ideal_flops_factor: float  # 2 ** phi


@dataclass(frozen=True)
class ScaledNetwork:
    """A fully scaled EfficientNet: its coefficients, stage table and totals (math only, no Keras)."""

    width: float
    depth: float
    resolution: int
    stages: tuple[StageRow, ...]
    params: int
    flops: int

    def to_dict(self) -> dict:
        """A JSON-ready dict: width, depth, resolution, params, flops, stages."""
        return {
            "width": self.width,
            "depth": self.depth,
            "resolution": self.resolution,
            "params": self.params,
            "flops": self.flops,
            "stages": [vars(row).copy() for row in self.stages],
        }


# ----- validation ------------------------------------------------------------------------------
def _check_real(name: str, value: object, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}.")
    if not minimum <= value <= maximum:
        raise UserError(f"{name} must be from {minimum:g} to {maximum:g}, got {value:g}.")
    return float(value)


def _check_resolution(
    name: str, value: object, minimum: int = 1, maximum: int = RESOLUTION_MAX
) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, Integral)
        or not minimum <= value <= maximum
    ):
        raise UserError(
            f"{name} must be a whole number of pixels from {minimum} to {maximum}, got {value!r}."
        )
    return int(value)


# ----- scaling ---------------------------------------------------------------------------------
def constraint(alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> float:
    """The FLOPs growth per unit of phi, ``alpha * beta**2 * gamma**2`` (the paper fixes it ~2)."""
    return alpha * beta**2 * gamma**2


def multipliers(
    phi: float,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    base_resolution: int = BASE_RESOLUTION,
) -> Multipliers:
    """Depth, width and resolution multipliers for compound coefficient ``phi``.

    Args:
        phi: Compound coefficient, in :data:`PHI_RANGE`.
        alpha: Depth base, in :data:`BASE_RANGE`.
        beta: Width base, in :data:`BASE_RANGE`.
        gamma: Resolution base, in :data:`BASE_RANGE`.
        base_resolution: Input size of the base network in pixels (:data:`BASE_RESOLUTION_RANGE`).

    Raises:
        ValueError: If any input is out of range.
    """
    phi = _check_real("phi", phi, *PHI_RANGE)
    alpha, beta, gamma = (
        _check_real(n, v, *BASE_RANGE)
        for n, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma))
    )
    base_resolution = _check_resolution("base resolution", base_resolution, *BASE_RESOLUTION_RANGE)
    c = constraint(alpha, beta, gamma)
    factor = gamma**phi
    return Multipliers(
        phi=phi,
        depth=alpha**phi,
        width=beta**phi,
        resolution_factor=factor,
        resolution=max(1, math.floor(base_resolution * factor + 0.5)),  # halves round up
        constraint=c,
        flops_factor=c**phi,
        ideal_flops_factor=2.0**phi,
    )


def network(width: float, depth: float, resolution: int, classes: int = CLASSES) -> ScaledNetwork:
    """The scaled network's stage table, parameter count and multiply-adds.

    Args:
        width: Channel multiplier, :data:`MULTIPLIER_MIN` to :data:`MULTIPLIER_MAX`.
        depth: Layer-count multiplier, :data:`MULTIPLIER_MIN` to :data:`MULTIPLIER_MAX`.
        resolution: Input height = width in pixels, 1 to :data:`RESOLUTION_MAX`.
        classes: Size of the classifier head.

    Raises:
        ValueError: If a coefficient is out of range or the resolution is not a positive integer.
    """
    width = _check_real("width", width, MULTIPLIER_MIN, MULTIPLIER_MAX)
    depth = _check_real("depth", depth, MULTIPLIER_MIN, MULTIPLIER_MAX)
    resolution = _check_resolution("resolution", resolution)
    if (
        isinstance(classes, bool)
        or not isinstance(classes, Integral)
        or not 1 <= classes <= 100_000
    ):
        raise UserError(f"classes must be a whole number from 1 to 100000, got {classes!r}.")

    rows = stage_table(width, depth, resolution, classes)
    return ScaledNetwork(
        width=width,
        depth=depth,
        resolution=resolution,
        stages=tuple(rows),
        params=sum(r.params for r in rows),
        flops=sum(r.flops for r in rows),
    )


def formula_network(
    phi: float,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    base_resolution: int = BASE_RESOLUTION,
) -> ScaledNetwork:
    """The network compound scaling gives for ``phi`` (see :func:`multipliers`)."""
    m = multipliers(phi, alpha, beta, gamma, base_resolution)
    return network(m.width, m.depth, m.resolution)


def official_network(variant: str) -> ScaledNetwork:
    """The released network ``variant`` ("b0".."b7").

    Raises:
        ValueError: If the variant is unknown.
    """
    key = str(variant).lower()
    if key not in OFFICIAL:
        raise UserError(f"Unknown variant {variant!r}; choose one of {', '.join(OFFICIAL)}.")
    v = OFFICIAL[key]
    return network(v.width, v.depth, v.resolution)


def nearest_variant(flops: float) -> str:
    """The released variant whose multiply-adds are nearest to ``flops`` on a log scale."""
    if not flops > 0:
        raise UserError(f"FLOPs must be positive, got {flops!r}.")
    return min(OFFICIAL, key=lambda v: abs(math.log(official_network(v).flops / flops)))


# ----- the φ the released networks imply -------------------------------------------------------
@dataclass(frozen=True)
class ImpliedPhi:
    """The φ that each of a released network's coefficients would need under the formula.

    ``depth = ln d / ln α``, ``width = ln w / ln β`` and ``resolution = ln(r / r0) / ln γ``;
    None where a base is exactly 1 (the multiplier then does not depend on φ).
    """

    variant: str
    formula: int  # the φ the variant's name stands for (B3 → 3)
    depth: float | None
    width: float | None
    resolution: float | None

    def to_dict(self) -> dict:
        """``{"depth", "width", "resolution"}``, JSON-ready."""
        return {"depth": self.depth, "width": self.width, "resolution": self.resolution}


def _log_ratio(value: float, base: float) -> float | None:
    return None if base == 1.0 else math.log(value) / math.log(base)


def implied_phi(
    variant: str,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    base_resolution: int = BASE_RESOLUTION,
) -> ImpliedPhi:
    """The φ a released network's depth, width and resolution each imply (:class:`ImpliedPhi`).

    Raises:
        ValueError: Unknown variant or a base out of range.
    """
    key = str(variant).lower()
    if key not in OFFICIAL:
        raise UserError(f"Unknown variant {variant!r}; choose one of {', '.join(OFFICIAL)}.")
    alpha, beta, gamma = (
        _check_real(n, v, *BASE_RANGE)
        for n, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma))
    )
    base_resolution = _check_resolution("base resolution", base_resolution, *BASE_RESOLUTION_RANGE)
    v = OFFICIAL[key]
    return ImpliedPhi(
        key,
        list(OFFICIAL).index(key),
        _log_ratio(v.depth, alpha),
        _log_ratio(v.width, beta),
        _log_ratio(v.resolution / base_resolution, gamma),
    )
