"""``prunec passes``: list the graph passes prunec can run, with one-line docs."""

from __future__ import annotations

import argparse

from rich.table import Table

from prunec.terminal import make_console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("passes", help="list available graph passes",
                       description="List built-in passes and those installed through the "
                       "'prunec.passes' entry-point group. A user's own pass also runs by "
                       "module:callable without being listed.")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from prunec.passes import available_passes

    table = Table(title="passes")
    table.add_column("name")
    table.add_column("what it does")
    for name, entry in available_passes().items():
        table.add_row(name, entry.doc)
    make_console().print(table)
    return 0
