"""The command line the backfill scripts share: one step over each compiled-model directory given."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from prunec.errors import UserError


def run_backfill(description: str, step: Callable[[Path], str], argv: list[str] | None = None) -> int:
    """Run ``step`` on each directory named on the command line and print what it says; stop at the
    first one it cannot do (exit 2, one line)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dirs", nargs="+", type=Path, help="compiled-model directories")
    args = parser.parse_args(argv)
    for directory in args.dirs:
        try:
            print(step(directory))
        except (UserError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0
