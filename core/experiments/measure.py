"""Time a forward pass of a scaled EfficientNet on this machine, next to its FLOPs estimate.

The model is built with random weights (timing does not depend on the weights' values) and run
through Keras's compiled inference step (``predict_on_batch``: a ``tf.function`` or ``jax.jit``),
as inference normally runs; the untimed warm-up pass per batch size pays for tracing. Keras is
imported inside the functions so that importing this module stays cheap.

Also used elsewhere: :func:`per_image_latency_ms` for the latency a training run records, and
:func:`time_forward` by the sweep over several networks (:mod:`core.experiments.sweep`).
"""

from __future__ import annotations

from core.models.efficientnet import build_efficientnet
from core.models.timing import Timing, time_forward
from core.platform.progress import Progress, Stopped
from core.platform.runtime import describe_device


def build_model(width: float, depth: float, resolution: int):
    """A 1000-class EfficientNet with random weights for the given coefficients.

    Raises:
        ValueError: If the resolution is below Keras's minimum of 32 pixels.
    """

    return build_efficientnet(
        "b0",
        width=width,
        depth=depth,
        input_shape=(resolution, resolution, 3),
        model_name="efficientnet_scaled",
    )


def measure_job(args: dict, progress: Progress) -> list[dict]:
    """Job entry (see :mod:`core.jobs.runner`): build the network ``args`` describes and time it.

    ``args`` holds ``width``, ``depth``, ``resolution``, optionally ``flops`` (per image) and
    ``batch_sizes``. Returns one :meth:`Timing.to_dict` per batch size timed; after a stop
    request, those completed so far.
    """

    progress.begin(describe_device())
    progress.message("Building the model (random weights)")
    model = build_model(float(args["width"]), float(args["depth"]), int(args["resolution"]))
    timings: list[Timing] = []
    try:
        for batch in args.get("batch_sizes", (1, 32)):
            timings += time_forward(
                model, (int(batch),), flops=int(args.get("flops", 0)), progress=progress
            )
    except Stopped:
        pass
    return [t.to_dict() for t in timings]
