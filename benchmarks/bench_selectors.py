"""Benchmark the selectors: accuracy vs share routed to mild, ROC AUC, CPU throughput.

For one trained model (default: resnet20 on Fashion-MNIST, examples/resnet20_fashion.pt)
it prunes a mild and an aggressive network (prunec.pruning.prune), fine-tunes both with
distillation from the original (prunec.training.finetune), then for every selector kind
(learned, max-softmax, margin, entropy, and the label oracle as an upper bound)

* calibrates the threshold on the calibration split (``--max-accuracy-drop``),
* records on the test split the whole accuracy / mild-share curve and the ROC AUC of
  the score for "the aggressive answer is wrong",
* compares the learned selector with max-softmax at equal accuracy (share routed),
* times the dynamic model against the original on CPU at batch 1 and 256 (median of
  ``--repeats`` runs, same process, same thread count).

Writes benchmarks/results/bench_selectors.json (data) and .md (a view of it).
``--data synthetic --quick`` is a dry run: tiny training budgets, small subsets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runs import budget_points  # noqa: E402
from timing import median_seconds  # noqa: E402

from prunec import frontend  # noqa: E402
from prunec.calibration import roc_auc, sweep  # noqa: E402
from prunec.cli.common import seed  # noqa: E402
from prunec.data import Split, load_split  # noqa: E402
from prunec.dynamic import compile_dynamic, predict  # noqa: E402
from prunec.selectors import oracle_score  # noqa: E402

SCHEMA_VERSION = 1
KINDS = ("learned", "max-softmax", "margin", "entropy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--model", help="trained model (prunec checkpoint or zoo:NAME; default: the bundled "
                   "examples/resnet20_fashion.pt on fashion-mnist, a briefly trained stand-in in a --quick dry run "
                   "on other data)")
    p.add_argument("--arch", default="zoo:resnet20", help="architecture for a bare state dict")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--mild-ratio", type=float, default=0.3)
    p.add_argument("--aggressive-ratio", type=float, default=0.7)
    p.add_argument("--finetune-epochs", type=float, default=2.0)
    p.add_argument("--max-accuracy-drop", type=budget_points, default=1.0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--quick", action="store_true", help="dry run: tiny budgets and subsets")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if args.model is None and args.data == "fashion-mnist":
        args.model = str(ROOT / "examples" / "resnet20_fashion.pt")
    if args.model is None and not args.quick:
        p.error(f"--model: the bundled example is trained on fashion-mnist; give a model trained on {args.data}")
    if args.quick and Path(args.out).resolve() == (ROOT / "benchmarks" / "results").resolve():
        p.error("a --quick dry run needs --out DIR: its numbers are not the committed benchmark's")
    return args


def build_networks(args: argparse.Namespace, train: Split) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(original, mild, aggressive): pruned with prunec.pruning, fine-tuned with distillation."""
    from prunec.pruning import prune
    from prunec.training import finetune

    info = train.info
    if args.model is not None:
        original = frontend.load(args.model, arch=args.arch, in_channels=info.in_channels,
                                 num_classes=info.num_classes)
    else:  # dry run without a trained checkpoint: a briefly trained network stands in
        original = frontend.load("zoo:resnet20", in_channels=info.in_channels, num_classes=info.num_classes)
        finetune(original, train, epochs=1.0, max_steps=30, progress=False, seed=args.seed)
    original.eval()
    example = train.x[:1]
    steps = 20 if args.quick else None
    nets = []
    for ratio in (args.mild_ratio, args.aggressive_ratio):
        net = prune(original, example, ratio)
        finetune(net, train, teacher=original, epochs=args.finetune_epochs, max_steps=steps,
                 progress=False, seed=args.seed, description=f"fine-tune {ratio:.0%}")
        nets.append(net.eval())
    return original, nets[0], nets[1]


