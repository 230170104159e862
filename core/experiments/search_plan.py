"""The plan of an α, β, γ search (:mod:`core.experiments.search`): the candidates on the
constraint surface, the checked settings, and how the time budget is shared among trainings.

Everything here is checked before anything loads, so bad input fails at once (the Scaling page
and ``python -m core scaling search`` call :func:`grid` and :func:`settings` before starting the
job).

Budget: everything counts (data loading, weights, compiling, training, testing). Each training
starts with compiling its step, 30-90 s on a busy 2-core CPU, which cannot be cut short; the
budget is planned as one compile plus an equal share of training time per training
(:func:`training_share`, :class:`Clock`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from core.experiments.search_result import Outcome
from core.models import scaling
from core.platform.errors import UserError
from core.training.options import TrainConfig

TARGET = 2.0  # α·β²·γ²: twice B0's FLOPs at φ = 1
DEFAULT_STEPS = (1.0, 1.15)
BUDGET_RANGE = (30.0, 24 * 3600.0)
DEFAULT_BUDGET_S = 600.0
MAX_CANDIDATES = 12
WEIGHT_SOURCES = ("auto", "imagenet", "lite0", "none")
DEFAULTS = {
    "subset": 1000,
    "test_subset": 500,
    "epochs": 3,
    "batch_size": 32,
    "lr": 1e-3,
    "seed": 0,
    "weights": "auto",
    "budget_s": DEFAULT_BUDGET_S,
}
# The first training step of each candidate includes compiling it: 30-90 s for these networks
# with TensorFlow on a (busy) 2-core CPU, and it cannot be cut short. The budget is planned as
# one compile plus an equal share of training time per training; the compile time is this guess
# until the first candidate has compiled, then the slowest one seen.
_COMPILE_GUESS_S = 30.0
_MIN_TRAIN_S = 10.0  # a training whose share after compiling is below this is not started


@dataclass(frozen=True)
class Candidate:
    """One point on the constraint surface: depth α, width β, resolution γ (at φ = 1)."""

    alpha: float
    beta: float
    gamma: float

    @property
    def constraint(self) -> float:
        """``α·β²·γ²``."""
        return scaling.constraint(self.alpha, self.beta, self.gamma)


def grid(steps=DEFAULT_STEPS, target: float = TARGET) -> list[Candidate]:
    """Candidates with β and γ from ``steps`` and α solved from ``α·β²·γ² = target``.

    α is rounded to two decimals (so the constraint holds to about 1 %); candidates whose α
    falls outside 1–2 are left out.

    Raises:
        ValueError: A step outside 1–2, or no candidate at all.
    """
    values = sorted({float(s) for s in steps})
    for s in values:
        if not math.isfinite(s) or not scaling.BASE_RANGE[0] <= s <= scaling.BASE_RANGE[1]:
            raise UserError(f"search steps must be from 1 to 2, got {s:g}.")
    found = []
    for beta in values:
        for gamma in values:
            alpha = round(target / (beta**2 * gamma**2), 2)
            if scaling.BASE_RANGE[0] <= alpha <= scaling.BASE_RANGE[1]:
                found.append(Candidate(alpha, beta, gamma))
    if not found:
        raise UserError(
            f"no candidate satisfies α·β²·γ² = {target:g} with α from 1 to 2 for "
            f"steps {values}: use steps nearer 1."
        )
    if len(found) > MAX_CANDIDATES:
        raise UserError(
            f"steps {values} give {len(found)} candidates; at most "
            f"{MAX_CANDIDATES} fit a search: use fewer steps."
        )
    return found


def settings(args: dict):
    """The search's training settings from ``args`` (see :func:`search`), checked.

    Returns:
        ``(TrainConfig with the data, subsets and recipe, weights source, budget in seconds)``.

    Raises:
        ValueError: A value out of range or a missing data folder (a sentence saying which).
    """
    values = {**DEFAULTS, **{k: v for k, v in args.items() if v is not None}}
    if values["weights"] not in WEIGHT_SOURCES:
        raise UserError(
            f"weights must be one of {', '.join(WEIGHT_SOURCES)}, got {values['weights']!r}."
        )
    budget = values["budget_s"]
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float))
        or not (BUDGET_RANGE[0] <= budget <= BUDGET_RANGE[1])
    ):
        raise UserError(
            f"the search's budget must be from {BUDGET_RANGE[0]:g} to "
            f"{BUDGET_RANGE[1]:g} seconds, got {budget!r}."
        )
    config = TrainConfig(
        data=str(values.get("data", "cifar10")),
        subset=values["subset"],
        test_subset=values["test_subset"],
        epochs=values["epochs"],
        batch_size=values["batch_size"],
        lr=values["lr"],
        seed=values["seed"],
        optimizer="adam",
        schedule="constant",
        mode="finetune",
    )
    config.validate()
    return config, values["weights"], float(budget)


@dataclass(frozen=True)
class Plan:
    """A checked search.

    Attributes:
        candidates: The points on the constraint surface, in the order they train.
        config: The data, subsets and the recipe every candidate trains with.
        weights: Where width-1 candidates start ("auto", "imagenet", "lite0", "none").
        budget_s: Seconds for everything.
        base_resolution: B0's input size the candidates scale from (None: from the data).
    """

    candidates: tuple[Candidate, ...]
    config: TrainConfig
    weights: str
    budget_s: float
    base_resolution: int | None


def plan(args: dict) -> Plan:
    """The search ``args`` ask for (see :func:`search`), checked before anything loads.

    Raises:
        UserError: Bad steps, a value out of range or a missing data folder.
    """
    candidates = grid(args.get("steps") or DEFAULT_STEPS)
    config, weights, budget = settings(args)
    base = args.get("base_resolution")
    return Plan(tuple(candidates), config, weights, budget, None if base is None else int(base))


def training_share(
    seconds_left: float, trainings: int, compile_s: float, *, all_of_them: bool = False
) -> float:
    """Training seconds (after compiling) for the next training when ``trainings`` are to come.

    Each training costs one compile (``compile_s``) plus an equal share of what is left. If the
    share falls below ``_MIN_TRAIN_S``, fewer trainings are planned (the last ones will be
    skipped), unless ``all_of_them``; 0 when not even one fits.
    """
    for k in [trainings] if all_of_them else range(trainings, 0, -1):
        seconds = seconds_left / k - compile_s
        if seconds >= _MIN_TRAIN_S:
            return seconds
    return 0.0


class Clock:
    """The budget as the search spends it: the deadline, and the slowest compile seen so far
    (a guess until the first candidate has compiled), which every share is planned with."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.compile_s = _COMPILE_GUESS_S

    def share(self, trainings: int, *, all_of_them: bool = False) -> float:
        """:func:`training_share` of the time left now."""
        left = self.deadline - time.monotonic()
        return training_share(left, trainings, self.compile_s, all_of_them=all_of_them)

    def saw(self, outcome: Outcome) -> None:
        """Learn from a finished training how long compiling takes."""
        self.compile_s = max(self.compile_s, outcome.compile_s)
