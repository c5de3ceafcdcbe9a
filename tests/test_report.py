"""The report layer: schema and validation, files, markdown, summary, plots, `prunec report`.

Everything runs on a synthetic but self-consistent report (ResNet-20 / CIFAR-10 shaped
numbers) so these tests need neither a model nor data.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prunec import report as R
from prunec.errors import UserError

LEVEL_WEIGHTS = {"mac": 1.0, "rf": 2.6, "array": 0.4, "glb": 0.9, "dram": 3.1, "static": 0.3}
REPO = Path(__file__).resolve().parents[1]


def _layer_energy(macs: float) -> dict[str, float]:
    e = {lvl: w * macs for lvl, w in LEVEL_WEIGHTS.items()}
    e["total"] = sum(e.values())
    return e


def _scaled(energy: dict[str, float], k: float) -> dict[str, float]:
    return {lvl: v * k for lvl, v in energy.items()}


def make_report(mild_share: float = 0.25, dynamic_accuracy: float = 90.3,
                test_sweep: bool = True) -> dict[str, Any]:
    """A report whose numbers obey every identity DESIGN.md states."""
    names = ["conv1"] + [f"layer{s}.{b}.conv{c}" for s in (1, 2, 3) for b in range(3) for c in (1, 2)]
    names += ["fc"]
    macs = [0.46e6] + [2.36e6] * 6 + [1.18e6] + [2.36e6] * 5 + [1.18e6] + [2.36e6] * 5 + [640.0]
    original = [{"name": n, "energy": _layer_energy(m)} for n, m in zip(names, macs, strict=True)]
    split = 13  # trunk = conv1 .. layer2, head = layer3 + fc
    dynamic = []
    for rec in original[:split]:
        dynamic.append({"name": "aggr." + rec["name"], "role": "trunk",
                        "energy": _scaled(rec["energy"], 0.15)})
    for rec in original[split:]:
        dynamic.append({"name": "aggr." + rec["name"], "role": "head",
                        "energy": _scaled(rec["energy"], 0.15)})
    for n in ("selector.pool", "selector.fc"):
        dynamic.append({"name": n, "role": "selector", "energy": _layer_energy(2.0e3)})
    for rec in original:
        dynamic.append({"name": "mild." + rec["name"], "role": "mild",
                        "energy": _scaled(rec["energy"], 0.45)})

    def total(recs: list[dict[str, Any]], role: str | None = None) -> float:
        return sum(r["energy"]["total"] for r in recs if role is None or r["role"] == role)

    e_orig = total(original)
    by_role = {r: total(dynamic, r) for r in R.ROLES}
    e_aggr = by_role["trunk"] + by_role["head"]
    e_mild = by_role["mild"]

    def e_dyn(p: float) -> float:
        return by_role["trunk"] + by_role["head"] + by_role["selector"] + p * by_role["mild"]

    by_level_dyn = {lvl: sum(r["energy"][lvl] * (mild_share if r["role"] == "mild" else 1.0)
                             for r in dynamic) for lvl in R.MEMORY_LEVELS}
    by_level_orig = {lvl: sum(r["energy"][lvl] for r in original) for lvl in R.MEMORY_LEVELS}
    acc = {"original": 91.7, "mild": 91.4, "aggressive": 86.9, "dynamic": dynamic_accuracy,
           "oracle": 93.8}

    def accuracy_at(share: float) -> float:
        # Piecewise linear through (0, aggressive), (p, dynamic), (1, mild).
        if share <= mild_share:
            return acc["aggressive"] + (acc["dynamic"] - acc["aggressive"]) * (share / mild_share if mild_share else 0)
        return acc["dynamic"] + (acc["mild"] - acc["dynamic"]) * (share - mild_share) / (1 - mild_share)

    def sweep(offset: float) -> list[dict[str, float]]:
        # Threshold 0.7 (the chosen one) sends mild_share + offset of the inputs to mild.
        pts = []
        for i in range(9):
            t = 0.1 * (i + 1)
            share = max(0.0, min(1.0, mild_share + (0.7 - t) + offset))
            pts.append({"threshold": round(t, 3), "mild_share": share, "accuracy": accuracy_at(share),
                        "energy": e_dyn(share)})
        return pts

    # latencies not proportional to the energies, so no ratio of one passes for the other's
    lat_role = {"trunk": 0.11, "head": 0.05, "selector": 0.004, "mild": 0.83}
    lat_base = lat_role["trunk"] + lat_role["head"] + lat_role["selector"]
    d: dict[str, Any] = {
        "schema_version": 1, "prunec_version": "0.1.0", "created": "2025-01-01T12:00:00+00:00",
        "command": "prunec compile zoo:resnet20 --data cifar10 -o runs/r20", "seed": 0,
        "model": {"source": "zoo:resnet20", "arch": "resnet20", "input_shape": [1, 3, 32, 32],
                  "num_classes": 10, "params": 272474, "macs": 40_550_000},
        "data": {"name": "cifar10", "calibration_size": 5000, "test_size": 5000,
                 "test_split_note": "CIFAR-10, 5k held-out split of the training set"},
        "target": "eyeriss", "batch": 1,
        "levels": {"mild": {"ratio": 0.3, "method": "l1-structured", "params": 140000, "macs": 20_000_000},
                   "aggressive": {"ratio": 0.7, "method": "l1-structured", "params": 30000,
                                  "macs": 6_000_000}},
        "selector": {"kind": "mlp", "threshold": 0.7, "taps": ["layer2.2.relu"], "auc": 0.87,
                     "max_accuracy_drop": 2.0},
        "accuracy": acc,
        "mild_share": mild_share,
        "energy": {"original": e_orig, "mild": e_mild, "aggressive": e_aggr, "dynamic": e_dyn(mild_share),
                   "by_role": by_role, "by_level": {"original": by_level_orig, "dynamic": by_level_dyn}},
        "energy_reduction": 1 - e_dyn(mild_share) / e_orig,
        "accuracy_drop": acc["original"] - acc["dynamic"],
        "sweep": sweep(0.02),
        "single_level": [{"ratio": r, "accuracy": a, "energy": e_orig * (1 - r) ** 1.7}
                         for r, a in ((0.3, 91.4), (0.5, 90.6), (0.7, 86.9), (0.8, 82.0), (0.9, 61.0))],
        "oracle": {"accuracy": acc["oracle"], "energy": e_dyn(0.12), "mild_share": 0.12},
        "layers": {"original": original, "dynamic": dynamic},
        "files": {"model_dir": "runs/r20", "onnx": "runs/r20/model.onnx", "ir": "runs/r20/ir.json"},
        "notes": ["selector threshold chosen on the calibration split"],
        "wall_seconds": 812.4,
        "latency_ms": {"original": 1.40, "mild": lat_role["mild"], "aggressive": lat_role["trunk"] + lat_role["head"],
                       "by_role": lat_role, "dynamic_expected": lat_base + mild_share * lat_role["mild"],
                       "dynamic_worst": lat_base + lat_role["mild"]},
    }
    if test_sweep:
        d["test_sweep"] = sweep(0.0)
    return d


@pytest.fixture
def report() -> dict[str, Any]:
    return make_report()


@pytest.fixture
def missed_report() -> dict[str, Any]:
    return make_report(mild_share=0.45, dynamic_accuracy=89.2)


@pytest.fixture
def report_dir(tmp_path: Path, report: dict[str, Any]) -> Path:
    R.save_report(report, tmp_path)
    return tmp_path


# ------------------------------------------------------------------ validation


def test_fixture_is_valid_and_validate_returns_it(report: dict[str, Any]) -> None:
    assert R.validate_report(report) is report
    assert report["energy_reduction"] == pytest.approx(0.73, abs=0.02)  # the "met" fixture


def test_unknown_keys_and_optional_test_sweep_are_accepted(report: dict[str, Any]) -> None:
    report["future_field"] = {"anything": 1}
    del report["test_sweep"]
    R.validate_report(report)


def _set(d: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[int(k)] if isinstance(d, list) else d[k]
    if value is _DELETE:
        del d[keys[-1]]
    elif isinstance(d, list):
        d[int(keys[-1])] = value
    else:
        d[keys[-1]] = value


_DELETE = object()


@pytest.mark.parametrize("path, value, expect", [
    ("energy.by_role.trunk", _DELETE, "missing field 'energy.by_role.trunk'"),
    ("selector", _DELETE, "missing field 'selector'"),
    ("accuracy.dynamic", "90.1", "'accuracy.dynamic' must be a number"),
    ("accuracy.mild", 101.0, "'accuracy.mild' must be <= 100"),
    ("mild_share", 1.5, "'mild_share' must be <= 1"),
    ("batch", True, "'batch' must be an integer"),
    ("batch", 0, "'batch' must be >= 1"),
    ("levels.aggressive.ratio", 1.0, "'levels.aggressive.ratio' must be < 1"),
    ("sweep.2.energy", float("nan"), "'sweep[2].energy' must be a finite number"),
    ("layers.dynamic.3.role", "backbone", "'layers.dynamic[3].role' must be one of"),
    ("notes", "a note", "'notes' must be a list"),
    ("selector.auc", None, None),  # null is allowed there
    ("selector.drop_bound", {"confidence": 0.9, "points": 1.0, "met_budget": "yes"},
     "'selector.drop_bound.met_budget' must be true or false"),
    ("files.onnx", None, None),
    ("model.arch", None, "'model.arch' must be a string, got NoneType"),
    ("energy.original", 0.0, "'energy.original' must be > 0"),
    ("schema_version", 2, "newer than this prunec understands"),
    ("schema_version", "1", "'schema_version' must be a positive integer"),
    # the views stack every memory level, static included: a report without it fails here, not in a plot
    ("energy.by_level.original.static", _DELETE, "missing field 'energy.by_level.original.static'"),
    ("layers.dynamic.0.energy.static", _DELETE, "missing field 'layers.dynamic[0].energy.static'"),
    ("accuracy.mild", 10**400, "'accuracy.mild' must be a finite number, got an integer of 401 digits"),
])
def test_invalid_report_names_the_field(report: dict[str, Any], path: str, value: Any,
                                        expect: str | None) -> None:
    _set(report, path, value)
    if expect is None:
        R.validate_report(report)
        return
    with pytest.raises(UserError) as info:
        R.validate_report(report)
    assert expect in str(info.value)


def test_consistency_checks_catch_a_forgotten_mild_weight(report: dict[str, Any]) -> None:
    role = report["energy"]["by_role"]
    report["energy"]["dynamic"] = role["trunk"] + role["head"] + role["selector"] + role["mild"]
    with pytest.raises(UserError, match="'energy.dynamic'.*mild_share"):
        R.validate_report(report)


@pytest.mark.parametrize("field, delta", [("energy_reduction", 0.05), ("accuracy_drop", 0.5)])
def test_consistency_checks_headline_numbers(report: dict[str, Any], field: str, delta: float) -> None:
    report[field] += delta
    with pytest.raises(UserError, match=f"'{field}'"):
        R.validate_report(report)


def test_by_level_must_sum_to_the_total(report: dict[str, Any]) -> None:
    report["energy"]["by_level"]["dynamic"]["dram"] *= 2
    with pytest.raises(UserError, match="energy.by_level.dynamic"):
        R.validate_report(report)


def test_validate_rejects_non_object() -> None:
    with pytest.raises(UserError, match="JSON object"):
        R.validate_report([1, 2])


# ----------------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path: Path, report: dict[str, Any]) -> None:
    path = R.save_report(report, tmp_path)
    assert path == tmp_path / "report.json"
    assert R.load_report(tmp_path) == report
    assert R.load_report(path) == report
    assert json.loads(path.read_text())["schema_version"] == R.SCHEMA_VERSION
    assert sorted(os.listdir(tmp_path)) == ["report.json"]  # no temporary left behind


def test_save_refuses_invalid_report_and_writes_nothing(tmp_path: Path, report: dict[str, Any]) -> None:
    del report["energy"]
    with pytest.raises(UserError, match="'energy'"):
        R.save_report(report, tmp_path)
    assert os.listdir(tmp_path) == []


def test_save_into_missing_directory(tmp_path: Path, report: dict[str, Any]) -> None:
    with pytest.raises(UserError, match="does not exist"):
        R.save_report(report, tmp_path / "nope")


def test_load_errors(tmp_path: Path, report: dict[str, Any]) -> None:
    with pytest.raises(UserError, match="does not exist"):
        R.load_report(tmp_path / "nope")
    with pytest.raises(UserError, match="no report.json"):
        R.load_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON.*line 1"):
        R.load_report(tmp_path)
    report["schema_version"] = 7
    (tmp_path / "report.json").write_text(json.dumps(report))
    with pytest.raises(UserError, match="schema_version 7, newer"):
        R.load_report(tmp_path)
    (tmp_path / "report.json").write_text("[" * 100_000)
    with pytest.raises(UserError, match="nests too deeply"):
        R.load_report(tmp_path)
    (tmp_path / "report.json").write_text('{"batch": ' + "9" * 5000 + "}")
    with pytest.raises(UserError, match="not valid JSON"):
        R.load_report(tmp_path)


# -------------------------------------------------------------------- verdict


def test_verdict_boundaries_and_wording() -> None:
    assert R.Verdict(0.70, 2.0).met
    assert not R.Verdict(0.699, 1.0).met
    assert not R.Verdict(0.8, 2.01).met
    s = R.Verdict(0.62, 2.5).sentence()
    assert s.startswith("Target missed")
    assert "misses ≥ 70% by 8.0 points" in s and "misses ≤ 2.0 pts by 0.50 pts" in s
    assert "gain" in R.Verdict(0.75, -0.3).sentence()
    # at the edges the words keep to the numbers: no "70.0% misses ≥ 70% by 0.0 points"
    assert "energy reduction 69.996% misses ≥ 70% by 0.004 points" in R.Verdict(0.69996, 1.0).sentence()
    assert "accuracy loss 2.004 pts misses ≤ 2.0 pts by 0.004 pts" in R.Verdict(0.8, 2.004).sentence()
    assert "energy reduction 70.004% meets ≥ 70% (0.004 points to spare)" in R.Verdict(0.70004, 1.0).sentence()
    assert "energy reduction 75.0% meets" in R.Verdict(0.75, 1.0).sentence()
    assert "better than the paper" in R.Verdict(0.75, 1.0).paper_sentence()
    assert "worse than the paper" in R.Verdict(0.60, 3.5).paper_sentence()


def test_verdict_asks_for_less_energy_than_any_single_network_as_accurate(report: dict[str, Any]) -> None:
    """The target's third part: a dynamic model no cheaper than a single network at least as accurate
    (here: the aggressive level made as accurate, or a searched single level) is a miss, however
    much it saves against the original."""
    v = R.verdict(report)  # at least as accurate: original, mild and the searched 0.3 and 0.5; 0.5 is cheapest
    cheapest = next(s for s in report["single_level"] if s["ratio"] == 0.5)
    assert v.met and v.rival is not None and v.rival.name == "single level r=0.50"
    assert v.rival.energy_ratio == pytest.approx(report["energy"]["dynamic"] / cheapest["energy"])
    assert v.rival.energy_ratio < 1
    assert "the cheapest single network as accurate (single level r=0.50)" in v.sentence()

    as_good = json.loads(json.dumps(report))
    as_good["accuracy"]["aggressive"] = report["accuracy"]["dynamic"]
    v = R.verdict(as_good)
    assert v.energy_met and v.accuracy_met and not v.met and v.rival.name == "aggressive"
    assert v.sentence().startswith("Target missed") and "the aggressive network alone" in v.sentence()
    assert "**Target missed:" in R.render_markdown(as_good)

    searched = json.loads(json.dumps(report))
    searched["single_level"] = [{"ratio": 0.6, "accuracy": report["accuracy"]["dynamic"] + 0.1,
                                 "energy": report["energy"]["dynamic"] * 0.99}]
    v = R.verdict(searched)
    assert not v.met and v.rival.name == "single level r=0.60"
    assert v.rival.energy_ratio == pytest.approx(1 / 0.99)

    gained = json.loads(json.dumps(report))  # more accurate than every network: nothing to compare with
    gained["accuracy"]["dynamic"] = 99.0
    assert R.verdict(gained).rival is None


def test_the_verdict_rests_on_the_energies_and_accuracies_not_their_restatement(report: dict[str, Any]) -> None:
    """energy_reduction and accuracy_drop restate the energies and accuracies and pass validation within
    a tolerance: an edited 70.05 % beside a real 69.6 % must not read "Target met"."""
    e = report["energy"]
    scale = 0.304 * e["original"] / e["dynamic"]  # the dynamic model at 30.4 % of the original's energy
    for key in ("trunk", "head", "selector", "mild"):
        e["by_role"][key] *= scale
    e["by_level"]["dynamic"] = {k: v * scale for k, v in e["by_level"]["dynamic"].items()}
    e["dynamic"] *= scale
    report["energy_reduction"] = 0.7005
    R.validate_report(report)  # within the tolerance
    v = R.verdict(report)
    assert v.energy_reduction == pytest.approx(0.696) and not v.met
    assert "**Target missed:" in R.render_markdown(report)


def test_a_sweep_point_no_cheaper_than_a_single_network_as_accurate_is_outside_the_target_region(
        report: dict[str, Any]) -> None:
    """Routing nothing gives the aggressive network's accuracy at its energy plus the selector's: report.md
    must not call that threshold the cheapest in the target region while its headline calls it a miss."""
    d = json.loads(json.dumps(report))
    d["accuracy"]["aggressive"] = 90.5  # within the 2-point budget of 91.7
    routes_nothing = d["energy"]["aggressive"] + d["energy"]["by_role"]["selector"]
    assert not R.in_target_region(d, 90.5, routes_nothing)
    assert R.in_target_region(d, 90.5, d["energy"]["aggressive"] * 0.99)  # a selector that does better
    d["test_sweep"] = [{"threshold": 0.9, "mild_share": 0.0, "accuracy": 90.5, "energy": routes_nothing}]
    assert "land in the target region" not in R.render_markdown(d)


# ------------------------------------------------------------------- markdown


def test_markdown_met(report: dict[str, Any]) -> None:
    md = R.render_markdown(report)
    red = report["energy_reduction"]
    assert "**Target met:" in md
    assert f"energy reduction {red:.1%} meets ≥ 70%" in md
    assert f"accuracy loss {report['accuracy_drop']:.2f} pts meets ≤ 2.0 pts" in md
    for name in R.VARIANTS:
        assert f"| {name} |" in md or f"| **{name}** |" in md
    assert f"{report['accuracy']['dynamic']:.2f}" in md and f"{report['accuracy']['oracle']:.2f}" in md
    assert f"{report['mild_share']:.1%}" in md
    for heading in ("## Variants", "## Energy of the dynamic model by role",
                    "## Energy per memory level", "## Selector and threshold sweep", "## Notes",
                    "## How to read this report"):
        assert heading in md
    assert "◀ chosen" in md and "test rel. energy" in md
    assert "selector threshold chosen on the calibration split" in md
    assert "energy_breakdown.png" in md and "tradeoff.png" in md
    assert "paper" in md
    # the selector against routing the same share at random (fixture: 86.9 % aggressive, 91.4 % mild)
    p = report["mild_share"]
    rand_acc = 86.9 + p * (91.4 - 86.9)
    gain = report["accuracy"]["dynamic"] - rand_acc
    role = report["energy"]["by_role"]
    assert f"at random, with no selector, would reach {rand_acc:.2f}%" in md
    assert f"worth {gain:+.2f} points for its own {role['selector'] / report['energy']['original']:.1%}" in md


def test_markdown_and_summary_state_the_latency_an_input_sent_to_mild_pays(report: dict[str, Any]) -> None:
    lat = report["latency_ms"]
    kept = lat["by_role"]["trunk"] + lat["by_role"]["head"] + lat["by_role"]["selector"]
    md = R.render_markdown(report)
    assert "## Latency" in md
    assert (f"An input the selector sends to the mild network waits for the aggressive network and the selector "
            f"first: {lat['dynamic_worst'] / lat['original']:.2f}x the original's latency, against "
            f"{kept / lat['original']:.2f}x when the aggressive network answers.") in md
    assert f"| dynamic, an input sent to mild (+ the mild network) | {lat['dynamic_worst']:.3g} |" in md
    assert f"| **dynamic, expected** (25.0% to mild) | {lat['dynamic_expected']:.3g} | 26.5% |" in md
    assert "| mild, alone | 0.83 | 59.3% |" in md and "| aggressive, alone | 0.16 | 11.4% |" in md
    assert "latency per batch of 1 (ms)" in md
    assert "not timed" not in md and "an approximation" not in md and "within 25 %" in md
    from rich.console import Console

    console = Console(record=True, width=200)
    R.print_summary(report, console)
    assert (f"dynamic {lat['dynamic_expected']:.3g} ms expected, {lat['dynamic_worst']:.3g} ms for an input sent "
            "to mild") in console.export_text()
    report["latency_ms"]["by_role"]["selector"] = 0.0  # a selector with no layers on the chip
    for key in ("dynamic_expected", "dynamic_worst"):
        report["latency_ms"][key] -= 0.004
    report["batch"] = 4
    md = R.render_markdown(R.validate_report(report))
    assert "The selector has no layers on the chip here (its few operations are not timed)." in md
    assert "A batch the selector sends to the mild network waits" in md and "an approximation" in md
    assert "| dynamic, a batch sent to mild (+ the mild network) |" in md


@pytest.mark.parametrize("field", ["dynamic_expected", "dynamic_worst"])
def test_latency_identities_are_checked(report: dict[str, Any], field: str) -> None:
    report["latency_ms"][field] *= 1.02
    with pytest.raises(UserError, match=f"latency_ms.{field}"):
        R.validate_report(report)


def test_a_zero_original_latency_is_refused(report: dict[str, Any]) -> None:
    report["latency_ms"]["original"] = 0.0
    with pytest.raises(UserError, match="latency_ms.original"):
        R.validate_report(report)


def test_markdown_missed_says_by_how_much(missed_report: dict[str, Any]) -> None:
    R.validate_report(missed_report)
    red, drop = missed_report["energy_reduction"], missed_report["accuracy_drop"]
    assert red < 0.70 and drop > 2.0
    md = R.render_markdown(missed_report)
    assert "**Target missed:" in md
    assert f"misses ≥ 70% by {(0.70 - red) * 100:.1f} points" in md
    assert f"misses ≤ 2.0 pts by {drop - 2.0:.2f} pts" in md
    assert "Target met" not in md


@pytest.mark.parametrize(("confidence", "caveats"), [(None, None), (0.95, []), (0.995, ["levels searched"])])
def test_markdown_states_the_drop_bound_and_whether_it_chose_the_threshold(report: dict[str, Any],
                                                                          confidence: float | None,
                                                                          caveats: list[str] | None) -> None:
    report["selector"]["confidence"] = confidence
    report["selector"]["drop_bound"] = {"confidence": confidence or 0.9, "points": 2.345}
    if caveats is not None:
        report["selector"]["drop_bound"]["caveats"] = caveats
    R.validate_report(report)
    md = R.render_markdown(report)
    shown = {None: "90%", 0.95: "95%", 0.995: "99.5%"}[confidence]  # never rounded up to 100%
    assert f"is at most **2.35 points** with {shown} confidence" in md
    assert f"{report['data']['calibration_size']:,} calibration images" in md
    assert ("chosen by a fixed-sequence test of such bounds" in md) == (confidence is not None)
    assert (f"loss with {shown} confidence;" in md) == (confidence is not None)
    assert ("The bound is approximate: levels searched." in md) == bool(caveats)
    assert ("The bound is exact for this compile" in md) == (caveats == [])
    report["selector"]["drop_bound"]["met_budget"] = False  # nothing certified: no promise about the budget
    R.validate_report(report)
    md = R.render_markdown(report)
    assert "fixed-sequence" not in md and "every input goes to the mild network" in md
    report["selector"]["drop_bound"]["confidence"] = 1.5
    with pytest.raises(UserError, match="selector.drop_bound.confidence"):
        R.validate_report(report)


def test_markdown_without_optional_parts(report: dict[str, Any]) -> None:
    del report["test_sweep"]
    report["single_level"] = []
    report["notes"] = []
    report["selector"]["auc"] = None
    del report["latency_ms"]  # an older report, or a target that names no clock
    md = R.render_markdown(report)
    assert "test rel. energy" not in md and "AUC n/a" in md and "- (none)" in md
    assert "## Latency" not in md
    assert "confidence" not in md  # no bound recorded (an older report), none claimed


def test_print_summary(report: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console(record=True, width=140)
    R.print_summary(report, console)
    out = console.export_text()
    assert "dynamic" in out and "oracle" in out and "Target met" in out
    assert f"{report['accuracy']['dynamic']:.2f}" in out
    assert "confidence" not in out  # no bound recorded, none claimed
    report["selector"].update(confidence=0.95, drop_bound={"confidence": 0.95, "points": 1.234, "caveats": ["x"]})
    console = Console(record=True, width=180)
    R.print_summary(report, console)
    assert "at most 1.23 pts with 95% confidence, approximate (the threshold meets the budget by this bound)" in \
        console.export_text()
    report["selector"]["drop_bound"]["met_budget"] = False
    console = Console(record=True, width=180)
    R.print_summary(report, console)
    assert "(no threshold met the budget: every input goes to the mild network)" in console.export_text()


# ---------------------------------------------------------------------- plots


def _check_png(path: Path, min_w: int = 600, min_h: int = 400) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.shape[0] >= min_h and img.shape[1] >= min_w
    assert not math.isclose(float(img.std()), 0.0)  # not a blank canvas


def test_plots_write_pngs(tmp_path: Path, report: dict[str, Any]) -> None:
    from prunec import plots

    assert plots.energy_breakdown(report, tmp_path / "b.png") == tmp_path / "b.png"
    assert plots.tradeoff(report, tmp_path / "t.png") == tmp_path / "t.png"
    _check_png(tmp_path / "b.png", 1200, 1000)
    _check_png(tmp_path / "t.png", 1000, 700)
    assert sorted(os.listdir(tmp_path)) == ["b.png", "t.png"]


def test_plots_with_sparse_report(tmp_path: Path, report: dict[str, Any]) -> None:
    from prunec import plots

    del report["test_sweep"]
    report["single_level"] = []
    report["sweep"] = []
    report["layers"] = {"original": [], "dynamic": []}
    plots.energy_breakdown(report, tmp_path / "b.png")
    plots.tradeoff(report, tmp_path / "t.png")
    _check_png(tmp_path / "b.png")
    _check_png(tmp_path / "t.png")


def test_tradeoff_shows_a_dynamic_model_that_costs_more_than_the_original(report: dict[str, Any]) -> None:
    """Everything routed to a mild level can cost more than the original (the selector and the
    aggressive network run too): the axis widens instead of dropping the chosen point."""
    from prunec import plots

    report["energy"]["dynamic"] = 1.19 * report["energy"]["original"]
    report["oracle"]["energy"] = 1.3 * report["energy"]["original"]
    left, right = plots.tradeoff_figure(report).axes[0].get_xlim()
    assert left == 0 and right >= 130.0


def test_a_report_without_a_calibration_sweep_renders_its_test_sweep(report: dict[str, Any]) -> None:
    report["test_sweep"], report["sweep"] = report["sweep"], []
    assert "No calibration sweep was recorded; " in R.render_markdown(report)


def test_plots_name_the_unit_and_chip_and_sign_every_change(report: dict[str, Any]) -> None:
    """A chip costed in pJ (compile --hw) is labelled in pJ; a memory level the dynamic model spends
    more on reads +x %, not −-x %."""
    from prunec import plots

    report["hardware"] = {"name": "my_chip_45nm", "energy_unit": "pJ",
                          "energy_per_access": {"mac": 0.5, "rf": 1, "array": 2, "glb": 6, "dram": 200}}
    levels = report["energy"]["by_level"]
    moved = 1.2 * levels["original"]["array"] - levels["dynamic"]["array"]  # the dynamic model's array at 1.2x
    source = max(levels["dynamic"], key=levels["dynamic"].get)
    assert levels["dynamic"][source] > moved
    levels["dynamic"][source] -= moved
    levels["dynamic"]["array"] += moved
    R.validate_report(report)
    fig = plots.energy_breakdown_figure(report)
    labels = [fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel()]  # the original's layers and the totals
    assert all("(pJ)" in label and "normalised" not in label for label in labels), labels
    totals = fig.axes[2]
    shown = [t.get_text() for t in totals.texts]
    array = R.MEMORY_LEVELS.index("array")
    change = levels["dynamic"]["array"] / levels["original"]["array"] - 1
    assert change > 0 and shown[array] == f"+{change:.0%}" and not any("−-" in s for s in shown)
    assert "costed on my_chip_45nm" in plots.tradeoff_figure(report).axes[0].get_xlabel()
    del report["hardware"]  # reports from before it was recorded were costed on the shipped chip
    assert "costed on eyeriss_v1" in plots.tradeoff_figure(report).axes[0].get_xlabel()


@pytest.mark.parametrize(("before", "after", "shown"), [(100, 80, "−20%"), (100, 120, "+20%"), (100, 100, "±0%"),
                                                     (100, 99, "−1%"), (1000, 996.9, "−0.31%"),
                                                     (1000, 1000.4, "+0.04%"), (1e7, 1e7 - 1, "−<0.01%")])
def test_plot_changes_keep_a_digit_that_is_not_zero(before: float, after: float, shown: str) -> None:
    """A change too small for whole percents is not drawn as "−0%" beside a bar that did move."""
    from prunec.plots import _reduction

    assert _reduction(before, after) == shown


def test_render_all_replaces_the_views_as_a_set(report_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A view that cannot be written (here a directory in its place) keeps every old view, report.md too."""
    R.render_all(report_dir)
    before = {n: (report_dir / n).read_bytes() for n in ("report.md", "tradeoff.png")}
    (report_dir / "energy_breakdown.png").unlink()
    (report_dir / "energy_breakdown.png").mkdir()
    report = json.loads((report_dir / "report.json").read_text())
    report["notes"].append("a new note")
    (report_dir / "report.json").write_text(json.dumps(report))
    with pytest.raises(UserError, match="energy_breakdown.png: it is a directory"):
        R.render_all(report_dir)
    assert {n: (report_dir / n).read_bytes() for n in before} == before
    (report_dir / "energy_breakdown.png").rmdir()
    real = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:  # the second file fails after report.md's temp is written
        if "tradeoff" in self.name:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(UserError, match="No space left on device"):
        R.render_all(report_dir)
    assert {n: (report_dir / n).read_bytes() for n in before} == before
    assert not (report_dir / "energy_breakdown.png").exists()
    assert not [n for n in os.listdir(report_dir) if ".tmp-" in n]


