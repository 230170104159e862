"""The paper's own method at small scale: search α, β, γ under α·β²·γ² ≈ 2 at φ = 1.

Tan & Le fixed φ = 1 (twice B0's resources) and grid-searched depth α, width β and resolution γ
under ``α·β²·γ² ≈ 2`` on ImageNet. Here the same search runs on the user's dataset within a time
budget: a few candidates on the constraint surface (:func:`grid`), each a B0 scaled by (α, β, γ)
and trained briefly on a subset with the same recipe and an equal share of the budget.

Where each candidate starts:

- width β = 1 (B0's channels): from **B0's ImageNet weights**, copied layer by layer by name;
  blocks that B0 lacks (depth α > 1 adds blocks) start random. The weights are the official
  Keras B0 when cached or downloadable, else the offline **Lite0** weights (:mod:`core.models.weights`);
  with Lite0 every candidate is a Lite0-style network (no squeeze-excite, relu6), so all
  candidates stay one family.
- β ≠ 1 changes the convolutions' shapes, so those candidates start **from scratch**.

Each candidate's result says which. ImageNet-started candidates have a head start no short
training removes: the comparison is between (architecture, start) pairs. Training one candidate
is :mod:`core.experiments.search_training`; the typed result is
:mod:`core.experiments.search_result`.

Budget: everything counts (data loading, weights, compiling, training, testing). Each training
starts with compiling its step, 30-90 s on a busy 2-core CPU, which cannot be cut short; the
budget is planned as one compile plus an equal share of training time per training, the planned
repeats are dropped first when it is short, and candidates that no longer fit are reported as
skipped.

Honest numbers: candidates are ranked on a **validation** split held out of the training data
(as many images as the test subset, stratified, seeded); each candidate's test accuracy is
measured once, after its training, and reported beside it, never used to pick.

Noise: with a few hundred validation images one accuracy has a standard error of a few points,
and another seed moves a briefly trained network by as much. The search reports the binomial
standard error of each validation accuracy and retrains the best and the worst candidate with
another seed when the budget allows; the result's ``noise`` sentence says whether the ranking
means anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from core.data.datasets import managed_job
from core.data.loading import Dataset, load_dataset, subsample
from core.experiments.search_plan import (
    DEFAULT_BUDGET_S,
    DEFAULT_STEPS,
    DEFAULTS,
    WEIGHT_SOURCES,
    Candidate,
    Clock,
    Plan,
    grid,
    plan,
    settings,
    training_share,
)
from core.experiments.search_result import (
    CandidateResult,
    Outcome,
    Repeat,
    SearchResult,
    SearchSetup,
    noise_sentence,
    seed_spread,
)
from core.experiments.search_training import StartingWeights, starting_weights, train_candidate
from core.models import scaling
from core.platform.errors import UserError
from core.platform.progress import Progress, Stopped
from core.platform.runtime import accelerators, describe_device, device_context
from core.training.options import TrainConfig

# The plan's names are the search's public surface too (the Scaling page and the CLI use them).
__all__ = [
    "DEFAULTS",
    "DEFAULT_BUDGET_S",
    "DEFAULT_STEPS",
    "WEIGHT_SOURCES",
    "Candidate",
    "Plan",
    "SearchResult",
    "grid",
    "noise_sentence",
    "plan",
    "search",
    "search_job",
    "settings",
    "training_share",
]
_REPEATS = 2  # the best and the worst, trained again with another seed


# ----- the search --------------------------------------------------------------------------------
def search(args: dict, progress: Progress | None = None) -> SearchResult:
    """Search α, β, γ as described in the module docstring: plan, load, train the candidates,
    rank them on validation (each test accuracy measured once, beside it), repeat the best and
    the worst with another seed, and say how noisy it all is.

    ``args``: ``data`` (as for training), ``budget_s``, ``steps`` (β and γ values, see
    :func:`grid`), ``subset``, ``test_subset``, ``epochs``, ``batch_size``, ``lr``, ``seed``,
    ``weights`` (auto, imagenet, lite0 or none) and ``base_resolution`` (default: the
    dataset's storage size, at least 32); from the app also ``managed`` and ``user``
    (:func:`core.data.datasets.managed_job`: the dataset ref is checked again for the job's
    workspace and resolved under the data root only).

    A stop request ends it early (``stopped``): candidates not trained are listed as skipped
    (none are listed when it stopped while the data loaded).

    Raises:
        UserError: Bad arguments or data (nothing is trained), or requested ImageNet weights
            unavailable (``WeightsError``).
    """
    progress = progress if progress is not None else Progress()
    # From the app: the workspace's dataset, checked again before anything else reads it.
    managed = managed_job(args, str(args.get("data") or "cifar10"))
    checked = plan(args)
    config = checked.config
    started = time.monotonic()
    clock = Clock(deadline=started + checked.budget_s)
    device = describe_device()
    progress.begin(device)
    on_gpu = bool(accelerators())
    setup, rows, repeats, interrupted = None, (), (), False
    try:
        ds = _load_data(config, progress, managed_only=managed)
        base = _base_resolution(checked.base_resolution, ds)
        start = _load_weights(checked.weights, base, on_gpu, progress)
        setup = _setup(ds, base, start)
        rows = _candidate_rows(checked.candidates, base, ds.num_classes, start.info)
        progress.check_stop()  # before any compiling: a stop request ends the search at once
        trainer = _Trainer(config, ds, base, start, clock, on_gpu, progress, len(rows))
        with device_context(on_gpu):
            rows = _train_candidates(rows, trainer)  # each scored on validation and test, once
            repeats = _repeat_best_and_worst(rows, trainer)
    except Stopped:
        interrupted = True
    return _result(checked, device, setup, rows, repeats, interrupted, started)


def search_job(args: dict, progress: Progress) -> dict:
    """Job entry (see :mod:`core.jobs.runner`): :func:`search` with ``args``, in its JSON form."""
    return search(args, progress).to_dict()


# ----- the steps ---------------------------------------------------------------------------------
def _load_data(config: TrainConfig, progress: Progress, *, managed_only: bool = False) -> Dataset:
    """The dataset: the training subset, and a validation split as large as the test subset (not
    shrunk with the training subset: the ranking's noise is set by it). ``managed_only``: the
    data must be "cifar10" or a dataset under the data root (a job from the app)."""
    progress.message("Loading data")
    ds = load_dataset(
        config.data,
        test_subset=config.test_subset,
        seed=config.seed,
        progress=progress,
        managed_only=managed_only,
    )
    if not len(ds.y_val):
        raise UserError(
            "the search ranks candidates on a validation split, and this "
            "dataset has none: add images, or a val/ folder"
        )
    ds.x_val, ds.y_val = subsample(
        ds.x_val, ds.y_val, config.test_subset or len(ds.y_val), config.seed
    )
    if config.subset:
        ds.x_train, ds.y_train = subsample(ds.x_train, ds.y_train, config.subset, config.seed)
    return ds


def _base_resolution(requested: int | None, ds: Dataset) -> int:
    """The base the candidates scale from: as requested, else the images' size (at least 32)."""
    base = requested if requested is not None else max(32, ds.storage_size)
    scaling.multipliers(1, 1.0, 1.0, 1.0, base)  # checks the base resolution's range
    return base


def _load_weights(source: str, base: int, on_gpu: bool, progress: Progress) -> StartingWeights:
    if source != "none":
        progress.message("Loading B0's ImageNet weights")
    with device_context(on_gpu):
        return starting_weights(source, base)


def _setup(ds: Dataset, base: int, start: StartingWeights) -> SearchSetup:
    info = start.info
    return SearchSetup(
        train_images=len(ds.y_train),
        val_images=len(ds.y_val),
        test_images=len(ds.y_test),
        base_resolution=base,
        family=start.family,
        weights=info.label if info else "none (every candidate from scratch)",
        weights_detail=info.detail if info else "",
    )


def _candidate_rows(candidates, base: int, classes: int, info) -> tuple[CandidateResult, ...]:
    """One untrained result per candidate: coefficients, size, cost, where it starts (``info``:
    the ImageNet weights' :class:`core.models.weights.WeightsInfo`, or None for none)."""
    rows = []
    for i, c in enumerate(candidates):
        m = scaling.multipliers(1, c.alpha, c.beta, c.gamma, base)
        net = scaling.network(m.width, m.depth, m.resolution, classes=classes)
        imagenet = info is not None and c.beta == 1.0
        if imagenet:
            detail = f"B0's ImageNet weights ({info.label}); blocks B0 lacks start random"
        elif info is not None:
            detail = "from scratch (width ≠ 1 changes the convolutions' shapes)"
        else:
            detail = "from scratch (weights: none)"
        rows.append(
            CandidateResult(
                index=i,
                alpha=c.alpha,
                beta=c.beta,
                gamma=c.gamma,
                constraint=c.constraint,
                depth=m.depth,
                width=m.width,
                resolution=m.resolution,
                params=net.params,
                flops=net.flops,
                start="imagenet" if imagenet else "scratch",
                start_detail=detail,
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class _Trainer:
    """Trains one search's candidates: the same data, start, recipe and clock for each."""

    config: TrainConfig
    ds: Dataset
    base: int
    start: StartingWeights
    clock: Clock
    on_gpu: bool
    progress: Progress
    count: int  # candidates in the search, for the progress line

    def train(self, row: CandidateResult, seed: int, train_s: float) -> Outcome:
        """Train ``row``'s candidate with ``seed`` for at most ``train_s`` seconds after compiling."""
        kind = "Candidate" if seed == self.config.seed else f"Repeat with seed {seed}"
        label = (
            f"{kind} {row.index + 1}/{self.count}: α={row.alpha:g}, β={row.beta:g}, "
            f"γ={row.gamma:g} ({row.start})"
        )
        self.progress.message(label)
        self.progress.start(label, total=len(self.ds.y_train) * self.config.epochs, unit="img")
        outcome = train_candidate(
            scaling.multipliers(1, row.alpha, row.beta, row.gamma, self.base),
            self.ds,
            self.config,
            self.start,
            imagenet=row.start == "imagenet",
            seed=seed,
            train_s=train_s,
            deadline=self.clock.deadline,
            on_gpu=self.on_gpu,
            progress=self.progress,
        )
        self.clock.saw(outcome)
        return outcome


def _train_candidates(rows, trainer: _Trainer) -> tuple[CandidateResult, ...]:
    """Train the candidates in order, each with an equal share of what is left; returns the rows
    with their outcomes. Candidates come before the planned repeats: the repeats are dropped
    once they would squeeze a candidate out. Those that no longer fit stay untrained
    ("skipped"); a stop request ends the loop."""
    trained = list(rows)
    repeats = min(_REPEATS, len(rows))
    for i, row in enumerate(rows):
        left = len(rows) - i
        if not trainer.clock.share(left + repeats, all_of_them=True):
            repeats = 0  # the planned repeats don't fit: every candidate comes first
        seconds = trainer.clock.share(left + repeats)
        if not seconds:
            break  # not even one more training fits
        trained[i] = replace(row, outcome=trainer.train(row, trainer.config.seed, seconds))
        if trained[i].status == "stopped":
            break
    return tuple(trained)


def _ranked(rows) -> tuple[CandidateResult | None, CandidateResult | None]:
    """The best and the worst candidate on validation (None, None when none was tested)."""
    scored = [r for r in rows if r.val_accuracy is not None]
    if not scored:
        return None, None
    key = lambda r: r.val_accuracy  # noqa: E731
    return max(scored, key=key), min(scored, key=key)


def _repeat_best_and_worst(rows, trainer: _Trainer) -> tuple[Repeat, ...]:
    """Train the best and the worst candidate again with another seed, as far as the budget
    allows: how far a seed moves them says how noisy the ranking is. Nothing is repeated unless
    every candidate was trained."""
    if not rows or any(r.status in ("skipped", "stopped") for r in rows):
        return ()
    best, worst = _ranked(rows)
    picks = [best] if best is worst else [best, worst]
    repeats = []
    for j, row in enumerate(picks):
        seconds = trainer.clock.share(len(picks) - j)
        if not seconds:
            break
        repeats.append(Repeat(row.index, trainer.train(row, trainer.config.seed + 1, seconds)))
        if repeats[-1].outcome.status == "stopped":
            break
    return tuple(repeats)


def _result(checked: Plan, device, setup, rows, repeats, interrupted: bool, started: float):
    """The :class:`SearchResult`: the settings, each candidate, the repeats, the best and the
    worst on validation, and how noisy the ranking is."""
    config = checked.config
    outcomes = [r.outcome for r in rows if r.outcome] + [r.outcome for r in repeats]
    best, worst = _ranked(rows)
    return SearchResult(
        data=config.data,
        budget_s=checked.budget_s,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        device=device,
        setup=setup,
        candidates=rows,
        repeats=repeats,
        stopped=interrupted or any(o.status == "stopped" for o in outcomes),
        best=best.index if best else None,
        worst=worst.index if worst else None,
        spread=seed_spread(rows, repeats),
        noise=noise_sentence(rows, repeats),
        wall_s=round(time.monotonic() - started, 2),
    )
