"""``prunec prune``: prune a model once and save it as a prunec checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

import torch
from rich.table import Table
from torch import fx, nn

from prunec.cli.common import add_model_arguments, load_and_trace, seed
from prunec.errors import UserError
from prunec.outdir import check_writable_file
from prunec.terminal import make_console

#: Checkpoint keys the pruned checkpoint sets itself rather than carrying over.
_OWN_KEYS = {"format", "arch", "arch_kwargs", "state_dict", "source", "module_configs",
             "input_shape", "pruning",
             "test_accuracy"}  # the unpruned network's number does not describe the pruned one


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="remove channels (structured) or weights (unstructured)",
                       description="Prune MODEL once and write a checkpoint that every other subcommand "
                       "and prunec.load() read back.")
    add_model_arguments(p)
    p.add_argument("--ratio", type=float, required=True, help="share to remove, in [0, 1)")
    p.add_argument("--method", default="l1", help="importance: l1 (default), l2, bn_scale, random")
    p.add_argument("--scope", default="uniform", help="uniform (per group, default) or global")
    p.add_argument("--pruner", default="structured",
                   help="structured (default), unstructured, or package.module:callable")
    p.add_argument("--round-to", type=int, default=1, metavar="K",
                   help="keep the channel counts pruning chooses multiples of K (a depthwise layer follows its "
                   "input's count)")
    p.add_argument("--ignore", nargs="+", default=[], metavar="PATTERN",
                   help="fnmatch patterns of layer names to keep whole")
    p.add_argument("--seed", type=seed, default=0, help="seed for --method random")
    p.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="pruned checkpoint")
    p.set_defaults(handler=run)


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _nonzero(model: nn.Module) -> int:
    return sum(int(p.count_nonzero()) for p in model.parameters())


def run(args: argparse.Namespace) -> int:
    from prunec.frontend import build_architecture, save_checkpoint
    from prunec.pruning import module_configs, prune, rebuild_pruned

    check_writable_file(args.output)
    gm, x, meta = load_and_trace(args)
    arch = meta.get("arch") or meta.get("factory") or (args.model if args.model.startswith("zoo:") else None)
    if not arch:
        raise UserError(f"{args.model} names no architecture to rebuild the pruned shapes from: give the model as "
                        "package.module:factory, or its state dict with --arch package.module:factory")
    pruned = prune(gm, x, args.ratio, method=args.method, scope=args.scope, ignore=args.ignore,
                   round_to=args.round_to, pruner=args.pruner, seed=args.seed)

    kwargs = meta.get("arch_kwargs") or {}
    first = next((m for m in gm.modules() if isinstance(m, nn.Conv2d)), None)
    in_channels = int(kwargs.get("in_channels") or (first.in_channels if first else 3))
    with torch.no_grad():
        outputs = pruned(x)
    num_classes = int(kwargs.get("num_classes") or _tensors(outputs)[0].shape[-1])
    reference = build_architecture(arch, in_channels, num_classes)
    configs = module_configs(pruned, reference)
    try:  # prove the checkpoint loads back before writing it
        rebuilt = rebuild_pruned(reference, configs)
        rebuilt.load_state_dict(pruned.state_dict())
    except (RuntimeError, UserError) as exc:
        raise UserError(f"the pruned model no longer fits {arch}, cannot save it: "
                        f"{str(exc).splitlines()[0]}") from None
    _check_same_outputs(rebuilt.eval(), x, outputs, arch)
    extra: dict[str, Any] = {k: v for k, v in meta.items() if k not in _OWN_KEYS}
    _print_summary(gm, pruned, x, args)  # before the save: a Ctrl-C after it would claim nothing was written
    save_checkpoint(
        pruned, args.output, arch, in_channels, num_classes, module_configs=configs,
        input_shape=list(x.shape),
        pruning={"ratio": float(args.ratio), "method": args.method, "scope": args.scope,
                 "pruner": str(args.pruner), "round_to": int(args.round_to),
                 "ignore": list(args.ignore), "seed": int(args.seed)},
        **extra)
    return 0


def _tensors(outputs: Any) -> list[torch.Tensor]:
    """The tensors of a model's outputs (a tensor, or tuples, lists and dicts of them), in order."""
    leaves: list[torch.Tensor] = []
    fx.node.map_aggregate(outputs, lambda t: leaves.append(t) if isinstance(t, torch.Tensor) else None)
    if not leaves:
        raise UserError("the model returns no tensor, so there is nothing to prune for")
    return leaves


def _check_same_outputs(rebuilt: nn.Module, x: torch.Tensor, expected: Any, arch: str) -> None:
    """Refuse a checkpoint whose model, rebuilt from ``arch``'s own code, computes other outputs than the
    pruned graph: pruning rewrites sizes the code fixes as numbers (``view(-1, 64)``, ``split(y, [8, 8])``)
    in the traced graph only, and a checkpoint keeps the layers, not that graph."""
    try:
        with torch.no_grad():
            got = _tensors(rebuilt(x))
        same = len(got) == len(want := _tensors(expected)) and all(
            a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(got, want, strict=True))
        why = "" if same else "it computes other outputs"
    except Exception as exc:  # noqa: BLE001 - the user's own forward failed on the pruned shapes: say so in one line
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if why:
        raise UserError(f"the pruned model, rebuilt from {arch}'s code, does not run as the pruned graph ({why}), "
                        "so its checkpoint could not be read back: the code fixes a channel count as a number "
                        "(view/reshape/split with literal sizes); keep those layers whole with --ignore, or size "
                        "them from the tensor (x.size(1))")


def _print_summary(before: nn.Module, after: nn.Module, x: torch.Tensor, args: argparse.Namespace) -> None:
    table = Table(title=f"{args.pruner} pruning, ratio {args.ratio} ({args.method}, {args.scope})")
    for col in ("", "before", "after", "change"):
        table.add_column(col, justify="right" if col else "left")
    rows = [("parameters", _params(before), _params(after)),
            ("non-zero parameters", _nonzero(before), _nonzero(after)),
            ("MACs", _macs(before, x), _macs(after, x))]
    for label, a, b in rows:
        table.add_row(label, f"{a:,}", f"{b:,}", f"{(b - a) / a:+.1%}" if a else "-")
    console = make_console()
    console.print(table)
    kept = after.meta.get("kept_whole", []) if isinstance(after, torch.fx.GraphModule) else []
    if kept:
        shown = "; ".join(f"{name} ({why})" for name, why in kept[:5])
        more = f"; and {len(kept) - 5} more" if len(kept) > 5 else ""
        console.print(f"channels kept whole around {len(kept)} op{'s' if len(kept) != 1 else ''} prunec cannot "
                      f"prune through: {shown}{more}", markup=False, highlight=False)
    rounded = after.meta.get("rounded_whole", []) if isinstance(after, torch.fx.GraphModule) else []
    if rounded:
        shown = "; ".join(f"{name} ({size} channels)" for name, size in rounded[:5])
        more = f"; and {len(rounded) - 5} more" if len(rounded) > 5 else ""
        console.print(f"--round-to {args.round_to} kept {len(rounded)} layer group{'s' if len(rounded) != 1 else ''} "
                      f"whole (no multiple of {args.round_to} below their size fits): {shown}{more}",
                      markup=False, highlight=False)
    console.print(f"wrote {args.output}")
