"""What the two pruning levels keep after fine-tuning, per network, on real data.

For each network: the unpruned original (trained here, or the bundled example for
resnet20 on Fashion-MNIST), then the mild and the aggressive level pruned from it
(``prunec.prune_two_levels``, structured l1 by default) and fine-tuned with knowledge
distillation from the original. Per variant: test accuracy, parameters, MACs, Eyeriss
energy per inference relative to the original, pruning wall time (median of repeated
runs) and fine-tuning wall time. Writes benchmarks/results/bench_levels.{json,md}.

Long-running and resumable, like reproduce.py: baselines train with per-epoch checkpoints,
level fine-tunes checkpoint too, finished rows are cached under ``--work``, and the result
files are rewritten (merged with rows committed earlier) after every network.

    python benchmarks/bench_levels.py --threads 2
    python benchmarks/bench_levels.py --networks resnet56 --baseline-epochs 1 --epochs 0.5
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runs import (  # noqa: E402
    add_run_arguments,
    baseline_lr,
    differences,
    positive_int,
    previous_rows,
    write_atomic,
)
from timing import median_seconds  # noqa: E402

from examples.train_baseline import main as train_baseline  # noqa: E402
from prunec import __version__  # noqa: E402
from prunec.data import load_split  # noqa: E402
from prunec.errors import UserError  # noqa: E402
from prunec.frontend import example_input, load_with_meta, trace  # noqa: E402
from prunec.pipeline import CompileConfig, energy_of, finetune_level, per_inference  # noqa: E402
from prunec.pruning import prune_two_levels  # noqa: E402
from prunec.summary import count_macs  # noqa: E402
from prunec.training import evaluate  # noqa: E402

NETWORKS = ("resnet20", "resnet56", "vgg16_bn", "mobilenetv2")
BUNDLED = {("resnet20", "fashion-mnist"): ROOT / "examples" / "resnet20_fashion.pt"}


def _baseline(net: str, args: argparse.Namespace, work: Path) -> Path:
    """The bundled checkpoint where there is one, else a baseline trained (or resumed) here."""
    bundled = BUNDLED.get((net, args.data))
    if bundled is not None and bundled.exists() and not args.train_bundled:
        return bundled
    lr = baseline_lr(net, args.baseline_lr)
    # one file per setting the weights depend on: a run with another seed, thread count or lr trains its own
    stem = f"baseline_{args.baseline_epochs:g}ep_s{args.seed}_t{args.threads}_lr{lr:g}"
    path = work / f"{stem}.pt"
    if not path.exists():
        train_baseline(["--arch", f"zoo:{net}", "--data", args.data, "--epochs", str(args.baseline_epochs),
                        "--seed", str(args.seed), "--threads", str(args.threads), "--lr", str(lr),
                        "--checkpoint-dir", str(work / f"{stem}_ckpt"), "-o", str(path)])
    return path


def _variant(model: torch.nn.Module, x: torch.Tensor, test: Any, cfg: CompileConfig, sparsity: torch.Tensor
             ) -> dict[str, Any]:
    return {"accuracy": evaluate(model, test), "params": sum(p.numel() for p in model.parameters()),
            "macs": count_macs(model, x), "energy": per_inference(energy_of(model, x, cfg, sparsity))}


def run_row(net: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work) / f"{net}_{args.data}"
    work.mkdir(parents=True, exist_ok=True)
    tag = f"levels_{args.mild:g}_{args.aggressive:g}_{args.method}_{args.epochs:g}ep_s{args.seed}_t{args.threads}"
    row_file = work / f"{tag}.json"
    if args.redo:  # fine-tunes included, as --redo says: their checkpoints would only be resumed
        for name in ("mild", "aggressive"):
            shutil.rmtree(work / f"{tag}_{name}_ckpt", ignore_errors=True)
    if row_file.exists() and not args.redo:
        cached = json.loads(row_file.read_text())
        asked = {k: v for k, v in _settings(args).items()
                 if k in ("seed", "threads", "baseline_epochs", "train_bundled")}
        differ = differences({"train_bundled": False, **cached.get("settings", {})}, asked)
        if not differ:
            return cached
        print(f"{net}: the cached row was made with other settings ({'; '.join(differ)}); not reusing it",
              flush=True)
    started = time.perf_counter()
    baseline = _baseline(net, args, work)
    model, meta = load_with_meta(str(baseline))
    model.eval()
    train, calib, test = (load_split(args.data, s) for s in ("train", "calibration", "test"))
    x = example_input(train.info.input_shape)
    cfg = CompileConfig(data=args.data, method=args.method, epochs=args.epochs, seed=args.seed,
                        progress=not args.quiet, augment=args.data == "cifar10")
    sparsity = calib.x[: cfg.sparsity_samples]
    original = trace(model, x)

    def levels() -> tuple[torch.nn.Module, torch.nn.Module]:
        return prune_two_levels(model, x, args.mild, args.aggressive, method=args.method)

    prune_seconds = median_seconds(levels, args.repeats)
    mild, aggressive = levels()
    variants = {"original": {**_variant(original, x, test, cfg, sparsity), "ratio": 0.0,
                             "baseline": str(baseline.relative_to(ROOT)) if baseline.is_relative_to(ROOT)
                             else str(baseline), "baseline_epochs": meta.get("epochs"),
                             "baseline_lr": meta.get("lr")}}
    for name, ratio, level in (("mild", args.mild, mild), ("aggressive", args.aggressive, aggressive)):
        t0 = time.perf_counter()
        finetune_level(level, original, train, args.epochs, cfg, f"{net} {name} r={ratio:g}",
                       checkpoint_dir=str(work / f"{tag}_{name}_ckpt"))
        variants[name] = {**_variant(level, x, test, cfg, sparsity), "ratio": ratio,
                          "finetune_seconds": round(time.perf_counter() - t0, 1)}
    orig = variants["original"]
    for v in variants.values():
        v["relative_energy"] = v["energy"] / orig["energy"]
        v["relative_macs"] = v["macs"] / orig["macs"]
    row = {"network": net, "dataset": args.data, "method": args.method, "variants": variants,
           "prune_two_levels_seconds": prune_seconds, "finetune_epochs": args.epochs,
           "wall_seconds": round(time.perf_counter() - started, 1), "settings": _settings(args)}
    write_atomic(row_file, json.dumps(row, indent=1) + "\n")
    return row


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "seed": args.seed,
            "threads": args.threads, "baseline_epochs": args.baseline_epochs, "epochs": args.epochs,
            "train_bundled": args.train_bundled,
            "versions": {"prunec": __version__, "torch": torch.__version__, "python": platform.python_version(),
                         "device": f"cpu ({torch.get_num_threads()} threads)"}}


def render_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# Two pruning levels after fine-tuning", "",
             "Test accuracy in % (Fashion-MNIST: the official 10k test images; CIFAR-10: the 5k held-out "
             "split). Energy: Eyeriss per inference at batch 1 relative to the original (activation "
             "sparsity measured on 256 calibration images). Prune time: `prune_two_levels` (both levels, "
             "copy + trace + pass), median of repeated runs. Fine-tuning: knowledge distillation from the "
             "original plus cross-entropy, SGD with a cosine schedule; the budgets are those of each row's "
             "command (short, to fit 2 CPU cores), so the accuracies are lower bounds of what longer "
             "fine-tuning reaches.", ""]
    for row in rows:
        v, st = row["variants"], row["settings"]
        orig = v["original"]
        lines += [f"## {row['network']} on {row['dataset']}", "",
                  f"Original: `{orig['baseline']}` ({orig['baseline_epochs']} training epochs, lr "
                  f"{orig.get('baseline_lr', '?')}). Levels "
                  f"fine-tuned {row['finetune_epochs']:g} epochs each. Both levels pruned in "
                  f"{row['prune_two_levels_seconds']:.3f} s. Row: `{st['command']}` (seed {st['seed']}, "
                  f"{st['threads']} threads), {row['wall_seconds']:.0f} s.", "",
                  "| variant | ratio | accuracy % | Δ acc (pts) | params | MACs | rel. MACs | rel. energy "
                  "| fine-tune s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name in ("original", "mild", "aggressive"):
            d = v[name]
            ft = f"{d['finetune_seconds']:.0f}" if "finetune_seconds" in d else "—"
            lines.append(f"| {name} | {d['ratio']:.2f} | {d['accuracy']:.2f} | {d['accuracy'] - orig['accuracy']:+.2f}"
                         f" | {d['params']:,} | {d['macs'] / 1e6:.1f}M | {d['relative_macs']:.1%} | "
                         f"{d['relative_energy']:.1%} | {ft} |")
        lines.append("")
    return "\n".join(lines)


def write_results(rows: dict[tuple[str, str], dict[str, Any]], results: Path) -> None:
    ordered = [rows[k] for k in sorted(rows, key=lambda k: (k[1], NETWORKS.index(k[0]) if k[0] in NETWORKS
                                                             else len(NETWORKS), k[0]))]
    results.mkdir(parents=True, exist_ok=True)
    write_atomic(results / "bench_levels.json", json.dumps({"schema_version": 1, "rows": ordered}, indent=1) + "\n")
    write_atomic(results / "bench_levels.md", render_markdown(ordered))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "cifar10", "synthetic"))
    parser.add_argument("--mild", type=float, default=0.3)
    parser.add_argument("--aggressive", type=float, default=0.7)
    parser.add_argument("--method", default="l1")
    parser.add_argument("--baseline-epochs", type=float, default=1.0,
                        help="training epochs of baselines trained here (the bundled example keeps its own)")
    parser.add_argument("--train-bundled", action="store_true", help="train resnet20 too instead of the example")
    parser.add_argument("--epochs", type=float, default=0.5, help="fine-tuning epochs per level")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="runs of prune_two_levels to take the median of")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    computed: dict[tuple[str, str], dict[str, Any]] = {}
    for net in args.networks:
        try:
            computed[(net, args.data)] = run_row(net, args)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        # rows another run finished meanwhile are kept; this run's own rows win
        write_results({**previous_rows(args.results / "bench_levels.json"), **computed}, args.results)
        print(f"finished {net} on {args.data}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
