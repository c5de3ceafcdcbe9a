"""``prunec lower``: map a model onto an accelerator and report per-layer energy."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from prunec.cli.common import (
    MODEL_HELP,
    add_model_arguments,
    add_pass_argument,
    emit_json,
    is_saved_ir,
    load_and_trace,
    refuse_model_options,
)
from prunec.errors import UserError
from prunec.lowering import read_json
from prunec.outdir import check_writable_file


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lower", help="lower a model onto a target (Eyeriss) and report energy",
                              description="Map every layer onto the target (row-stationary on Eyeriss) "
                              "and report accesses, energy and cycles per layer and in total. Given a saved "
                              "IR (IR.json) or a compiled model's directory instead of a model, cost it again "
                              "on --hw: the same layers, shapes and zero shares, another chip.")
    add_model_arguments(p, model_help=f"{MODEL_HELP}; or a saved IR.json, or a compiled model's directory, to "
                        "cost again on --hw")
    add_pass_argument(p)
    p.add_argument("--target", help="lowering target (see `prunec targets`; default: eyeriss, or the IR's)")
    p.add_argument("--batch", type=int, help="batch size N (default: N of --input-shape)")
    p.add_argument("--hw", metavar="FILE", action="append",
                   help="hardware description YAML (default: Eyeriss v1; for a saved IR, the chip it records); "
                   "give it several times to compare chips side by side, per layer and in total")
    p.add_argument("--compare", action="store_true",
                   help="show the chip(s) of --hw against the chip the IR records (for a model: the target's "
                   "default chip), per layer and in total")
    p.add_argument("--unpin", action="store_true",
                   help="a saved IR: drop its pinned mappings and search every layer's mapping on --hw (with "
                   "--compare, the recorded chip's column keeps them)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the IR JSON here (atomically); with several chips, the comparison's JSON")
    p.add_argument("--activation-sparsity", metavar="FILE.json",
                   help="per-layer share of zeros in layer inputs, {layer name: share}")
    p.add_argument("--routed-share", type=float, help="dynamic models: share of inputs routed to mild")
    p.add_argument("--no-zero-gating", action="store_true", help="do not gate MACs on zero ifmaps")
    p.add_argument("--no-rlc", action="store_true", help="no run-length compression of DRAM traffic")
    p.add_argument("--weight-sparsity", action="store_true",
                   help="use unstructured weight sparsity (gating + compressed filter stream)")
    p.add_argument("--mappings", metavar="FILE.json",
                   help="pin layers to given mappings instead of searching, {layer name: {m, n, e, p, q, r, t}} "
                   "(e.g. the chip's published ones)")
    p.set_defaults(handler=run)


def _read_mappings(path: str | None) -> dict[str, dict[str, int]] | None:
    if not path:
        return None
    data = read_json(path, "mappings")
    if not isinstance(data, dict) or not all(
            isinstance(v, dict) and all(isinstance(n, int) and not isinstance(n, bool) for n in v.values())
            for v in data.values()):
        raise UserError(f"{path} must map layer names to {{m, n, e, p, q, r, t}} integer mappings")
    return data


def _read_sparsity(path: str | None) -> dict[str, float] | None:
    if not path:
        return None
    data = read_json(path, "activation sparsity")
    data = data.get("activation_sparsity", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in data.values()):
        raise UserError(f"{path} must map layer names to zero shares between 0 and 1")
    return {str(k): float(v) for k, v in data.items()}


def run(args: argparse.Namespace) -> int:
    from prunec.backends import get_target

    if args.target:
        get_target(args.target)  # fail fast on an unknown target, before reading anything
    if args.output:
        check_writable_file(args.output)
    hws = args.hw or []
    if args.compare and not hws:
        raise UserError("--compare needs the chip(s) to compare with: --hw FILE")
    if is_saved_ir(args.model):
        return _relower(args)
    if args.unpin:
        raise UserError("--unpin: only for a saved IR; lowering a model searches every mapping unless --mappings "
                        "pins it")
    from prunec.lowering import lower

    args.target = args.target or "eyeriss"
    if args.batch is not None and args.batch < 1:
        raise UserError(f"--batch must be a positive integer, got {args.batch}")
    sparsity = _read_sparsity(args.activation_sparsity)
    mappings = _read_mappings(args.mappings)
    gm, x, _ = load_and_trace(args)
    if args.passes:
        from prunec.passes import run_passes

        gm = run_passes(gm, args.passes, x)
    chips: list[str | None] = [None, *hws] if args.compare else [*hws] or [None]  # None: the default chip
    programs = [lower(gm, None, target=args.target, batch=args.batch or int(x.shape[0]), hw=hw,
                      activation_sparsity=sparsity, routed_share=args.routed_share,
                      zero_gating=not args.no_zero_gating, rlc=not args.no_rlc,
                      weight_sparsity=args.weight_sparsity, **({"mappings": mappings} if mappings else {}))
                for hw in chips]
    if len(programs) > 1:
        from prunec.chip_compare import ChipColumn, ChipComparison

        return _show_comparison(ChipComparison([ChipColumn(p, hw, origin="default")
                                                for p, hw in zip(programs, chips, strict=True)]),
                                args)
    return _show(programs[0].to_dict(), args)


#: Options that say how to build a model's IR; a saved IR has them fixed.
_MODEL_ONLY = ("arch", "trust_model", "in_channels", "num_classes", "input_shape", "leaf_module", "batch",
               "activation_sparsity", "mappings", "passes")


def _relower(args: argparse.Namespace) -> int:
    """MODEL is a saved IR or a compiled model's directory: cost its layers again on --hw."""
    from prunec.lowering import load_ir
    from prunec.recost import recost_compiled, relower

    refuse_model_options(args, _MODEL_ONLY, "lowering a model", flags={"passes": "--pass"})
    options = {"zero_gating": False if args.no_zero_gating else None, "rlc": False if args.no_rlc else None,
               "weight_sparsity": True if args.weight_sparsity else None, "unpin": args.unpin}
    hws = args.hw or []
    if len(hws) > 1 or args.compare:
        return _compare(args, hws, options)
    hw = hws[0] if hws else None
    if os.path.isdir(args.model) or args.model.endswith(os.sep):
        cost = recost_compiled(args.model, hw=hw, routed_share=args.routed_share, **options)
        _check_target(args.target, cost.dynamic.target, Path(args.model) / "ir.json")
        for note in cost.notes:
            print(f"note: {note}", file=sys.stderr)
        return _show(cost.to_dict(), args)
    ir = load_ir(args.model)
    _check_target(args.target, ir["target"], Path(args.model))
    program = relower(ir, hw=hw, routed_share=args.routed_share, **options)
    assert program.recosted_from is not None
    program.recosted_from["ir"] = args.model
    return _show(program.to_dict(), args)


