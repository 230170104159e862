"""``python -m core runs``: the saved runs, newest first, with their status, validation and test
accuracy (a ``*`` marks runs whose test split also picked the best epoch: the blog's protocol)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.platform.errors import UserError


def register(sub) -> None:
    """Add the ``runs`` command."""
    p = sub.add_parser(
        "runs",
        help="list saved runs: name, status, validation and test accuracy, path",
        description="Status is done, stopped, interrupted (its process died; the "
        "best model so far is kept), error or running. The validation "
        "split picks each run's best epoch; the test split is measured "
        "once, at the end. '*': the test split also validated (the "
        "blog's protocol), so that test accuracy is optimistic.",
    )
    p.add_argument("--root", help="runs folder (default: EFFNET_LAB_RUNS or <project>/runs)")
    p.add_argument("--json", action="store_true", help="print one JSON object per run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.training import runs  # per-command lazy import (see core.cli)

    root = Path(args.root).expanduser() if args.root else None
    if root is not None and not root.is_dir():
        raise UserError(f"runs folder {root} does not exist")
    try:
        found = runs.list_runs(root)
    except OSError as exc:
        raise UserError(f"cannot read the runs folder: {exc.strerror or exc}") from exc
    rows = [
        {
            "name": r.name,
            "status": r.status,
            "val_accuracy": r.results.get("val_accuracy"),
            "test_accuracy": r.test_accuracy,
            "validated_on_test": (r.config or {}).get("validation") == "test",
            "path": str(r.path),
            "epochs": len(r.history),
            "has_model": r.has_model,
            "executor": r.executor,
            "node": r.node,
        }
        for r in found
    ]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no runs yet")
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  {'status':<11}  {'val acc':>8}  {'test acc':>9}  path")
    pct = lambda v: "-" if v is None else f"{v:.2%}"  # noqa: E731
    for r in rows:
        test = pct(r["test_accuracy"]) + ("*" if r["validated_on_test"] else " ")
        print(
            f"{r['name']:<{width}}  {r['status']:<11}  {pct(r['val_accuracy']):>8}  {test:>9}  "
            f"{r['path']}"
        )
    return 0
