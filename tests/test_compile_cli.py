"""``prunec compile`` end to end through the CLI, and every user error it can meet."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
import torch

import prunec
from prunec import load_compiled, zoo
from prunec.accuracy_bound import point_bound
from prunec.errors import UserError
from prunec.frontend import save_checkpoint
from prunec.report import load_report, validate_report
from tests.conftest import ROOT, assert_user_error, run_cli

QUICK = ["--data", "synthetic", "--mild", "0.3", "--aggressive", "0.7", "--epochs", "0.2", "--quiet"]


@pytest.fixture(scope="module")
def trained_synthetic(tmp_path_factory):
    """A resnet20 checkpoint briefly trained on the synthetic set, with prunec metadata."""
    from prunec.data import load_split
    from prunec.training import finetune

    torch.manual_seed(0)
    model = zoo.build("resnet20", in_channels=1, num_classes=4)
    finetune(model, load_split("synthetic", "train"), epochs=2, lr=0.05, progress=False, seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "r20_synth.pt"
    save_checkpoint(model, str(path), "zoo:resnet20", 1, 4, dataset="synthetic", input_shape=[1, 1, 16, 16])
    return path


@pytest.fixture(scope="module")
def compiled_dir(trained_synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "out"
    result = run_cli("compile", str(trained_synthetic), *QUICK, "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_writes_every_output(compiled_dir):
    names = {p.name for p in compiled_dir.iterdir()}
    assert {"report.json", "report.md", "energy_breakdown.png", "tradeoff.png", "model.onnx", "ir.json",
            "ir_original.json", "model"} <= names
    report = validate_report(json.loads((compiled_dir / "report.json").read_text()))
    assert report["levels"]["mild"]["ratio"] == 0.3 and report["levels"]["aggressive"]["ratio"] == 0.7
    assert report["levels"]["aggressive"]["macs"] < report["levels"]["mild"]["macs"] < report["model"]["macs"]
    e = report["energy"]
    assert e["aggressive"] < e["mild"] < e["original"]
    assert e["by_role"]["selector"] > 0  # the learned selector's layers are lowered and paid for
    expected = e["by_role"]["trunk"] + e["by_role"]["head"] + e["by_role"]["selector"] + \
        report["mild_share"] * e["by_role"]["mild"]
    assert e["dynamic"] == pytest.approx(expected, rel=1e-6)
    assert "Target" in (compiled_dir / "report.md").read_text()
    ir = json.loads((compiled_dir / "ir.json").read_text())
    assert {layer["role"] for layer in ir["layers"]} == {"trunk", "head", "selector", "mild"}
    # the IR's totals hold the expected energy at the routed share, as report.json's dynamic energy
    assert ir["totals"]["routed_share"] == report["mild_share"]
    assert ir["totals"]["expected_energy_per_inference"] == pytest.approx(e["dynamic"], rel=1e-9)
    # and the report records what the energies were costed on
    assert report["hardware"]["name"] == "eyeriss_v1" and report["hardware"]["energy_per_access"]["dram"] == 200
    # latency: the IRs' cycles at the chip's clock, by role, and the networks alone as their parts in the model
    lat, clock = report["latency_ms"], ir["hardware"]["clock_hz"]
    for role, ms in lat["by_role"].items():
        assert ms == pytest.approx(sum(r["cycles"] for r in ir["layers"] if r["role"] == role) / clock * 1e3)
    original = json.loads((compiled_dir / "ir_original.json").read_text())
    assert lat["original"] == pytest.approx(original["totals"]["latency_ms"])
    assert lat["mild"] == pytest.approx(lat["by_role"]["mild"], rel=1e-9)
    assert lat["aggressive"] == pytest.approx(lat["by_role"]["trunk"] + lat["by_role"]["head"], rel=1e-9)
    assert lat["aggressive"] < lat["dynamic_expected"] <= lat["dynamic_worst"] and lat["mild"] < lat["original"]
    assert "## Latency" in (compiled_dir / "report.md").read_text()
    assert ir["totals"]["expected_latency_ms"] == pytest.approx(lat["dynamic_expected"], rel=1e-9)
    assert report["hardware"]["clock_hz"] == clock == 200e6  # what the latencies depend on is recorded


def test_a_compiled_model_is_costed_again_on_other_hardware(compiled_dir, tmp_path):
    """`prunec lower DIR` costs ir.json and ir_original.json again: on the compile's own chip it gives
    report.json's energies; on another chip what relowering each IR gives."""
    import yaml

    from prunec.backends.eyeriss.hardware import DEFAULT_HW
    from prunec.recost import relower

    report = load_report(compiled_dir / "report.json")
    same = run_cli("lower", str(compiled_dir), "--format", "json")
    assert same.returncode == 0, same.stderr
    totals = json.loads(same.stdout)["totals"]
    assert totals["original_energy_per_inference"] == pytest.approx(report["energy"]["original"], rel=1e-9)
    assert totals["expected_energy_per_inference"] == pytest.approx(report["energy"]["dynamic"], rel=1e-9)
    assert totals["energy_reduction"] == pytest.approx(report["energy_reduction"], rel=1e-9)
    chip = yaml.safe_load(open(DEFAULT_HW))
    chip["energy"]["dram"], chip["name"] = 20, "cheap_dram"
    (hw := tmp_path / "cheap_dram.yaml").write_text(yaml.safe_dump(chip))
    other = run_cli("lower", str(compiled_dir), "--hw", str(hw), "--format", "json")
    assert other.returncode == 0, other.stderr
    totals = json.loads(other.stdout)["totals"]
    dynamic = relower(compiled_dir / "ir.json", hw=str(hw)).expected_energy()
    original = relower(compiled_dir / "ir_original.json", hw=str(hw)).totals["energy_per_inference"]
    assert totals["energy_reduction"] == pytest.approx(1 - dynamic / original, rel=1e-9)
    assert totals["energy_reduction"] != pytest.approx(report["energy_reduction"], abs=1e-3)
    table = run_cli("lower", str(compiled_dir), "--hw", str(hw))
    assert table.returncode == 0 and "on cheap_dram" in table.stdout and "energy reduction against" in table.stdout
    assert prunec.recost_compiled(compiled_dir, hw=str(hw)).energy_reduction == totals["energy_reduction"]
    # the two IRs must be one compile's: a swapped pair, or ones costed on different chips, are refused
    mixed = tmp_path / "mixed"
    shutil.copytree(compiled_dir, mixed, ignore=shutil.ignore_patterns("model*"))
    (mixed / "ir_original.json").write_text((compiled_dir / "ir.json").read_text())
    assert_user_error(run_cli("lower", str(mixed)), "not one compile's", "ir_original.json a single network")
    (mixed / "ir_original.json").write_text(json.dumps(relower(compiled_dir / "ir_original.json", hw=str(hw))
                                                       .to_dict()))
    assert_user_error(run_cli("lower", str(mixed)), "costed on different chips")
    assert run_cli("lower", str(mixed), "--hw", str(hw)).returncode == 0  # both costed on the chip given
    # a directory compiled before ir_original.json existed: the dynamic model alone, and a note saying why
    old = tmp_path / "old"
    shutil.copytree(compiled_dir, old, ignore=shutil.ignore_patterns("ir_original.json", "model*"))
    ir = json.loads((old / "ir.json").read_text())
    del ir["totals"]["routed_share"], ir["totals"]["expected_energy_per_inference"]  # nor the routed share
    (old / "ir.json").write_text(json.dumps(ir))
    alone = run_cli("lower", str(old), "--format", "json")
    assert alone.returncode == 0 and "no ir_original.json" in alone.stderr
    totals = json.loads(alone.stdout)["totals"]
    assert "energy_reduction" not in totals and totals["routed_share"] == report["mild_share"]
    assert totals["expected_energy_per_inference"] == pytest.approx(report["energy"]["dynamic"], rel=1e-9)
    (old / "report.json").unlink()  # and no report: no routed share to assume, which the note says
    unknown = run_cli("lower", str(old), "--format", "json")
    assert unknown.returncode == 0 and "--routed-share" in unknown.stderr
    assert "expected_energy_per_inference" not in json.loads(unknown.stdout)["totals"]
    # the backfill script rebuilds such a directory's original and writes the IR the compile would have
    backfill = tmp_path / "backfill"
    shutil.copytree(compiled_dir, backfill, ignore=shutil.ignore_patterns("ir_original.json"))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "backfill_original_ir.py"), str(backfill)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((backfill / "ir_original.json").read_text()) == \
        json.loads((compiled_dir / "ir_original.json").read_text())
    shutil.rmtree(backfill)  # a directory it cannot reproduce gets nothing
    shutil.copytree(compiled_dir, backfill, ignore=shutil.ignore_patterns("ir_original.json"))
    ir = json.loads((backfill / "ir.json").read_text())
    ir["options"]["zero_gating"] = False  # not how report.json's original energy was costed
    (backfill / "ir.json").write_text(json.dumps(ir))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "backfill_original_ir.py"), str(backfill)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "not written" in proc.stderr and not (backfill / "ir_original.json").exists()


