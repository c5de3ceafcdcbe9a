"""Costing a saved IR again on other hardware (``prunec.relower``, ``prunec lower IR.json|DIR``):
differential against lowering the model itself on that hardware."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import prunec
from prunec import zoo
from prunec.backends.eyeriss.hardware import DEFAULT_HW
from prunec.errors import UserError
from prunec.frontend import trace
from prunec.lowering import measure_activation_sparsity
from prunec.recost import relower
from tests.conftest import assert_user_error, run_cli
from tests.test_lowering_cli import _dynamic_model


class _Block(nn.Module):
    """Every record kind the IR holds: conv, depthwise, linear, pool, add, and an unmapped node."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1, stride=2), nn.BatchNorm2d(12), nn.ReLU())
        self.dw = nn.Conv2d(12, 12, 3, padding=2, dilation=2, groups=12)
        self.pw = nn.Conv2d(12, 12, 1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = y + self.pw(torch.relu(self.dw(y)))
        return torch.sigmoid(self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1)))


_CHIPS = Path(tempfile.mkdtemp(prefix="prunec-chips-"))  # hypothesis examples outlive a tmp_path


def _hardware(data: dict) -> str:
    text = yaml.safe_dump(data)
    path = _CHIPS / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def _remove_chips():
    yield
    shutil.rmtree(_CHIPS, ignore_errors=True)


def _costed(program: Any) -> dict:
    """An IR without the record of where a re-costing came from: what lowering the model gives."""
    ir = program if isinstance(program, dict) else program.to_dict()
    return {k: v for k, v in ir.items() if k != "recosted_from"}


def _default() -> dict:
    return yaml.safe_load(Path(DEFAULT_HW).read_text())


chips = st.fixed_dictionaries({
    "rows": st.integers(6, 16), "cols": st.integers(6, 16), "glb": st.sampled_from([32, 64, 108, 256]),
    "spad": st.sampled_from([(12, 224, 24), (16, 128, 16), (8, 256, 32)]),
    "dram": st.sampled_from([50.0, 200.0, 400.0]), "glb_e": st.sampled_from([3.0, 6.0, 12.0]),
    "static": st.sampled_from([0.0, 0.5, 2.0]), "bandwidth": st.sampled_from([0.4, 1.2, 8.0]),
})


def _chip(c: dict) -> str:
    data = _default()
    data["pe_array"] = {"rows": c["rows"], "cols": c["cols"]}
    data["global_buffer_kb"] = c["glb"]
    data["scratchpad_words"] = dict(zip(("ifmap", "filter", "psum"), c["spad"], strict=True))
    data["dram_bandwidth_gb_s"] = c["bandwidth"]
    data["energy"].update(dram=c["dram"], glb=c["glb_e"], static_per_pe_cycle=c["static"])
    data["name"] = "variant"
    return _hardware(data)