def _compare(args: argparse.Namespace, hws: list[str], options: dict) -> int:
    """A saved IR or compiled model on several chips: the chips of --hw, after the one it records
    with --compare."""
    from prunec.chip_compare import compare_chips

    source = args.model
    if not (os.path.isdir(source) or source.endswith(os.sep)):
        from prunec.lowering import load_ir

        ir = load_ir(source)
        _check_target(args.target, ir["target"], Path(source))
    comparison, notes = compare_chips(source, hws, with_recorded=args.compare, routed_share=args.routed_share,
                                      **options)
    if os.path.isdir(source) or source.endswith(os.sep):
        _check_target(args.target, comparison.baseline.program.target, Path(source) / "ir.json")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return _show_comparison(comparison, args)


def _show_comparison(comparison: Any, args: argparse.Namespace) -> int:
    from prunec.chip_compare import render_comparison

    if args.format == "table":
        render_comparison(comparison)
    if args.format == "json" or args.output:
        emit_json(comparison.to_dict(), args.output)
    return 0


def _check_target(asked: str | None, made: str, path: Path) -> None:
    if asked and asked != made:
        raise UserError(f"{path} was lowered for target {made!r}, not {asked!r}: lower the model for that target "
                        "instead")


def _show(ir: dict, args: argparse.Namespace) -> int:
    """The IR as JSON (stdout or -o), or as tables with -o writing the JSON too."""
    from prunec.lowering import render_ir

    if args.format == "table":
        render_ir(ir)
    if args.format == "json" or args.output:
        emit_json(ir, args.output)
    return 0
