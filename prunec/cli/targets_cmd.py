"""``prunec targets``: list the lowering targets (built-in and from entry points)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("targets", help="list lowering targets",
                              description="List the targets `prunec lower --target` accepts "
                              "(entry-point group prunec.backends).")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from prunec.backends import available_targets, get_target
    from prunec.errors import UserError

    for name, ref in available_targets().items():
        try:
            desc = getattr(get_target(name), "description", ref)
        except UserError as exc:
            desc = f"(unavailable: {exc})"
        print(f"{name:12s} {desc}")
    return 0
