"""``prunec report DIR``: redraw report.md and the plots from DIR/report.json and show it.

report.json is the record; everything else is a view. This command lets a user (or a
newer prunec) regenerate the views without recompiling the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prunec.terminal import make_console


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report", help="re-render report.md and the plots of a compile output directory",
        description="Re-render report.md, energy_breakdown.png and tradeoff.png from "
        "DIR/report.json and print the summary.")
    parser.add_argument("directory", metavar="DIR", help="output directory of `prunec compile`")
    parser.add_argument("--format", choices=["table", "markdown", "json"], default="table",
                        help="what to print: rich table (default), the Markdown report, or the JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:

    from prunec.errors import UserError
    from prunec.report import load_report, print_summary, render_all, render_markdown

    directory = Path(args.directory)
    if not directory.exists():
        raise UserError(f"{directory} does not exist")
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory: pass the output directory of "
                        "`prunec compile`")
    written = render_all(directory)
    report = load_report(directory)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "markdown":
        print(render_markdown(report), end="")
    else:
        print_summary(report)
    # Stdout stays a clean table/markdown/JSON stream; say what was written on stderr.
    make_console(stderr=True).print("wrote " + ", ".join(str(p) for p in written), highlight=False,
                               markup=False)
    return 0
