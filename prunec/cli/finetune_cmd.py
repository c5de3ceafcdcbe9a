"""``prunec finetune``: train a model (optionally distilling from a teacher) and save it.

The same command scales out with ``torchrun --nproc_per_node=K -m prunec finetune ...``:
every rank runs it, :func:`prunec.training.finetune` joins the process group, and only
rank 0 prints and writes the output.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from prunec.cli.common import (
    DATA_ROOT_HELP,
    add_model_arguments,
    add_normalization_arguments,
    load_model,
    normalization,
    seed,
)
from prunec.errors import UserError
from prunec.outdir import check_writable_file

#: Checkpoint keys save_checkpoint writes itself (or the loader adds); all others pass through.
_RESERVED = ("format", "arch", "arch_kwargs", "state_dict", "source")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune", help="train / fine-tune a model (cross-entropy, or distillation with --teacher)",
        description="Fine-tune MODEL on a data set's train split with SGD + cosine schedule; "
        "with --teacher the loss adds knowledge distillation from it. Runs data-parallel "
        "under torchrun.")
    add_model_arguments(p)
    p.add_argument("--data", required=True,
                   help="fashion-mnist, cifar10, synthetic, or your own PATH.npz or image folder DIR")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    add_normalization_arguments(p)
    p.add_argument("--teacher", metavar="MODEL", help="model to distil from (e.g. the unpruned original)")
    p.add_argument("--teacher-arch", help="architecture of a state-dict --teacher file")
    p.add_argument("--epochs", type=float, default=1.0, help="may be fractional (default 1)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate (default 0.05)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size (default 128)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the distillation term")
    p.add_argument("--kd-temperature", type=float, default=4.0)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop + horizontal flip (default: on for cifar10)")
    p.add_argument("--train-subset", type=int, metavar="N", help="train on a random N-sample subset")
    p.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True,
                   help="measure test-split accuracy afterwards (default on)")
    p.add_argument("--checkpoint-dir", help="write epoch_K.pt here after every epoch")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="restart from the latest checkpoint in --checkpoint-dir (default on); a checkpoint of "
                   "another run (other starting weights, teacher, data size, seed, lr, momentum, weight decay, "
                   "distillation or augmentation settings) is refused, not resumed")
    p.add_argument("--keep-zeros", action=argparse.BooleanOptionalAction, default=True,
                   help="weights that are exactly zero at the start stay zero, so an unstructured pruning "
                   "survives fine-tuning (default on; a trained dense model holds no exact zeros)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="fine-tuned checkpoint")
    p.set_defaults(handler=run)


def _check_teacher_normalization(meta: dict[str, Any], info: Any, teacher: str) -> None:
    """Distillation feeds the teacher the student's inputs: refuse a teacher trained on others."""
    from prunec.data import renormalized, same_normalization

    recorded = meta.get("preprocess")
    if not isinstance(recorded, dict):
        return
    try:
        theirs = renormalized(info, recorded.get("mean"), recorded.get("std"), "--teacher's recorded (preprocess)")
        same = same_normalization({"mean": theirs.mean, "std": theirs.std}, {"mean": info.mean, "std": info.std})
    except UserError:
        return  # a record that does not fit these images says nothing about them: _check_fits judges the teacher
    if not same:
        raise UserError(f"--teacher {teacher} was trained on inputs normalized with mean {list(theirs.mean)} and "
                        f"std {list(theirs.std)}, but MODEL gets mean {list(info.mean)} and std {list(info.std)}; "
                        "distilling needs the same inputs for both")


