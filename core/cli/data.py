"""``python -m core data``: managed datasets under the data root — list, import a zip, check, delete.

Datasets made here have no owner, so the web app shows them read-only (everyone may train on
them). ``check`` also reads any image folder by path, and ``cifar10`` (its local copy).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING

from core.cli.watch import Bar
from core.data.catalog import list_datasets
from core.platform.errors import UserError
from core.platform.progress import Progress, Stopped

if TYPE_CHECKING:
    from core.data.health_report import HealthReport

_SHOWN = 10  # list items printed per section of the text report


def register(sub) -> None:
    """Add the ``data`` command group."""
    p = sub.add_parser(
        "data",
        help="datasets under the data root: list, import a zip, check, delete",
        description="Managed datasets live under the data root (EFFNET_LAB_DATA, "
        "default <project>/data), one folder each; use them by name "
        "(--data NAME).",
    )
    cmds = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    q = cmds.add_parser("list", help="the datasets: classes, images, owner")
    q.add_argument("--json", action="store_true", help="print one JSON object per dataset")
    q.set_defaults(func=run_list)

    q = cmds.add_parser(
        "import",
        help="import a zip of class folders as a new dataset",
        description="The zip holds one folder per class (or train/, val/, test/ folders of class "
        "folders), optionally inside one wrapper folder. Unsafe entries (.., absolute "
        "paths, symlinks, special files) and junk (__MACOSX, hidden files, non-images) "
        "are skipped and listed; every image is decoded; the import is all or nothing.",
    )
    q.add_argument("zip", metavar="ZIP", help="the zip file")
    q.add_argument("--name", required=True, help="the new dataset's name")
    q.add_argument("--json", action="store_true", help="print the report as one JSON object")
    q.set_defaults(func=run_import)

    q = cmds.add_parser(
        "check",
        help="health check: counts, unreadable files, duplicates, leaks, odd sizes",
        description="Reads every image once. A dataset under the data root gets its split stored "
        "first, so the leaks listed are those training would meet.",
    )
    q.add_argument("data", metavar="NAME|PATH", help="a dataset name, an image folder, or cifar10")
    q.add_argument("--json", action="store_true", help="print the report as one JSON object")
    q.add_argument("--no-cache", action="store_true", help="check again even if nothing changed")
    q.set_defaults(func=run_check)

    q = cmds.add_parser("delete", help="delete a dataset and all its files")
    q.add_argument("name", metavar="NAME")
    q.set_defaults(func=run_delete)


def run_list(args: argparse.Namespace) -> int:
    from core.data import datasets  # per-command lazy import (see core.cli)

    rows = []
    for name in list_datasets():
        info = datasets.info(name)
        rows.append(
            {
                "name": name,
                "classes": len(info.classes),
                "images": info.images,
                "owner": "app session" if info.owner else "none (read-only in the app)",
                "splits": list(info.splits),
                "source": info.source,
            }
        )
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif not rows:
        print("no datasets yet: python -m core data import ZIP --name NAME")
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(
                f"{r['name']:<{width}}  {r['classes']:>4} classes  {r['images']:>7} images  "
                f"owner: {r['owner']}"
            )
    return 0


def run_import(args: argparse.Namespace) -> int:
    from core.data.zipimport import import_zip  # per-command lazy import (see core.cli)

    try:
        report = import_zip(args.zip, args.name, owner=None)
    except FileNotFoundError:
        raise UserError(f"zip file {args.zip} not found") from None
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"imported {report['name']}: {report['images']} images in {len(report['classes'])} "
        f"classes ({', '.join(f'{c} {n}' for c, n in report['classes'].items())})"
    )
    for key, what in (("skipped", "skipped"), ("invalid", "not usable images")):
        if report[f"{key}_count"]:
            print(f"{report[f'{key}_count']} {what}:")
            for item in report[key][:_SHOWN]:
                print(f"  {item['entry']}: {item['reason']}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from core.data import health  # per-command lazy import (see core.cli)

    progress, box = Progress(), {}

    def work():
        try:
            box["report"] = health.check(args.data, progress=progress, use_cache=not args.no_cache)
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    bar = Bar()
    try:
        while thread.is_alive():
            thread.join(0.5)
            bar.update(progress.snapshot())
    except KeyboardInterrupt:
        progress.request_stop()
        thread.join()
        raise
    finally:
        bar.close()
    error = box.get("error")
    if isinstance(error, Stopped):
        raise KeyboardInterrupt
    if error is not None:  # a DataError (a missing folder, a wrong layout) exits 2 in main
        raise error
    report = box["report"]
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print_report(report)
    return 0


def print_report(r: HealthReport) -> None:
    """The check as text, the first few items of each list."""
    out = sys.stdout
    out.write(
        f"{r.dataset}: {r.images} images, {len(r.classes)} classes "
        f"({r.layout}); imbalance {r.imbalance}; checked in {r.seconds} s"
        f"{' (cached)' if r.cached else ''}\n"
    )
    for split, counts in r.splits.items():
        out.write(f"  {split}: " + ", ".join(f"{c} {n}" for c, n in counts.items()) + "\n")
    for line in r.problems + r.notes:
        out.write(f"note: {line}\n")
    sections = (
        ("unreadable", r.unreadable_count, r.unreadable, lambda x: f"{x.file}: {x.reason}"),
        ("duplicates", r.duplicates_count, r.duplicates, lambda x: f"{x[0]} = {x[1]}"),
        (
            "near duplicates",
            r.near_duplicates_count,
            r.near_duplicates,
            lambda x: f"{x[0]} ≈ {x[1]}",
        ),
        (
            "leaks",
            r.leaks_count,
            r.leaks,
            lambda x: f"{x.a} ({x.splits[0]}) ~ {x.b} ({x.splits[1]}), {x.kind}",
        ),
        ("tiny", r.tiny_count, r.tiny, lambda x: f"{x.file}: {x.width}×{x.height}"),
        (
            "extreme aspect",
            r.extreme_aspect_count,
            r.extreme_aspect,
            lambda x: f"{x.file}: {x.width}×{x.height}",
        ),
    )
    for title, count, items, fmt in sections:
        out.write(f"{title}: {count}\n")
        for item in items[:_SHOWN]:
            out.write(f"  {fmt(item)}\n")


def run_delete(args: argparse.Namespace) -> int:
    from core.data import datasets  # per-command lazy import (see core.cli)

    datasets.delete(args.name, owner=None)  # a DatasetError: exit 2
    print(f"deleted {args.name}")
    return 0
