"""The long benchmark scripts run end to end on the synthetic set with tiny budgets, so a
change that breaks them fails here, not hours into a run on real data."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import ROOT


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_bench_levels_writes_resumable_rows(tmp_path):
    args = ["--networks", "resnet20", "--data", "synthetic", "--baseline-epochs", "0.5", "--epochs", "0.2",
            "--repeats", "1", "--threads", "1", "--quiet", "--work", str(tmp_path / "work"),
            "--results", str(tmp_path / "results")]
    first = _run("bench_levels.py", *args)
    assert first.returncode == 0, first.stderr
    payload = json.loads((tmp_path / "results" / "bench_levels.json").read_text())
    (row,) = payload["rows"]
    v = row["variants"]
    assert row["network"] == "resnet20" and row["dataset"] == "synthetic"
    assert v["aggressive"]["macs"] < v["mild"]["macs"] < v["original"]["macs"]
    assert v["aggressive"]["params"] < v["mild"]["params"] < v["original"]["params"]
    assert v["aggressive"]["relative_energy"] < v["mild"]["relative_energy"] < 1.0 == v["original"]["relative_energy"]
    assert all(0 <= d["accuracy"] <= 100 for d in v.values())
    assert 0 < row["prune_two_levels_seconds"] < 60
    assert "--data synthetic" in row["settings"]["command"]
    assert "## resnet20 on synthetic" in (tmp_path / "results" / "bench_levels.md").read_text()
    # a second run finds the finished row in --work and recomputes nothing
    again = _run("bench_levels.py", *args)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "results" / "bench_levels.json").read_text()) == payload
    # another seed trains its own baseline and fine-tunes (it met the seed-0 checkpoints with a traceback)
    other = _run("bench_levels.py", *args, "--seed", "1")
    assert other.returncode == 0, other.stderr
    work = tmp_path / "work" / "resnet20_synthetic"
    assert {p.name for p in work.glob("baseline_*.pt")} == {f"baseline_0.5ep_s{s}_t1_lr0.1.pt" for s in (0, 1)}
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("levels_*_s1_t1_*_ckpt/*.pt")}
    assert stamps
    redo = _run("bench_levels.py", *args, "--seed", "1", "--redo")  # --redo fine-tunes again
    assert redo.returncode == 0, redo.stderr
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items() if p.exists())
    bad = _run("bench_levels.py", *args[2:], "--networks", "resnet999")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_reproduce_row_has_every_variant(tmp_path):
    args = ["--networks", "resnet20", "--datasets", "synthetic", "--baseline-epochs", "1", "--mild", "0.3",
            "--aggressive", "0.7", "--epochs", "0.2", "--aggressive-epochs", "0.3", "--single-ratios", "0.5",
            "--max-accuracy-drop", "5", "--threads", "1", "--quiet", "--work", str(tmp_path / "work"),
            "--results", str(tmp_path / "results")]
    proc = _run("reproduce.py", *args)
    assert proc.returncode == 0, proc.stderr
    from prunec.frontend import load_with_meta  # the baseline records the command that trained it

    meta = load_with_meta(str(tmp_path / "work" / "resnet20_synthetic" / "baseline_1ep.pt"))[1]
    assert meta["command"].startswith("python examples/train_baseline.py --arch zoo:resnet20 --data synthetic")
    assert meta["trained_with"] == [{"epochs": [1, 1], "device": "cpu", "threads": 1}] and meta["epochs"] == 1
    # every fine-tune of the row kept its checkpoint, so an interrupted row resumes them
    kept = {p.name.rsplit("-", 1)[0] for p in (tmp_path / "work" / "resnet20_synthetic" / "levels_ckpt").iterdir()}
    assert kept == {"fine-tune-mild", "fine-tune-aggressive", "single-level-r-0.50"}
    payload = json.loads((tmp_path / "results" / "reproduce.json").read_text())
    (row,) = payload["rows"]
    v = row["variants"]
    assert set(v) == {"original", "mild", "aggressive", "best_single_level", "dynamic_learned",
                      "dynamic_max_softmax", "oracle"}
    assert [s["ratio"] for s in row["single_levels"]] == [0.0, 0.3, 0.5, 0.7]
    best = v["best_single_level"]
    assert best in row["single_levels"]
    assert best["accuracy"] >= v["dynamic_learned"]["accuracy"] - 1e-9 or best["ratio"] == 0.0
    assert v["aggressive"]["energy"] < v["dynamic_learned"]["energy"] < v["original"]["energy"] + v["mild"]["energy"]
    assert 0.0 <= v["dynamic_learned"]["mild_share"] <= 1.0
    assert row["settings"]["baseline_epochs"] == 1.0 and payload["seed"] == 0
    md = (tmp_path / "results" / "reproduce.md").read_text()
    assert "## resnet20 on synthetic" in md and "Row produced by" in md
    assert row["settings"]["levels"] == "fixed 0.3/0.7"
    assert (row["settings"]["epochs"], row["settings"]["aggressive_epochs"]) == (0.2, 0.3)
    assert "0.2 fine-tuning epochs for the mild level, 0.3 for the aggressive one" in md
    # recalibrating a directory this version compiled, from its own levels, reproduces it
    compiled = tmp_path / "work" / "resnet20_synthetic" / "compiled"
    proc = _run("recalibrate.py", str(compiled), "--scratch", str(tmp_path / "recal"), "--out",
                str(tmp_path / "recal.md"))
    assert proc.returncode == 0, proc.stderr
    made, again = (json.loads((d / "report.json").read_text()) for d in (compiled, tmp_path / "recal" / "compiled"))
    for key in ("accuracy", "mild_share", "energy_reduction"):
        assert again[key] == made[key], key
    assert again["selector"]["threshold"] == made["selector"]["threshold"]
    shown = (tmp_path / "recal.md").read_text()
    assert f"{v['dynamic_learned']['accuracy']:.2f} → {v['dynamic_learned']['accuracy']:.2f}" in shown
    # --redo fine-tunes again from scratch (no resumed checkpoint) and lands on the same numbers
    ckpt = tmp_path / "work" / "resnet20_synthetic" / "levels_ckpt"
    stale = {p: p.stat().st_mtime_ns for p in ckpt.rglob("*.pt")}
    (marker := next(ckpt.iterdir()) / "stale.marker").write_text("from the first run")
    redone = _run("reproduce.py", *args, "--redo")
    assert redone.returncode == 0, redone.stderr
    assert not marker.exists()
    assert all(p.stat().st_mtime_ns != t for p, t in stale.items())
    (row,) = json.loads((tmp_path / "results" / "reproduce.json").read_text())["rows"]
    assert row["variants"] == v
    # --carry keeps what resumes the row; a fresh --work given those files finishes it without training
    # the baseline again, on the same numbers
    carried = tmp_path / "carried"
    proc = _run("reproduce.py", *args, "--carry", "--carried", str(carried))
    assert proc.returncode == 0, proc.stderr
    assert {p.relative_to(carried / "resnet20_synthetic").parts[0] for p in carried.rglob("*.pt")} == \
        {"baseline_1ep.pt", "levels_ckpt"}
    fresh_work = [*args[:args.index("--work")], "--work", str(tmp_path / "work2"), "--results",
                  str(tmp_path / "results2"), "--carried", str(carried)]
    proc = _run("reproduce.py", *fresh_work)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "work2" / "resnet20_synthetic" / "baseline_1ep_ckpt").exists()
    # the fine-tunes resumed at their last step: their carried checkpoints are not written again
    work2 = tmp_path / "work2" / "resnet20_synthetic"
    made = {p.relative_to(work2): p.stat().st_mtime_ns for p in (work2 / "levels_ckpt").rglob("*.pt")}
    assert made == {p.relative_to(carried / "resnet20_synthetic"): p.stat().st_mtime_ns
                    for p in (carried / "resnet20_synthetic" / "levels_ckpt").rglob("*.pt")}
    (resumed,) = json.loads((tmp_path / "results2" / "reproduce.json").read_text())["rows"]
    assert resumed["variants"] == v
    # --jobs 2 fine-tunes the row's three levels in two processes, into the folders the row then finds
    # finished (a folder with another key would mean a second fine-tune): the same numbers
    parallel = [*args[:args.index("--work")], "--work", str(tmp_path / "work3"), "--results",
                str(tmp_path / "results3"), "--jobs", "2", "--single-ratios", "0.5", "0.5"]
    proc = _run("reproduce.py", *[a for a in parallel if a != "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert "fine-tuning 3 levels in 2 processes" in proc.stdout  # the repeated ratio is one level
    # the row resumed all three where the workers left them, at their last step
    assert len(re.findall(r"resumed at step (\d+) of \1 ", proc.stderr)) == 3, proc.stderr
    assert {p.name for p in (tmp_path / "work3" / "resnet20_synthetic" / "levels_ckpt").iterdir()} == \
        {p.name for p in ckpt.iterdir()}
    (in_parallel,) = json.loads((tmp_path / "results3" / "reproduce.json").read_text())["rows"]
    assert in_parallel["variants"] == v
    reduction = 1 - v["dynamic_learned"]["energy"] / v["original"]["energy"]
    summary = next(line for line in md.splitlines() if line.startswith("| resnet20 | synthetic |"))
    assert "| 1 | 0.30/0.70 (fixed) |" in summary and f"| {reduction:.1%} |" in summary
    assert summary.endswith("(short baseline) |")  # 1 epoch is under the script's default of 2 for synthetic

    # --reuse-levels: a row made with another selector calibration is recomputed from the networks its
    # compile left behind, and comes out as the fresh row did (nothing fine-tuned again)
    fresh = json.loads(json.dumps(row))
    for path in (tmp_path / "work" / "resnet20_synthetic" / "row.json", tmp_path / "results" / "reproduce.json"):
        stale = json.loads(path.read_text())
        for r in stale.get("rows", [stale]):
            del r["settings"]["selector_calibration"]  # as rows made before cross-fitting
            r["variants"]["dynamic_learned"]["accuracy"] = -1.0
        path.write_text(json.dumps(stale))
    proc = _run("reproduce.py", *args, "--reuse-levels")
    assert proc.returncode == 0, proc.stderr
    (refreshed,) = json.loads((tmp_path / "results" / "reproduce.json").read_text())["rows"]
    assert refreshed["variants"] == fresh["variants"] and refreshed["single_levels"] == fresh["single_levels"]
    assert refreshed["settings"]["selector_calibration"] == fresh["settings"]["selector_calibration"]
    assert refreshed["wall_seconds"] == fresh["wall_seconds"] and "--reuse-levels" in refreshed["refreshed"]["command"]
    assert "Refreshed by" in (tmp_path / "results" / "reproduce.md").read_text()
    refused = _run("reproduce.py", *args, "--reuse-levels", "--seed", "1")
    assert refused.returncode == 2 and "seed 0 (asked 1)" in refused.stderr and "Traceback" not in refused.stderr
    # a fresh checkout has neither --work nor the baseline: the row's committed compiled model stands in for
    # both, and is replaced by the refreshed one
    committed = tmp_path / "results4"
    shutil.copytree(compiled, committed / "artifacts" / "resnet20_synthetic")
    shutil.copy(tmp_path / "results" / "reproduce.json", committed / "reproduce.json")
    baseline = tmp_path / "work" / "resnet20_synthetic" / "baseline_1ep.pt"
    baseline.rename(hidden := baseline.with_suffix(".hidden"))
    try:
        proc = _run("reproduce.py", *args[:args.index("--work")], "--work", str(tmp_path / "work4"), "--results",
                    str(committed), "--reuse-levels", "--redo")
    finally:
        hidden.rename(baseline)
    assert proc.returncode == 0, proc.stderr
    (again,) = json.loads((committed / "reproduce.json").read_text())["rows"]
    assert again["variants"] == fresh["variants"] and again["settings"]["baseline"] == fresh["settings"]["baseline"]
    artifact = json.loads((committed / "artifacts" / "resnet20_synthetic" / "report.json").read_text())
    made = json.loads((tmp_path / "work4" / "resnet20_synthetic" / "compiled" / "report.json").read_text())
    assert "--reuse-levels" in artifact["command"] and artifact == made
    assert [p.name for p in (committed / "artifacts").iterdir()] == ["resnet20_synthetic"]  # no .tmp/.old left

    # the selector-target study runs on the compiled model the row left behind
    compiled = tmp_path / "work" / "resnet20_synthetic" / "compiled"
    proc = _run("bench_selector_targets.py", str(compiled), "--train-samples", "300", "--epochs", "5",
                "--results", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    (study,) = json.loads((tmp_path / "results" / "bench_selector_targets.json").read_text())["rows"]
    assert study["dataset"] == "synthetic" and study["samples"]["train_added"] == 300
    oracle = study["variants"].pop("oracle")
    assert len(study["variants"]) == 5
    assert oracle["auc_mild_fixes"] == (1.0 if study["test_inputs_mild_fixes"] else None)
    for gap, need in oracle["to_reach"].items():  # no selector routes fewer inputs than the oracle
        for variant in study["variants"].values():
            if variant["to_reach"][gap] is not None:
                assert need["mild_share"] <= variant["to_reach"][gap]["mild_share"] + 1e-9
    shares = [oracle["to_reach"][g]["mild_share"] for g in ("0.5", "1", "1.5", "2")]
    assert shares == sorted(shares, reverse=True)  # a looser budget never needs more
    assert set(study["train_subset_accuracy"]) == {"aggressive", "mild"} and study["settings"]["epochs"] == 5
    assert _run("bench_selector_targets.py", str(tmp_path / "nothing")).returncode == 2
    report = json.loads((compiled / "report.json").read_text())

    # other budgets, same compiled model: at its own budget the point is the report's dynamic model
    proc = _run("bench_budgets.py", str(compiled), "--budgets", "0", "2", "5", "50", "--results",
                str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    (budgets,) = json.loads((tmp_path / "results" / "bench_budgets.json").read_text())["rows"]
    points = {p["budget"]: p for p in budgets["points"]}
    own = points[5.0]  # the row's --max-accuracy-drop
    assert own["accuracy"] == pytest.approx(report["accuracy"]["dynamic"], abs=1e-6)
    assert own["relative_energy"] == pytest.approx(report["energy"]["dynamic"] / report["energy"]["original"])
    assert own["mild_share"] == pytest.approx(report["mild_share"])
    energies = [p["relative_energy"] for p in budgets["points"]]
    assert energies == sorted(energies, reverse=True)  # a looser budget never costs more
    assert all(p["calibration_drop"] <= p["budget"] + 1e-9 or not p["feasible"] for p in budgets["points"])
    assert _run("bench_budgets.py", str(tmp_path / "nothing")).returncode == 2

    # the calibration study's cross-fit scheme at compile's seed and epochs is the compiled model itself
    proc = _run("bench_calibration.py", str(compiled), "--seeds", "0", "1", "--results", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    (calibration,) = json.loads((tmp_path / "results" / "bench_calibration.json").read_text())["rows"]
    own = calibration["learned"]["cross-fit"][0]
    assert own["seed"] == 0 and own["mild_share"] == pytest.approx(report["mild_share"])
    assert own["accuracy_drop"] == pytest.approx(report["accuracy_drop"], abs=1e-6)
    assert own["energy_reduction"] == pytest.approx(report["energy_reduction"])
    assert [len(runs) for runs in calibration["learned"].values()] == [2, 2]
    assert "| learned, half split |" in (tmp_path / "results" / "bench_calibration.md").read_text()

    # estimate vs bound: the estimate rule at the compiled budget is the compiled model itself
    assert report["selector"]["confidence"] is None and report["selector"]["drop_bound"]["confidence"] == 0.9
    proc = _run("bench_guarantee.py", str(compiled), "--budgets", "2", "5", "--splits", "20", "--results",
                str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    (guarantee,) = json.loads((tmp_path / "results" / "bench_guarantee.json").read_text())["rows"]
    rules = {(r["budget"], r["rule"]): r for r in guarantee["compiled_calibration"]}
    own = rules[5.0, "estimate"]
    assert own["mild_share"] == pytest.approx(report["mild_share"])
    assert own["accuracy_drop"] == pytest.approx(report["accuracy_drop"], abs=1e-6)
    assert own["bound"] == pytest.approx(report["selector"]["drop_bound"]["points"])
    for budget in (2.0, 5.0):
        bounded = rules[budget, "bounded"]
        assert bounded["mild_share"] >= rules[budget, "estimate"]["mild_share"]
        assert bounded["bound"] <= budget + 1e-9 or not bounded["feasible"]
    assert len(guarantee["resplits"]) == 6 and all(0 <= r["over_budget"] <= 1 for r in guarantee["resplits"])
    assert {r["rule"] for r in guarantee["resplits"]} == {"estimate", "bounded", "bounded-pair"}
    assert all(0 <= r["claimed_yet_over_on_pool"] <= 1 for r in guarantee["resplits"])
    assert _run("bench_guarantee.py", str(compiled), "--confidence", "1.5").returncode == 2
    report["selector"]["kind"] = "max-softmax"
    (compiled / "report.json").write_text(json.dumps(report))
    refused = _run("bench_selector_targets.py", str(compiled), "--results", str(tmp_path / "results"))
    assert refused.returncode == 2 and "--selector max-softmax" in refused.stderr and "Traceback" not in refused.stderr


def test_compare_runs_flags_what_moved(tmp_path):
    def results(acc, energy):
        row = {"network": "n", "dataset": "d", "variants": {"dynamic_learned": {"accuracy": acc, "energy": energy}}}
        return {"rows": [row, {**row, "network": "other"}], "command": "x"}

    a, same, moved = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(json.dumps(results(90.0, 100.0)))
    same.write_text(json.dumps(results(90.2, 100.9)))
    moved.write_text(json.dumps(results(90.0, 102.0)))
    assert _run("compare_runs.py", str(a), str(same)).returncode == 0
    proc = _run("compare_runs.py", str(a), str(moved), "--only", "n/d", "-o", str(tmp_path / "check.md"))
    assert proc.returncode == 1 and "NOT reproduced" in (tmp_path / "check.md").read_text()
    assert "other" not in proc.stdout
    assert _run("compare_runs.py", str(a), str(tmp_path / "missing.json")).returncode == 2
    # exactly at the tolerance is within it (89.96 -> 90.26 differs by 0.30000000000001137 in floats)
    edge = tmp_path / "edge.json"
    edge.write_text(json.dumps(results(90.3, 101.0)))
    a.write_text(json.dumps(results(90.0, 100.0)))
    assert _run("compare_runs.py", str(a), str(edge)).returncode == 0
    a.write_text(json.dumps(results(89.96, 100.0)))
    edge.write_text(json.dumps(results(90.26, 100.0)))
    assert _run("compare_runs.py", str(a), str(edge)).returncode == 0
    # a rerun that lacks a variant or a row named in --only does not reproduce it; a typo in --only is refused
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"rows": [{"network": "n", "dataset": "d", "variants": {}}], "command": "x"}))
    proc = _run("compare_runs.py", str(a), str(partial))
    assert proc.returncode == 1 and "dynamic_learned | missing in B" in proc.stdout
    proc = _run("compare_runs.py", str(a), str(partial), "--only", "other/d")
    assert proc.returncode == 1 and "(the whole row) | missing in B" in proc.stdout
    proc = _run("compare_runs.py", str(a), str(same), "--only", "n/dd")
    assert proc.returncode == 2 and "--only n/dd: no such row in A" in proc.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"rows": [{"network": "n", "dataset": "d"}]}))
    proc = _run("compare_runs.py", str(a), str(broken))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@functools.cache
def _script_module(name: str):
    """A benchmark script imported as a module (it imports its sibling runs.py)."""
    import importlib.util

    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reproduce_module():
    return _script_module("reproduce")


def test_carry_keeps_the_latest_state_of_each_training(tmp_path):
    reproduce = _reproduce_module()
    work, carried = tmp_path / "work", tmp_path / "carried"
    files = ["baseline_6ep.pt", "baseline_15ep_ckpt/epoch_2.pt", "baseline_15ep_ckpt/epoch_10.pt",
             "levels_ckpt/fine-tune-mild-aaaa/epoch_3.pt", "levels_ckpt/fine-tune-mild-aaaa/epoch_4.pt",
             "levels_ckpt/fine-tune-aggressive-bbbb/epoch_1.pt", "compiled/report.json",
             "levels_ckpt/fine-tune-mild-0000/epoch_9.pt"]  # another key's leftover, older
    for i, name in enumerate(files):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(name)
        os.utime(work / name, (1000 + i, 1000 + i) if "0000" not in name else (10, 10))
    (carried / "old").mkdir(parents=True)
    (carried / "old" / "epoch_1.pt").write_text("an earlier session's")
    kept = reproduce.carry(work, carried, "baseline_15ep")
    # the 15-epoch baseline in training, not the finished 6-epoch one; epoch 10 is later than 2
    want = {"baseline_15ep_ckpt/epoch_10.pt", "levels_ckpt/fine-tune-mild-aaaa/epoch_4.pt",
            "levels_ckpt/fine-tune-aggressive-bbbb/epoch_1.pt"}
    assert {str(p.relative_to(carried)) for p in kept} == want
    assert {str(p.relative_to(carried)) for p in carried.rglob("*") if p.is_file()} == want
    assert not carried.with_name("carried.tmp").exists() and not carried.with_name("carried.old").exists()
    (work / "baseline_15ep.pt").write_text("finished")  # a finished baseline replaces its epoch checkpoints
    assert "baseline_15ep.pt" in {str(p.relative_to(carried)) for p in reproduce.carry(work, carried, "baseline_15ep")}
    assert not (carried / "baseline_15ep_ckpt").exists()
    # nothing to carry (a row not run here, a wrong --work) leaves the committed checkpoints alone
    assert reproduce.carry(tmp_path / "empty", carried, "baseline_15ep") == []
    assert (carried / "baseline_15ep.pt").read_text() == "finished"
    # restoring copies only what the work folder lacks, never over what it has, and keeps file times
    fresh = tmp_path / "fresh"
    (fresh / "levels_ckpt" / "fine-tune-mild-aaaa").mkdir(parents=True)
    (fresh / "levels_ckpt" / "fine-tune-mild-aaaa" / "epoch_4.pt").write_text("newer, made here")
    copied = reproduce.restore_carried(carried, fresh)
    assert {str(p.relative_to(fresh)) for p in copied} == {"baseline_15ep.pt",
                                                            "levels_ckpt/fine-tune-aggressive-bbbb/epoch_1.pt"}
    assert (fresh / "levels_ckpt" / "fine-tune-mild-aaaa" / "epoch_4.pt").read_text() == "newer, made here"
    assert (fresh / "baseline_15ep.pt").read_text() == "finished"
    assert (fresh / "levels_ckpt/fine-tune-aggressive-bbbb/epoch_1.pt").stat().st_mtime == \
        (work / "levels_ckpt/fine-tune-aggressive-bbbb/epoch_1.pt").stat().st_mtime


def test_a_baseline_trained_otherwise_is_not_reused(tmp_path):
    from prunec import zoo
    from prunec.errors import UserError
    from prunec.frontend import save_checkpoint

    reproduce = _reproduce_module()
    work = tmp_path / "resnet20_synthetic"
    work.mkdir()
    save_checkpoint(zoo.build("resnet20", in_channels=1, num_classes=4), str(work / "baseline_1ep.pt"),
                    "zoo:resnet20", 1, 4, epochs=1.0, lr=0.1, seed=0)
    _, args = reproduce.parse_args(["--datasets", "synthetic", "--baseline-epochs", "1", "--results", str(tmp_path)])
    assert reproduce._baseline("resnet20", "synthetic", args, work) == work / "baseline_1ep.pt"
    for flags, needle in ((["--seed", "1"], "seed 0 (asked 1)"), (["--baseline-lr", "0.05"], "lr 0.1 (asked 0.05)")):
        _, args = reproduce.parse_args(["--datasets", "synthetic", "--baseline-epochs", "1", "--results",
                                        str(tmp_path), *flags])
        with pytest.raises(UserError, match=re.escape(needle)):
            reproduce._baseline("resnet20", "synthetic", args, work)


def test_single_level_mix_interpolates_between_levels():
    mix = _reproduce_module().single_level_mix
    levels = [{"accuracy": 80.0, "energy": 10.0}, {"accuracy": 90.0, "energy": 50.0},
              {"accuracy": 91.0, "energy": 100.0}]
    assert mix(levels, 85.0) == 30.0  # half the inputs to each of the two nearest levels
    assert mix(levels, 90.0) == 50.0 and mix(levels, 70.0) == 10.0
    assert mix(levels, 92.0) is None


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 1e6)), min_size=1, max_size=6),
       st.floats(0, 100))
def test_single_level_mix_never_worse_than_one_level(points, accuracy):
    mix = _reproduce_module().single_level_mix
    levels = [{"accuracy": a, "energy": e} for a, e in points]
    reachable = [lv["energy"] for lv in levels if lv["accuracy"] >= accuracy]
    result = mix(levels, accuracy)
    assert (result is None) == (not reachable)
    if reachable:
        assert min(lv["energy"] for lv in levels) - 1e-6 <= result <= min(reachable) + 1e-6


def test_a_row_no_cheaper_than_its_best_single_level_misses_the_target():
    """The target's third part, as the committed VGG-16 / CIFAR-10 row shows: routing nothing, the
    dynamic model is the aggressive level plus the selector, and the aggressive level alone wins."""
    module = _reproduce_module()

    def row(dynamic_energy: float) -> dict:
        return {"dataset": "synthetic", "variants": {
            "original": {"accuracy": 90.0, "energy": 100.0},
            "dynamic_learned": {"accuracy": 89.0, "energy": dynamic_energy, "mild_share": 0.0},
            "best_single_level": {"ratio": 0.7, "accuracy": 89.0, "energy": 20.0}}}

    assert module.verdict(row(19.9)) == "met"
    assert module.verdict(row(20.06)) == "missed"
    assert "1.0030x the energy of the best single level (ratio 0.70)" in module._shortfall(row(20.06))
    assert "short by" not in module._shortfall(row(20.06))
    # at the edges: prunec.report's tolerance, and the decimals that show the side of the limit
    assert "1.00001x the energy of the best single level" in module._shortfall(row(20.0002))
    edge = row(19.9)
    edge["variants"]["dynamic_learned"]["energy"] = 30.04  # 69.96 % reduction
    edge["variants"]["best_single_level"]["energy"] = 40.0
    assert module.verdict(edge) == "missed" and "short by 0.04% energy reduction" in module._shortfall(edge)
    edge["variants"]["dynamic_learned"]["energy"] = 30.0 + 1e-10  # within prunec.report's tolerance
    assert module.verdict(edge) == "met"


def test_committed_artifacts_are_the_reproduce_rows():
    """Each compiled model under benchmarks/results/artifacts is the one its reproduce.json row reports."""
    rows = {(r["network"], r["dataset"]): r
            for r in json.loads((ROOT / "benchmarks" / "results" / "reproduce.json").read_text())["rows"]}
    artifacts = sorted((ROOT / "benchmarks" / "results" / "artifacts").glob("*/report.json"))
    assert artifacts
    for path in artifacts:
        report = json.loads(path.read_text())
        row = rows[(report["model"]["arch"].removeprefix("zoo:"), report["data"]["name"])]
        dyn = row["variants"]["dynamic_learned"]
        assert (dyn["accuracy"], dyn["energy"], dyn["mild_share"]) == pytest.approx(
            (report["accuracy"]["dynamic"], report["energy"]["dynamic"], report["mild_share"])), path
        for level in ("mild", "aggressive"):
            assert row["variants"][level]["ratio"] == report["levels"][level]["ratio"], path


def test_committed_artifacts_say_which_normalization_their_inputs_take():
    """report.json and model.onnx name the compiled model's own input normalization (as compile writes
    them now; `benchmarks/backfill_normalization.py` added them to the earlier artifacts)."""
    import onnx

    from prunec import load_compiled
    from prunec.artifact import preprocess_spec
    from prunec.data import same_normalization

    for directory in sorted((ROOT / "benchmarks" / "results" / "artifacts").glob("*/")):
        spec = preprocess_spec(load_compiled(directory / "model").preprocess)
        # the report keeps the statistics as given (0.286), the compiled model as float32 (0.28600001...)
        assert same_normalization(json.loads((directory / "report.json").read_text())["data"]["normalization"],
                                  spec), directory
        props = {p.key: p.value for p in onnx.load(directory / "model.onnx", load_external_data=False).metadata_props}
        assert (json.loads(props["prunec.mean"]), json.loads(props["prunec.std"])) == (spec["mean"], spec["std"])


def test_readme_quotes_the_committed_summary():
    """The README's results table is the one reproduce.json gives (`reproduce.py --render`)."""
    module = _reproduce_module()
    payload = json.loads((ROOT / "benchmarks" / "results" / "reproduce.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert module.readme_with_summary(readme, payload) == readme
    assert "\n".join(module.summary_table(payload["rows"], payload.get("not_run", []))) in readme


def test_a_finished_row_is_reused_only_for_its_own_settings():
    """Each committed row, asked for again with the command that made it, is reused as it is, unless
    its selector calibration is an earlier one (then only that differs, and --reuse-levels refreshes
    it); asked with other settings (a longer baseline, searched levels, another seed) it is recomputed."""
    from prunec.dynamic import calibration_scheme

    module = _reproduce_module()
    payload = json.loads((ROOT / "benchmarks" / "results" / "reproduce.json").read_text())
    for row in payload["rows"]:
        argv = shlex.split(row["settings"]["command"])[2:]
        _, args = module.parse_args(argv)
        differ = module.settings_differ(row, args)
        if row["settings"]["selector_calibration"] == calibration_scheme("learned"):
            assert differ == [], row["settings"]["command"]
        else:  # made before the current calibration rule
            assert [d.split(" ")[0] for d in differ] == ["selector_calibration"], differ
        _, other = module.parse_args([*argv, "--seed", "1"])
        assert sorted(module.settings_differ(row, other)) == sorted([*differ, "seed 0 (asked 1)"])
        _, other = module.parse_args([*argv, "--aggressive-epochs", "9"])
        assert sorted(module.settings_differ(row, other)) == sorted(
            [*differ, f"aggressive_epochs {row['settings']['epochs']} (asked 9.0)"])
    row = next(r for r in payload["rows"] if r["settings"].get("levels", "").startswith("fixed"))
    _, longer = module.parse_args(["--baseline-epochs", "40", "--threads", str(row["settings"]["threads"]),
                                   "--epochs", str(row["settings"]["epochs"]), "--single-ratios", "0.5"])
    differ = module.settings_differ(row, longer)
    with pytest.raises(SystemExit):  # fixed levels need both ratios
        module.parse_args(["--mild", "0.3"])
    for bad in (["--mild", "1.3", "--aggressive", "1.5"], ["--mild", "0.7", "--aggressive", "0.3"],
                ["--single-ratios", "1.5"], ["--threads", "0"], ["--seed", "-1"]):
        with pytest.raises(SystemExit):  # refused when parsed, before hours of baseline training
            module.parse_args(bad)
    assert any(d.startswith("levels fixed") for d in differ) and any(d.startswith("baseline_epochs") for d in differ)


def test_differences_compares_numbers_as_numbers():
    differences = _reproduce_module().differences  # runs.differences, as reproduce.py imports it
    assert differences({"epochs": 6.0, "levels": "searched"}, {"epochs": 6, "levels": "searched"}) == []
    assert differences({"epochs": 1.0}, {"epochs": 6, "seed": 0}) == ["epochs 1.0 (asked 6)", "seed None (asked 0)"]


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60), st.floats(0, 1))
@example([(False, True)], 1e-9)  # a target within float slack of routing nothing
def test_oracle_ranking_routes_only_the_fixes_it_needs(outcomes, target):
    """To reach any accuracy between the aggressive network's and its best, the oracle routes
    exactly the number of fixable inputs that accuracy needs, and no more."""
    import math

    import numpy as np

    from prunec.calibration import sweep

    module = _script_module("bench_selector_targets")
    agg_ok, mild_ok = (np.array(v) for v in zip(*outcomes, strict=True))
    n, fixes = len(agg_ok), int((~agg_ok & mild_ok).sum())
    target = agg_ok.mean() + target * fixes / n  # an accuracy the oracle can reach
    points = sweep(module.oracle_ranking(agg_ok, mild_ok), agg_ok, mild_ok, None,
                   {"base": 0.0, "mild": 1.0, "original": 1.0})
    tol = 1e-9  # the same slack on both sides: a target within it of k fixes needs k, not k + 1
    best = min((p for p in points if p.accuracy >= target - tol), key=lambda p: p.mild_share)
    assert round(best.mild_share * n) == max(0, math.ceil(round((target - tol - agg_ok.mean()) * n, 9)))