def test_latency_backfilled_from_the_irs_equals_the_compiles(compiled_dir, tmp_path):
    """benchmarks/backfill_latency.py gives a directory compiled before latency_ms existed the latency compile
    writes now, from its IRs alone; a directory whose IR is not its report's model gets nothing."""
    old = tmp_path / "old"
    shutil.copytree(compiled_dir, old)
    made = json.loads((compiled_dir / "report.json").read_text())
    report = json.loads((old / "report.json").read_text())
    del report["latency_ms"], report["hardware"]["clock_hz"], report["hardware"]["dram_bandwidth_bytes_per_s"]
    (old / "report.json").write_text(json.dumps(report))
    script = str(ROOT / "benchmarks" / "backfill_latency.py")
    proc = subprocess.run([sys.executable, script, str(old)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    filled = json.loads((old / "report.json").read_text())
    got, want = dict(filled["latency_ms"]), dict(made["latency_ms"])
    assert got.pop("by_role") == pytest.approx(want.pop("by_role"), rel=1e-9)
    assert got == pytest.approx(want, rel=1e-9)
    assert filled["hardware"] == made["hardware"]
    assert "## Latency" in (old / "report.md").read_text()
    (old / "report.json").write_text(json.dumps(report))  # again without it, and an IR of another routing
    ir = json.loads((old / "ir.json").read_text())
    next(r for r in ir["layers"] if r["role"] == "trunk")["energy"]["total"] *= 2
    (old / "ir.json").write_text(json.dumps(ir))
    proc = subprocess.run([sys.executable, script, str(old)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not written" in proc.stderr
    assert json.loads((old / "report.json").read_text()) == report


def test_compiled_model_loads_and_onnx_agrees(compiled_dir):
    from prunec.data import load_split

    compiled = prunec.load_compiled(compiled_dir / "model")
    x = load_split("synthetic", "test").x[:16]
    for part in (compiled.model, compiled.mild, compiled.aggressive):
        part.eval()  # users' first call after loading; torch's exported modules refuse it
    with pytest.raises(RuntimeError, match="inference only"):
        compiled.model.train()
    with pytest.raises(UserError, match="torch.export"):
        prunec.lower(compiled.model, x[:1])
    logits, route = compiled.model(x, return_route=True)
    assert logits.shape == (16, 4) and route.dtype == torch.bool
    # report.md says how much of the original each level keeps, counted on the networks it saved
    report, md = load_report(compiled_dir / "report.json"), (compiled_dir / "report.md").read_text()
    for name, part in (("mild", compiled.mild), ("aggressive", compiled.aggressive)):
        params = sum(int(v.numel()) for k, v in part.state_dict().items() if "running" not in k
                     and "num_batches" not in k)
        assert params == report["levels"][name]["params"]
        macs = report["levels"][name]["macs"] / report["model"]["macs"]
        assert f"keeps {params / report['model']['params']:.0%} of the parameters and {macs:.0%} of the MACs" in md
    session = ort.InferenceSession(str(compiled_dir / "model.onnx"))
    name = session.get_inputs()[0].name
    for i in range(4):
        onnx_logits = session.run(None, {name: x[i:i + 1].numpy()})[0]
        np.testing.assert_allclose(onnx_logits, logits[i:i + 1].detach().numpy(), atol=1e-4)


def test_report_rerenders(compiled_dir):
    (compiled_dir / "report.md").unlink()
    result = run_cli("report", str(compiled_dir))
    assert result.returncode == 0, result.stderr
    assert (compiled_dir / "report.md").exists()
    assert load_report(compiled_dir)["target"] == "eyeriss"


def test_existing_output_needs_force(compiled_dir, trained_synthetic):
    before = (compiled_dir / "report.json").read_text()
    result = run_cli("compile", str(trained_synthetic), *QUICK, "-o", str(compiled_dir))
    assert_user_error(result, "--force")
    assert (compiled_dir / "report.json").read_text() == before


def test_corrupted_checkpoint(tmp_path, trained_synthetic):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(trained_synthetic.read_bytes()[:5000])
    assert_user_error(run_cli("compile", str(bad), *QUICK, "-o", str(tmp_path / "o")), "corrupted")
    assert not (tmp_path / "o").exists()


def test_wrong_number_of_classes(tmp_path):
    path = tmp_path / "seven.pt"
    save_checkpoint(zoo.build("resnet20", 1, 7), str(path), "zoo:resnet20", 1, 7)
    result = run_cli("compile", str(path), *QUICK, "-o", str(tmp_path / "o"))
    assert_user_error(result, "7 outputs", "4 classes")
    assert not (tmp_path / "o").exists()


def test_data_set_other_than_the_checkpoints(tmp_path, trained_synthetic):
    result = run_cli("compile", str(trained_synthetic), "--data", "fashion-mnist", "-o", str(tmp_path / "o"))
    assert_user_error(result, "trained on synthetic")


def test_missing_data_set(tmp_path):
    result = run_cli("compile", "zoo:resnet20", "--data", "fashion-mnist", "--data-root", str(tmp_path),
                     "--quiet", "--mild", "0.3", "--aggressive", "0.7", "-o", str(tmp_path / "o"))
    assert_user_error(result, "apt-get install dataset-fashion-mnist")


def test_output_not_writable(tmp_path, trained_synthetic):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(run_cli("compile", str(trained_synthetic), *QUICK, "-o", str(blocker / "out")),
                      "cannot write")


@pytest.mark.parametrize("flags,needle", [(["--mild", "0.7", "--aggressive", "0.3"], "must prune less"),
                                          (["--mild", "1.5", "--aggressive", "0.7"], "[0, 1)"),
                                          (["--mild", "0.3"], "both"),
                                          (["--aggressive-epochs", "-1"], "--aggressive-epochs"),
                                          (["--epochs", "nan"], "--epochs"),
                                          (["--search-ratios", "0.5", "1.0"], "distinct pruning ratios in (0, 1)"),
                                          (["--search-ratios", "0.5", "0.5"], "distinct pruning ratios in (0, 1)"),
                                          (["--search-ratios", "0.5", "nan"], "distinct pruning ratios in (0, 1)"),
                                          (["--mild", "0.3", "--aggressive", "0.7", "--search-ratios", "0.9"],
                                           "without --mild/--aggressive"),
                                          (["--mild", "0.3", "--aggressive", "0.7", "--search-ratios", "0.3",
                                            "0.5", "0.6", "0.7", "0.8"], "without --mild/--aggressive"),
                                          (["--reuse-levels", "x", "--search-ratios", "0.9"], "searches none")])
def test_bad_levels(tmp_path, trained_synthetic, flags, needle):
    result = run_cli("compile", str(trained_synthetic), "--data", "synthetic", *flags, "-o", str(tmp_path / "o"))
    assert_user_error(result, needle)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_leaves_nothing(tmp_path, trained_synthetic, stop):
    """A SIGTERM (kill, a scheduler's time limit) stops the run as Ctrl-C does, through the clean-up."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "prunec", "compile", str(trained_synthetic), *QUICK,
                             "--epochs", "3", "-o", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=120)
    # 128 + the signal, as a shell reports a process the signal ended (130 for Ctrl-C, 143 for SIGTERM)
    assert proc.returncode in (128 + stop, -stop), stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the output nor a staging directory


def test_search_ratios_help_names_the_pipelines_default():
    from prunec.pipeline import SEARCH_RATIOS

    result = run_cli("compile", "--help")
    assert result.returncode == 0
    assert f"(default: {' '.join(f'{r:g}' for r in SEARCH_RATIOS)})" in " ".join(result.stdout.split())


def test_search_ratios_from_the_command_line_are_the_searched_candidates(trained_synthetic, tmp_path):
    out = tmp_path / "out"
    result = run_cli("compile", str(trained_synthetic), "--data", "synthetic", "--search-ratios", "0.8", "0.4",
                     "--search-epochs", "0.1", "--epochs", "0.1", "--selector", "max-softmax",
                     "--max-accuracy-drop", "5", "--quiet", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = load_report(out)
    assert [p["ratio"] for p in report["single_level"]] == [0.0, 0.4, 0.8]  # the candidates, in order
    assert report["levels"]["mild"]["ratio"] < report["levels"]["aggressive"]["ratio"]
    assert "--search-ratios 0.8 0.4" in report["command"]  # a rerun searches the same candidates


def test_refinement_weighs_the_fine_tuned_aggressive_level(trained_synthetic, monkeypatch):
    """The refinement compares aggressive candidates at the energy of their fine-tuned networks, which the
    report then costs: fine-tuning moves the activations' zeros, and zero skipping saves on them."""
    import prunec.pipeline as pipeline
    from prunec.frontend import load_with_meta

    weighed: list[float] = []
    real = pipeline.pair_point

    def spy(*args: object, **kwargs: object) -> object:
        weighed.append(args[5])  # the aggressive network's energy
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "pair_point", spy)
    model, meta = load_with_meta(str(trained_synthetic))
    report = pipeline.compile(model, "synthetic", model_meta=meta, search_ratios=(0.3, 0.6), search_epochs=0.2,
                              epochs=0.5, selector="max-softmax", max_accuracy_drop=5.0, progress=False).report
    searched = {p["ratio"]: p["energy"] for p in report["single_level"]}
    aggressive = report["energy"]["aggressive"]
    assert aggressive != pytest.approx(searched[report["levels"]["aggressive"]["ratio"]], rel=1e-9)  # it moved
    assert any(energy == pytest.approx(aggressive, rel=1e-9) for energy in weighed), (aggressive, weighed)


def test_level_search_in_process(trained_synthetic, tmp_path):
    """Without --mild/--aggressive the levels come from the search ratios, and the report
    records every candidate as a single-level point. With a checkpoint directory the search's
    fine-tunes are kept too, and a rerun resumes them all to the same report."""
    from prunec.frontend import load_with_meta
    from prunec.pipeline import compile as compile_model
    from prunec.report import validate_report

    model, meta = load_with_meta(str(trained_synthetic))
    options = dict(search_ratios=(0.3, 0.6), search_epochs=0.2, epochs=0.2, selector="max-softmax",
                   max_accuracy_drop=5.0, progress=False)
    report = validate_report(compile_model(model, "synthetic", model_meta=meta, **options).report)
    mild, aggressive = report["levels"]["mild"]["ratio"], report["levels"]["aggressive"]["ratio"]
    assert mild in (0.0, 0.3) and aggressive in (0.3, 0.6) and mild < aggressive
    # the chosen levels continue from their search fine-tunes: 0.2 + 0.2 epochs (the original as mild: none)
    levels = report["levels"]
    assert levels["aggressive"]["fine_tune_epochs"] == pytest.approx(0.4)
    assert levels["mild"]["fine_tune_epochs"] == (pytest.approx(0.4) if mild else 0.0)
    in_all = f"continued from theirs for 0.2 epochs each ({0.4 if mild else 0:g} and 0.4 epochs in all)"
    assert any(in_all in n for n in report["notes"]), report["notes"]
    assert sorted(p["ratio"] for p in report["single_level"]) == [0.0, 0.3, 0.6]
    assert report["energy"]["aggressive"] < report["energy"]["original"]
    (caveat,) = report["selector"]["drop_bound"]["caveats"]  # levels searched on the calibration images
    assert "searched on the same calibration images" in caveat

    ckpt = tmp_path / "ckpt"
    for run in range(2):  # the second run finds every fine-tune finished
        again = compile_model(model, "synthetic", model_meta=meta, checkpoint_dir=str(ckpt), **options).report
        for key in ("levels", "accuracy", "energy", "single_level", "sweep"):
            assert again[key] == report[key], key
        if run == 0:
            stamps = {p: p.stat().st_mtime_ns for p in ckpt.rglob("*.pt")}
    assert {p.parent.name.rsplit("-", 1)[0] for p in stamps} >= {"search-r-0.30", "search-r-0.60"}
    assert {p: p.stat().st_mtime_ns for p in ckpt.rglob("*.pt")} == stamps


def test_aggressive_epochs_fine_tune_only_the_aggressive_level(trained_synthetic):
    """--aggressive-epochs 0 with --epochs 0.2: the aggressive network is exactly the pruned,
    untrained original, while the mild one has moved; the report records both budgets."""
    from prunec.data import load_split
    from prunec.frontend import load_with_meta, trace
    from prunec.pipeline import CompileConfig, prune_level
    from prunec.pipeline import compile as compile_model

    model, meta = load_with_meta(str(trained_synthetic))
    options = dict(mild=0.3, aggressive=0.7, epochs=0.2, aggressive_epochs=0.0, selector="max-softmax",
                   max_accuracy_drop=5.0, progress=False)
    result = compile_model(model, "synthetic", model_meta=meta, **options)
    x = load_split("synthetic", "test").x[:1].clone()
    original = trace(model, x)
    cfg = CompileConfig(data="synthetic", **options)
    for level, ratio, trained in ((result.compiled.aggressive, 0.7, False), (result.compiled.mild, 0.3, True)):
        untrained = prune_level(original, x, ratio, cfg).state_dict()
        state = level.state_dict()
        assert state.keys() == untrained.keys()
        same = all(torch.equal(state[k], untrained[k]) for k in state)
        assert same is not trained, ratio
    levels = validate_report(result.report)["levels"]
    assert (levels["mild"]["fine_tune_epochs"], levels["aggressive"]["fine_tune_epochs"]) == (0.2, 0.0)


def test_unstructured_levels_keep_their_zeros_and_are_credited(trained_synthetic):
    """With the unstructured pruner the zeroed weights survive fine-tuning, and the energy model
    (weight gating on by default for it, and said so in the notes) credits them."""
    from prunec.frontend import load_with_meta
    from prunec.pipeline import compile as compile_model

    model, meta = load_with_meta(str(trained_synthetic))
    result = compile_model(model, "synthetic", model_meta=meta, mild=0.3, aggressive=0.7, epochs=0.2,
                           pruner="unstructured", selector="max-softmax", max_accuracy_drop=5.0, progress=False)
    report = validate_report(result.report)
    for level, ratio in ((result.compiled.mild, 0.3), (result.compiled.aggressive, 0.7)):
        convs = [m for m in level.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(abs(float((c.weight == 0).double().mean()) - ratio) < 0.02 for c in convs)
    e = report["energy"]
    assert e["aggressive"] < e["mild"] < e["original"]
    assert any("Eyeriss v2-style" in n for n in report["notes"])
    assert report["levels"]["aggressive"]["macs"] == report["model"]["macs"]  # shapes unchanged


@pytest.mark.parametrize("form", ["npz", "folder"])
def test_compile_on_your_own_data(tmp_path, form):
    """--data PATH.npz or an image folder DIR: non-square RGB images of 3 classes, end to end
    through the CLI."""
    from tests.test_data import _own_npz
    from tests.test_image_folder import write_folder

    arrays = _own_npz(tmp_path / "flowers.npz")
    if form == "folder":
        write_folder(tmp_path / "flowers", arrays, ["rose", "tulip", "iris"])
    data = tmp_path / ("flowers.npz" if form == "npz" else "flowers")
    out = tmp_path / "out"
    result = run_cli("compile", "zoo:resnet20", "--data", str(data), "--mild", "0.3",
                     "--aggressive", "0.7", "--epochs", "0.2", "--selector", "max-softmax", "--quiet", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = validate_report(json.loads((out / "report.json").read_text()))
    assert report["data"]["name"] == "flowers" and report["data"]["test_size"] == 30
    assert report["data"]["calibration_size"] == 20
    assert report["model"]["input_shape"] == [1, 3, 12, 10] and report["model"]["num_classes"] == 3
    compiled = prunec.load_compiled(out / "model")
    assert compiled.model(torch.rand(5, 3, 12, 10)).shape == (5, 3)


@pytest.mark.parametrize("how", ["factory", "pickled"])
def test_compile_a_network_outside_the_zoo(tmp_path, how):
    """A factory spec or a whole pickled module compiles end to end; the report names it."""
    if how == "factory":
        spec, extra, source, arch = "tests.model_fixtures:gray_se_net", [], None, "tests.model_fixtures:gray_se_net"
    else:
        from tests.model_fixtures import gray_se_net

        spec, extra, arch = str(tmp_path / "whole.pt"), ["--trust-model"], "_GraySENet"
        source = spec
        torch.save(gray_se_net(), spec)
    out = tmp_path / "out"
    result = run_cli("compile", spec, *extra, *QUICK, "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = validate_report(json.loads((out / "report.json").read_text()))
    assert report["model"]["arch"] == arch and report["model"]["source"] == (source or arch)
    assert report["levels"]["aggressive"]["macs"] < report["levels"]["mild"]["macs"] < report["model"]["macs"]
    assert arch in (out / "report.md").read_text()
    compiled = prunec.load_compiled(out / "model")
    assert compiled.model(torch.rand(3, 1, 16, 16)).shape == (3, 4)
    # the network is untrained: even under --quiet the user is told, and the report says so
    assert report["accuracy"]["original"] < 40.0 and "near chance" in result.stderr
    assert any("near chance" in note for note in report["notes"])


def test_a_model_trained_on_plain_pixels_needs_and_gets_its_normalization(compiled_dir, trained_synthetic, tmp_path):
    """The synthetic checkpoint behind a Normalize layer takes 0-1 pixels: with --mean 0 --std 1
    it compiles to the checkpoint's own original accuracy; the data set's normalization would
    feed it other inputs. A --reuse-levels from a compile made with another normalization is refused."""
    from prunec.data import Normalize, load_split
    from prunec.frontend import load
    from prunec.training import evaluate

    raw = torch.nn.Sequential(Normalize((0.5,), (0.25,)), load(str(trained_synthetic))).eval()
    path = tmp_path / "plain_pixels.pt"
    torch.save(raw, path)
    reference = load_report(compiled_dir)
    assert evaluate(raw, load_split("synthetic", "test")) != reference["accuracy"]["original"]

    out = tmp_path / "out"
    result = run_cli("compile", str(path), "--trust-model", *QUICK, "--mean", "0", "--std", "1", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = validate_report(json.loads((out / "report.json").read_text()))
    assert report["accuracy"]["original"] == pytest.approx(reference["accuracy"]["original"], abs=1e-9)
    assert report["data"]["normalization"] == {"mean": [0.0], "std": [1.0]}
    assert "inputs normalized with mean (0), std (1)" in (out / "report.md").read_text()
    assert reference["data"]["normalization"] == {"mean": [0.5], "std": [0.25]}
    pixels = torch.rand(2, 1, 16, 16)
    assert torch.equal(prunec.load_compiled(out / "model").preprocess(pixels), pixels)
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert json.loads(props["prunec.mean"]) == [0.0] and json.loads(props["prunec.std"]) == [1.0]

    refused = run_cli("compile", str(trained_synthetic), *QUICK, "--mean", "0", "--std", "1",
                      "--reuse-levels", str(compiled_dir), "-o", str(tmp_path / "reused"))
    assert_user_error(refused, "compiled with --mean 0.5 --std 0.25", "now: --mean 0 --std 1")
    assert not (tmp_path / "reused").exists()
    bad = run_cli("compile", str(trained_synthetic), *QUICK, "--std", "0", "-o", str(tmp_path / "bad"))
    assert_user_error(bad, "--std must be positive")


def test_a_checkpoint_keeps_the_normalization_it_was_fine_tuned_with(compiled_dir, tmp_path):
    """prunec finetune --mean/--std trains and evaluates on those inputs and records them; a further
    fine-tune and compile read them by default, and a teacher trained on others is refused."""
    from prunec.data import load_split
    from prunec.frontend import load
    from prunec.training import evaluate

    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    common = ["--data", "synthetic", "--batch-size", "32"]
    done = run_cli("finetune", "zoo:resnet20", "--in-channels", "1", "--num-classes", "4", *common,
                   "--max-steps", "24", "--mean", "0", "--std", "1", "-o", str(first))
    assert done.returncode == 0, done.stderr
    payload = torch.load(first, weights_only=True)
    assert payload["preprocess"] == {"mean": [0.0], "std": [1.0]}
    model = load(str(first))
    plain, default = (evaluate(model, load_split("synthetic", "test", **norm)) for norm in ({"mean": 0, "std": 1}, {}))
    assert payload["test_accuracy"] == round(plain, 2) != round(default, 2)
    done = run_cli("finetune", str(first), *common, "--max-steps", "2", "--no-evaluate", "-o", str(second))
    assert done.returncode == 0, done.stderr
    assert torch.load(second, weights_only=True)["preprocess"] == {"mean": [0.0], "std": [1.0]}
    # compile reads them too: reusing levels fine-tuned on the data set's normalization is refused,
    # also from a report written before prunec recorded the normalization (it used the data set's)
    old = tmp_path / "old_compile"
    shutil.copytree(compiled_dir, old)
    report = json.loads((old / "report.json").read_text())
    del report["data"]["normalization"]
    (old / "report.json").write_text(json.dumps(report))
    for source in (compiled_dir, old):
        refused = run_cli("compile", str(second), *QUICK, "--reuse-levels", str(source), "-o", str(tmp_path / "o"))
        assert_user_error(refused, "compiled with --mean 0.5 --std 0.25", "now: --mean 0 --std 1")
    teacher_refused = run_cli("finetune", "zoo:resnet20", "--in-channels", "1", "--num-classes", "4", *common,
                              "--max-steps", "1", "--teacher", str(first), "-o", str(tmp_path / "student.pt"))
    assert_user_error(teacher_refused, "--teacher", "mean [0.0]", "mean [0.5]")
    assert not (tmp_path / "student.pt").exists()
    bad = run_cli("compile", str(second), *QUICK, "--std", "x", "-o", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "comma-separated numbers" in bad.stderr and "Traceback" not in bad.stderr


def test_where_compile_takes_the_normalization_from():
    """Given values win; else a Split passed as data brings its own; else the checkpoint's record."""
    from prunec.data import load_split
    from prunec.pipeline import _model_normalization

    split = load_split("synthetic", "calibration", mean=0, std=1)
    recorded = {"preprocess": {"mean": [0.2], "std": [0.3]}}
    assert _model_normalization({"mean": [0.5]}, split, recorded)[0] == {"mean": [0.5]}
    assert _model_normalization({}, split, recorded)[0] == {"mean": (0.0,), "std": (1.0,)}
    options, source = _model_normalization({}, "synthetic", recorded)
    assert options == {"mean": [0.2], "std": [0.3]} and "recorded" in source
    assert _model_normalization({}, "synthetic", {}) == ({}, None)
    with pytest.raises(UserError, match="recorded \\(preprocess\\) std must be positive"):
        prunec.compile(torch.nn.Conv2d(1, 4, 16), "synthetic", model_meta={"preprocess": {"std": [0.0]}})


def test_reuse_levels_reproduces_the_compile_without_fine_tuning(compiled_dir, trained_synthetic, tmp_path):
    """--reuse-levels rebuilds the fine-tuned networks of an earlier output: with the same selector
    settings the new compile equals the old one number for number, whatever fine-tuning options
    are passed; with another selector only the dynamic part changes."""
    source = load_report(compiled_dir)
    again = tmp_path / "again"
    result = run_cli("compile", str(trained_synthetic), "--data", "synthetic", "--epochs", "7", "--quiet",
                     "--reuse-levels", str(compiled_dir), "-o", str(again))
    assert result.returncode == 0, result.stderr
    report = load_report(again)
    assert report["levels"] == source["levels"]  # ratios and the 0.2-epoch fine-tunes, not 7 epochs
    for key in ("accuracy", "mild_share", "energy", "selector", "sweep", "test_sweep"):
        assert report[key] == source[key], key
    assert report["levels_from"] == {"directory": str(compiled_dir), "command": source["command"],
                                     "created": source["created"]}
    old, new = prunec.load_compiled(compiled_dir / "model"), prunec.load_compiled(again / "model")
    for part in ("mild", "front"):
        a, b = getattr(old.model, part).state_dict(), getattr(new.model, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part

    # reusing a reuse still names the compile that fine-tuned the networks; a source report that
    # does not say how long a level was fine-tuned (made before that was recorded) leaves it unknown
    old_style = tmp_path / "old_style"
    shutil.copytree(again, old_style)
    stripped = json.loads((old_style / "report.json").read_text())
    del stripped["levels"]["aggressive"]["fine_tune_epochs"]
    (old_style / "report.json").write_text(json.dumps(stripped))
    softmax = tmp_path / "softmax"
    result = run_cli("compile", str(trained_synthetic), "--data", "synthetic", "--selector", "max-softmax",
                     "--confidence", "0.95", "--quiet", "--reuse-levels", str(old_style), "-o", str(softmax))
    assert result.returncode == 0, result.stderr
    report = load_report(softmax)
    # the threshold is the bound's: a zero-parameter selector on levels not chosen on calibration is exact
    bound = report["selector"]["drop_bound"]
    assert report["selector"]["confidence"] == bound["confidence"] == 0.95 and bound["caveats"] == []
    chosen = load_compiled(softmax / "model").chosen
    assert chosen.samples == report["data"]["calibration_size"] and point_bound(chosen, 0.95) == bound["points"]
    assert (bound["points"] <= 1.5) == chosen.feasible == bound["met_budget"]  # the default budget
    assert chosen.feasible or any("bounded within the budget at 95% confidence" in n for n in report["notes"])
    assert report["levels_from"]["directory"] == str(compiled_dir)
    assert "fine_tune_epochs" not in report["levels"]["aggressive"]
    assert report["levels"]["mild"] == source["levels"]["mild"]
    assert report["selector"]["kind"] == "max-softmax" and report["energy"]["by_role"]["selector"] == 0
    for key in ("original", "mild", "aggressive"):
        assert report["accuracy"][key] == source["accuracy"][key]
        assert report["energy"][key] == source["energy"][key]


def test_checkpoint_dir_resumes_and_changes_no_number(compiled_dir, trained_synthetic, tmp_path):
    """A compile with --checkpoint-dir equals one without; rerun, it resumes every level from its
    checkpoint (no file rewritten) and again gives the same numbers."""
    ckpt = tmp_path / "ckpt"
    reports = []
    for name in ("first", "again"):
        result = run_cli("compile", str(trained_synthetic), *QUICK, "--checkpoint-dir", str(ckpt),
                         "-o", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        reports.append(load_report(tmp_path / name))
        if name == "first":
            stamps = {p: p.stat().st_mtime_ns for p in ckpt.rglob("*.pt")}
            assert sorted(p.parent.name.rsplit("-", 1)[0] for p in stamps) == ["fine-tune-aggressive",
                                                                               "fine-tune-mild"]
    assert {p: p.stat().st_mtime_ns for p in ckpt.rglob("*.pt")} == stamps
    source = load_report(compiled_dir)
    for report in reports:
        for key in ("levels", "accuracy", "mild_share", "energy", "selector", "sweep"):
            assert report[key] == source[key], key


def test_ctrl_c_then_the_same_command_resumes_the_fine_tunes(trained_synthetic, tmp_path):
    """Ctrl-C mid-compile writes no output but keeps the finished epochs in --checkpoint-dir; the
    same command then resumes them and writes what an uninterrupted compile writes."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    args = ["compile", str(trained_synthetic), *QUICK, "--epochs", "3", "--checkpoint-dir", str(ckpt), "-o", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "prunec", *args], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not list(ckpt.glob("fine-tune-mild-*/epoch_*.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGINT), stderr
    assert not out.exists() and list(ckpt.glob("fine-tune-mild-*/epoch_*.pt"))

    resumed = run_cli(*[a for a in args if a != "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    assert "fine-tune mild: resumed at step" in resumed.stderr
    whole = run_cli("compile", str(trained_synthetic), *QUICK, "--epochs", "3", "-o", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    a, b = load_report(out), load_report(tmp_path / "whole")
    for key in ("levels", "accuracy", "mild_share", "energy", "selector", "sweep", "test_sweep"):
        assert a[key] == b[key], key


def test_checkpoint_dir_refusals(trained_synthetic, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    cases = [((str(tmp_path / "o" / "ckpt")), "lies in the output directory"),
             ((str(tmp_path / "file" / "ckpt")), "cannot use --checkpoint-dir")]
    for ckpt, needle in cases:
        assert_user_error(run_cli("compile", str(trained_synthetic), *QUICK, "--checkpoint-dir", ckpt, "-o",
                                  str(tmp_path / "o")), needle)
        assert not (tmp_path / "o").exists()


def test_reuse_levels_refuses_what_it_cannot_reuse(compiled_dir, trained_synthetic, tmp_path):
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    save_checkpoint(zoo.build("resnet20", 1, 4), str(other), "zoo:resnet20", 1, 4, dataset="synthetic",
                    input_shape=[1, 1, 16, 16])
    cases = [((str(other), "--reuse-levels", str(compiled_dir)), "another model"),
             ((str(trained_synthetic), "--reuse-levels", str(tmp_path)), "no report.json"),
             ((str(trained_synthetic), "--reuse-levels", str(compiled_dir), "--mild", "0.5", "--aggressive",
               "0.7"), "differs from the mild level 0.3")]
    # the same name, other images or labels (an image folder of that name elsewhere, its classes renamed)
    edited = tmp_path / "edited"
    shutil.copytree(compiled_dir, edited)
    report = json.loads((edited / "report.json").read_text())
    assert len(report["data"]["calibration_sha256"]) == 64
    report["data"]["calibration_sha256"] = "0" * 64
    (edited / "report.json").write_text(json.dumps(report))
    cases.append(((str(trained_synthetic), "--reuse-levels", str(edited)), "compiled on other data named synthetic"))
    for args, needle in cases:
        assert_user_error(run_cli("compile", *args, "--data", "synthetic", "--quiet", "-o",
                                  str(tmp_path / "o")), needle)
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("options", [dict(search_ratios=0.5), dict(search_ratios="0.5"), dict(search_ratios=()),
                                     dict(search_ratios=(0.3, 0.7), reuse_levels="/some/dir"),
                                     dict(search_ratios=(0.3, 0.5, 0.6, 0.7, 0.8), mild=0.3, aggressive=0.7)])
def test_search_ratios_through_the_python_api_are_checked_too(options):
    from prunec.pipeline import CompileConfig, _validate

    with pytest.raises(UserError, match="--search-ratios"):
        _validate(CompileConfig(data="synthetic", **options))


def test_the_input_shapes_batch_is_the_energy_batch_unless_batch_is_given(compiled_dir, trained_synthetic, tmp_path):
    """As for `prunec lower`: N of --input-shape sets the batch the energy is modelled at."""
    for flags, batch in ((["--input-shape", "3,1,16,16"], 3), (["--input-shape", "3,1,16,16", "--batch", "2"], 2)):
        out = tmp_path / f"b{batch}"
        result = run_cli("compile", str(trained_synthetic), "--data", "synthetic", "--selector", "max-softmax",
                         "--quiet", "--reuse-levels", str(compiled_dir), *flags, "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert load_report(out)["batch"] == batch == json.loads((out / "ir.json").read_text())["batch"]
