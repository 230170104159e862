"""Timing a Keras model's forward pass on this machine: the measured cost the Scaling page shows
(:mod:`core.experiments.measure`, :mod:`core.experiments.sweep`) and a trained run's per-image
latency. The model runs through Keras's compiled inference step (``predict_on_batch``: a
``tf.function`` or ``jax.jit``), as inference normally runs; an untimed warm-up pass per batch
size pays for tracing."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from core.platform.progress import Progress


@dataclass(frozen=True)
class Timing:
    """Forward-pass timing at one batch size.

    Attributes:
        batch: Images per forward pass.
        seconds: Median wall time of one pass (after one untimed warm-up pass).
        runs: How many timed passes the median is over.
        flops: Multiply-adds of one image, from :mod:`core.models.scaling` (0 if unknown).
    """

    batch: int
    seconds: float
    runs: int
    flops: int = 0

    @property
    def images_per_s(self) -> float:
        """Images per second at this batch size."""
        return self.batch / self.seconds

    def to_dict(self) -> dict:
        """JSON-ready dict, with the derived rates."""
        return {
            "batch": self.batch,
            "seconds": self.seconds,
            "runs": self.runs,
            "flops": self.flops,
            "images_per_s": self.images_per_s,
            "gmacs_per_s": self.gmacs_per_s,
        }

    @classmethod
    def from_dict(cls, values: dict) -> Timing:
        """The inverse of :meth:`to_dict`."""
        return cls(
            int(values["batch"]),
            float(values["seconds"]),
            int(values["runs"]),
            int(values.get("flops", 0)),
        )

    @property
    def gmacs_per_s(self) -> float:
        """Achieved billions of multiply-adds per second (0 when FLOPs are unknown)."""
        return self.flops * self.batch / self.seconds / 1e9


def time_forward(
    model,
    batch_sizes: tuple[int, ...] = (1, 32),
    *,
    flops: int = 0,
    max_runs: int = 5,
    budget_s: float = 3.0,
    progress: Progress | None = None,
    phases: bool = True,
) -> list[Timing]:
    """Time ``model``'s forward pass at each batch size.

    Each batch size gets one untimed warm-up pass, then timed passes until ``max_runs`` are done
    or ``budget_s`` seconds are spent (at least one), so large models stay bearable on a CPU.

    Args:
        model: A Keras model with a fixed square input size.
        batch_sizes: Images per pass, in the order to time them.
        flops: Multiply-adds of one image, copied into each :class:`Timing`.
        max_runs: Most timed passes per batch size.
        budget_s: Time after which no further timed pass starts for a batch size.
        progress: Optional; gets one phase per batch size and is checked for a stop request
            before every pass.
        phases: False: ``progress`` is only checked for stop requests (a caller that reports
            its own phases, such as a sweep over networks).

    Returns:
        One :class:`Timing` per batch size.

    Raises:
        core.platform.progress.Stopped: If ``progress`` asked to stop.
    """
    import numpy as np

    height, width, channels = model.input_shape[1:]
    rng = np.random.default_rng(0)
    timings = []
    for batch in batch_sizes:
        x = rng.uniform(0, 255, size=(batch, height, width, channels)).astype("float32")
        if progress and phases:
            progress.start(f"forward pass, batch {batch}", total=max_runs + 1, unit="pass")

        def one_pass(x=x) -> float:
            if progress:
                progress.check_stop()
            t0 = time.perf_counter()
            model.predict_on_batch(x)  # returns numpy, so asynchronous devices are timed fully
            if progress and phases:
                progress.advance()
            return time.perf_counter() - t0

        one_pass()  # warm-up: the first pass per input shape traces and compiles the graph
        durations: list[float] = []
        started = time.perf_counter()
        while not durations or (
            len(durations) < max_runs and time.perf_counter() - started < budget_s
        ):
            durations.append(one_pass())
        timings.append(Timing(batch, statistics.median(durations), len(durations), flops))
    return timings


def per_image_latency_ms(model, *, skip: bool = False) -> float | None:
    """Median milliseconds of one batch-1 forward pass of ``model`` (a trained run's latency).

    Short (a warm-up pass, then at most 5 passes or 2 s) and never fatal: a model that cannot be
    timed gives None, so a finished training run is always saved.

    Args:
        model: A Keras model with a fixed input size (e.g. a run's image → class model).
        skip: Return None at once (e.g. the run was stopped and should end quickly).
    """
    if skip:
        return None
    try:
        [timing] = time_forward(model, (1,), max_runs=5, budget_s=2.0)
    except Exception:
        return None
    return round(timing.seconds * 1000, 3)
