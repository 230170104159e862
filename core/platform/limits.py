"""The limits of a shared server, in one place: each setting's default, environment variable and why.

Visitors share one machine, so every cap has a safe default here and an ``EFFNET_LAB_*``
environment variable that raises or lowers it (read at each use, so a test or a restarted server
sees the new value; a value that is not a positive number is refused with a message naming the
variable). Nothing else in the code hard-codes these numbers.

Queue (checked by :func:`core.jobs.runner.submit`):

- ``EFFNET_LAB_MAX_JOBS_PER_OWNER`` (3): running plus queued jobs one owner (a browser session,
  or "cli" for the command line) may have at once, so one workspace cannot fill the queue.
- ``EFFNET_LAB_MAX_QUEUE`` (50): jobs waiting in all queues together, so a flood of fresh
  sessions cannot grow the queue (and the waiting time) without bound.

The command line is capped too, as the one owner "cli": every shell user of the server shares
that workspace, and a script looping over ``python -m core train &`` would otherwise fill the
queue ahead of the web visitors. The caps are read by the process that submits, so an operator
who needs more sets the variable in their own shell; web visitors cannot.

Training (checked by :meth:`core.training.options.TrainConfig.validate` and the job worker):

- ``EFFNET_LAB_MAX_EPOCHS`` (100): epochs per training run.
- ``EFFNET_LAB_MAX_RESOLUTION`` (512): input resolution in pixels (memory grows with its square).
- ``EFFNET_LAB_MAX_BATCH`` (1024): images per training step (memory grows with it).
- ``EFFNET_LAB_MAX_WALL_S`` (7200): seconds one job may run; past it the job stops like a Stop
  (at the end of a batch, keeping its best model).
- ``EFFNET_LAB_TRAINER_NICE`` (10): how much a training worker lowers its own CPU priority, so
  the web server (and classifying uploads) stays interactive while training runs.
"""

from __future__ import annotations

from core.platform.paths import positive_number


def max_jobs_per_owner() -> int:
    """Running plus queued jobs one owner may have at once (``EFFNET_LAB_MAX_JOBS_PER_OWNER``)."""
    return int(positive_number("EFFNET_LAB_MAX_JOBS_PER_OWNER", 3, "jobs"))


def max_queue() -> int:
    """Jobs waiting in all queues together (``EFFNET_LAB_MAX_QUEUE``)."""
    return int(positive_number("EFFNET_LAB_MAX_QUEUE", 50, "jobs"))


def max_epochs() -> int:
    """Epochs one training run may ask for (``EFFNET_LAB_MAX_EPOCHS``)."""
    return int(positive_number("EFFNET_LAB_MAX_EPOCHS", 100, "epochs"))


def max_resolution() -> int:
    """Largest input resolution in pixels (``EFFNET_LAB_MAX_RESOLUTION``)."""
    return int(positive_number("EFFNET_LAB_MAX_RESOLUTION", 512, "pixels"))


def max_batch() -> int:
    """Largest training batch (``EFFNET_LAB_MAX_BATCH``)."""
    return int(positive_number("EFFNET_LAB_MAX_BATCH", 1024, "images"))


def max_wall_s() -> float:
    """Seconds one job may run before it is stopped (``EFFNET_LAB_MAX_WALL_S``)."""
    return positive_number("EFFNET_LAB_MAX_WALL_S", 7200.0, "seconds")


def trainer_nice() -> int:
    """The niceness increment of a training worker (``EFFNET_LAB_TRAINER_NICE``)."""
    return int(positive_number("EFFNET_LAB_TRAINER_NICE", 10, "niceness steps"))


# Training options the shared server caps below their own range: option name → (the limit's
# reader above, its environment variable).
_SERVER_CAPS = {
    "epochs": (max_epochs, "EFFNET_LAB_MAX_EPOCHS"),
    "resolution": (max_resolution, "EFFNET_LAB_MAX_RESOLUTION"),
    "batch_size": (max_batch, "EFFNET_LAB_MAX_BATCH"),
}
CAPPED_OPTIONS = tuple(_SERVER_CAPS)


def server_cap(name: str) -> tuple[int, str] | None:
    """The shared server's cap on training option ``name`` (read now) and the environment
    variable that sets it, or None when only the option's own range applies."""
    if name not in _SERVER_CAPS:
        return None
    reader, variable = _SERVER_CAPS[name]
    return reader(), variable
