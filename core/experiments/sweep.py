"""Measured cost: forward passes timed over several networks on this machine (the "sweep" job).

FLOPs and parameters (:mod:`core.models.scaling`) are what the paper compares; what a person waits for
is time on their own hardware. A sweep builds each network with random weights (timing does not
depend on the weights' values), times its forward pass at a few batch sizes with
:func:`core.models.timing.time_forward`, and reports milliseconds per image next to FLOPs and
parameters, naming the device. Points are either released variants (B0–B3 by default, at their
own resolutions) or formula networks for several φ.

It is bounded so that it runs in a few minutes on a 2-core CPU: at most :data:`MAX_POINTS`
networks, a few timed passes per batch size, and an overall budget after which the remaining
networks are skipped (and listed as such).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from core.experiments.measure import build_model
from core.models import scaling
from core.models.timing import time_forward
from core.platform.errors import UserError
from core.platform.progress import Progress, Stopped
from core.platform.runtime import describe_device

DEFAULT_VARIANTS = ("b0", "b1", "b2", "b3")
DEFAULT_BATCH_SIZES = (1, 8)
DEFAULT_BUDGET_S = 240.0
BUDGET_RANGE = (10.0, 3600.0)
MAX_POINTS = 12
MAX_BATCH = 64
MIN_RESOLUTION = 32  # Keras builds EfficientNets from 32 px up
_PASS_BUDGET_S = 2.0  # per batch size: no further timed pass starts after this
_MAX_RUNS = 5


@dataclass(frozen=True)
class SweepPoint:
    """One network to time: a name for people, its coefficients and its cost on paper."""

    label: str
    width: float
    depth: float
    resolution: int
    params: int
    flops: int  # multiply-adds per image
    phi: float | None = None


def _point(label: str, net: scaling.ScaledNetwork, phi: float | None = None) -> SweepPoint:
    if net.resolution < MIN_RESOLUTION:
        raise UserError(
            f"{label} is {net.resolution} px; Keras builds EfficientNets from "
            f"{MIN_RESOLUTION} px up: raise the base resolution."
        )
    return SweepPoint(label, net.width, net.depth, net.resolution, net.params, net.flops, phi)


def variant_points(variants=DEFAULT_VARIANTS) -> list[SweepPoint]:
    """Released networks at their own resolutions.

    Raises:
        ValueError: An unknown variant.
    """
    return [
        _point(v.upper(), scaling.official_network(v)) for v in (str(v).lower() for v in variants)
    ]


def phi_points(
    phis,
    alpha: float = scaling.ALPHA,
    beta: float = scaling.BETA,
    gamma: float = scaling.GAMMA,
    base_resolution: int = scaling.BASE_RESOLUTION,
) -> list[SweepPoint]:
    """Formula networks for each φ (see :func:`core.models.scaling.formula_network`).

    Raises:
        ValueError: A φ or base out of range, or a network below 32 px.
    """
    return [
        _point(
            f"φ = {phi:g}",
            scaling.formula_network(phi, alpha, beta, gamma, base_resolution),
            float(phi),
        )
        for phi in phis
    ]


def _batch_sizes(values) -> tuple[int, ...]:
    sizes = tuple(values)
    if not sizes or any(
        isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BATCH for b in sizes
    ):
        raise UserError(
            f"batch sizes must be whole numbers from 1 to {MAX_BATCH}, got {list(sizes)}."
        )
    return tuple(sorted(set(sizes)))


def plan(args: dict) -> tuple[list[SweepPoint], tuple[int, ...], float]:
    """The points, batch sizes and budget a sweep's ``args`` ask for, checked.

    ``args``: either ``variants`` (names, default B0–B3) or ``phis`` with optional ``alpha``,
    ``beta``, ``gamma``, ``base_resolution``; optional ``batch_sizes`` and ``budget_s``.

    Raises:
        ValueError: Anything out of range, with a sentence saying what is allowed.
    """
    if args.get("phis") is not None:
        bases = {k: args[k] for k in ("alpha", "beta", "gamma", "base_resolution") if k in args}
        points = phi_points(args["phis"], **bases)
    else:
        points = variant_points(args.get("variants") or DEFAULT_VARIANTS)
    if not 1 <= len(points) <= MAX_POINTS:
        raise UserError(f"a sweep times 1 to {MAX_POINTS} networks, got {len(points)}.")
    budget = args.get("budget_s", DEFAULT_BUDGET_S)
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float))
        or not (BUDGET_RANGE[0] <= budget <= BUDGET_RANGE[1])
    ):
        raise UserError(
            f"the sweep's budget must be from {BUDGET_RANGE[0]:g} to "
            f"{BUDGET_RANGE[1]:g} seconds, got {budget!r}."
        )
    return points, _batch_sizes(args.get("batch_sizes", DEFAULT_BATCH_SIZES)), float(budget)


def sweep(
    points: list[SweepPoint],
    batch_sizes=DEFAULT_BATCH_SIZES,
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    progress: Progress | None = None,
) -> dict:
    """Time each network's forward pass at each batch size, within ``budget_s`` seconds.

    Returns:
        ``{"device", "batch_sizes", "budget_s", "wall_s", "stopped", "points", "skipped"}``:
        ``points`` holds one dict per network timed (its :class:`SweepPoint` fields, ``timings``
        as :meth:`core.models.timing.Timing.to_dict`, and ``ms_per_image`` by batch size); ``skipped``
        the labels of networks the budget or a stop request left out.
    """
    import keras

    progress = progress if progress is not None else Progress()
    started = time.perf_counter()
    done: list[dict] = []
    stopped = False
    progress.start("Timing networks", total=len(points), unit="network")
    for point in points:
        if progress.stop_requested:
            stopped = True
            break
        if time.perf_counter() - started > budget_s:
            break
        progress.message(f"{point.label}: building and timing ({point.resolution} px)")
        try:
            model = build_model(point.width, point.depth, point.resolution)
            timings = time_forward(
                model,
                batch_sizes,
                flops=point.flops,
                max_runs=_MAX_RUNS,
                budget_s=_PASS_BUDGET_S,
                progress=progress,
                phases=False,
            )
        except Stopped:
            stopped = True
            break
        finally:
            keras.backend.clear_session()  # one network in memory at a time
        done.append(
            {
                **asdict(point),
                "timings": [t.to_dict() for t in timings],
                "ms_per_image": {str(t.batch): t.seconds * 1000 / t.batch for t in timings},
            }
        )
        progress.set_done(len(done))
    return {
        "device": describe_device(),
        "batch_sizes": list(batch_sizes),
        "budget_s": budget_s,
        "wall_s": round(time.perf_counter() - started, 2),
        "stopped": stopped,
        "points": done,
        "skipped": [p.label for p in points[len(done) :]],
    }


def sweep_job(args: dict, progress: Progress) -> dict:
    """Job entry (see :mod:`core.jobs.runner`): :func:`plan` the ``args``, then :func:`sweep`."""

    points, batch_sizes, budget = plan(args)
    progress.begin(describe_device())
    return sweep(points, batch_sizes, budget_s=budget, progress=progress)