def curve_points(scores: np.ndarray, agg_ok: np.ndarray, mild_ok: np.ndarray, original_accuracy: float,
                 costs: dict[str, float], max_points: int = 201) -> list[dict[str, float]]:
    """The test-split sweep, thinned to at most ``max_points`` evenly spaced in share."""
    points = sweep(scores, agg_ok, mild_ok, original_accuracy, costs)
    if len(points) > max_points:
        idx = np.unique(np.linspace(0, len(points) - 1, max_points).round().astype(int))
        points = [points[i] for i in idx]
    return [p.as_dict() for p in points]


def share_for_accuracy(points: list[dict[str, float]], accuracy: float) -> float | None:
    """Least share routed to mild reaching ``accuracy`` on the curve (None if never)."""
    shares = [p["mild_share"] for p in points if p["accuracy"] >= accuracy - 1e-12]
    return min(shares) if shares else None


@torch.no_grad()
def throughput(model: nn.Module, x: torch.Tensor, batch: int, repeats: int, singles: int) -> float:
    """Samples per second: one batch of ``batch``, or ``singles`` batch-1 calls."""
    if batch == 1:
        xs = [x[i:i + 1] for i in range(singles)]
        model(xs[0])

        def run() -> None:
            for xi in xs:
                model(xi)

        return singles / median_seconds(run, repeats)
    xb = x[:batch]
    model(xb)
    return len(xb) / median_seconds(lambda: model(xb), repeats)


def _recorded_normalization(args: argparse.Namespace) -> dict[str, Any]:
    """The input normalization a prunec checkpoint says its model was trained with (else the data set's)."""
    if args.model is None or not os.path.exists(args.model):
        return {}
    _, meta = frontend.load_with_meta(args.model, arch=args.arch)
    recorded = meta.get("preprocess") if isinstance(meta.get("preprocess"), dict) else {}
    return {k: recorded[k] for k in ("mean", "std") if recorded.get(k) is not None}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    norm = _recorded_normalization(args)
    train = load_split(args.data, "train", **norm)
    calibration = load_split(args.data, "calibration", **norm)
    test = load_split(args.data, "test", **norm)
    if args.quick:
        train, calibration, test = train.subset(512), calibration.subset(256), test.subset(256)
    original, mild, aggressive = build_networks(args, train)

    y = test.y
    orig_acc = float((predict(original, test.x).argmax(1) == y).float().mean())
    mild_ok = (predict(mild, test.x).argmax(1) == y).numpy()
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "model": args.model, "data": args.data, "quick": args.quick,
        "ratios": {"mild": args.mild_ratio, "aggressive": args.aggressive_ratio},
        "finetune_epochs": args.finetune_epochs, "max_accuracy_drop": args.max_accuracy_drop,
        "threads": args.threads, "repeats": args.repeats, "test_samples": len(y),
        "accuracy": {"original": orig_acc, "mild": float(mild_ok.mean())}, "selectors": {},
    }
    compiled_by_kind = {}
    agg_ok = None
    for kind in KINDS:
        compiled = compile_dynamic(original, aggressive, mild, calibration, selector=kind,
                                   max_accuracy_drop=args.max_accuracy_drop, seed=args.seed,
                                   epochs=20 if args.quick else 60)
        compiled_by_kind[kind] = compiled
        logits, scores = compiled.model.scores(test.x)
        agg_ok = (logits.argmax(1) == y).numpy()
        with torch.no_grad():
            final, route = compiled.model(test.x, return_route=True)
        result["selectors"][kind] = {
            "auc": roc_auc(scores.numpy(), ~agg_ok),
            "curve": curve_points(scores.numpy(), agg_ok, mild_ok, orig_acc, compiled.costs),
            "chosen_on_calibration": compiled.chosen.as_dict(),
            "test_at_chosen": {"accuracy": float((final.argmax(1) == y).float().mean()),
                               "mild_share": float(route.float().mean())},
        }
    assert agg_ok is not None
    result["accuracy"]["aggressive"] = float(agg_ok.mean())
    costs = compiled_by_kind["max-softmax"].costs
    oracle = oracle_score(predict(aggressive, test.x), y).numpy()
    result["selectors"]["oracle"] = {"auc": roc_auc(oracle, ~agg_ok),
                                     "curve": curve_points(oracle, agg_ok, mild_ok, orig_acc, costs)}
    result["costs_macs"] = {k: c.costs for k, c in compiled_by_kind.items()}

    # learned vs max-softmax at equal accuracy: the share each needs to reach the target
    comparison = []
    learned, baseline = result["selectors"]["learned"]["curve"], result["selectors"]["max-softmax"]["curve"]
    for drop in (0.25, 0.5, 1.0, 2.0, 3.0):
        target = orig_acc - drop / 100
        a, b = share_for_accuracy(learned, target), share_for_accuracy(baseline, target)
        comparison.append({"accuracy_drop_pts": drop, "target_accuracy": target, "learned_share": a,
                           "max_softmax_share": b,
                           "learned_saves": None if a is None or b is None else b - a})
    result["learned_vs_max_softmax"] = comparison

    # throughput, same process: the original vs every dynamic model at its chosen threshold
    singles = 32 if args.quick else 200
    speed: dict[str, dict[str, float]] = {}
    for batch in (1, 256):
        speed[f"batch_{batch}"] = {"original": throughput(original, test.x, batch, args.repeats, singles)}
        for kind, compiled in compiled_by_kind.items():
            speed[f"batch_{batch}"][f"dynamic_{kind}"] = throughput(compiled.model, test.x, batch,
                                                                     args.repeats, singles)
    result["throughput_samples_per_s"] = speed

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench_selectors"  # a dry run says so inside ("quick": true) and in the title
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return result


