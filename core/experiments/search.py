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
training removes: the comparison is between (architecture, start) pairs.

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

import math
import time
from dataclasses import dataclass

import numpy as np

from core.data.datasets import managed_job
from core.models import scaling
from core.platform.progress import Progress, Stopped

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
# Keras's EfficientNet BatchNorm keeps moving averages with momentum 0.99: after the ~100 steps of a
# short training they are still mostly their starting values, and a network trained from scratch
# then predicts one class at test time. 0.9 lets them follow the training within a few dozen steps.
_BN_MOMENTUM = 0.9


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
            raise ValueError(f"search steps must be from 1 to 2, got {s:g}.")
    found = []
    for beta in values:
        for gamma in values:
            alpha = round(target / (beta**2 * gamma**2), 2)
            if scaling.BASE_RANGE[0] <= alpha <= scaling.BASE_RANGE[1]:
                found.append(Candidate(alpha, beta, gamma))
    if not found:
        raise ValueError(
            f"no candidate satisfies α·β²·γ² = {target:g} with α from 1 to 2 for "
            f"steps {values}: use steps nearer 1."
        )
    if len(found) > MAX_CANDIDATES:
        raise ValueError(
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
    from core.training.options import TrainConfig

    values = {**DEFAULTS, **{k: v for k, v in args.items() if v is not None}}
    if values["weights"] not in WEIGHT_SOURCES:
        raise ValueError(
            f"weights must be one of {', '.join(WEIGHT_SOURCES)}, got {values['weights']!r}."
        )
    budget = values["budget_s"]
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float))
        or not (BUDGET_RANGE[0] <= budget <= BUDGET_RANGE[1])
    ):
        raise ValueError(
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


# ----- one candidate ------------------------------------------------------------------------------
def _source_weights(source: str, resolution: int):
    """B0's ImageNet weights: ``(family "b0" or "lite0", weights by layer name, the stem
    normalisation's weights, WeightsInfo)``."""
    import keras

    from core.models.weights import load_backbone

    model, info = load_backbone(
        "b0", source, input_shape=(resolution, resolution, 3), include_top=False, pooling="avg"
    )
    by_name = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    normalization = norm.get_weights()
    keras.backend.clear_session()
    return info.variant, by_name, normalization, info


def _copy_matching(backbone, by_name: dict, normalization, *, imagenet: bool) -> tuple[int, int]:
    """Copy the stem normalisation (if given), and with ``imagenet`` every layer whose name and
    shapes match; returns ``(layers copied, layers with weights)`` (normalisation not counted)."""
    import keras

    copied = total = 0
    for layer in backbone.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Normalization):  # Keras numbers these per model
            if normalization is not None:
                layer.set_weights(normalization)
                layer.finalize_state()
            continue
        total += 1
        source = by_name.get(layer.name) if imagenet else None
        if source is not None and [w.shape for w in source] == [
            tuple(w.shape) for w in layer.weights
        ]:
            layer.set_weights(source)
            copied += 1
    return copied, total


def _deadline_callback(
    progress: Progress, train_s: float, deadline: float, batch_size: int, n: int
):
    """A Keras callback counting images into ``progress`` that ends training ``train_s`` seconds
    after the first step (which includes compiling), at ``deadline`` (``time.monotonic()``) or on
    a stop request; ``.shown`` is the images of this epoch, ``.first_step_at`` when the first
    step ended."""
    import keras

    class Deadline(keras.callbacks.Callback):
        shown = 0
        first_step_at = None

        def on_epoch_begin(self, epoch, logs=None):
            self.shown = 0

        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            if self.first_step_at is None:
                self.first_step_at = now
            done = min(n, (batch + 1) * batch_size)
            progress.advance(done - self.shown)
            self.shown = done
            if self.over(now):
                self.model.stop_training = True

        def over(self, now: float) -> bool:
            """True once training should end (stop request, its share or the budget spent)."""
            return (
                progress.stop_requested
                or now >= deadline
                or (self.first_step_at is not None and now >= self.first_step_at + train_s)
            )

    return Deadline()