def test_a_read_only_folder_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a read-only mount the clean-up's unlink fails too (EROFS, not a missing file)."""
    from prunec.outdir import write_atomic

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "write_text", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(UserError, match="cannot write .*report.md: Read-only file system"):
        write_atomic(tmp_path / "report.md", "text")


def test_render_all(report_dir: Path) -> None:
    written = R.render_all(report_dir)
    assert [p.name for p in written] == ["report.md", "energy_breakdown.png", "tradeoff.png"]
    assert (report_dir / "report.md").read_text().startswith("# prunec report")
    for name in ("energy_breakdown.png", "tradeoff.png"):
        _check_png(report_dir / name)
    assert not [n for n in os.listdir(report_dir) if ".tmp-" in n]


# ------------------------------------------------------------------------ CLI


def _prunec(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "prunec", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def test_cli_report_renders_and_prints(report_dir: Path) -> None:
    res = _prunec("report", str(report_dir))
    assert res.returncode == 0, res.stderr
    assert "Target met" in res.stdout and "dynamic" in res.stdout
    assert "wrote" in res.stderr
    assert (report_dir / "report.md").is_file()
    _check_png(report_dir / "energy_breakdown.png")
    _check_png(report_dir / "tradeoff.png")


def test_cli_report_json_and_markdown(report_dir: Path, report: dict[str, Any]) -> None:
    res = _prunec("report", str(report_dir), "--format", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == report
    res = _prunec("report", str(report_dir), "--format", "markdown")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("# prunec report")


@pytest.mark.parametrize("setup, expect", [
    ("missing", "does not exist"),
    ("empty", "no report.json"),
    ("invalid", "missing field 'accuracy'"),
])
def test_cli_report_errors(tmp_path: Path, report: dict[str, Any], setup: str, expect: str) -> None:
    target = tmp_path / "out"
    if setup != "missing":
        target.mkdir()
    if setup == "invalid":
        del report["accuracy"]
        (target / "report.json").write_text(json.dumps(report))
    res = _prunec("report", str(target))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prunec: error:") and expect in lines[0]
    assert "Traceback" not in res.stderr
    if target.exists():
        assert not [n for n in os.listdir(target) if n != "report.json"]  # nothing half-written


def _run_report_cmd(*argv: str) -> int:
    """The report subcommand alone, in process: independent of sibling subcommands' state."""
    import argparse

    from prunec.cli import report_cmd

    parser = argparse.ArgumentParser(prog="prunec")
    report_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    return args.handler(args)


def test_report_cmd_in_process(report_dir: Path, report: dict[str, Any],
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_report_cmd(str(report_dir), "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == report
    assert _run_report_cmd(str(report_dir)) == 0
    assert "Target met" in capsys.readouterr().out
    assert {"report.md", "energy_breakdown.png", "tradeoff.png"} <= set(os.listdir(report_dir))
    with pytest.raises(UserError, match="does not exist"):
        _run_report_cmd(str(report_dir / "nope"))
    with pytest.raises(UserError, match="not a directory"):
        _run_report_cmd(str(report_dir / "report.json"))


@pytest.mark.parametrize(("accuracy", "classes", "warned"), [
    (10.0, 10, True), (27.9, 10, True), (28.0, 10, False), (91.0, 10, False),
    (55.0, 2, True), (60.0, 2, False), (1.0, 100, True), (30.0, 100, False),
])
def test_an_original_near_chance_is_flagged_with_the_normalization_it_got(accuracy, classes, warned):
    from prunec.data import DatasetInfo
    from prunec.pipeline import near_chance_note

    info = DatasetInfo("mine", classes, 3, 32, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    note = near_chance_note(accuracy, info)
    assert (note is not None) == warned
    if warned:
        assert "near chance" in note and "mean 0.49,0.48,0.45" in note and "--mean/--std" in note
