"""How the learned selector's threshold is calibrated, and what that does on the test split.

The threshold must be chosen on scores of samples the selector did not train on, or the
calibration accuracy is flattered. Two ways to get such scores from the one calibration
split (5,000 images), both run here on the networks of compiled models:

* ``half split`` (prunec's compile before this study): the selector trains on a random half and the
  threshold is chosen on the other half. The threshold's accuracy estimate rests on 2,500
  images, and the selector sees only 2,500.
* ``cross-fit`` (``prunec compile`` now): 5-fold cross-fitting gives every calibration
  image an out-of-fold score; the threshold is chosen on all 5,000 of them and the deployed
  selector is trained on all 5,000 (:func:`prunec.selectors.cross_fitted_scores`), at the
  threshold that routes the chosen share of the calibration images (as compile carries it over).

For each seed (the split, the folds and the initialisation) each scheme picks a threshold
with compile's rule (:func:`prunec.calibration.choose_threshold`, the compiled model's own
budget) and the test split scores it: accuracy loss against the original and energy
reduction, with the compiled model's Eyeriss costs. Max-softmax (no training, no seed) is
the reference. The spread over seeds is the point: one compile is one draw.

Writes benchmarks/results/bench_calibration.{json,md}; rows are merged by compiled model.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runs import dynamic_costs, learned_compiled, study_header, study_heading, torch_study_main  # noqa: E402

from prunec.calibration import choose_threshold, sweep, thresholds_for_shares  # noqa: E402
from prunec.data import load_split  # noqa: E402
from prunec.dynamic import SELECTOR_FOLDS, predict  # noqa: E402
from prunec.errors import UserError  # noqa: E402
from prunec.selectors import (  # noqa: E402
    LearnedSelector,
    cross_fitted_scores,
    fit_selector,
    front_outputs,
    max_softmax_score,
)

TARGET_REDUCTION, TARGET_DROP = 0.70, 2.0
SCHEMES = ("half split", "cross-fit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("compiled", nargs="+", type=Path, help="compiled-model directories (prunec compile -o DIR)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=60, help="selector training epochs (compile's default)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    return p.parse_args(argv)


class Outcomes:
    """What a routing does on a split: per sample, whether each network is right."""

    def __init__(self, logits: torch.Tensor, taps: list[torch.Tensor], aggressive_ok: np.ndarray,
                 mild_ok: np.ndarray, original_ok: np.ndarray) -> None:
        self.logits, self.taps = logits, taps
        self.aggressive_ok, self.mild_ok, self.original_ok = aggressive_ok, mild_ok, original_ok

    @property
    def original_accuracy(self) -> float:
        """A fraction, as :func:`prunec.calibration.sweep` takes it."""
        return float(self.original_ok.mean())

    def take(self, idx: np.ndarray) -> Outcomes:
        return Outcomes(self.logits[idx], [t[idx] for t in self.taps], self.aggressive_ok[idx], self.mild_ok[idx],
                        self.original_ok[idx])


def _outcomes(model: Any, split: Any) -> Outcomes:
    with torch.no_grad():
        logits, taps = front_outputs(model.front, split.x)
        mild_ok = (predict(model.mild, split.x).argmax(1) == split.y).numpy()
        original_ok = (predict(model.original, split.x).argmax(1) == split.y).numpy()
    return Outcomes(logits, taps, (logits.argmax(1) == split.y).numpy(), mild_ok, original_ok)


def deployed_threshold(chosen: Any, deployed_on_calibration: np.ndarray | None) -> float:
    """The chosen point's threshold for the deployed selector: as compile carries it over, by the
    share of calibration images it routes (None: the threshold was chosen on the deployed scores)."""
    if deployed_on_calibration is None:
        return chosen.threshold
    return float(thresholds_for_shares(deployed_on_calibration, [chosen.mild_share])[0])


def scored(threshold_scores: np.ndarray, on: Outcomes, test_scores: np.ndarray, test: Outcomes,
           costs: dict[str, float], budget: float, deployed_on_calibration: np.ndarray | None = None
           ) -> dict[str, Any]:
    """The threshold compile would choose on ``threshold_scores`` (for ``on``), applied to the test split."""
    chosen = choose_threshold(sweep(threshold_scores, on.aggressive_ok, on.mild_ok, on.original_accuracy, costs),
                              max_accuracy_drop=budget)
    route = test_scores > deployed_threshold(chosen, deployed_on_calibration)
    accuracy = float(np.where(route, test.mild_ok, test.aggressive_ok).mean())
    reduction = 1 - (costs["base"] + route.mean() * costs["mild"]) / costs["original"]
    drop = 100 * (test.original_accuracy - accuracy)
    return {"calibration_drop": chosen.accuracy_drop, "accuracy_drop": drop, "energy_reduction": float(reduction),
            "mild_share": float(route.mean()),
            "target_met": bool(reduction >= TARGET_REDUCTION and drop <= TARGET_DROP + 1e-9)}


def learned_scores(calib: Outcomes, test: Outcomes, scheme: str, seed: int, epochs: int
                   ) -> tuple[np.ndarray, Outcomes, np.ndarray, np.ndarray | None]:
    """(scores the threshold is chosen on, the samples they belong to, the deployed selector's test
    scores, and its calibration scores where those differ from the first: cross-fitting)."""
    def fresh() -> LearnedSelector:
        return LearnedSelector([t.shape[1] for t in calib.taps], calib.logits.shape[1])

    def deployed_on(selector: LearnedSelector, part: Outcomes) -> np.ndarray:
        with torch.no_grad():
            return selector(part.logits, *part.taps).numpy()

    wrong = torch.as_tensor(~calib.aggressive_ok).float()
    if scheme == "half split":  # as compile_dynamic did before cross-fitting
        n = len(wrong)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
        fit, held = perm[: n // 2], perm[n // 2:]
        selector = fit_selector(fresh(), calib.logits[fit], [t[fit] for t in calib.taps], wrong[fit],
                                epochs=epochs, seed=seed)
        return deployed_on(selector, calib.take(held)), calib.take(held), deployed_on(selector, test), None
    oof = cross_fitted_scores(fresh(), calib.logits, calib.taps, wrong, folds=SELECTOR_FOLDS, seed=seed,
                              epochs=epochs).numpy()
    selector = fit_selector(fresh(), calib.logits, calib.taps, wrong, epochs=epochs, seed=seed)
    return oof, calib, deployed_on(selector, test), deployed_on(selector, calib)


def _row(compiled_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    report, model, norm = learned_compiled(compiled_dir, "costs its selectors with a learned selector's energy")
    budget = report["selector"]["max_accuracy_drop"]
    if budget is None:
        raise UserError(f"{compiled_dir} was compiled with --mild-rate; this study chooses thresholds for an "
                        "accuracy budget, so compile with --max-accuracy-drop")
    data = report["data"]["name"]
    calib = _outcomes(model, load_split(data, "calibration", **norm))
    test = _outcomes(model, load_split(data, "test", **norm))
    costs = dynamic_costs(report, with_selector=True)
    soft = scored(max_softmax_score(calib.logits).numpy(), calib, max_softmax_score(test.logits).numpy(), test,
                  dynamic_costs(report, with_selector=False), budget)
    runs: dict[str, list[dict[str, Any]]] = {scheme: [] for scheme in SCHEMES}
    for seed in args.seeds:
        for scheme in SCHEMES:
            on_scores, on, test_scores, carry = learned_scores(calib, test, scheme, seed, args.epochs)
            runs[scheme].append({"seed": seed, **scored(on_scores, on, test_scores, test, costs, budget, carry)})
    return {"compiled": str(compiled_dir.relative_to(ROOT)) if compiled_dir.is_relative_to(ROOT) else str(compiled_dir),
            "network": report["model"]["arch"], "dataset": data, "budget": budget,
            "accuracy": {"original": 100 * test.original_accuracy, "mild": 100 * float(test.mild_ok.mean()),
                         "aggressive": 100 * float(test.aggressive_ok.mean())},
            "samples": {"calibration": len(calib.aggressive_ok), "test": len(test.aggressive_ok)},
            "settings": {"command": "python " + shlex.join(sys.argv), "seeds": args.seeds, "epochs": args.epochs,
                         "threads": args.threads, "folds": SELECTOR_FOLDS},
            "max_softmax": soft, "learned": runs}


def _spread(values: list[float], fmt: str) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{format(statistics.mean(values), fmt)} ± {format(sd, fmt)} ({format(min(values), fmt)} … " \
           f"{format(max(values), fmt)})"


def render(payload: dict[str, Any]) -> str:
    lines = study_header(
        "Calibrating the learned selector's threshold: half split vs cross-fitting", payload,
        "Per seed, each scheme trains the learned selector on the compiled model's own networks and picks the "
        "threshold with compile's rule at the compiled model's budget; the test split scores it. Cells: mean ± "
        "standard deviation over seeds (min … max). Energy reduction against the original on Eyeriss; target: "
        ">= 70 % at <= 2.0 points test accuracy loss.")
    for row in payload["rows"]:
        soft = row["max_softmax"]
        lines += [study_heading(row), "",
                  f"Budget {row['budget']:g} points on calibration data; test accuracy: original "
                  f"{row['accuracy']['original']:.2f} %, mild {row['accuracy']['mild']:.2f} %, aggressive "
                  f"{row['accuracy']['aggressive']:.2f} %; seeds {', '.join(map(str, row['settings']['seeds']))}.", "",
                  "| selector, calibration | test accuracy loss (pts) | energy reduction (%) | share to mild (%) "
                  "| seeds meeting the target |", "|---|---:|---:|---:|---:|"]
        for scheme in SCHEMES:
            runs = row["learned"][scheme]
            lines.append(f"| learned, {scheme} | {_spread([r['accuracy_drop'] for r in runs], '.2f')} | "
                         f"{_spread([100 * r['energy_reduction'] for r in runs], '.1f')} | "
                         f"{_spread([100 * r['mild_share'] for r in runs], '.1f')} | "
                         f"{sum(r['target_met'] for r in runs)}/{len(runs)} |")
        lines += [f"| max-softmax (no seed) | {soft['accuracy_drop']:.2f} | {100 * soft['energy_reduction']:.1f} | "
                  f"{100 * soft['mild_share']:.1f} | {'met' if soft['target_met'] else 'missed'} |", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return torch_study_main("bench_calibration", args, lambda d: _row(d, args), render)


if __name__ == "__main__":
    sys.exit(main())