def run(args: argparse.Namespace) -> int:
    from prunec.data import dataset_info, load_split, renormalized
    from prunec.frontend import load_with_meta, save_checkpoint
    from prunec.training import all_zero_layers, evaluate, finetune

    info = dataset_info(args.data)
    check_writable_file(args.output)
    if args.train_subset is not None and args.train_subset < 1:
        raise UserError(f"--train-subset must be positive, got {args.train_subset}")
    if args.model.startswith("zoo:"):  # a fresh zoo net takes the data set's shape by default
        args.in_channels = args.in_channels or info.in_channels
        args.num_classes = args.num_classes or info.num_classes
    torch.manual_seed(args.seed)  # fresh weights, when MODEL is zoo:NAME, are seeded too
    model, meta = load_model(args)
    arch = meta.get("arch") or meta.get("factory") or args.arch
    if not arch:
        raise UserError(f"cannot save a fine-tuned {args.model}: its architecture is unknown; "
                        "give a zoo:NAME, a prunec checkpoint, or --arch")
    mean, std, source = normalization(args, meta)
    info = renormalized(info, mean, std, source)
    teacher = None
    if args.teacher:
        teacher, teacher_meta = load_with_meta(args.teacher, arch=args.teacher_arch, trust_model=args.trust_model,
                                               in_channels=args.in_channels, num_classes=args.num_classes)
        _check_teacher_normalization(teacher_meta, info, args.teacher)

    if args.keep_zeros and (frozen := all_zero_layers(model)):
        print(f"note: {', '.join(frozen)} hold{'s' if len(frozen) == 1 else ''} only zero weights, and --keep-zeros "
              "keeps them zero, so they will not train (a zero-initialised layer, not a pruning mask? pass "
              "--no-keep-zeros)", file=sys.stderr)
    train = load_split(args.data, "train", args.data_root, info.mean, info.std).subset(args.train_subset, args.seed)
    classes = _check_fits(model, train, "MODEL")
    if teacher is not None and (theirs := _check_fits(teacher, train, "--teacher")) != classes:
        raise UserError(f"--teacher outputs {theirs} classes but MODEL {classes}: distillation compares their "
                        "outputs class by class")
    augment = args.augment if args.augment is not None else info.name == "cifar10"
    result = finetune(
        model, train, teacher=teacher, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        momentum=args.momentum, weight_decay=args.weight_decay, kd_alpha=args.kd_alpha,
        kd_temperature=args.kd_temperature, seed=args.seed, max_steps=args.max_steps,
        checkpoint_dir=args.checkpoint_dir, resume=args.resume, augment=augment,
        progress=sys.stderr.isatty(), description="fine-tune" if teacher is not None else "train",
        device=args.device, keep_zeros=args.keep_zeros)
    if result.rank != 0:
        return 0

    kwargs = meta.get("arch_kwargs") or {}
    first = _first_conv_and_classes(model)
    in_channels = int(kwargs.get("in_channels") or first[0] or info.in_channels)
    num_classes = int(kwargs.get("num_classes") or first[1] or info.num_classes)
    kept: dict[str, Any] = {k: v for k, v in meta.items() if k not in _RESERVED}
    kept["dataset"] = info.name  # what these weights were last trained on, as preprocess below
    kept["input_shape"] = list(info.input_shape)
    kept["preprocess"] = {"mean": list(info.mean), "std": list(info.std)}  # what these weights were trained on
    steps = f"{result.steps} step{'s' if result.steps != 1 else ''}"
    summary = (f"{steps} ({result.epochs:.2f} epochs), train loss {result.loss:.4f}, "
               f"train accuracy {result.accuracy:.2f}%")
    if args.evaluate:
        test = load_split(args.data, "test", args.data_root, info.mean, info.std)
        accuracy = evaluate(model, test, device=args.device)
        kept["test_accuracy"] = round(accuracy, 2)
        summary += f", test accuracy {accuracy:.2f}%"
    else:
        kept.pop("test_accuracy", None)  # the parent's number no longer describes these weights
    kept["finetune"] = {"data": info.name, "epochs": result.epochs_trained(args.epochs), "steps": result.steps,
                        "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                        "teacher": args.teacher, "kd_alpha": args.kd_alpha if args.teacher else 0.0,
                        "kd_temperature": args.kd_temperature, "augment": augment,
                        "world_size": result.world_size, "train_loss": result.loss,
                        "train_accuracy": result.accuracy}
    try:
        save_checkpoint(model, args.output, arch, in_channels, num_classes, **kept)
    except OSError as exc:
        raise UserError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"{summary}; saved {args.output}")
    return 0


def _check_fits(model: torch.nn.Module, train: Any, which: str) -> int:
    """Fail with one line, before any training, if the data set's images do not fit ``model``;
    return how many classes it outputs."""
    try:
        with torch.no_grad():
            was = model.training
            out = model.eval()(train.x[:2])
            model.train(was)
    except Exception as exc:  # noqa: BLE001 - any forward failure means the shapes disagree
        text = str(exc).strip().splitlines()
        raise UserError(f"{which} does not accept {train.info.name} images of shape "
                        f"{tuple(train.x.shape[1:])}: {text[0] if text else type(exc).__name__}"
                        ) from None
    if out.dim() != 2 or out.shape[1] < train.info.num_classes:
        raise UserError(f"{which} outputs shape {tuple(out.shape)}, but {train.info.name} has "
                        f"{train.info.num_classes} classes (set --num-classes)")
    return int(out.shape[1])


def _first_conv_and_classes(model: torch.nn.Module) -> tuple[int | None, int | None]:
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return (convs[0].in_channels if convs else None, linears[-1].out_features if linears else None)