def markdown(r: dict[str, Any]) -> str:
    acc = r["accuracy"]
    lines = [f"# Selector benchmark ({r['data']}{', quick dry run' if r['quick'] else ''})", "",
             f"Model `{r['model']}`; mild {r['ratios']['mild']:.0%} / aggressive "
             f"{r['ratios']['aggressive']:.0%} pruned; {r['test_samples']} test samples; "
             f"{r['threads']} threads, median of {r['repeats']} runs.", "",
             f"Test accuracy: original {acc['original']:.2%}, mild {acc['mild']:.2%}, "
             f"aggressive {acc['aggressive']:.2%}.", "",
             "| selector | ROC AUC | threshold (calib.) | test acc at it | test share to mild |",
             "|---|---|---|---|---|"]
    for kind, s in r["selectors"].items():
        chosen, at = s.get("chosen_on_calibration"), s.get("test_at_chosen")
        lines.append(f"| {kind} | {s['auc']:.4f} | "
                     + (f"{chosen['threshold']:.4g} | {at['accuracy']:.2%} | {at['mild_share']:.1%} |"
                        if chosen else "- | - | - |"))
    lines += ["", "Share routed to mild needed to reach an accuracy (test curve):", "",
              "| drop vs original (pts) | learned | max-softmax | learned saves |", "|---|---|---|---|"]
    def fmt(v: float | None) -> str:
        return "unreachable" if v is None else f"{v:.1%}"

    for c in r["learned_vs_max_softmax"]:
        saves = c["learned_saves"]
        verdict = "n/a" if saves is None else f"{saves:+.1%}" + ("" if saves >= 0 else " (learned is worse)")
        lines.append(f"| {c['accuracy_drop_pts']} | {fmt(c['learned_share'])} | "
                     f"{fmt(c['max_softmax_share'])} | {verdict} |")
    lines += ["", "CPU throughput (samples/s):", "", "| model | batch 1 | batch 256 |", "|---|---|---|"]
    t1, t256 = r["throughput_samples_per_s"]["batch_1"], r["throughput_samples_per_s"]["batch_256"]
    for name in t1:
        lines.append(f"| {name} | {t1[name]:.1f} | {t256[name]:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
