"""``prunec compile``: the whole pipeline, from a trained CNN to a dynamic model and its
Eyeriss energy report."""

from __future__ import annotations

import argparse
import shlex
import sys

from prunec.cli.common import (
    DATA_ROOT_HELP,
    add_model_arguments,
    add_normalization_arguments,
    load_model,
    seed,
)
from prunec.terminal import make_console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile", help="prune at two levels, add a selector, lower to Eyeriss, report",
        description="Turn a trained CNN into a dynamic model (aggressive network + selector + mild "
        "network for the inputs the selector rejects) and report its energy on the target. "
        "Without --mild/--aggressive the two pruning levels are searched for.")
    add_model_arguments(p)
    p.add_argument("--target", default="eyeriss", help="hardware target (`prunec targets` lists them)")
    p.add_argument("--hw", help="hardware description YAML overriding the target's default")
    p.add_argument("--data", help="fashion-mnist, cifar10, synthetic, or your own PATH.npz or image folder DIR "
                   "(default: the checkpoint's data set)")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    add_normalization_arguments(p)
    p.add_argument("--mild", type=float, help="channel-pruning ratio of the mild network, e.g. 0.3")
    p.add_argument("--aggressive", type=float, help="channel-pruning ratio of the aggressive network, e.g. 0.7")
    p.add_argument("--method", default="l1", help="channel importance: l1, l2, bn_scale or random")
    p.add_argument("--aggressive-method", help="importance for the aggressive level (default: --method)")
    p.add_argument("--pruner", default="structured",
                   help="structured, unstructured or module:callable (a pruner of your own)")
    p.add_argument("--weight-gating", action=argparse.BooleanOptionalAction, default=None,
                   help="credit zero weights in the energy model (default: on with --pruner unstructured; "
                   "an Eyeriss v2-style assumption, the v1 chip gates only zero activations)")
    p.add_argument("--selector", default="learned", choices=("learned", "max-softmax", "margin", "entropy"),
                   help="what decides per input whether the mild network runs (default learned: a small MLP on "
                   "the aggressive network's pooled features and softmax; the others need no training)")
    p.add_argument("--max-accuracy-drop", type=float, default=None, metavar="PTS",
                   help="accuracy the dynamic model may lose against the original on calibration data "
                   "(points; default 1.5; an estimate, see --confidence)")
    p.add_argument("--confidence", type=float, metavar="P",
                   help="choose the threshold so that, with probability P (e.g. 0.9), its expected accuracy loss "
                   "on new images drawn like the calibration ones is within --max-accuracy-drop (an exact "
                   "test of the images lost minus those gained, fixed-sequence testing) instead of its calibration "
                   "estimate; exact for max-softmax, margin "
                   "and entropy on given levels, approximate for the learned selector and searched levels; costs "
                   "energy; if nothing can be certified, every input goes to the mild network")
    p.add_argument("--mild-rate", type=float, metavar="R",
                   help="instead of an accuracy budget, route this share of inputs to the mild network")
    p.add_argument("--epochs", type=float, default=1.0, help="fine-tuning epochs per level (default 1)")
    p.add_argument("--aggressive-epochs", type=float, metavar="N",
                   help="fine-tuning epochs of the aggressive level (default: --epochs); it loses more "
                   "accuracy than the mild level and recovers it more slowly")
    p.add_argument("--search-epochs", type=float, default=0.3,
                   help="fine-tuning epochs per candidate in the level search (default 0.3)")
    p.add_argument("--search-ratios", type=float, nargs="+", metavar="R",
                   help="the level search's candidate pruning ratios (default: "
                   "0.3 0.5 0.6 0.7 0.8); the original is always a mild candidate")
    p.add_argument("--reuse-levels", metavar="DIR",
                   help="take the pruned, fine-tuned mild and aggressive networks from an earlier compile "
                   "output DIR of this same model and data set, and redo only the selector, calibration, "
                   "lowering and report: minutes instead of the fine-tuning's hours (the fine-tuning options "
                   "are then DIR's)")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="keep every level's fine-tuning checkpoint in DIR (a folder per level, named by a hash "
                   "of the model, data and settings): rerun the same compile after an interruption and it "
                   "resumes where each fine-tune stopped (bit for bit on a CPU)")
    p.add_argument("--train-samples", type=int, help="fine-tune on a random subset of this many images")
    p.add_argument("--lr", type=float, default=0.02, help="fine-tuning learning rate (default 0.02)")
    p.add_argument("--batch", type=int, help="batch size the energy is modelled at (default: N of --input-shape, "
                   "else 1)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (written atomically)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:

    from prunec.errors import UserError
    from prunec.frontend import parse_input_shape
    from prunec.outdir import check_writable
    from prunec.pipeline import compile as compile_model
    from prunec.report import print_summary

    check_writable(args.output, args.force)
    if args.data is not None and not args.data.strip():
        raise UserError("--data is empty; name a data set (fashion-mnist, cifar10, synthetic, PATH.npz or an image "
                        "folder DIR), or leave it out to use the checkpoint's")
    from prunec.data import DATASETS, dataset_info

    if args.model.startswith("zoo:") and args.data:  # a fresh zoo net, shaped for the data set
        info = dataset_info(args.data)
        args.in_channels = args.in_channels or info.in_channels
        args.num_classes = args.num_classes or info.num_classes
    model, meta = load_model(args)
    if not args.data and meta.get("dataset") and meta["dataset"] not in DATASETS:
        raise UserError(f"{args.model} was trained on {meta['dataset']}, a data set of your own: name it with --data")
    data = args.data or meta.get("dataset")
    if args.data and meta.get("dataset") and dataset_info(args.data).name != meta["dataset"]:
        hint = meta["dataset"] if meta["dataset"] in DATASETS else f"the {meta['dataset']} data it was trained on"
        raise UserError(f"{args.model} was trained on {meta['dataset']}, not {args.data}; "
                        f"compile it with --data {hint}")
    if not data:
        raise UserError("name the data set with --data (fashion-mnist, cifar10, synthetic, PATH.npz or an image "
                        "folder DIR)")
    batch = 1 if args.batch is None else args.batch
    if args.input_shape:
        shape = parse_input_shape(args.input_shape)
        info = dataset_info(data)
        if len(shape) != len(info.input_shape):
            raise UserError(f"--input-shape {args.input_shape}: give N,{','.join(map(str, info.input_shape[1:]))} "
                            f"(the batch, then the shape of {data}'s images)")
        if tuple(shape[1:]) != info.input_shape[1:]:
            raise UserError(f"--input-shape {args.input_shape} does not match {data} images "
                            f"{info.input_shape[1:]}")
        batch = shape[0] if args.batch is None else args.batch  # as for `prunec lower`: N, unless --batch
    result = compile_model(
        model, data, output=args.output, force=args.force, model_meta=meta,
        data_root=args.data_root, mean=args.mean, std=args.std, mild=args.mild, aggressive=args.aggressive,
        method=args.method,
        aggressive_method=args.aggressive_method, pruner=args.pruner, selector=args.selector,
        max_accuracy_drop=(1.5 if args.mild_rate is None else None) if args.max_accuracy_drop is None
        else args.max_accuracy_drop,
        mild_rate=args.mild_rate, confidence=args.confidence, epochs=args.epochs,
        aggressive_epochs=args.aggressive_epochs,
        search_epochs=args.search_epochs,
        search_ratios=args.search_ratios,
        train_samples=args.train_samples, lr=args.lr, batch=batch, hw=args.hw, target=args.target,
        seed=args.seed, progress=not args.quiet, leaf_modules=tuple(args.leaf_module),
        weight_gating=args.weight_gating, reuse_levels=args.reuse_levels,
        checkpoint_dir=args.checkpoint_dir,
        command="prunec " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    if not args.quiet:
        print_summary(result.report, make_console())
        make_console().print(f"wrote {args.output}/ (report.md, report.json, model/, model.onnx, ir.json, "
                             "ir_original.json, plots)")
    return 0
