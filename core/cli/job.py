"""``python -m core job DIR``: the worker process of a background job (started by core.jobs.runner)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add the hidden ``job`` command."""
    p = sub.add_parser("job")  # no help: internal, not listed
    p.add_argument("job_dir")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.jobs.runner import run_worker

    return run_worker(args.job_dir)
