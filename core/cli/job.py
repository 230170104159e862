"""``python -m core job DIR``: the worker process of a background job (started by core.jobs.runner)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from core.jobs.worker import run_worker


def register(sub) -> None:
    """Add the hidden ``job`` command."""
    p = sub.add_parser("job")  # no help: internal, not listed
    p.add_argument("job_dir")
    p.add_argument("--executor", default="local", choices=("local", "ray"))  # who started it
    p.add_argument("--node", default=None)  # the Ray node's address, recorded with the run
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    status = run_worker(args.job_dir, args.executor, args.node)
    # The job's results are saved and its slot's next job already started: leave at once rather
    # than tear down TensorFlow or JAX, which is slow and holds memory the next job needs.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