def train_candidate(
    c: Candidate,
    ds,
    config,
    family: str,
    source: dict,
    *,
    imagenet: bool,
    base_resolution: int,
    seed: int,
    train_s: float,
    deadline: float,
    on_gpu: bool,
    progress: Progress,
) -> dict:
    """Build candidate ``c``, train it for ``config.epochs``, or ``train_s`` seconds after its
    first step, or until ``deadline`` (``time.monotonic()``), and test it.

    Every layer trains (BatchNorm too, its moving averages with momentum ``_BN_MOMENTUM``):
    candidates from scratch need it, and the same recipe for all keeps the comparison about the
    architecture and its start.

    Args:
        source: ``{"by_name": layer name → weights, "normalization": stem weights or None}``.
        imagenet: Copy the matching layers from ``source`` (else only the normalisation).

    Returns:
        A dict: images seen, epochs done, seconds (``compile_s``: until the first step ended,
        mostly compiling the step), test accuracy and its binomial standard error, layers
        copied, and ``status`` ("done"; "budget": cut by its share of the budget;
        "stopped": a stop request, no accuracy).
    """
    import keras

    from core.models.efficientnet import build_efficientnet
    from core.training.fit import compile_model, predict

    keras.utils.set_random_seed(seed)
    m = scaling.multipliers(1, c.alpha, c.beta, c.gamma, base_resolution)
    size = m.resolution
    backbone = build_efficientnet(
        family,
        width=m.width,
        depth=m.depth,
        include_top=False,
        pooling="avg",
        input_shape=(size, size, 3),
        model_name="candidate_backbone",
    )
    copied, total = _copy_matching(
        backbone, source["by_name"], source["normalization"], imagenet=imagenet
    )
    for layer in backbone.layers:  # see _BN_MOMENTUM
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = _BN_MOMENTUM
    inputs = keras.Input((ds.storage_size, ds.storage_size, 3), name="image")
    x = inputs if size == ds.storage_size else keras.layers.Resizing(size, size)(inputs)
    head = keras.layers.Dense(
        ds.num_classes,
        activation="softmax",
        dtype="float32",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
    )
    model = keras.Model(inputs, head(backbone(x)))
    n = len(ds.y_train)
    compile_model(model, config, n, config.epochs, on_gpu)
    callback = _deadline_callback(progress, train_s, deadline, config.batch_size, n)
    started, seen = time.monotonic(), 0
    for epoch in range(config.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        model.fit(
            ds.x_train[order],
            ds.y_train[order],
            batch_size=config.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=False,
            callbacks=[callback],
            verbose=0,
        )
        seen += callback.shown
        if callback.over(time.monotonic()):
            break
    elapsed = time.monotonic() - started
    status = (
        "stopped" if progress.stop_requested else "done" if seen >= n * config.epochs else "budget"
    )
    scores = {"val_accuracy": None, "stderr": None, "test_accuracy": None}
    if status != "stopped":  # validation ranks the candidates; the test split is measured once
        for key, x, y in (
            ("val_accuracy", ds.x_val, ds.y_val),
            ("test_accuracy", ds.x_test, ds.y_test),
        ):
            scores[key] = float((predict(model, x, 256).argmax(axis=1) == y).mean())
        acc = scores["val_accuracy"]
        scores["stderr"] = math.sqrt(acc * (1 - acc) / len(ds.y_val))
    keras.backend.clear_session()
    compile_s = (callback.first_step_at or time.monotonic()) - started
    return {
        "status": status,
        **scores,
        "seed": seed,
        "train_s": round(elapsed, 2),
        "compile_s": round(compile_s, 2),
        "images_seen": int(seen),
        "epochs_done": round(seen / n, 3),
        "copied_layers": copied,
        "layers_with_weights": total,
    }


# ----- the search ---------------------------------------------------------------------------------
def seed_spread(candidates: list[dict], repeats: list[dict]) -> float | None:
    """The largest change of validation accuracy when a candidate was trained again with
    another seed (None when nothing was repeated)."""
    shifts = [
        abs(r["val_accuracy"] - candidates[r["candidate"]]["val_accuracy"])
        for r in repeats
        if r.get("val_accuracy") is not None
    ]
    return max(shifts) if shifts else None


def noise_sentence(candidates: list[dict], repeats: list[dict]) -> str:
    """One honest sentence on how far the ranking can be trusted: the gap between best and
    worst against twice the largest standard error and the seed-to-seed spread."""
    scored = [c for c in candidates if c.get("val_accuracy") is not None]
    if len(scored) < 2:
        return "Fewer than two candidates were tested: there is nothing to rank."
    accs = [c["val_accuracy"] for c in scored]
    gap = max(accs) - min(accs)
    stderr = max(c["stderr"] for c in scored)
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


def _candidate_rows(candidates: list[Candidate], base: int, classes: int, info) -> list[dict]:
    """One result row per candidate before training: coefficients, size, cost, where it starts
    (``info``: the ImageNet weights' :class:`core.models.weights.WeightsInfo`, or None for none)."""
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
            {
                "index": i,
                "alpha": c.alpha,
                "beta": c.beta,
                "gamma": c.gamma,
                "constraint": c.constraint,
                "depth": m.depth,
                "width": m.width,
                "resolution": m.resolution,
                "params": net.params,
                "flops": net.flops,
                "start": "imagenet" if imagenet else "scratch",
                "start_detail": detail,
                "status": "skipped",
                "val_accuracy": None,
                "test_accuracy": None,
                "stderr": None,
            }
        )
    return rows


