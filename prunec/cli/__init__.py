"""The ``prunec`` command line. Each subcommand lives in its own module ``<name>_cmd``
exposing ``register(subparsers)``; its handler returns an exit code.

Every :class:`~prunec.errors.UserError` ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from prunec import __version__
from prunec.errors import UserError
from prunec.interrupts import catching_interrupts, exit_status

#: Subcommand modules, in the order ``prunec --help`` lists them.
COMMANDS = ["compile", "inspect", "prune", "finetune", "lower", "report", "passes", "targets"]


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line and exit code 2, like every other user error (argparse
    would print the whole usage block first); subcommand parsers inherit it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="prunec",
        description="Compile a trained CNN into a dynamic two-level pruned model and report "
        "its energy on the Eyeriss accelerator.",
    )
    parser.add_argument("--version", action="version", version=f"prunec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"prunec.cli.{name}_cmd").register(sub)
    return parser


INTERRUPTED = "prunec: interrupted; no output was written or replaced"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with catching_interrupts():
            args = build_parser().parse_args(argv)
            return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"prunec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # SIGINT, or a SIGTERM unwound the same way
        print(INTERRUPTED, file=sys.stderr)
        return exit_status(exc)
    except BrokenPipeError:
        return 0


__all__ = ["main", "build_parser", "INTERRUPTED"]
