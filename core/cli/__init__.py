"""Command line for EffNet Lab: ``python -m core <command> ...``.

Each sub-module registers one command group with :func:`register` and runs it with the parsed
arguments; this module only wires them together and maps errors to exit statuses, in one place:
0 success, 1 partial failure or a failed run, 2 bad input (argparse's own convention for bad
arguments; here also any :class:`~core.platform.errors.UserError`: a wrong data folder, unavailable
weights, an option out of range), 130/143 stopped by Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from core.platform.errors import UserError

# Sub-modules, in the order their commands appear in --help.
_COMMAND_MODULES = (
    "core.cli.classify",
    "core.cli.train",
    "core.cli.scaling",
    "core.cli.info",
    "core.cli.runs",
    "core.cli.data",
    "core.cli.export",
    "core.cli.job",
)


class CliError(Exception):
    """A command that ends early for a reason other than bad input (a job that failed, was
    stopped or cancelled): printed as one line without a traceback, exit ``status``.

    Bad input is a :class:`~core.platform.errors.UserError`, from any layer: exit 2.
    """

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="python -m core",
        description="EffNet Lab: EfficientNet transfer learning, classification and scaling.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter off stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:  # bad input, found by the command or any layer below it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
