"""Options and helpers several subcommands share."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from prunec.errors import SEED_LIMIT, UserError, check_seed
from prunec.outdir import write_atomic

DATA_ROOT_HELP = ("look for the data set only in this folder (or its <data set> subfolder); "
                  "default: $PRUNEC_DATA, then the standard places")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def seed(text: str) -> int:
    """argparse type of --seed: refused at parse time, before any generator is seeded."""
    try:
        return check_seed(int(text))
    except (ValueError, UserError):
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_LIMIT - 1}, got {text!r}") from None


def add_normalization_arguments(parser: argparse.ArgumentParser) -> None:
    """--mean/--std: the input normalization the model was trained with."""
    parser.add_argument("--mean", type=_floats, metavar="M[,M,M]",
                        help="per-channel mean on the 0-1 pixel scale the model was trained with (default: "
                        "the checkpoint's, else the data set's; one value for all channels)")
    parser.add_argument("--std", type=_floats, metavar="S[,S,S]",
                        help="per-channel std, like --mean (plain 0-1 pixels: --mean 0 --std 1)")


def normalization(args: argparse.Namespace, meta: dict[str, Any]
                  ) -> tuple[Any, Any, str | None]:
    """--mean/--std, else what the checkpoint records (``preprocess``), else None (the data set's);
    and where they came from, for error messages (None: the options)."""
    from prunec.data import RECORDED_NORMALIZATION, recorded_normalization

    if args.mean is not None or args.std is not None:
        return args.mean, args.std, None
    if (recorded := recorded_normalization(meta)) is not None:
        return recorded[0], recorded[1], RECORDED_NORMALIZATION
    return None, None, None


MODEL_HELP = "zoo:NAME, a .pt checkpoint/state dict, or package.module:factory"


def add_model_arguments(parser: argparse.ArgumentParser, shape_required: bool = False,
                        model_help: str = MODEL_HELP) -> None:
    """MODEL plus the options that say how to read it (see prunec.frontend)."""
    parser.add_argument("model", metavar="MODEL", help=model_help)
    parser.add_argument("--arch", help="architecture of a state-dict .pt file: zoo:NAME (e.g. zoo:resnet20) "
                        "or package.module:factory")
    parser.add_argument("--trust-model", action="store_true",
                        help="allow unpickling a whole nn.Module (runs code from the file)")
    parser.add_argument("--in-channels", type=int, help="input channels (zoo models)")
    parser.add_argument("--num-classes", type=int, help="classes (zoo models)")
    parser.add_argument("--input-shape", required=shape_required,
                        help="N,C,H,W of one example input, N,C,L for a 1-D model (default: from the "
                        "checkpoint, else 1,C,32,32)")
    parser.add_argument("--leaf-module", action="append", default=[], metavar="NAME",
                        help="submodule to keep opaque while tracing (repeatable)")


def add_pass_argument(parser: argparse.ArgumentParser) -> None:
    """--pass: graph passes run on the traced model before the command looks at it."""
    parser.add_argument("--pass", dest="passes", action="append", default=[], metavar="PASS",
                        help="run this pass first: a registered name or module:callable, with options as "
                        "NAME{key=value ...}, e.g. 'prune_structured{ratio=0.5 method=l2}' (repeatable)")


def load_model(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any]]:
    from prunec.frontend import load_with_meta

    for flag, value in (("--in-channels", args.in_channels), ("--num-classes", args.num_classes)):
        if value is not None and value < 1:  # 0 would silently mean "the default"
            raise UserError(f"{flag} must be a positive integer, got {value}")
    if args.model.startswith("zoo:"):  # fresh weights: the same command gives the same network
        torch.manual_seed(getattr(args, "seed", 0) or 0)
    return load_with_meta(args.model, arch=args.arch, trust_model=args.trust_model,
                          in_channels=args.in_channels, num_classes=args.num_classes)


def input_shape(args: argparse.Namespace, meta: dict[str, Any], model: nn.Module) -> tuple[int, ...]:
    from prunec import zoo
    from prunec.frontend import parse_input_shape

    if args.input_shape:
        return parse_input_shape(args.input_shape)
    if meta.get("input_shape"):
        return tuple(int(d) for d in meta["input_shape"])
    arch = meta.get("arch") or (args.model if args.model.startswith("zoo:") else None)
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first_conv.in_channels if first_conv is not None else 3
    if arch:
        return zoo.default_input_shape(arch, channels)
    return (1, channels, 32, 32)


def load_and_trace(args: argparse.Namespace) -> tuple[fx.GraphModule, torch.Tensor, dict[str, Any]]:
    """Load MODEL, trace it and propagate shapes from --input-shape."""
    from prunec.frontend import example_input, trace

    model, meta = load_model(args)
    shape = input_shape(args, meta, model)
    x = example_input(shape)
    gm = trace(model, x, leaf_modules=args.leaf_module)
    _check_batched(gm, shape)
    return gm, x, meta


def _check_batched(gm: fx.GraphModule, shape: tuple[int, ...]) -> None:
    """torch runs a Conv2d on one unbatched C,H,W sample (a Conv1d on C,L): an --input-shape without its
    N would trace, then lower and prune as a batch of C images. The first convolution's input, as shape
    propagation recorded it, says whether the batch dim is there."""
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = gm.get_submodule(str(node.target))
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            wanted = 3 if isinstance(module, nn.Conv1d) else 4
            source = node.args[0] if node.args else None
            got = getattr(source.meta.get("tensor_meta"), "shape", None) if isinstance(source, fx.Node) else None
            if got is not None and len(got) == wanted - 1:
                layout = "N,C,L" if wanted == 3 else "N,C,H,W"
                raise UserError(f"input shape {','.join(map(str, shape))} has {len(shape)} dims, but the model's "
                                f"first convolution ({node.target}, {type(module).__name__}) takes {layout}: give "
                                "the batch N too")
            return


def emit_json(data: Any, output: str | None) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if output:
        write_atomic(output, text)
        print(f"wrote {output}", file=sys.stderr)
    else:
        print(text, end="")


def is_saved_ir(model: str) -> bool:
    """A compiled model's directory, or a JSON file (by name, or by its first character)."""
    if os.path.isdir(model) or model.endswith(os.sep) or model.lower().endswith(".json"):
        return True
    try:
        with open(model, "rb") as fh:
            return fh.read(64).lstrip()[:1] == b"{"
    except OSError:
        return False


def refuse_model_options(args: argparse.Namespace, names: Sequence[str], purpose: str,
                         flags: dict[str, str] | None = None) -> None:
    """A saved IR has its model fixed: an option that builds one would be silently ignored.
    ``names`` are argparse dests; ``flags`` maps a dest to its flag where they differ."""
    given = [(flags or {}).get(name, f"--{name.replace('_', '-')}") for name in names
             if getattr(args, name) is not None and getattr(args, name) is not False and getattr(args, name) != []]
    if given:
        raise UserError(f"{', '.join(given)}: only for {purpose}; a saved IR keeps what it was lowered with")
