"""What an α, β, γ search (:mod:`core.experiments.search`) found, typed, and how noisy it is.

The result crosses a process boundary (the search runs as a job; the Scaling page and ``python -m
core scaling search --json`` read it), so each type has ``to_dict()`` and ``from_dict()`` for its
JSON form: one flat dict per candidate, its training's outcome merged in (a skipped candidate has
``status`` "skipped" and no accuracies), and the setup's facts at the top level once the data was
loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Outcome:
    """How one training of a candidate ended.

    Attributes:
        status: "done"; "budget" (cut by its share of the budget); "stopped" (a stop request:
            no accuracies).
        seed: The seed it trained with.
        train_s: Seconds from its first step to its end (compiling included).
        compile_s: Seconds until its first step ended (mostly compiling the step).
        images_seen: Training images it saw.
        epochs_done: ``images_seen`` in epochs of its training subset.
        copied_layers: Layers that started from ImageNet weights.
        layers_with_weights: Layers with weights (the stem normalisation not counted).
        val_accuracy: Accuracy on the validation split (ranks the candidates).
        stderr: The binomial standard error of ``val_accuracy``.
        test_accuracy: Accuracy on the test split, measured once, never used to pick.
    """

    status: str
    seed: int
    train_s: float
    compile_s: float
    images_seen: int
    epochs_done: float
    copied_layers: int
    layers_with_weights: int
    val_accuracy: float | None = None
    stderr: float | None = None
    test_accuracy: float | None = None

    def to_dict(self) -> dict:
        """The JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Outcome:
        """From the JSON form (other keys, such as a candidate's, are ignored)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


@dataclass(frozen=True)
class CandidateResult:
    """One candidate on the constraint surface, its network, where it started and its training.

    Attributes:
        index: Its place in the search's list (0-based).
        alpha, beta, gamma: Depth, width and resolution bases at φ = 1.
        constraint: ``α·β²·γ²``.
        depth, width, resolution: The multipliers and input size they give from the base.
        params, flops: The network's parameters and multiply-adds per image.
        start: "imagenet" (B0's weights, copied by layer name) or "scratch".
        start_detail: Where it started, in words.
        outcome: Its training, or None when the budget or a stop left it untrained.
    """

    index: int
    alpha: float
    beta: float
    gamma: float
    constraint: float
    depth: float
    width: float
    resolution: int
    params: int
    flops: int
    start: str
    start_detail: str
    outcome: Outcome | None = None

    @property
    def status(self) -> str:
        """The outcome's status, or "skipped"."""
        return self.outcome.status if self.outcome else "skipped"

    @property
    def val_accuracy(self) -> float | None:
        """Validation accuracy (None: skipped or stopped)."""
        return self.outcome.val_accuracy if self.outcome else None

    @property
    def stderr(self) -> float | None:
        """The standard error of :attr:`val_accuracy`."""
        return self.outcome.stderr if self.outcome else None

    @property
    def test_accuracy(self) -> float | None:
        """Test accuracy, measured once (None: skipped or stopped)."""
        return self.outcome.test_accuracy if self.outcome else None

    @property
    def label(self) -> str:
        """``"α 1.51 · β 1 · γ 1.15"``."""
        return f"α {self.alpha:g} · β {self.beta:g} · γ {self.gamma:g}"

    def to_dict(self) -> dict:
        """The JSON form: one flat dict, the outcome's keys merged in."""
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "outcome"}
        row.update(status="skipped", val_accuracy=None, test_accuracy=None, stderr=None)
        return {**row, **(self.outcome.to_dict() if self.outcome else {})}

    @classmethod
    def from_dict(cls, values: dict) -> CandidateResult:
        """From the JSON form."""
        own = {f.name: values[f.name] for f in fields(cls) if f.name != "outcome"}
        trained = values.get("status", "skipped") != "skipped"
        return cls(**own, outcome=Outcome.from_dict(values) if trained else None)