def search(args: dict, progress: Progress | None = None) -> dict:
    """Search α, β, γ as described in the module docstring.

    ``args``: ``data`` (as for training), ``budget_s``, ``steps`` (β and γ values, see
    :func:`grid`), ``subset``, ``test_subset``, ``epochs``, ``batch_size``, ``lr``, ``seed``,
    ``weights`` (auto, imagenet, lite0 or none) and ``base_resolution`` (default: the
    dataset's storage size, at least 32); from the app also ``managed`` and ``user``
    (:func:`core.data.datasets.managed_job`: the dataset is checked again, by name only).

    Returns:
        A JSON-ready dict: the settings, the device and weights used, one dict per candidate
        (α, β, γ, constraint, multipliers, resolution, params, FLOPs, ``start`` "imagenet" or
        "scratch", the training outcome), the ``repeats`` with another seed, ``best``,
        ``worst`` (candidate indices), ``spread`` and the ``noise`` sentence.

    Raises:
        ValueError: Bad arguments or data (nothing is trained).
        core.models.weights.WeightsError: Requested ImageNet weights unavailable.
    """
    from core.data.loading import load_dataset, subsample
    from core.platform.runtime import accelerators, describe_device, device_context

    progress = progress if progress is not None else Progress()
    candidates = grid(args.get("steps") or DEFAULT_STEPS)
    config, weights, budget = settings(args)
    managed = managed_job(args, config.data)  # from the app: the visitor's dataset, checked again
    base = args.get("base_resolution")
    started = time.monotonic()
    deadline = started + budget
    device = describe_device()
    progress.begin(device)
    out = {
        "data": config.data,
        "budget_s": budget,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": config.seed,
        "device": device,
        "stopped": False,
        "candidates": [],
        "repeats": [],
    }
    on_gpu = bool(accelerators())
    try:
        progress.message("Loading data")
        ds = load_dataset(
            config.data,
            test_subset=config.test_subset,
            seed=config.seed,
            progress=progress,
            managed_only=managed,
        )
        if not len(ds.y_val):
            raise ValueError(
                "the search ranks candidates on a validation split, and this "
                "dataset has none: add images, or a val/ folder"
            )
        # Validation as large as the test subset (not shrunk with the training subset): the
        # ranking's noise is set by it.
        ds.x_val, ds.y_val = subsample(
            ds.x_val, ds.y_val, config.test_subset or len(ds.y_val), config.seed
        )
        if config.subset:
            ds.x_train, ds.y_train = subsample(ds.x_train, ds.y_train, config.subset, config.seed)
        base = int(base) if base is not None else max(32, ds.storage_size)
        scaling.multipliers(1, 1.0, 1.0, 1.0, base)  # checks the base resolution's range
        if weights == "none":  # every candidate from scratch, Keras's own stem normalisation
            family, by_name, normalization, info = "b0", {}, None, None
        else:
            progress.message("Loading B0's ImageNet weights")
            with device_context(on_gpu):
                family, by_name, normalization, info = _source_weights(weights, base)
        out.update(
            train_images=len(ds.y_train),
            val_images=len(ds.y_val),
            test_images=len(ds.y_test),
            base_resolution=base,
            family=family,
            weights=info.label if info else "none (every candidate from scratch)",
            weights_detail=info.detail if info else "",
        )
        rows = _candidate_rows(candidates, base, ds.num_classes, info)
        progress.check_stop()  # before any compiling: a stop request ends the search at once
        out["candidates"] = rows
        source = {"by_name": by_name, "normalization": normalization}
        compile_est = [_COMPILE_GUESS_S]  # the slowest compile seen (a list: updated in run)

        def share(trainings: int, all_of_them: bool = False) -> float:
            return training_share(
                deadline - time.monotonic(), trainings, compile_est[0], all_of_them=all_of_them
            )

        def run(row: dict, seed: int, train_s: float) -> None:
            """Train one candidate (or repeat it with another seed) and record the outcome."""
            c = candidates[row["index"]]
            label = (
                f"{'Repeat with seed ' + str(seed) if seed != config.seed else 'Candidate'}"
                f" {row['index'] + 1}/{len(rows)}: α={c.alpha:g}, β={c.beta:g}, "
                f"γ={c.gamma:g} ({row['start']})"
            )
            progress.message(label)
            progress.start(label, total=len(ds.y_train) * config.epochs, unit="img")
            result = train_candidate(
                c,
                ds,
                config,
                family,
                source,
                base_resolution=base,
                imagenet=row["start"] == "imagenet",
                seed=seed,
                train_s=train_s,
                deadline=deadline,
                on_gpu=on_gpu,
                progress=progress,
            )
            compile_est[0] = max(compile_est[0], result["compile_s"])
            if seed == config.seed:
                row.update(result)
            else:
                out["repeats"].append({"candidate": row["index"], **result})
            if result["status"] == "stopped":
                raise Stopped("stopped by request")

        with device_context(on_gpu):
            repeats = min(2, len(rows))  # planned; dropped first when the budget is short
            for i, row in enumerate(rows):
                left = len(rows) - i
                if not share(left + repeats, all_of_them=True):
                    repeats = 0  # the planned repeats don't fit: every candidate comes first
                seconds = share(left + repeats)
                if not seconds:
                    break  # not even one more training fits: the rest stay "skipped"
                run(row, config.seed, seconds)
            scored = [r for r in rows if r["val_accuracy"] is not None]
            if scored and all(r["status"] != "skipped" for r in rows):
                best = max(scored, key=lambda r: r["val_accuracy"])
                worst = min(scored, key=lambda r: r["val_accuracy"])
                picks = [best] if best is worst else [best, worst]
                for j, row in enumerate(picks):  # the same candidate again, another seed
                    seconds = share(len(picks) - j)
                    if not seconds:
                        break
                    run(row, config.seed + 1, seconds)
    except Stopped:
        out["stopped"] = True
    scored = [r for r in out["candidates"] if r.get("val_accuracy") is not None]
    out["best"] = max(scored, key=lambda r: r["val_accuracy"])["index"] if scored else None
    out["worst"] = min(scored, key=lambda r: r["val_accuracy"])["index"] if scored else None
    out["spread"] = seed_spread(out["candidates"], out["repeats"])
    out["noise"] = noise_sentence(out["candidates"], out["repeats"])
    out["wall_s"] = round(time.monotonic() - started, 2)
    return out


def search_job(args: dict, progress: Progress) -> dict:
    """Job entry (see :mod:`core.jobs.runner`): :func:`search` with ``args``."""
    return search(args, progress)
