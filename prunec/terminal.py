"""The rich consoles prunec prints through.

Rich lays tables out for 80 columns when its output is not a terminal, which cuts layer names
and numbers short in a log or a pipe, and breaks long messages mid-sentence; there, prunec
gives tables room (COLUMNS still wins) and keeps each message on one line.
"""

from __future__ import annotations

import os

from rich.console import Console

#: Columns for output that is not a terminal (a log file, a pipe).
LOG_WIDTH = 200


def make_console(*, stderr: bool = False, quiet: bool = False) -> Console:
    """A console on stdout (or stderr), wide when it is not a terminal."""
    console = Console(stderr=stderr, quiet=quiet)
    if not console.is_terminal:
        console.soft_wrap = True  # a log line is one line, however long
        if "COLUMNS" not in os.environ:
            console.width = LOG_WIDTH
    return console


__all__ = ["make_console", "LOG_WIDTH"]