@pytest.fixture(scope="module")
def lowered() -> dict:
    """IRs of three models on the shipped chip, with measured zero shares, through JSON."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    models = {"block": _Block().eval(), "resnet20": zoo.build("resnet20", in_channels=3, num_classes=10).eval(),
              "dynamic": _dynamic_model()}
    out = {}
    for name, model in models.items():
        gm = model if name == "dynamic" else trace(model, x[:1])
        sparsity = measure_activation_sparsity(gm, x)
        share = 0.3 if name == "dynamic" else None
        ir = json.loads(json.dumps(prunec.lower(gm, x[:1], batch=2, activation_sparsity=sparsity,
                                                routed_share=share).to_dict()))
        out[name] = (gm, x[:1], sparsity, share, ir)
    return out


@settings(max_examples=12, deadline=None)
@given(chip=chips, name=st.sampled_from(["block", "resnet20", "dynamic"]), gating=st.booleans(),
       rlc=st.booleans())
def test_relowering_an_ir_equals_lowering_the_model_on_that_chip(lowered, chip, name, gating, rlc):
    gm, x, sparsity, share, ir = lowered[name]
    hw = _chip(chip)
    try:
        want = prunec.lower(gm, x, batch=2, hw=hw, activation_sparsity=sparsity, routed_share=share,
                            zero_gating=gating, rlc=rlc).to_dict()
    except UserError as exc:  # a layer no mapping fits on this chip: re-costing says the same
        with pytest.raises(UserError, match="too large for any row-stationary mapping"):
            relower(ir, hw=hw, zero_gating=gating, rlc=rlc)
        assert "too large" in str(exc)
        return
    got = json.loads(json.dumps(_costed(relower(ir, hw=hw, zero_gating=gating, rlc=rlc))))
    assert got == json.loads(json.dumps(want))


def test_same_chip_gives_the_same_ir_and_the_routed_share_is_kept(lowered, tmp_path):
    *_, ir = lowered["dynamic"]
    (tmp_path / "ir.json").write_text(json.dumps(ir))
    again = relower(tmp_path / "ir.json").to_dict()
    assert _costed(again) == ir and again["totals"]["routed_share"] == 0.3
    assert again["recosted_from"] == {"ir": str(tmp_path / "ir.json"), "hardware_file": None,
                                      "costed_before_on": "eyeriss_v1", "unpinned": False}
    # costed again, a re-costed IR keeps the earlier record
    twice = relower(again, hw=str(DEFAULT_HW)).to_dict()
    assert twice["recosted_from"]["previous"] == again["recosted_from"]
    assert twice["recosted_from"]["hardware_file"] == str(DEFAULT_HW) and twice["recosted_from"]["ir"] is None


def test_without_hw_an_ir_is_costed_on_the_chip_it_records(lowered):
    gm, x, sparsity, _, _ = lowered["block"]
    chip = _default()
    chip.update(name="small", global_buffer_kb=16, dram_bandwidth_gb_s=0.7)
    chip["energy"].update(dram=90, static_per_pe_cycle=0.25)
    ir = json.loads(json.dumps(prunec.lower(gm, x, hw=_hardware(chip), activation_sparsity=sparsity).to_dict()))
    assert ir["hardware"]["name"] == "small"
    assert _costed(relower(ir)) == ir
    del ir["hardware"]["energy_per_access"]
    with pytest.raises(UserError, match="does not record the hardware it was lowered on in full"):
        relower(ir)


def test_pinned_mappings_and_weight_sparsity_are_kept():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1))
    x = torch.rand(1, 3, 16, 16)
    pruned = prunec.prune(model, x, 0.6, pruner="unstructured")
    pin = {"_0": {"m": 4, "n": 1, "e": 4, "p": 2, "q": 1, "r": 1, "t": 2}}
    ir = prunec.lower(pruned, x, weight_sparsity=True, mappings=pin).to_dict()
    assert _costed(relower(ir)) == ir
    assert ir["layers"][0]["mapping"]["pinned"] and ir["layers"][0]["mapping"]["e"] == 4
    cheap = _default()
    cheap["energy"]["mac"] = 0.5
    hw = _hardware(cheap)
    assert _costed(relower(ir, hw=hw)) == prunec.lower(pruned, x, hw=hw, weight_sparsity=True, mappings=pin).to_dict()
    # weight sparsity off is a re-costing; on, for an IR made without it, is not (no zero share recorded)
    assert _costed(relower(ir, weight_sparsity=False)) == prunec.lower(pruned, x, mappings=pin).to_dict()
    dense_ir = prunec.lower(pruned, x).to_dict()
    with pytest.raises(UserError, match="without weight sparsity"):
        relower(dense_ir, weight_sparsity=True)
    tiny = _default()
    tiny["pe_array"] = {"rows": 3, "cols": 3}
    with pytest.raises(UserError, match="pinned mapping of layer _0 does not fit"):
        relower(ir, hw=_hardware(tiny))
    # unpinned, every mapping is searched: what lowering the model without pins gives, on any chip
    for chip in (None, hw, _hardware(tiny)):
        unpinned = relower(ir, hw=chip, unpin=True)
        assert _costed(unpinned) == prunec.lower(pruned, x, hw=chip, weight_sparsity=True).to_dict()
        assert unpinned.recosted_from["unpinned"] and unpinned.options["pinned_mappings"] == []
    assert relower(ir, unpin=True).layers[0]["mapping"] != ir["layers"][0]["mapping"]  # the pin was not the best


@pytest.mark.parametrize(("ir", "needle"), [
    ({"target": "eyeriss", "layers": []}, "needs 'layers', 'batch' and 'options'"),
    ({"target": "tpu", "batch": 1, "options": {}, "layers": []}, "unknown target 'tpu'"),
    ({"target": "eyeriss", "batch": 1, "options": {}, "layers": [{"name": "c", "kind": "conv", "shape": {}}]},
     "layer record c of the IR is incomplete"),
    ([1, 2], "takes an IR"),
    ({"target": "eyeriss", "batch": 0, "options": {}, "layers": []}, "batch must be a positive integer"),
    ({"target": "eyeriss", "batch": 1, "options": {}, "layers": [
        {"name": "p", "kind": "reshape", "shape": {"in_elems": [4], "out_elems": 4}}]}, "unknown kind 'reshape'"),
])
def test_broken_irs_are_one_clear_error(ir, needle):
    with pytest.raises(UserError, match=needle):
        relower(ir, hw=str(DEFAULT_HW))


def _conv(ir: dict) -> dict:
    return next(r for r in ir["layers"] if r["kind"] == "conv")


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda ir: ir.update(schema_version=99), "schema version 99"),
    (lambda ir: ir.update(batch=2.7), "batch must be a positive integer, got 2.7"),
    (lambda ir: ir.update(batch=True), "batch must be a positive integer, got True"),
    (lambda ir: ir["totals"].update(routed_share=5), "routed_share must be a share between 0 and 1"),
    (lambda ir: ir["totals"].update(routed_share="abc"), "routed_share must be a share between 0 and 1"),
    (lambda ir: _conv(ir)["sparsity"].update(ifmap=1.5), "zero shares must be numbers in"),
    (lambda ir: _conv(ir)["sparsity"].update(ofmap=float("nan")), "zero shares must be numbers in"),
    (lambda ir: _conv(ir)["sparsity"].update(ifmap="0.5"), "zero shares must be numbers in"),
    # JSON text where numbers and booleans belong: "16" is not 16, and "no" must not read as on
    (lambda ir: _conv(ir)["shape"].update(M=str(_conv(ir)["shape"]["M"])), "is not an integer"),
    (lambda ir: ir["options"].update(zero_gating="no"), "option 'zero_gating' must be true or false, got 'no'"),
    (lambda ir: ir["options"].update(rlc=0), "option 'rlc' must be true or false, got 0"),
    (lambda ir: _conv(ir)["shape"].update(G=0), "sizes, strides and dilations must be at least 1"),
    (lambda ir: _conv(ir)["shape"].update(stride=[0, 0]), "sizes, strides and dilations must be at least 1"),
    (lambda ir: _conv(ir)["shape"].update(C=2.5), "2.5 is not an integer"),
    # a layer whose shape contradicts itself, an edited batch its layers do not hold, negative data movement
    (lambda ir: _conv(ir)["shape"].update(E=_conv(ir)["shape"]["E"] * 3), "is not the output height"),
    (lambda ir: _conv(ir)["shape"].update(Win=_conv(ir)["shape"]["Win"] + 9), "is not the output width"),
    (lambda ir: ir.update(batch=4), "the IR's batch is 4 but its layer"),
    (lambda ir: next(r for r in ir["layers"] if r["kind"] == "add")["shape"].update(out_elems=-5),
     "element counts must not be negative"),
    (lambda ir: ir["hardware"].update(pe_array=[0, 14]), "field 'pe_array.rows' must be greater than 0"),
    (lambda ir: ir["hardware"]["energy_per_access"].update(dram=-200), "energy.dram"),
    (lambda ir: ir["hardware"].update(energy_unit="kWh"), "must be 'normalized' or 'pJ'"),
    (lambda ir: _conv(ir)["mapping"].update(pinned="yes"), "option 'pinned' must be true or false, got 'yes'"),
    (lambda ir: ir.update(unmapped="x"), "the IR's unmapped must be a list of layer records, got 'x'"),
    # a repeated name: the per-layer views and comparisons match layers by name and would merge the two
    (lambda ir: ir["layers"][1].update(name=ir["layers"][0]["name"]), "names layer"),
    (lambda ir: ir.update(unmapped=[{"name": ["x"], "op": "sort"}]), "must name their nodes as text, got ['x']"),
])
def test_hand_edited_irs_are_refused(lowered, edit, needle):
    ir = json.loads(json.dumps(lowered["dynamic"][-1]))
    edit(ir)
    with pytest.raises(UserError, match=re.escape(needle)):
        relower(ir)


@pytest.mark.parametrize("kernel, stride, dilation", [(4, 1, 1), (2, 1, 2), (3, 2, 1), (5, 3, 2)])
@pytest.mark.parametrize("padding", [0, 1, "same"])
def test_every_convolution_prunec_lowers_passes_the_shape_check_when_read_back(kernel, stride, dilation, padding):
    """The IR's consistency check accepts what lowering writes, even-kernel 'same' padding included."""
    if padding == "same" and stride > 1:
        return  # torch refuses 'same' with a stride
    conv = nn.Conv2d(3, 4, kernel, stride=stride, dilation=dilation, padding=padding)
    x = torch.randn(1, 3, 13, 11)
    for batch in (1, 3):
        ir = prunec.lower(nn.Sequential(conv), x, batch=batch).to_dict()
        assert relower(ir).layers[0]["shape"] == ir["layers"][0]["shape"]


