"""Can a learned selector beat max-softmax if it is taught better? Two changes, on a compiled model.

``prunec compile`` trains its learned selector on the calibration split to predict "the
aggressive answer is wrong". Two reasons it might do better, each tried here on the
networks of an existing compiled model (``prunec.load_compiled``), nothing retrained:

* **target** -- about half of the aggressive network's errors are errors of the mild network
  too, so routing them costs energy and gains nothing. ``mild-fixes`` trains on "the
  aggressive answer is wrong and the mild one right" instead (``train_selector(targets=)``).
* **data** -- the calibration split is small (a few hundred errors). ``+train`` adds a seeded
  subset of the training split. The networks were trained on it, so its errors are
  representative only where train accuracy stays close to test accuracy; each row records
  both networks' accuracy on that subset so this can be checked.

Each selector is scored on the test split against max-softmax and the oracle (which routes
exactly the inputs the mild network fixes): ROC AUC for "aggressive wrong", and the share
routed to mild and the Eyeriss energy (relative to the original, the compiled model's own
per-role costs) needed to come within 0.5 / 1.0 / 1.5 / 2.0 points of the mild network.

Writes benchmarks/results/bench_selector_targets.{json,md}; rows are merged by compiled model.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runs import dynamic_costs, learned_compiled, run_study, study_header, study_heading  # noqa: E402

from prunec import __version__  # noqa: E402
from prunec.calibration import roc_auc, sweep  # noqa: E402
from prunec.data import Split, load_split  # noqa: E402
from prunec.dynamic import predict  # noqa: E402
from prunec.selectors import LearnedSelector, front_outputs, max_softmax_score, train_selector  # noqa: E402

GAPS = (0.5, 1.0, 1.5, 2.0)  # points below the mild network's test accuracy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("compiled", nargs="+", type=Path, help="compiled-model directories (prunec compile -o DIR)")
    p.add_argument("--train-samples", type=int, default=20000,
                   help="training-split images added for the '+train' selectors")
    p.add_argument("--epochs", type=int, default=60, help="selector training epochs (compile's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    return p.parse_args(argv)


def _joined(a: Split, b: Split) -> Split:
    return dataclasses.replace(a, name=f"{a.name}+{b.name}", x=torch.cat([a.x, b.x]), y=torch.cat([a.y, b.y]))


def oracle_ranking(agg_ok: np.ndarray, mild_ok: np.ndarray) -> np.ndarray:
    """Scores of the best possible selector: the inputs the mild network fixes first, those it
    breaks last. Every score is distinct, so a sweep can stop after any number of fixes, not
    only after all of them (a plain 0/1 score would overstate the oracle's energy)."""
    fixes, breaks = ~agg_ok & mild_ok, agg_ok & ~mild_ok
    return 2.0 * fixes - breaks + np.linspace(0.4, 0.0, len(agg_ok))


def _row(compiled_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    report, model, norm = learned_compiled(compiled_dir, "costs its selectors with a learned selector's energy")
    data = report["data"]["name"]
    calibration, test = load_split(data, "calibration", **norm), load_split(data, "test", **norm)
    extra = load_split(data, "train", **norm).subset(args.train_samples, seed=args.seed)
    with torch.no_grad():
        test_logits, test_taps = front_outputs(model.front, test.x)
    agg_ok = (test_logits.argmax(1) == test.y).numpy()
    mild_ok = (predict(model.mild, test.x).argmax(1) == test.y).numpy()
    fixes = ~agg_ok & mild_ok

    with torch.no_grad():  # the premise of '+train': its errors look like the test split's
        extra_accuracy = {"aggressive": 100 * float((front_outputs(model.front, extra.x)[0].argmax(1) == extra.y)
                                                    .float().mean()),
                          "mild": 100 * float((predict(model.mild, extra.x).argmax(1) == extra.y).float().mean())}

    def fitted(split: Split, target: str) -> np.ndarray:
        selector = LearnedSelector([t.shape[1] for t in test_taps], test_logits.shape[1])
        targets = None
        if target == "mild-fixes":
            with torch.no_grad():
                agg_wrong = front_outputs(model.front, split.x)[0].argmax(1) != split.y
                targets = agg_wrong & (predict(model.mild, split.x).argmax(1) == split.y)
        train_selector((model.front, selector), split, epochs=args.epochs, seed=args.seed, targets=targets)
        with torch.no_grad():
            return selector(test_logits, *test_taps).numpy()

    scores = {"max-softmax": max_softmax_score(test_logits).numpy()}
    for name, split in (("calibration", calibration), ("+train", _joined(calibration, extra))):
        for target in ("aggressive-wrong", "mild-fixes"):
            scores[f"learned, {target}, {name}"] = fitted(split, target)
    scores["oracle"] = oracle_ranking(agg_ok, mild_ok)
    mild_acc = 100 * float(mild_ok.mean())
    variants = {}
    for name, score in scores.items():
        costs = dynamic_costs(report, with_selector=name.startswith("learned"))
        points = sweep(score, agg_ok, mild_ok, None, costs)
        need = {}
        for gap in GAPS:
            ok = [p for p in points if 100 * p.accuracy >= mild_acc - gap - 1e-9]
            best = min(ok, key=lambda p: p.expected_energy, default=None)
            need[f"{gap:g}"] = None if best is None else {
                "mild_share": best.mild_share, "relative_energy": best.expected_energy / costs["original"]}
        variants[name] = {"auc_aggressive_wrong": _auc(score, ~agg_ok), "auc_mild_fixes": _auc(score, fixes),
                          "to_reach": need}
    return {"compiled": str(compiled_dir.relative_to(ROOT)) if compiled_dir.is_relative_to(ROOT) else str(compiled_dir),
            "network": report["model"]["arch"], "dataset": data,
            "accuracy": {"aggressive": 100 * float(agg_ok.mean()), "mild": mild_acc},
            "train_subset_accuracy": extra_accuracy,
            "settings": {"command": "python " + shlex.join(sys.argv), "seed": args.seed, "threads": args.threads,
                         "epochs": args.epochs, "train_samples": args.train_samples},
            "test_inputs_mild_fixes": int(fixes.sum()),
            "aggressive_errors_mild_also_gets_wrong": float((~agg_ok & ~mild_ok).sum() / max(1, (~agg_ok).sum())),
            "samples": {"calibration": len(calibration), "train_added": len(extra), "test": len(test)},
            "variants": variants}


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC, None (JSON null) where the labels have one class only."""
    auc = roc_auc(scores, labels)
    return auc if np.isfinite(auc) else None


def _fmt(auc: float | None) -> str:
    return "n/a" if auc is None else f"{auc:.3f}"


def render(payload: dict[str, Any]) -> str:
    lines = study_header(
        "Selector targets and training data", payload,
        f"Seed {payload['seed']}, {payload['threads']} threads. Energy relative to the original network (Eyeriss, the "
        "compiled model's per-role costs) that each selector needs on the test split to come within the given points "
        "of the mild network; lower is better. The oracle routes the inputs the mild network fixes, and only as many "
        "as needed.")
    for row in payload["rows"]:
        acc = row["accuracy"]
        lines += [study_heading(row), "",
                  f"Aggressive {acc['aggressive']:.2f} %, mild {acc['mild']:.2f} %; the mild network also gets "
                  f"{row['aggressive_errors_mild_also_gets_wrong']:.0%} of the aggressive errors wrong. Selector "
                  f"training: {row['samples']['calibration']} calibration images, +{row['samples']['train_added']} "
                  f"training images for '+train' (on which the aggressive network scores "
                  f"{row['train_subset_accuracy']['aggressive']:.2f} %, the mild one "
                  f"{row['train_subset_accuracy']['mild']:.2f} %); {row['samples']['test']} test images. "
                  f"Row made by `{row['settings']['command']}`.", "",
                  "| selector | AUC (aggr. wrong) | AUC (mild fixes) | "
                  + " | ".join(f"energy at mild −{g:g}" for g in GAPS) + " |",
                  "|---|---:|---:|" + "---:|" * len(GAPS)]
        for name, v in row["variants"].items():
            cells = ["—" if (n := v["to_reach"][f"{g:g}"]) is None
                     else f"{n['relative_energy']:.1%} ({n['mild_share']:.1%})" for g in GAPS]
            lines.append(f"| {name} | {_fmt(v['auc_aggressive_wrong'])} | {_fmt(v['auc_mild_fixes'])} | "
                         + " | ".join(cells) + " |")
        lines += ["", "Cells: relative energy (share routed to mild).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    return run_study("bench_selector_targets", args.compiled, args.results, lambda d: _row(d, args), render,
                     seed=args.seed, threads=args.threads,
                     versions={"prunec": __version__, "torch": torch.__version__})


if __name__ == "__main__":
    sys.exit(main())
