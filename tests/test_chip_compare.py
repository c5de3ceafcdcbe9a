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
def dynamic_ir() -> dict:
    torch.manual_seed(0)
    gm, x = _dynamic_model(), torch.rand(4, 3, 16, 16)
    sparsity = measure_activation_sparsity(gm, x)
    return json.loads(json.dumps(prunec.lower(gm, x[:1], activation_sparsity=sparsity, routed_share=0.3).to_dict()))


def test_each_column_is_the_ir_costed_on_that_chip(dynamic_ir, chips):
    hws = [chips["dram50"], chips["small_glb"]]
    comparison, notes = compare_chips(dynamic_ir, hws)
    assert notes == [] and [c.file for c in comparison.columns] == [None, *hws]
    for column, hw in zip(comparison.columns, [None, *hws], strict=True):
        alone = relower(dynamic_ir, hw=hw)
        assert column.program.layers == alone.layers
        assert column.energy == pytest.approx(alone.expected_energy(), rel=1e-12)
    rows = comparison.layers()
    assert [r["name"] for r in rows] == [r["name"] for r in dynamic_ir["layers"]]
    for i, rec in enumerate(dynamic_ir["layers"]):  # the baseline column is the IR as it was costed
        assert rows[i]["energy_per_inference"][0] == rec["energy_per_inference"]
        assert rows[i]["mapping_changed"][0] is False
    # a smaller global buffer forces other mappings on some layers; the table marks them
    assert any(r["mapping_changed"][2] for r in rows)
    out = comparison.to_dict()
    assert out["kind"] == "chip_comparison" and out["baseline"] == "eyeriss_v1"
    assert [c["chip"] for c in out["chips"]] == ["eyeriss_v1", "dram50", "small_glb"]
    assert out["irs"][1]["recosted_from"]["hardware_file"] == hws[0]


@settings(max_examples=15, deadline=None)
@given(share=st.floats(0, 1))
def test_the_split_by_level_adds_up_to_the_expected_energy(dynamic_ir, share):
    comparison, _ = compare_chips(dynamic_ir, [str(DEFAULT_HW)], routed_share=share)
    for column in comparison.columns:
        assert column.energy == pytest.approx(column.program.expected_energy(share), rel=1e-12)
        assert sum(column.energy_by_level().values()) == pytest.approx(column.energy, rel=1e-9)
        mild = sum(r["latency_ms"] for r in column.program.layers if r.get("role") == "mild")
        rest = sum(r["latency_ms"] for r in column.program.layers if r.get("role") != "mild")
        assert column.latency_ms == pytest.approx(rest + share * mild, rel=1e-9)


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
    assert "n/a" in text and "each chip's unit" in text


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
    assert got["chips"][0]["energy"] == pytest.approx(report["energy"]["dynamic"], rel=1e-12)
    assert got["chips"][0]["energy_by_level"] == pytest.approx(report["energy"]["by_level"]["dynamic"], rel=1e-9)
    for summary, hw in zip(got["chips"][1:], (chips["dram50"], chips["small_glb"]), strict=True):
        alone = recost_compiled(ARTIFACT, hw=hw)
        assert summary["energy_reduction"] == pytest.approx(alone.energy_reduction, rel=1e-12)
        assert summary["original_energy"] == pytest.approx(
            alone.original.totals["energy_per_inference"], rel=1e-12)
        assert summary["hardware_file"] == hw
    assert math.isclose(got["chips"][1]["energy_by_level"]["dram"] * 4, got["chips"][0]["energy_by_level"]["dram"],
                        rel_tol=0.35)  # a quarter of the DRAM cost, mappings re-chosen


def test_a_model_on_several_chips_equals_lowering_it_on_each(chips):
    args = ("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json")
    run = run_cli(*args, "--hw", chips["dram50"], "--hw", chips["small_glb"])
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["baseline"] == "dram50" and len(got["irs"]) == 2
    for ir, hw in zip(got["irs"], (chips["dram50"], chips["small_glb"]), strict=True):
        assert ir == json.loads(run_cli(*args, "--hw", hw).stdout)
    table = run_cli("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--hw", chips["dram50"], "--compare")
    assert table.returncode == 0 and "(default)" in table.stdout and "dram50.yaml" in table.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (("zoo:resnet20", "--compare"), "--compare needs the chip(s) to compare with"),
    (("zoo:resnet20", "--unpin"), "--unpin: only for a saved IR"),
    ((str(ARTIFACT / "ir.json"), "--compare"), "--compare needs the chip(s)"),
    ((str(ARTIFACT / "ir.json"), "--hw", "nowhere.yaml", "--compare"), "nowhere.yaml"),
])
def test_comparison_mistakes_are_one_clear_error(args, needle):
    assert_user_error(run_cli("lower", *args), needle)