@pytest.mark.parametrize("batch", [1, 3])
def test_a_linear_layer_over_a_sequence_is_read_back_at_any_batch(batch):
    """A Linear on (N, L, C) holds N x L rows: not an edited batch."""
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), _Transpose(), nn.Linear(4, 5))
    ir = prunec.lower(model, torch.randn(1, 2, 8), batch=batch).to_dict()
    linear = next(r for r in ir["layers"] if r["kind"] == "linear")
    assert linear["shape"]["N"] == 8 * batch
    assert relower(ir).totals["energy"] == pytest.approx(ir["totals"]["energy"])


class _Transpose(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


def test_a_broken_pin_or_an_unknown_option_is_one_clear_error(lowered):
    *_, ir = lowered["block"]
    with pytest.raises(UserError, match="unknown option"):
        relower(ir, zero_gatting=False)
    broken = json.loads(json.dumps(ir))
    conv = next(r for r in broken["layers"] if r["kind"] == "conv")
    conv["mapping"] = {"pinned": True, "m": "many"}
    with pytest.raises(UserError, match=f"layer record {conv['name']} of the IR is incomplete"):
        relower(broken)


def test_cli_relowers_a_saved_ir(tmp_path):
    data = _default()
    data["energy"]["dram"] = 50
    hw = tmp_path / "cheap_dram.yaml"
    hw.write_text(yaml.safe_dump(data))
    saved = tmp_path / "r20.json"
    made = run_cli("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json", "-o", str(saved))
    assert made.returncode == 0, made.stderr
    direct = run_cli("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json", "--hw", str(hw))
    again = run_cli("lower", str(saved), "--hw", str(hw), "--format", "json")
    assert again.returncode == 0, again.stderr
    assert _costed(json.loads(again.stdout)) == json.loads(direct.stdout)
    assert json.loads(again.stdout)["recosted_from"] == {"ir": str(saved), "hardware_file": str(hw),
                                                         "costed_before_on": "eyeriss_v1", "unpinned": False}
    table = run_cli("lower", str(saved), "--hw", str(hw))
    assert table.returncode == 0 and "eyeriss lowering on eyeriss_v1" in table.stdout
    for bad, needle in ((["--input-shape", "1,3,8,8"], "--input-shape: only for lowering a model"),
                        (["--batch", "0"], "--batch: only for lowering a model"),
                        (["--routed-share", "0.5"], "routed_share applies only to a dynamic model's IR"),
                        (["--target", "tpu"], "unknown target 'tpu'"),
                        (["-o", "."], "it is a directory")):
        assert_user_error(run_cli("lower", str(saved), *bad), needle)
    assert_user_error(run_cli("lower", str(tmp_path), "--hw", str(hw)), "no ir.json")
    shutil.copy(saved, tmp_path / "r20.IR")  # an IR by its content, whatever its name
    assert json.loads(run_cli("lower", str(tmp_path / "r20.IR"), "--format", "json").stdout)["layers"] == \
        json.loads(saved.read_text())["layers"]
    (tmp_path / "report.json").write_text(json.dumps({"target": "eyeriss", "layers": {"original": []}}))
    assert_user_error(run_cli("lower", str(tmp_path / "report.json")), "not a lowered IR", "ir.json")
    odd = json.loads(saved.read_text())
    odd["hardware"] = ["not", "a", "chip"]  # inspect shows what it can; re-costing needs the chip
    (tmp_path / "odd.json").write_text(json.dumps(odd))
    assert run_cli("inspect", str(tmp_path / "odd.json")).returncode == 0
    assert_user_error(run_cli("lower", str(tmp_path / "odd.json")), "does not record the hardware")
    (tmp_path / "broken.json").write_text("{")
    assert_user_error(run_cli("lower", str(tmp_path / "broken.json")), "not a readable JSON file")


def test_latency_by_role_and_expected_latency_follow_the_layers_cycles(lowered):
    """Latency per batch is the layers' cycles at the chip's clock; the expected one weights mild by the
    routed share; without a clock there is no latency at all (rather than cycles read as ms)."""
    from prunec.backends.eyeriss.ir import LoweredProgram

    *_, ir = lowered["dynamic"]
    program = relower(ir)
    clock = ir["hardware"]["clock_hz"]
    by_role = program.latency_ms_by_role()
    for role in ("trunk", "head", "selector", "mild"):
        assert by_role[role] == pytest.approx(sum(r["cycles"] for r in ir["layers"] if r["role"] == role) / clock * 1e3)
    totals = program.to_dict()["totals"]
    assert totals["latency_ms"] == pytest.approx(sum(by_role.values()))
    assert totals["expected_latency_ms"] == pytest.approx(sum(by_role.values()) - 0.7 * by_role["mild"])
    bare = LoweredProgram(target="eyeriss", batch=2, hardware={}, layers=ir["layers"], routed_share=0.3)
    assert bare.latency_ms_by_role() is None and bare.expected_latency_ms() is None
    assert "latency_ms" not in bare.totals and "expected_latency_ms" not in bare.totals


def test_a_target_without_latency_gives_a_report_without_it():
    """A plugin target whose program cannot time its layers: report.json simply has no latency_ms."""
    from prunec.pipeline import _latency

    class Untimed:
        pass

    assert _latency({"original": Untimed(), "mild": Untimed(), "aggressive": Untimed(), "dynamic": Untimed()},
                    0.5) == {}


def test_an_error_costing_a_saved_ir_on_a_chip_file_names_the_file(lowered, tmp_path):
    """As lowering a model does: a comparison costs on several chips, whose files may all keep the
    shipped chip's name."""
    *_, ir = lowered["block"]
    data = _default()
    data["energy"]["dram"] = 1e308  # every layer's energy overflows
    hw = tmp_path / "overflowing.yaml"
    hw.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=f"not a finite number.*\\(chip file {re.escape(str(hw))}\\)"):
        relower(ir, hw=str(hw))


