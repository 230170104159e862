"""``python -m core info``: the runtime (backend, versions, device) and the available weights."""

from __future__ import annotations

import argparse
import json

from core.platform import runtime


def register(sub) -> None:
    """Add the ``info`` command."""
    p = sub.add_parser(
        "info", help="show Keras backend, framework versions, device and available weights"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.models import weights  # per-command lazy import (see core.cli)

    print(json.dumps({**runtime.runtime_info(), "weights": weights.status()}, indent=2))
    return 0
