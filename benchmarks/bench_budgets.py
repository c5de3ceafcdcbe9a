"""What a compiled model gives at other accuracy budgets, without retraining anything.

``prunec compile --max-accuracy-drop B`` picks the selector's threshold on calibration data
for one budget ``B``. The networks and the selector do not depend on ``B``; only the
threshold does. For each budget given here, this script applies the same rule
(:func:`prunec.calibration.choose_threshold` on the compiled model's own calibration sweep,
``model/sweep.json``) and reads what that threshold does on the test split from the report's
``test_sweep`` (measured at every calibration threshold when the model was compiled). No
test number chooses anything: the test split only scores the thresholds calibration chose.
At the compiled model's own budget the result is the report's dynamic model.

Writes benchmarks/results/bench_budgets.{json,md}; rows are merged by compiled model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runs import budget_points, run_study, study_header, study_heading  # noqa: E402

from prunec import __version__, load_compiled  # noqa: E402
from prunec.calibration import choose_threshold  # noqa: E402
from prunec.errors import UserError  # noqa: E402

TARGET_REDUCTION, TARGET_DROP = 0.70, 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("compiled", nargs="+", type=Path, help="compiled-model directories (prunec compile -o DIR)")
    p.add_argument("--budgets", type=budget_points, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 2.5],
                   help="accuracy budgets in points below the original, on calibration data")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    return p.parse_args(argv)


def at_budget(calibration: list[Any], test_sweep: list[dict[str, float]], budget: float,
              original_test_accuracy: float, original_energy: float) -> dict[str, Any]:
    """The operating point calibration picks for ``budget``, scored on the test split.

    ``test_sweep[i]`` is the test outcome of ``calibration[i]``'s threshold (as compile writes them)."""
    chosen = choose_threshold(calibration, max_accuracy_drop=budget)
    i = next(i for i, p in enumerate(calibration) if p.threshold == chosen.threshold)
    test = test_sweep[i]
    reduction = 1 - test["energy"] / original_energy
    drop = original_test_accuracy - test["accuracy"]
    return {"budget": budget, "feasible": chosen.feasible, "threshold": chosen.threshold,
            "calibration_drop": chosen.accuracy_drop, "accuracy": test["accuracy"], "accuracy_drop": drop,
            "mild_share": test["mild_share"], "relative_energy": test["energy"] / original_energy,
            "energy_reduction": reduction,
            "target_met": bool(reduction >= TARGET_REDUCTION and drop <= TARGET_DROP + 1e-9)}


def _row(compiled_dir: Path, budgets: list[float]) -> dict[str, Any]:
    report = json.loads((compiled_dir / "report.json").read_text())
    calibration = load_compiled(compiled_dir / "model").sweep
    test_sweep = report.get("test_sweep") or []
    if len(test_sweep) != len(calibration):
        raise UserError(f"{compiled_dir}/report.json has no test outcome for each calibration threshold "
                        "(compile it again with this prunec)")
    orig_acc, orig_energy = report["accuracy"]["original"], report["energy"]["original"]
    return {"compiled": str(compiled_dir.relative_to(ROOT) if compiled_dir.is_relative_to(ROOT) else compiled_dir),
            "network": report["model"].get("arch") or report["model"]["source"], "dataset": report["data"]["name"],
            "compiled_budget": report["selector"]["max_accuracy_drop"], "original_accuracy": orig_acc,
            "levels": {k: report["levels"][k]["ratio"] for k in ("mild", "aggressive")},
            "points": [at_budget(calibration, test_sweep, b, orig_acc, orig_energy) for b in sorted(budgets)]}


def render(payload: dict[str, Any]) -> str:
    lines = study_header(
        "The same compiled models at other accuracy budgets", payload,
        "Each threshold is chosen on the compiled model's calibration sweep for the budget (points below the "
        "original on calibration data), exactly as `prunec compile --max-accuracy-drop` chooses it; the other "
        "columns are that threshold's outcome on the test split. Target: >= 70 % energy reduction at <= 2.0 "
        "points test accuracy loss, and less energy than the best single level at least as accurate: a "
        "threshold that routes nothing (everything) to the mild network misses it (the aggressive (mild) "
        "network alone is as accurate and does without the selector); other points are checked against "
        "the first two parts only, as no single levels are at hand here (the reproduce table checks all three).")
    for row in payload["rows"]:
        lines += [study_heading(row), "",
                  f"Levels {row['levels']['mild']:g}/{row['levels']['aggressive']:g}; compiled with a "
                  f"{row['compiled_budget']:g}-point budget; original {row['original_accuracy']:.2f} % on test.", "",
                  "| budget (pts) | calibration drop | test accuracy % | test drop (pts) | to mild | energy | "
                  "reduction | target |", "|---:|---:|---:|---:|---:|---:|---:|---|"]
        for p in row["points"]:
            mark = " (compiled)" if p["budget"] == row["compiled_budget"] else ""
            cal = f"{p['calibration_drop']:.2f}" + ("" if p["feasible"] else " (infeasible: all to mild)")
            lines.append(f"| {p['budget']:g}{mark} | {cal} | {p['accuracy']:.2f} | {p['accuracy_drop']:.2f} | "
                         f"{p['mild_share']:.1%} | {p['relative_energy']:.1%} | {p['energy_reduction']:.1%} | "
                         f"{_target(p)} |")
        lines.append("")
    return "\n".join(lines)


def _target(point: dict[str, Any]) -> str:
    """met/missed; a threshold that routes nothing (or everything) never beats the aggressive (or the
    mild) network alone, which is as accurate without the selector."""
    if not point["target_met"]:
        return "missed"
    if point["mild_share"] <= 0:
        return "missed (routes nothing)"
    return "met" if point["mild_share"] < 1 else "missed (routes everything)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    code = run_study("bench_budgets", args.compiled, args.results, lambda d: _row(d, args.budgets), render,
                     versions={"prunec": __version__})
    if code == 0:
        print((args.results / "bench_budgets.md").read_text())
    return code


if __name__ == "__main__":
    sys.exit(main())
