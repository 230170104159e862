"""``python -m core runs``: the saved runs, newest first, with their status and test accuracy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.cli import CliError


def register(sub) -> None:
    """Add the ``runs`` command."""
    p = sub.add_parser("runs", help="list saved runs: name, status, test accuracy, path",
                       description="Status is done, stopped, interrupted (its process died; the "
                                   "best model so far is kept), error or running.")
    p.add_argument("--root", help="runs folder (default: EFFNET_LAB_RUNS or <project>/runs)")
    p.add_argument("--json", action="store_true", help="print one JSON object per run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core import runs

    root = Path(args.root).expanduser() if args.root else None
    if root is not None and not root.is_dir():
        raise CliError(f"runs folder {root} does not exist")
    try:
        found = runs.list_runs(root)
    except OSError as exc:
        raise CliError(f"cannot read the runs folder: {exc.strerror or exc}") from exc
    rows = [{"name": r.name, "status": r.status, "test_accuracy": r.test_accuracy,
             "path": str(r.path), "epochs": len(r.history), "has_model": r.has_model}
            for r in found]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no runs yet")
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  {'status':<11}  {'test acc':>8}  path")
    for r in rows:
        acc = "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.2%}"
        print(f"{r['name']:<{width}}  {r['status']:<11}  {acc:>8}  {r['path']}")
    return 0
