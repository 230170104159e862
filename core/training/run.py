"""One training run: load data, build, train, evaluate, save — and the job that runs it.

Every run is written to a run folder (see :mod:`core.training.runs`). Progress, per-batch and per-epoch
metrics go to a :class:`core.platform.progress.Progress`; a stop request ends training at the end of the
current batch and keeps the best model so far.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from core.data.datasets import managed_job
from core.data.imagefolder import storage_preprocessing
from core.data.loading import load_dataset
from core.models.timing import per_image_latency_ms
from core.platform import paths
from core.platform.errors import UserError, error_kind, error_message
from core.platform.progress import Progress, Stopped
from core.platform.runtime import backend, device_context, device_plan
from core.training.evaluation import evaluate as score
from core.training.features import head_inputs, training_inputs
from core.training.fit import fit, predict_probs
from core.training.network import build_network
from core.training.options import TrainConfig
from core.training.run_writer import RunWriter

# A head on cached features takes ~1 ms a step, so Keras's per-step overhead dominates: run steps
# in groups (progress and stop requests then act every group, ~0.1 s).
_HEAD_STEPS_PER_EXECUTION = 32


@dataclass
class RunResult:
    """What a finished (or stopped) run produced.

    Attributes:
        run_dir: The run folder.
        val_accuracy: Validation accuracy of the saved model (the best epoch's); None when
            stopped before training. Under the blog's protocol this is the test split's.
        test_accuracy: Test accuracy of the saved model, measured once at the end; None when
            stopped before training.
        epochs: Epochs completed (a stopped partial epoch counts).
        wall_s: Seconds from start to saved files, data loading included.
        device: :func:`core.platform.runtime.describe_device` text.
        weights: Which weights the backbone started from (e.g. ``lite0: ImageNet (offline ...)``).
        stopped: True when a stop request ended the run early.
        protocol: How the accuracies were chosen, in words (:attr:`TrainConfig.protocol`).
        best_epoch: The epoch whose weights were saved (None when nothing trained).
    """

    run_dir: Path
    val_accuracy: float | None
    test_accuracy: float | None
    epochs: int
    wall_s: float
    device: str
    weights: str
    stopped: bool
    protocol: str = ""
    best_epoch: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict (the path as a string)."""
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        return out


def _data_label(data: str) -> str:
    if data.strip().lower() == "cifar10":
        return "cifar10"
    name = re.sub(r"[^A-Za-z0-9_.+-]", "-", Path(data).expanduser().resolve().name)
    return name.strip(".-") or "data"


def reserve_run_dir(config: TrainConfig, runs_root) -> RunWriter:
    """Create the run's folder atomically: ``config.name``, or a new time-and-settings name.

    Raises:
        ValueError: ``config.name`` is taken.
    """
    root = Path(runs_root) if runs_root is not None else paths.runs_dir()
    base = (
        f"{time.strftime('%Y%m%d-%H%M%S')}-{_data_label(config.data)}-{config.backbone}-"
        f"{config.mode}-{config.resolution}px"
    )
    return RunWriter.reserve(root, config.name, base)


def load_data(config: TrainConfig, progress: Progress, *, managed_only: bool = False):
    """The dataset ``config`` names, cut to its subsets; under the blog's protocol (validation
    "test") no validation split is carved, and the test split validates. ``managed_only``: the
    name must be "cifar10" or a dataset under the data root (a job from the app)."""

    progress.message("Loading data")
    ds = load_dataset(
        config.data,
        subset=config.subset,
        test_subset=config.test_subset,
        seed=config.seed,
        progress=progress,
        val_fraction=config.val_fraction if config.validation == "split" else 0.0,
        managed_only=managed_only,
    )
    if config.validation == "test":
        ds.x_val, ds.y_val = ds.x_test, ds.y_test
        ds.split += "; validation: the test split (the blog's protocol)"
    if not len(ds.y_val):
        raise UserError(
            "the validation split is empty: raise the validation share, or add "
            "images to the dataset's val/ folder"
        )
    return ds


def evaluate(model, x_test, ds, batch_size: int) -> dict:
    """Score the model on the test split (see :func:`core.training.evaluation.evaluate`)."""

    probs = predict_probs(model, x_test, batch_size)  # evenly split, a batch at a time
    return score(probs, ds.y_test, ds.x_test, ds.class_names)


def train(
    config: TrainConfig,
    progress: Progress | None = None,
    runs_root: Path | None = None,
    *,
    finish: bool = True,
    owner: str | None = None,
    managed_only: bool = False,
    group=None,
) -> RunResult:
    """Train one classifier and save it as a run.

    Args:
        config: The run's settings (validated here).
        progress: Receives phases, per-batch/per-epoch metrics and the final result; its stop
            request ends the run at the end of the current batch.
        runs_root: Parent folder of the run (default :func:`core.platform.paths.runs_dir`).
        finish: End ``progress`` with the result (or the error); False when more work follows
            in the same job (benchmarks).
        owner: Recorded with the run (the app's session owner tag; None from the CLI).
        managed_only: ``config.data`` must be "cifar10" or a dataset under the data root, never
            a path (a job from the app; see :func:`core.data.catalog.resolve`).
        group: This process's place in multi-process data-parallel training (a
            :class:`core.training.distributed.ProcessGroup`, frozen mode only): every process
            of the group calls this with the same config; they train one model together, and
            only process 0 writes the run. None (the default): this process alone.

    Returns:
        The :class:`RunResult` (also passed to ``progress.finish`` as a dict).

    Raises:
        core.platform.errors.UserError: Bad configuration (``OptionError``), a taken run name,
            a data problem (``DataError``) or unavailable weights (``WeightsError``). Nothing is
            left behind for errors found before training starts.
    """
    progress = progress if progress is not None else Progress()
    started = time.time()
    writer: RunWriter | None = None
    try:
        config.validate()
        plan = device_plan() if group is None else group.local_plan()
        device = _describe(plan, group)
        progress.begin(device=device)
        if group is None or group.index == 0:
            writer = reserve_run_dir(config, runs_root)
        else:  # the other processes train the same model and write nothing
            writer = _NoWriter(Path(runs_root or "."))
        with device_context(plan):
            result = _run(config, progress, writer, plan, started, owner, managed_only, group)
    except Exception as exc:
        message = error_message(exc)
        if writer is not None and writer.started:
            try:  # the run has files: record why it failed
                writer.finish(
                    {
                        "status": "error",
                        "error": message,
                        "test_accuracy": None,
                        "wall_s": round(time.time() - started, 2),
                    }
                )
            except OSError:
                pass
        elif writer is not None:
            writer.release()
        if finish:
            progress.finish(error=message, error_kind=error_kind(exc))
        raise
    if finish:
        progress.finish(result=result.to_dict())
    return result


def _run(
    config: TrainConfig,
    progress: Progress,
    writer: RunWriter,
    plan,
    started: float,
    owner: str | None,
    managed_only: bool = False,
    group=None,
) -> RunResult:
    """The body of :func:`train` (inside the device context of ``plan``, a
    :class:`core.platform.runtime.DevicePlan`)."""

    device, on_gpu = _describe(plan, group), plan.on_gpu
    timings: dict[str, float] = {}
    try:
        ds = load_data(config, progress, managed_only=managed_only)
        progress.check_stop()  # no point building a model for a run already stopped
    except Stopped:
        writer.start(config.to_dict(), [], owner=owner)
        return _stopped_early(writer, config.weights, device, started, timings)
    timings["load_s"] = round(time.time() - started, 2)
    progress.message("Building the model")
    net = build_network(config, ds.num_classes, ds.storage_size)
    # Classifying with the run forms predictions as its evaluation did (flip TTA or not).
    preprocessing = replace(storage_preprocessing(ds.storage_size), flip_tta=config.flip_tta)
    writer.start(config.to_dict(), ds.class_names, preprocessing.to_dict(), owner=owner)
    t = time.time()
    try:
        train_model, x_train, x_val, x_test = training_inputs(net, config, ds, progress, on_gpu)
    except Stopped:
        return _stopped_early(writer, net.weights.label, device, started, timings)
    timings["features_s"] = round(time.time() - t, 2)
    t = time.time()
    local = None
    if group is not None:  # the head trains as one model over the group; ``local`` scores it
        local, train_model = train_model, group.replicate(train_model)
    # Each new best is saved at once (atomically): a killed run still leaves its best model.
    common = dict(
        on_gpu=on_gpu, on_epoch=writer.history, on_best=lambda epoch: writer.model(net.model)
    )
    before = None
    two_phase = config.mode == "finetune" and config.head_epochs > 0
    if two_phase:  # first the head alone, on frozen features (the head's layers are shared)
        try:
            head, f_train, f_val = head_inputs(
                net, config, ds, progress, on_gpu, None if config.augment else (x_train, x_val)
            )
        except Stopped:
            return _stopped_early(writer, net.weights.label, device, started, timings)
        before = fit(
            head,
            f_train,
            ds.y_train,
            (f_val, ds.y_val),
            config,
            progress,
            epochs=config.head_epochs,
            steps_per_execution=_HEAD_STEPS_PER_EXECUTION,
            phase="head",
            label="Training the head",
            **common,
        )
        del f_train, f_val
        if before[0]:
            progress.mark(len(before[0]), "fine-tuning starts")
    if progress.stop_requested and before is not None:
        rows, best_epoch = before
    else:
        grouped = _HEAD_STEPS_PER_EXECUTION if config.mode == "frozen" else 1
        rows, best_epoch = fit(
            train_model,
            x_train,
            ds.y_train,
            (x_val, ds.y_val),
            config,
            progress,
            steps_per_execution=grouped,
            before=before,
            phase="finetune" if two_phase else None,
            label="Fine-tuning" if two_phase else "Training",
            group=group,
            local=local,
            **common,
        )
    timings["train_s"] = round(time.time() - t, 2)
    progress.message("Evaluating on the test split")
    scored = train_model if local is None else local
    scores = evaluate(scored, x_test, ds, config.batch_size)  # the one look at the test split
    best = rows[best_epoch - 1] if best_epoch else {}
    stopped = progress.stop_requested
    wall = round(time.time() - started, 2)
    writer.finish(
        {
            "status": "stopped" if stopped else "done",
            "stop_reason": progress.snapshot().stop_reason if stopped else None,
            "test_accuracy": scores["accuracy"],
            "val_accuracy": best.get("val_accuracy"),
            "protocol": config.protocol,
            "epochs": len(rows),
            "best_epoch": best_epoch,
            "early_stopped": bool(
                config.patience
                and best_epoch
                and not stopped
                and len(rows) < config.epochs + (config.head_epochs if two_phase else 0)
            ),
            "last_epoch_val_accuracy": rows[-1]["val_accuracy"] if rows else None,
            "per_class_accuracy": scores["per_class"],
            "class_metrics": scores["metrics"]["per_class"],
            "macro": scores["metrics"]["macro"],
            "wall_s": wall,
            "timings": timings,
            "device": device,
            "backend": backend(),
            "precision": plan.policy,
            "devices": len(plan.devices) if group is None else group.device_count,
            **({} if group is None else {"processes": group.count}),
            "weights": net.weights.label,
            "weights_detail": net.weights.detail,
            "data_source": ds.source,
            "split": ds.split,
            "skipped": ds.skipped,
            "train_images": len(ds.y_train),
            "val_images": len(ds.y_val),
            "test_images": len(ds.y_test),
            # batch 1, saved model (measured once, by the process that writes the run)
            "latency_ms": per_image_latency_ms(
                net.model, skip=stopped or (group is not None and group.index != 0)
            ),
        },
        scores["confusion"],
        scores["predictions"],
    )
    return RunResult(
        writer.path,
        best.get("val_accuracy"),
        scores["accuracy"],
        len(rows),
        wall,
        device,
        net.weights.label,
        stopped,
        config.protocol,
        best_epoch,
    )


def _describe(plan, group) -> str:
    """The device line of a run: ``plan``'s, or the whole process group's."""
    return plan.describe() if group is None else group.describe(plan)


class _NoWriter(RunWriter):
    """The run writer of a data-parallel process other than 0: it writes nothing."""

    def start(self, *args, **kwargs) -> None:
        pass

    def history(self, rows: list[dict]) -> None:
        pass

    def model(self, model) -> None:
        pass

    def finish(self, *args, **kwargs) -> None:
        pass

    def release(self) -> None:
        pass

    @property
    def started(self) -> bool:
        return False


def _stopped_early(
    writer: RunWriter, weights: str, device: str, started: float, timings: dict
) -> RunResult:
    """Record a run stopped before training began (nothing trained, so no model)."""
    wall = round(time.time() - started, 2)
    writer.finish(
        {
            "status": "stopped",
            "test_accuracy": None,
            "epochs": 0,
            "wall_s": wall,
            "device": device,
            "weights": weights,
            "timings": timings,
        }
    )
    return RunResult(writer.path, None, None, 0, wall, device, weights, True)


def train_job(args: dict, progress: Progress) -> dict:
    """Job entry (see :mod:`core.jobs.runner`): train the config in ``args["config"]``.

    ``args`` holds ``config`` (a :meth:`TrainConfig.to_dict`) and optionally ``runs_root`` and
    ``owner`` (recorded with the run). From the app (``args["managed"]``) the config's data is
    a dataset ref that ``args["user"]`` may use, checked again here before anything is made
    (:func:`core.data.datasets.managed_job`).
    """
    config = TrainConfig.from_dict(args["config"])
    managed = managed_job(args, config.data)
    root = args.get("runs_root")
    return train(
        config,
        progress,
        Path(root) if root else None,
        owner=args.get("owner"),
        managed_only=managed,
    ).to_dict()
