"""One network on several chips side by side (``prunec lower ... --hw A --hw B [--compare]``):
each column must be exactly what costing on that chip alone gives."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import prunec
from prunec.backends.eyeriss.hardware import DEFAULT_HW
from prunec.chip_compare import ChipColumn, ChipComparison, compare_chips, render_comparison
from prunec.errors import UserError
from prunec.lowering import measure_activation_sparsity
from prunec.recost import recost_compiled, relower
from tests.conftest import ROOT, assert_user_error, run_cli
from tests.test_lowering_cli import _dynamic_model

ARTIFACT = ROOT / "benchmarks" / "results" / "artifacts" / "resnet20_fashion-mnist"


def _chip(directory: Path, name: str, **changes: object) -> str:
    data = yaml.safe_load(Path(DEFAULT_HW).read_text())
    energy = changes.pop("energy", {})
    data.update(name=name, **changes)
    data["energy"].update(energy)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def chips(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("chips")
    return {"dram50": _chip(d, "dram50", energy={"dram": 50}),
            "small_glb": _chip(d, "small_glb", global_buffer_kb=8),
            "picojoules": _chip(d, "picojoules", energy={"unit": "pJ"})}


@pytest.fixture(scope="module")
def dynamic() -> tuple:
    """A dynamic model, an input, its zero shares, and its IR (batch 2, 30 % routed to mild)."""
    torch.manual_seed(0)
    gm, x = _dynamic_model(), torch.rand(4, 3, 16, 16)
    sparsity = measure_activation_sparsity(gm, x)
    ir = prunec.lower(gm, x[:1], batch=2, activation_sparsity=sparsity, routed_share=0.3).to_dict()
    return gm, x[:1], sparsity, json.loads(json.dumps(ir))


@pytest.fixture(scope="module")
def dynamic_ir(dynamic) -> dict:
    return dynamic[-1]


def test_each_column_is_the_model_lowered_on_that_chip(dynamic, chips):
    gm, x, sparsity, ir = dynamic
    hws = [chips["dram50"], chips["small_glb"]]
    comparison, notes = compare_chips(ir, hws)
    assert notes == [] and [c.file for c in comparison.columns] == [None, *hws]
    for column, hw in zip(comparison.columns, [None, *hws], strict=True):
        lowered = prunec.lower(gm, x, batch=2, hw=hw, activation_sparsity=sparsity, routed_share=0.3)
        assert column.program.layers == json.loads(json.dumps(lowered.layers))
        assert column.energy == pytest.approx(lowered.expected_energy(), rel=1e-12)
    rows = comparison.layers()
    assert [r["name"] for r in rows] == [r["name"] for r in ir["layers"]]
    for i, rec in enumerate(ir["layers"]):  # the baseline column is the IR as it was costed
        assert rows[i]["energy_per_inference"][0] == rec["energy_per_inference"]
        assert rows[i]["mapping_changed"][0] is False
    # a smaller global buffer forces other mappings on some layers; the table marks them
    assert any(r["mapping_changed"][2] for r in rows)
    out = comparison.to_dict()
    assert out["kind"] == "chip_comparison" and out["batch"] == 2
    assert [c["chip"] for c in out["chips"]] == ["eyeriss_v1", "dram50", "small_glb"]
    assert [c["hardware_file"] for c in out["chips"]] == [None, *hws]
    assert out["irs"][1]["recosted_from"]["hardware_file"] == hws[0]


@settings(max_examples=15, deadline=None)
@given(share=st.floats(0, 1))
def test_the_split_by_level_adds_up_to_the_expected_energy(dynamic_ir, chips, share):
    comparison, _ = compare_chips(dynamic_ir, [chips["dram50"]], routed_share=share)
    for column in comparison.columns:
        assert column.energy == pytest.approx(column.program.expected_energy(share), rel=1e-12)
        assert sum(column.energy_by_level().values()) == pytest.approx(column.energy, rel=1e-9)
        summary = column.summary()
        assert summary["expected_energy_per_inference"] == column.energy and summary["routed_share"] == share
        assert summary["batch"] == 2


def test_every_input_routed_gives_the_programs_own_totals(dynamic_ir, chips):
    """At a routed share of 1 the expectations are the plain totals of the batch; at 0 the mild
    network drops out of them."""
    everyone, _ = compare_chips(dynamic_ir, [chips["dram50"]], routed_share=1.0)
    nobody, _ = compare_chips(dynamic_ir, [chips["dram50"]], routed_share=0.0)
    for column, none in zip(everyone.columns, nobody.columns, strict=True):
        totals = column.program.totals
        assert column.latency_ms == pytest.approx(totals["latency_ms"], rel=1e-12)  # the batch of 2
        assert column.energy_by_level() == pytest.approx({k: v / 2 for k, v in totals["energy_by_level"].items()
                                                          if k != "total"}, rel=1e-12)
        mild = [r for r in column.program.layers if r["role"] == "mild"]
        assert mild and none.latency_ms == pytest.approx(totals["latency_ms"] - sum(r["latency_ms"] for r in mild))


def test_without_a_routed_share_there_is_no_reduction(tmp_path, chips):
    for name in ("ir.json", "ir_original.json"):
        ir = json.loads((ARTIFACT / name).read_text())
        ir["totals"].pop("routed_share", None)
        (tmp_path / name).write_text(json.dumps(ir))
    comparison, notes = compare_chips(tmp_path, [chips["dram50"]])
    assert all(c.reduction is None and not c.expected for c in comparison.columns)
    assert any("--routed-share" in n for n in notes)
    assert all("energy_reduction" not in c and "energy_reduction" not in ir["totals"]
               for c, ir in zip(comparison.to_dict()["chips"], comparison.to_dict()["irs"], strict=True))
    _, notes = compare_chips(tmp_path / "ir.json", [chips["dram50"]])
    assert any("records no share" in n for n in notes)


def test_unpin_searches_the_other_chips_and_the_recorded_column_keeps_its_pins(tmp_path, chips):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3))
    x = torch.rand(1, 3, 16, 16)
    pin = {"_0": {"m": 4, "n": 1, "e": 4, "p": 2, "q": 1, "r": 1, "t": 2}}
    ir = prunec.lower(model, x, mappings=pin).to_dict()
    comparison, _ = compare_chips(ir, [chips["dram50"]], unpin=True)
    assert comparison.columns[0].program.layers == ir["layers"]
    assert comparison.columns[1].program.layers == prunec.lower(model, x, hw=chips["dram50"]).layers
    saved = tmp_path / "pinned.json"
    saved.write_text(json.dumps(ir))
    run = run_cli("lower", str(saved), "--hw", chips["dram50"], "--compare", "--unpin", "--format", "json")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["irs"][0]["layers"][0]["mapping"]["pinned"]
    assert got["irs"][1]["recosted_from"] == {"ir": str(saved), "hardware_file": chips["dram50"],
                                              "costed_before_on": "eyeriss_v1", "unpinned": True}
    assert got["layers"][0]["mapping_changed"] == [False, True]


def test_the_same_chip_twice_changes_nothing_and_other_units_get_no_ratio(dynamic_ir, chips):
    comparison, _ = compare_chips(dynamic_ir, [str(DEFAULT_HW), chips["picojoules"]])
    same, other = comparison.columns[1:]
    for row in comparison.layers():
        base, mine, _ = row["energy_per_inference"]
        assert comparison.ratio(same, mine, base) in (1.0, None if base == 0 else 1.0)
        assert row["mapping_changed"][1] is False
        assert comparison.ratio(other, row["energy_per_inference"][2], base) is None  # pJ against normalized
    console = Console(width=200, record=True)
    render_comparison(comparison, console)
    text = console.export_text()
    assert " pJ " in text and "(n/a)" in text and "n/ax" not in text


def test_columns_of_different_networks_are_refused(dynamic_ir):
    other = json.loads(json.dumps(dynamic_ir))
    other["layers"] = other["layers"][1:]
    with pytest.raises(UserError, match="do not hold the same layers"):
        ChipComparison([ChipColumn(relower(dynamic_ir)), ChipColumn(relower(other))])


def test_a_compiled_model_compared_on_chips_through_the_cli(chips, tmp_path):
    out = tmp_path / "cmp.json"
    run = run_cli("lower", str(ARTIFACT), "--hw", chips["dram50"], "--hw", chips["small_glb"], "--compare",
                  "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert "energy reduction" in run.stdout and "layers remapped" in run.stdout and "(recorded)" in run.stdout
    got = json.loads(out.read_text())
    report = json.loads((ARTIFACT / "report.json").read_text())
    assert got["chips"][0]["energy_reduction"] == pytest.approx(report["energy_reduction"], rel=1e-12)
    assert got["chips"][0]["expected_energy_per_inference"] == pytest.approx(report["energy"]["dynamic"], rel=1e-12)
    assert got["chips"][0]["energy_by_level_per_inference"] == pytest.approx(report["energy"]["by_level"]["dynamic"],
                                                                             rel=1e-9)
    for summary, hw in zip(got["chips"][1:], (chips["dram50"], chips["small_glb"]), strict=True):
        alone = recost_compiled(ARTIFACT, hw=hw)
        assert summary["energy_reduction"] == pytest.approx(alone.energy_reduction, rel=1e-12)
        assert summary["original_energy_per_inference"] == pytest.approx(
            alone.original.totals["energy_per_inference"], rel=1e-12)
        assert summary["hardware_file"] == hw
    dram = [c["energy_by_level_per_inference"]["dram"] for c in got["chips"]]
    assert math.isclose(dram[1] * 4, dram[0], rel_tol=0.35)  # a quarter of the DRAM cost, mappings re-chosen
    assert_user_error(run_cli("inspect", str(out)), "a comparison of chips", "irs")


def test_a_model_on_several_chips_equals_lowering_it_on_each(chips):
    args = ("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json")
    run = run_cli(*args, "--hw", chips["dram50"], "--hw", chips["small_glb"])
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert [c["chip"] for c in got["chips"]] == ["dram50", "small_glb"] and len(got["irs"]) == 2
    for ir, hw in zip(got["irs"], (chips["dram50"], chips["small_glb"]), strict=True):
        assert ir == json.loads(run_cli(*args, "--hw", hw).stdout)
    table = run_cli("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--hw", chips["dram50"], "--compare")
    assert table.returncode == 0 and "(default)" in table.stdout and "dram50.yaml" in table.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (("zoo:resnet20", "--compare"), "--compare needs the chip(s) to compare with"),
    (("zoo:resnet20", "--unpin"), "--unpin: only for a saved IR"),
    ((str(ARTIFACT / "ir.json"), "--compare"), "--compare needs the chip(s)"),
    ((str(ARTIFACT / "ir.json"), "--hw", "nowhere.yaml", "--compare"), "nowhere.yaml"),
    ((str(ARTIFACT / "missing") + "/", "--hw", str(DEFAULT_HW), "--compare"), "compiled-model directory not found"),
])
def test_comparison_mistakes_are_one_clear_error(args, needle):
    assert_user_error(run_cli("lower", *args), needle)


def test_a_chip_no_layer_fits_is_named_by_its_file(dynamic_ir, tmp_path):
    tiny = _chip(tmp_path, "eyeriss_v1", global_buffer_kb=0.01)  # the recorded chip's name, too small a buffer
    with pytest.raises(UserError, match="too large for any row-stationary mapping") as exc:
        compare_chips(dynamic_ir, [str(DEFAULT_HW), tiny])
    assert str(exc.value).count(str(tiny)) == 1  # named once, by its file


def test_a_chip_given_as_hardware_is_named_by_its_name(dynamic_ir, tmp_path):
    """A Hardware object (Python API) no layer fits is named by its chip name; the error used to be a
    TypeError from naming it as a file."""
    from prunec.backends.eyeriss.hardware import load_hardware

    tiny = load_hardware(_chip(tmp_path, "tiny_glb", global_buffer_kb=0.01))
    with pytest.raises(UserError, match="too large for any row-stationary mapping") as exc:
        compare_chips(dynamic_ir, [tiny])
    assert str(exc.value).count("tiny_glb") == 1


def test_a_single_hardware_path_is_one_chip(dynamic_ir):
    comparison, _ = compare_chips(dynamic_ir, str(DEFAULT_HW))
    assert [c.file for c in comparison.columns] == [None, str(DEFAULT_HW)]


def test_the_readme_example_chips_compare_as_the_readme_says():
    hardware = ROOT / "examples" / "hardware"
    comparison, _ = compare_chips(ARTIFACT.parent / "resnet20_cifar10", [hardware / "eyeriss_v1_cheap_dram.yaml",
                                                                        hardware / "eyeriss_v1_big_glb.yaml"])
    base, cheap, big = comparison.columns
    assert [round(c.reduction, 3) for c in comparison.columns] == [0.725, 0.764, 0.725]
    assert round(cheap.energy / base.energy, 3) == 0.580
    assert round(cheap.energy_by_level()["dram"] / base.energy_by_level()["dram"], 3) == 0.256
    changed = [sum(r["mapping_changed"][i] for r in comparison.layers()) for i in (1, 2)]
    assert changed == [12, 0] and big.energy == base.energy