@pytest.mark.parametrize(("kernel", "dilation"), [(4, 1), (2, 3), (6, 1)])
def test_an_even_kernel_same_convolution_keeps_its_uneven_padding(kernel, dilation):
    """padding='same' with an even kernel pads one more row and column on the far side; the shape recorded
    only the smaller pad, so its padded ifmap (and every tile cut from it) was one row and column short."""
    conv = nn.Conv2d(3, 4, kernel, dilation=dilation, padding="same")
    x = torch.randn(1, 3, 13, 11)
    ir = prunec.lower(nn.Sequential(conv), x).to_dict()
    shape = ir["layers"][0]["shape"]
    total = dilation * (kernel - 1)  # what torch pads in all, per axis
    assert (shape["H"], shape["W"]) == (13 + total, 11 + total) and shape["padding_extra"] == [total % 2] * 2
    assert relower(ir).layers[0]["shape"] == shape
    older = json.loads(json.dumps(ir))  # an IR written before padding_extra: the output sizes tell it
    del older["layers"][0]["shape"]["padding_extra"]
    assert relower(older).layers[0]["shape"] == shape
    for bad in ([2, 0], "1", [1]):
        edited = json.loads(json.dumps(ir))
        edited["layers"][0]["shape"]["padding_extra"] = bad
        with pytest.raises(UserError, match="padding_extra must be two numbers"):
            relower(edited)


def test_unmapped_records_without_a_name_read_back(lowered):
    """The duplicate-name check counts named records only: one without a name is no repeat."""
    ir = json.loads(json.dumps(lowered["dynamic"][-1]))
    ir["unmapped"] = [{"op": "sort"}, {"op": "topk"}]
    assert relower(ir).unmapped == ir["unmapped"]
