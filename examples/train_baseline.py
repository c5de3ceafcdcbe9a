"""Train the bundled baseline: a zoo network on a real data set, plain cross-entropy,
SGD + cosine schedule (prunec.training.finetune without a teacher).

This is the script that produced ``examples/resnet20_fashion.pt``:

    python examples/train_baseline.py --arch zoo:resnet20 --data fashion-mnist \\
        --epochs 6 --seed 0 --threads 1 -o examples/resnet20_fashion.pt

The run is deterministic under ``--seed`` on CPU (same seed, same thread count => same
weights). It trains on the GPU when there is one, as ``prunec finetune`` does (``--device cpu``
to reproduce a CPU-trained checkpoint bit for bit). Test accuracy is on the data set's test
split (for Fashion-MNIST the official 10,000 test images); it is stored in the checkpoint next
to what a loader needs to feed the model (input shape and the mean/std preprocessing).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from prunec import zoo
from prunec.cli.common import DATA_ROOT_HELP, seed
from prunec.data import load_split
from prunec.errors import UserError
from prunec.frontend import save_checkpoint
from prunec.outdir import check_creatable_directory
from prunec.training import default_device, evaluate, finetune


def _where(device: torch.device) -> str:
    return f"{torch.get_num_threads()} threads" if device.type == "cpu" else f"on {device}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="zoo:resnet20")
    parser.add_argument("--data", default="fashion-mnist",
                        help="fashion-mnist, cifar10, synthetic, or your own PATH.npz or image folder DIR")
    parser.add_argument("--data-root", help=DATA_ROOT_HELP)
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="random crop + flip (default: on for cifar10 only)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="train in channels-last memory format (faster convolutions on CPU)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (speed checks)")
    parser.add_argument("--checkpoint-dir", help="per-epoch checkpoints, resumed if present")
    parser.add_argument("-o", "--output", default="examples/resnet20_fashion.pt")
    args = parser.parse_args(argv)
    out = Path(args.output)
    try:  # before hours of training, not after
        if out.exists() and not out.is_file():
            raise UserError(f"cannot write {out}: it exists and is not a regular file")
        check_creatable_directory(out.parent.absolute(), f"cannot write {out}")
        device = default_device(args.device)
    except UserError as exc:
        parser.exit(2, f"train_baseline.py: error: {exc}\n")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the initial weights
    train, test = load_split(args.data, "train", args.data_root), load_split(args.data, "test",
                                                                              args.data_root)
    info = train.info
    augment = args.augment if args.augment is not None else info.name == "cifar10"
    model = zoo.build(args.arch, info.in_channels, info.num_classes)
    print(f"training {args.arch} on {info.name}: {len(train)} train / {len(test)} test images, "
          f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr} cosine, seed {args.seed}, "
          f"augment {augment}, {_where(device)}", flush=True)

    def log(summary: dict[str, float]) -> None:
        print(f"epoch {summary['epoch']:.2f}  step {int(summary['step'])}  "
              f"loss {summary['loss']:.4f}  train acc {summary['accuracy']:.2f}%  "
              f"lr {summary['lr']:.4f}  {summary['seconds']:.0f}s", flush=True)

    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    started = time.perf_counter()
    result = finetune(model, train, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      seed=args.seed, max_steps=args.max_steps, checkpoint_dir=args.checkpoint_dir,
                      augment=augment, progress=sys.stderr.isatty(), description="train",
                      device=device, on_epoch=log)
    seconds = time.perf_counter() - started
    model.to(memory_format=torch.contiguous_format)  # the checkpoint stores plain NCHW tensors
    accuracy = evaluate(model, test, device=device)
    print(f"{result.steps} steps in {seconds:.0f}s ({seconds / max(result.steps, 1):.3f}s/step); "
          f"test accuracy {accuracy:.2f}% on {info.name} {test.name} ({len(test)} images)", flush=True)

    script = sys.argv[0] if argv is None else os.path.relpath(__file__)  # called from another script: this one
    command = "python " + " ".join(shlex.quote(a) for a in [script, *(argv or sys.argv[1:])])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, args.output, args.arch, info.in_channels, info.num_classes,
                    dataset=info.name, input_shape=list(info.input_shape),
                    preprocess={"mean": list(info.mean), "std": list(info.std)},
                    test_accuracy=round(accuracy, 2), test_split=test.name,
                    epochs=result.epochs_trained(args.epochs),
                    steps=result.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    augment=augment, threads=args.threads, trained_with=result.computed_with, train_loss=result.loss,
                    train_accuracy=result.accuracy, command=command)
    print(f"saved {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