@dataclass(frozen=True)
class Repeat:
    """A candidate trained again with another seed, to see how far a seed moves it.

    Attributes:
        candidate: The candidate's index.
        outcome: The repeated training.
    """

    candidate: int
    outcome: Outcome

    @property
    def val_accuracy(self) -> float | None:
        """The repeat's validation accuracy (None: stopped)."""
        return self.outcome.val_accuracy

    def to_dict(self) -> dict:
        """The JSON form: ``candidate`` and the outcome's keys."""
        return {"candidate": self.candidate, **self.outcome.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> Repeat:
        """From the JSON form."""
        return cls(values["candidate"], Outcome.from_dict(values))


@dataclass(frozen=True)
class SearchSetup:
    """What the candidates trained and were measured on, known once data and weights loaded.

    Attributes:
        train_images, val_images, test_images: The splits' sizes after subsetting.
        base_resolution: B0's input size the candidates scale from.
        family: "b0", or "lite0" when the ImageNet weights are the offline Lite0.
        weights: The ImageNet weights, in words ("none (...)" when every candidate is scratch).
        weights_detail: Where they came from.
    """

    train_images: int
    val_images: int
    test_images: int
    base_resolution: int
    family: str
    weights: str
    weights_detail: str


@dataclass(frozen=True)
class SearchResult:
    """The whole search: its settings, each candidate, the repeats, and how far to trust it.

    Attributes:
        data, budget_s, epochs, batch_size, lr, seed: The settings.
        device: Where it ran.
        setup: What it ran on (None when it stopped before the data had loaded).
        candidates: One per candidate, in the search's order.
        repeats: Candidates trained again with another seed.
        stopped: A stop request ended it early.
        best, worst: Indices of the candidates with the highest and lowest validation
            accuracy (None when none was tested).
        spread: The largest change of validation accuracy another seed caused (None: no
            repeat).
        noise: One sentence on whether the ranking means anything (:func:`noise_sentence`).
        wall_s: Seconds the whole search took.
    """

    data: str
    budget_s: float
    epochs: int
    batch_size: int
    lr: float
    seed: int
    device: str
    setup: SearchSetup | None
    candidates: tuple[CandidateResult, ...]
    repeats: tuple[Repeat, ...]
    stopped: bool
    best: int | None
    worst: int | None
    spread: float | None
    noise: str
    wall_s: float

    def to_dict(self) -> dict:
        """The JSON form (a job's result; what ``--json`` prints)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        setup = out.pop("setup")
        out["candidates"] = [c.to_dict() for c in self.candidates]
        out["repeats"] = [r.to_dict() for r in self.repeats]
        return {**out, **(asdict(setup) if setup else {})}

    @classmethod
    def from_dict(cls, values: dict) -> SearchResult:
        """From the JSON form."""
        own = {
            f.name: values[f.name]
            for f in fields(cls)
            if f.name not in ("setup", "candidates", "repeats")
        }
        has_setup = "train_images" in values
        return cls(
            **own,
            setup=SearchSetup(**{f.name: values[f.name] for f in fields(SearchSetup)})
            if has_setup
            else None,
            candidates=tuple(CandidateResult.from_dict(c) for c in values["candidates"]),
            repeats=tuple(Repeat.from_dict(r) for r in values["repeats"]),
        )


# ----- how noisy the ranking is -----------------------------------------------------------------
def seed_spread(candidates, repeats) -> float | None:
    """The largest change of validation accuracy when a candidate was trained again with
    another seed (None when nothing was repeated)."""
    by_index = {c.index: c for c in candidates}
    shifts = [
        abs(r.val_accuracy - by_index[r.candidate].val_accuracy)
        for r in repeats
        if r.val_accuracy is not None and by_index[r.candidate].val_accuracy is not None
    ]
    return max(shifts) if shifts else None


def noise_sentence(candidates, repeats) -> str:
    """One honest sentence on how far the ranking can be trusted: the gap between best and
    worst against twice the largest standard error and the seed-to-seed spread."""
    scored = [c for c in candidates if c.val_accuracy is not None]
    if len(scored) < 2:
        return "Fewer than two candidates were tested: there is nothing to rank."
    accs = [c.val_accuracy for c in scored]
    gap = max(accs) - min(accs)
    stderr = max(c.stderr for c in scored)
    spread = seed_spread(candidates, repeats)
    noise = max(2 * stderr, spread or 0.0)
    seeds = (
        f"another seed moved a candidate by up to {100 * spread:.1f} points"
        if spread is not None
        else "no candidate could be repeated with another seed"
    )
    verdict = (
        "so the best and the worst cannot be told apart: treat the ranking as noise"
        if gap <= noise
        else "so the best beat the worst by more than the noise, but candidates closer than "
        "that are a tie"
    )
    return (
        f"Best minus worst is {100 * gap:.1f} points; one accuracy's standard error is up to "
        f"±{100 * stderr:.1f} points and {seeds}, {verdict}."
    )
