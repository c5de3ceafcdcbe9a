"""``prunec inspect``: per-layer shapes, parameters and MACs of a model, or a saved IR."""

from __future__ import annotations

import argparse
import os

from rich.table import Table

from prunec.cli.common import (
    add_model_arguments,
    add_pass_argument,
    emit_json,
    is_saved_ir,
    load_and_trace,
    refuse_model_options,
)
from prunec.errors import UserError
from prunec.terminal import make_console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="per-layer shapes, params and MACs of a model (or a saved IR)",
                       description="Print one row per node that does work. Given a lowered IR "
                       "JSON file (from `prunec lower -o`) or a compiled model's directory (its ir.json), "
                       "pretty-print the IR instead.")
    add_model_arguments(p)
    add_pass_argument(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("-o", "--output", help="write JSON here instead of stdout")
    p.set_defaults(handler=run)


#: Options that build a model to inspect; a saved IR has its model fixed.
_MODEL_ONLY = ("arch", "trust_model", "in_channels", "num_classes", "input_shape", "leaf_module", "passes")


def run(args: argparse.Namespace) -> int:
    if is_saved_ir(args.model):
        refuse_model_options(args, _MODEL_ONLY, "inspecting a model", flags={"passes": "--pass"})
        return _inspect_ir(_ir_file(args.model), args.format, args.output)
    from prunec.passes import run_passes
    from prunec.summary import summarize

    gm, x, _ = load_and_trace(args)
    if args.passes:
        gm = run_passes(gm, args.passes, x)
    report = summarize(gm, x)
    if args.format == "json" or args.output:
        emit_json(report, args.output)
    else:
        _print_table(report)
    return 0


def _print_table(report: dict) -> None:
    table = Table(title="layers", show_lines=False)
    for col, justify in (("name", "left"), ("op", "left"), ("input", "left"), ("output", "left"),
                         ("params", "right"), ("MACs", "right")):
        table.add_column(col, justify=justify)
    for row in report["layers"]:
        table.add_row(row["name"], row["op"], str(row["input_shape"]), str(row["output_shape"]),
                      f"{row['params']:,}", f"{row['macs']:,}")
    totals = report["totals"]
    table.add_section()
    table.add_row("total", "", "", "", f"{totals['params']:,}", f"{totals['macs']:,}")
    make_console().print(table)


def _ir_file(model: str) -> str:
    """A saved IR, or a compiled model's directory: its dynamic model's IR (``ir.json``)."""
    if not os.path.isdir(model):
        return model  # a file, or nothing: reading it says which
    if not os.path.isfile(os.path.join(model, "ir.json")):
        raise UserError(f"{model} is a directory but not a compiled model's (no ir.json); give a model file, "
                        "a saved IR or a compiled model's directory")
    return os.path.join(model, "ir.json")


def _inspect_ir(path: str, fmt: str, output: str | None) -> int:
    from prunec.lowering import check_ir, load_ir, render_ir

    ir = load_ir(path)
    check_ir(ir)
    if fmt == "json" or output:
        emit_json(ir, output)
        return 0
    render_ir(ir)
    return 0