def test_headline_figures_alexnet_close_and_vgg16_dram_bracketed(tmp_path):
    """The chip's abstract figures: AlexNet frames/s and DRAM accesses/MAC within 25 %; VGG-16's
    DRAM accesses/MAC lie between the model's no-zeros bound and its estimate with AlexNet's zeros;
    Table VI's VGG-16 layers agree on active PEs and DRAM traffic. (VGG-16's global-buffer traffic
    and latency are reported, not asserted: the model is 2-6x below the chip on the wide layers.)"""
    from tests.test_eyeriss_validation import TABLE_V

    if not os.path.exists(TABLE_V):
        pytest.skip("shared/reference not available")
    proc = _run("bench_headline.py", "--table-v", TABLE_V, "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    alex, vgg_dense, vgg_zeros = json.loads((tmp_path / "bench_headline.json").read_text())["rows"]
    assert abs(alex["fps_ratio"] - 1) < 0.25 and abs(alex["dram_ratio"] - 1) < 0.25
    assert alex["active_pes"] == [154, 135, 156, 156, 156]
    assert vgg_dense["conv_layers"] == vgg_zeros["conv_layers"] == 13
    assert vgg_zeros["dram_per_mac"] < vgg_dense["chip"]["dram_per_mac"] < vgg_dense["dram_per_mac"]
    assert "| VGG-16 | 3 |" in (tmp_path / "bench_headline.md").read_text()
    # Table VI per layer: active PEs within 8 %, DRAM traffic within 35 % per layer and 15 % in all
    per_layer = json.loads((tmp_path / "bench_headline.json").read_text())["vgg16_per_layer"]
    assert len(per_layer) == 13
    for row in per_layer:
        (pes, chip_pes), (dram, chip_dram) = row["active_pes"], row["dram_mb"]
        assert abs(pes / chip_pes - 1) <= 0.08 and abs(dram / chip_dram - 1) <= 0.35, row
    ours, chip = (sum(r["dram_mb"][i] for r in per_layer) for i in (0, 1))
    assert abs(ours / chip - 1) <= 0.15


def test_a_baseline_trained_on_mixed_thread_counts_is_flagged():
    reproduce = _reproduce_module()
    payload = json.loads((ROOT / "benchmarks" / "results" / "reproduce.json").read_text())
    row = payload["rows"][0]
    row["settings"]["baseline_trained_with"] = [{"epochs": [1, 10], "device": "cpu", "threads": 1},
                                                {"epochs": [11, 15], "device": "cpu", "threads": 2}]
    assert "(epochs 1-10 on cpu, 1 thread; epochs 11-15 on cpu, 2 threads), so a rerun from scratch will not " \
        "match it bit for bit" in reproduce.render_markdown(payload)
    row["settings"]["baseline_trained_with"] = [{"epochs": [1, 15], "device": "cpu", "threads": 1}]
    assert "bit for bit" not in reproduce.render_markdown(payload)


def test_merged_study_rows_name_the_command_that_made_each(tmp_path, monkeypatch):
    runs = _script_module("runs")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text("{}")
    out = tmp_path / "study.json"

    def make(d):
        return {"compiled": d.name, "network": "net", "dataset": "data"}

    out.write_text(json.dumps({"rows": [make(tmp_path / "a")], "command": "python old.py a"}))
    monkeypatch.setattr(sys, "argv", ["new.py", "b"])
    rows = {r["compiled"]: r for r in runs.study_rows([tmp_path / "b"], out, make)}
    # the older row keeps the command of the file it came from; the new one gets this run's
    assert rows["a"]["command"] == "python old.py a" and rows["b"]["command"] == "python new.py b"
    # a row whose settings name the command that made it keeps that one, not the file's last command
    made = {**make(tmp_path / "a"), "settings": {"command": "python older.py a c --threads 1"}}
    out.write_text(json.dumps({"rows": [made], "command": "python old.py b"}))
    rows = {r["compiled"]: r for r in runs.study_rows([tmp_path / "b"], out, make)}
    assert rows["a"]["command"] == "python older.py a c --threads 1"
    out.write_text(json.dumps({"rows": [make(tmp_path / "a")], "command": "python old.py a"}))
    rows = {r["compiled"]: r for r in runs.study_rows([tmp_path / "b"], out, make)}
    header = runs.study_header("T", {"rows": list(rows.values()), "command": "python new.py b", "versions": {}}, "")
    assert header[2].startswith("Last command: `python new.py b`")
    assert "Made by `python old.py a`." in runs.study_heading(rows["a"])
    alone = runs.study_header("T", {"rows": [rows["b"]], "command": "python new.py b", "versions": {}}, "")
    assert alone[2] == "Command: `python new.py b`  "


def test_bench_selectors_dry_run_runs_on_other_data_and_keeps_off_the_committed_results(tmp_path):
    """The documented dry run: on synthetic data the bundled Fashion-MNIST model does not fit, so a
    stand-in trains briefly; without --out it would overwrite the committed benchmark, so it is refused."""
    committed = (ROOT / "benchmarks" / "results" / "bench_selectors.json").read_bytes()
    refused = _run("bench_selectors.py", "--data", "synthetic", "--quick", "--repeats", "1", "--threads", "1")
    assert refused.returncode == 2 and "needs --out DIR" in refused.stderr
    done = _run("bench_selectors.py", "--data", "synthetic", "--quick", "--repeats", "1", "--threads", "1",
                "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "bench_selectors.json").read_text())
    assert result["quick"] and result["data"] == "synthetic" and result["model"] is None
    assert (ROOT / "benchmarks" / "results" / "bench_selectors.json").read_bytes() == committed
    assert _run("bench_lowering.py", "--help").returncode == 0  # it once ran, and overwrote its results, on --help


def test_train_baseline_checks_its_output_before_training(tmp_path):
    (tmp_path / "a_file").write_text("x")
    done = subprocess.run([sys.executable, "examples/train_baseline.py", "--data", "synthetic", "--max-steps", "1",
                           "-o", str(tmp_path / "a_file" / "model.pt")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "is not a directory" in done.stderr and "training" not in done.stdout


def test_train_baseline_trains_on_the_gpu_when_there_is_one(monkeypatch, tmp_path):
    """It used to train on the CPU whatever the machine held: a lent GPU sat idle for hours of baseline."""
    import torch

    from examples import train_baseline

    devices = []

    def record(*_args, device=None, **_kwargs):
        devices.append(torch.device(device))
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(train_baseline, "finetune", record)
    for asked, used in ((None, "cuda"), ("cpu", "cpu")):
        with pytest.raises(KeyboardInterrupt):
            train_baseline.main(["--data", "synthetic", "-o", str(tmp_path / "m.pt"),
                                 *(["--device", asked] if asked else [])])
        assert devices.pop().type == used
    assert not (tmp_path / "m.pt").exists()


def test_train_baseline_refuses_a_device_it_cannot_use(tmp_path):
    done = subprocess.run([sys.executable, "examples/train_baseline.py", "--data", "synthetic", "--device", "nonsense",
                           "-o", str(tmp_path / "m.pt")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "unknown device 'nonsense'" in done.stderr and "training" not in done.stdout


@pytest.mark.parametrize(("script", "option"), [("bench_budgets.py", "--budgets"), ("bench_guarantee.py", "--budgets"),
                                                ("reproduce.py", "--max-accuracy-drop"),
                                                ("bench_selectors.py", "--max-accuracy-drop")])
def test_accuracy_budgets_are_finite_points_at_least_zero(script, option):
    """nan or -1 used to be accepted, and every threshold then read as missing (or meeting) the budget."""
    for bad in ("nan", "-1", "inf"):
        proc = _run(script, *(["x"] if script in ("bench_budgets.py", "bench_guarantee.py") else []),
                    option, bad)
        assert proc.returncode == 2 and "must be a finite number of points >= 0" in proc.stderr, proc.stderr
