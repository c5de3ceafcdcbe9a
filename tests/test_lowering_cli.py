"""`prunec lower` / `prunec targets` end to end, and the dynamic-model role contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import fx, nn

import prunec
from prunec.backends import available_targets, get_target
from prunec.errors import UserError
from prunec.frontend import trace
from prunec.lowering import measure_activation_sparsity, render_ir
from tests.conftest import assert_user_error, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prunec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prunec", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_lower_resnet20_json(tmp_path) -> None:
    r = _prunec("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json")
    assert r.returncode == 0, r.stderr
    ir = json.loads(r.stdout)
    assert ir["schema_version"] == 1 and ir["target"] == "eyeriss" and ir["batch"] == 1
    convs = [x for x in ir["layers"] if x["kind"] in ("conv", "linear")]
    assert len(convs) >= 20 and all(x.get("folded") for x in convs if x["kind"] == "conv")
    for x in convs:
        assert set(x["accesses"]) == {"dram", "glb", "array", "rf"}
        assert set("mnepqrt") <= set(x["mapping"])
        assert {"mac", "rf", "array", "glb", "dram", "total"} <= set(x["energy"])
    t = ir["totals"]
    assert t["macs"] == sum(x["macs"] for x in ir["layers"])
    assert t["energy"] == pytest.approx(sum(x["energy"]["total"] for x in ir["layers"]))
    assert t["energy_per_inference"] == pytest.approx(t["energy"])
    assert ir["unmapped"] == []


def test_lower_runs_passes_first_as_prune_then_lower_does(tmp_path) -> None:
    """`lower --pass P` costs what `prune` then `lower` costs (the same pass on the same graph); a saved IR,
    whose model is fixed, refuses --pass."""
    model = "examples/resnet20_fashion.pt"
    pruned = tmp_path / "p.pt"
    assert _prunec("prune", model, "--ratio", "0.5", "-o", str(pruned)).returncode == 0
    via_pass = _prunec("lower", model, "--pass", "prune_structured{ratio=0.5}", "--format", "json",
                       "-o", str(tmp_path / "ir.json"))
    assert via_pass.returncode == 0, via_pass.stderr
    two_steps = _prunec("lower", str(pruned), "--format", "json")
    got, want = json.loads((tmp_path / "ir.json").read_text())["totals"], json.loads(two_steps.stdout)["totals"]
    unpruned = json.loads(_prunec("lower", model, "--format", "json").stdout)["totals"]
    assert got["macs"] == want["macs"] < unpruned["macs"]
    assert got["energy"] == pytest.approx(want["energy"], rel=1e-9)
    assert_user_error(_prunec("lower", str(tmp_path / "ir.json"), "--pass", "prune_structured{ratio=0.5}"),
                      "--pass: only for lowering a model")


def test_lower_a_model_that_reads_tensor_sizes() -> None:
    """``x.size(0)`` / ``x.shape`` nodes hold ints, not tensors: the CLI lowers such a model as the
    Python API does (it used to say the graph had no shapes)."""
    from tests.model_fixtures import sized_net

    r = _prunec("lower", "tests.model_fixtures:sized_net", "--input-shape", "2,3,16,16", "--format", "json")
    assert r.returncode == 0, r.stderr
    ir = json.loads(r.stdout)
    assert [x["kind"] for x in ir["layers"] if x["kind"] in ("conv", "linear")] == ["conv"] * 2 + ["linear"] * 3
    api = prunec.lower(sized_net(), torch.zeros(2, 3, 16, 16), batch=2).to_dict()
    assert ir["totals"]["energy"] == pytest.approx(api["totals"]["energy"], rel=1e-12)


def test_a_chip_no_mapping_fits_is_named_by_its_file(tmp_path) -> None:
    """With several --hw files sharing the shipped chip's name, the error must say which file."""
    import yaml

    from prunec.backends.eyeriss.hardware import DEFAULT_HW

    chip = yaml.safe_load(open(DEFAULT_HW))
    chip["global_buffer_kb"] = 0.05  # 25 words: not even one 32-wide ofmap row of psums
    small = tmp_path / "small_glb.yaml"
    small.write_text(yaml.safe_dump(chip))
    r = _prunec("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--compare", "--hw", DEFAULT_HW,
                "--hw", str(small))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and str(small) in r.stderr and "global buffer" in r.stderr


def test_bad_hw_file_one_line_exit_2(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pe_array: {rows: -3, cols: 14}\n")
    r = _prunec("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--hw", str(bad))
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "bad.yaml" in r.stderr


def test_unknown_target_exit_2() -> None:
    r = _prunec("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--target", "tpu")
    assert r.returncode == 2 and "unknown target 'tpu'" in r.stderr and "eyeriss" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _prunec("targets")
    assert r.returncode == 0 and r.stdout.startswith("eyeriss")


def test_registry() -> None:
    assert "eyeriss" in available_targets()
    assert get_target("eyeriss").name == "eyeriss"
    with pytest.raises(UserError, match="known targets: eyeriss"):
        get_target("nope")


def test_layer_too_large_for_any_mapping() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, kernel_size=15))
    with pytest.raises(UserError, match="too large for any row-stationary mapping"):
        prunec.lower(model, torch.zeros(1, 3, 32, 32))


def test_unmapped_reported() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.sigmoid(self.conv(x))

    prog = prunec.lower(M(), torch.zeros(1, 3, 8, 8))
    assert [u["name"] for u in prog.unmapped] == ["sigmoid"]


class _Routed(nn.Module):
    """Wrapper following the dynamic-model contract: the mild net is `routed_subgraph`."""

    def __init__(self, mild: fx.GraphModule) -> None:
        super().__init__()
        self.routed_subgraph = mild

    def forward(self, x):
        return self.routed_subgraph(x)


def _dynamic_model() -> fx.GraphModule:
    mild = trace(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten(), nn.Linear(16, 10)))

    class Dyn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Conv2d(3, 8, 3, padding=1)
            self.head = nn.Linear(8, 10)
            self.selector = nn.Linear(8, 1)
            self.mild = _Routed(mild)

        def forward(self, x):
            f = torch.relu(self.trunk(x)).mean((2, 3))
            return self.head(f) + self.selector(f) + self.mild(x)

    tracer = fx.Tracer()
    tracer.is_leaf_module = lambda m, q: q == "mild" or fx.Tracer.is_leaf_module(tracer, m, q)
    root = Dyn()
    gm = fx.GraphModule(root, tracer.trace(root))
    roles = {"trunk": "trunk", "relu": "trunk", "mean": "trunk", "head": "head", "selector": "selector",
             "mild": "mild", "add": "head", "add_1": "head"}
    for n in gm.graph.nodes:
        if n.name in roles:
            n.meta["role"] = roles[n.name]
    return gm


def test_dynamic_roles_and_expected_energy() -> None:
    gm = _dynamic_model()
    x = torch.randn(2, 3, 16, 16)
    prog = prunec.lower(gm, x, batch=2, routed_share=0.25)
    roles = {r["name"]: r["role"] for r in prog.layers}
    assert roles["trunk"] == "trunk" and roles["head"] == "head" and roles["selector"] == "selector"
    assert roles["mild._0"] == "mild" and roles["mild._4"] == "mild"
    by = prog.energy_by_role()
    assert set(by) == {"trunk", "head", "selector", "mild"}
    exp = by["trunk"] + by["head"] + by["selector"] + 0.25 * by["mild"]
    assert prog.expected_energy(0.25) == pytest.approx(exp)
    d = prog.to_dict()
    assert d["totals"]["expected_energy_per_inference"] == pytest.approx(exp)
    assert sum(by.values()) == pytest.approx(d["totals"]["energy_per_inference"])
    sp = measure_activation_sparsity(gm, x)
    assert "mild._4" in sp and "head" in sp and 0 <= sp["head"] <= 1
    json.dumps(d)
    render_ir(d)


def test_sparsity_lowers_energy() -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    gm = trace(model, torch.zeros(1, 3, 16, 16))
    dense = prunec.lower(gm, None).totals["energy"]
    sparse = prunec.lower(gm, None, activation_sparsity={"_2": 0.6}).totals["energy"]
    off = prunec.lower(gm, None, activation_sparsity={"_2": 0.6}, zero_gating=False, rlc=False)
    assert sparse < dense and off.totals["energy"] == pytest.approx(dense)


def test_weight_gating_scales_mac_energy_by_the_weights_zero_share() -> None:
    """With weight_sparsity the MACs of zero weights are gated: each layer's MAC energy is the dense
    one times its measured share of nonzero weights; without it zeros are not credited."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1))
    x = torch.zeros(1, 3, 16, 16)
    pruned = prunec.prune(model, x, 0.6, pruner="unstructured")
    dense = prunec.lower(pruned, x).to_dict()["layers"]
    gated = prunec.lower(pruned, x, weight_sparsity=True).to_dict()["layers"]
    original = prunec.lower(model, x, weight_sparsity=True).to_dict()["layers"]
    for d, g, o, conv in zip(dense, gated, original, (model[0], model[2]), strict=True):
        keep = float((pruned.get_submodule(d["node"]).weight != 0).double().mean())
        assert 0.35 <= keep <= 0.45
        assert g["energy"]["mac"] == pytest.approx(d["energy"]["mac"] * keep, rel=1e-9)
        assert g["accesses_by_type"]["filter"]["dram"] < d["accesses_by_type"]["filter"]["dram"]
        assert o["energy"]["total"] == pytest.approx(d["energy"]["total"])  # dense weights: nothing to credit
        assert conv.weight.ne(0).all()


def test_mappings_file_pins_layers(tmp_path) -> None:
    """`--mappings` pins the named layers (marked "pinned" in the IR) and leaves the others searched;
    a searched layer's own mapping pinned back costs what the search said."""
    base = _prunec("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json")
    searched = {x["name"]: x for x in json.loads(base.stdout)["layers"] if x.get("mapping")}
    name, rec = next((n, x) for n, x in searched.items() if x["kind"] == "conv")
    pin = {name: {k: rec["mapping"][k] for k in "mnepqrt"}}
    other = next(n for n, x in searched.items() if x["kind"] == "conv" and n != name)
    pin[other] = {"m": 1, "n": 1, "e": 2, "p": 1, "q": 1, "r": 1, "t": 1}
    (tmp_path / "pins.json").write_text(json.dumps(pin))
    r = _prunec("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json",
                "--mappings", str(tmp_path / "pins.json"))
    assert r.returncode == 0, r.stderr
    ir = {x["name"]: x for x in json.loads(r.stdout)["layers"]}
    assert ir[name]["mapping"]["pinned"] and ir[other]["mapping"]["pinned"]
    assert ir[name]["energy"]["total"] <= rec["energy"]["total"] * (1 + 1e-9)
    assert ir[other]["energy"]["total"] > searched[other]["energy"]["total"]  # a poor mapping costs more
    assert ir[other]["mapping"]["e"] == 2
    assert not any((x.get("mapping") or {}).get("pinned") for n, x in ir.items() if n not in pin)


@pytest.mark.parametrize(("content", "needle"), [
    ('{"nope": {"m": 1, "n": 1, "e": 1, "p": 1, "q": 1, "r": 1, "t": 1}}', "nope"),
    ('{"conv1": {"m": 1}}', "missing"),
    ('{"conv1": {"m": 1.5}}', "integer"),
    ("[1, 2", "not a readable JSON"),
])
def test_bad_mappings_file_one_line_exit_2(tmp_path, content, needle) -> None:
    (tmp_path / "m.json").write_text(content)
    r = _prunec("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--mappings", str(tmp_path / "m.json"))
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_activation_sparsity_naming_no_layer_is_refused(tmp_path) -> None:
    """Module names (layer1.0.conv1) for node names (layer1_0_conv1) used to be ignored silently."""
    (tmp_path / "zeros.json").write_text(json.dumps({"layer1_0_conv1": 0.5, "layer1.0.conv1": 0.5}))
    r = _prunec("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--activation-sparsity",
                str(tmp_path / "zeros.json"))
    assert r.returncode == 2 and "activation sparsity name layers" in r.stderr and "layer1.0.conv1" in r.stderr
    assert "layer1_0_conv1," not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("layers", "named"), [([5], "0"), ([{"name": "c", "kind": "conv"}], "c")])
def test_inspect_an_ir_with_a_broken_layer_record_is_one_line(tmp_path, layers, named) -> None:
    ir = tmp_path / "ir.json"
    ir.write_text(json.dumps({"target": "eyeriss", "batch": 1, "layers": layers, "totals": {"energy": 1.0}}))
    assert_user_error(run_cli("inspect", str(ir)), f"layer record {named} of the IR is incomplete")


def test_lowering_a_graph_a_pass_resized_outside_run_passes_costs_its_new_shapes() -> None:
    """A pass run with torch's own PassManager leaves the shapes recorded before it: lowering
    without example inputs propagates them again on zeros of the recorded input shapes."""
    from torch.fx.passes.infra.pass_base import PassResult
    from torch.fx.passes.infra.pass_manager import PassManager
    from torch.utils.flop_counter import FlopCounterMode

    from tests.model_fixtures import tiny

    def halve_the_conv(gm: fx.GraphModule) -> PassResult:
        conv, fc = gm.get_submodule("0"), gm.get_submodule("5")
        keep = slice(0, conv.out_channels // 2)
        new_conv = nn.Conv2d(conv.in_channels, keep.stop, 3, padding=1)
        new_conv.weight.data, new_conv.bias.data = conv.weight.data[keep].clone(), conv.bias.data[keep].clone()
        new_bn = nn.BatchNorm2d(keep.stop).eval()
        new_fc = nn.Linear(keep.stop, fc.out_features)
        for name, module in (("0", new_conv), ("1", new_bn), ("5", new_fc)):
            setattr(gm, name, module)
        return PassResult(gm, True)

    x = torch.randn(1, 3, 8, 8)
    gm = PassManager([halve_the_conv])(trace(tiny().eval(), x)).graph_module
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        gm(x)
    lowered = prunec.lower(gm, None)
    assert lowered.layers[0]["shape"]["M"] == 4
    assert lowered.totals["macs"] == counter.get_total_flops() // 2 == prunec.lower(gm, x).totals["macs"]


def test_lowering_a_graph_a_pass_strided_outside_run_passes_costs_its_new_size() -> None:
    """The same for a pass that keeps the channels and changes a convolution's stride: the
    recorded 8x8 output is stale, and lowering costs the 4x4 one."""
    from torch.fx.passes.infra.pass_base import PassResult
    from torch.fx.passes.infra.pass_manager import PassManager

    from tests.model_fixtures import tiny

    def stride_two(gm: fx.GraphModule) -> PassResult:
        gm.get_submodule("0").stride = (2, 2)
        return PassResult(gm, True)

    x = torch.randn(1, 3, 8, 8)
    gm = PassManager([stride_two])(trace(tiny().eval(), x)).graph_module
    lowered = prunec.lower(gm, None)
    assert (lowered.layers[0]["shape"]["E"], lowered.layers[0]["shape"]["F"]) == (4, 4)
    assert lowered.totals["macs"] == prunec.lower(gm, x).totals["macs"]


def _edited_ir(tmp_path, edit) -> str:
    ir = json.loads(_prunec("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json").stdout)
    edit(ir)
    path = tmp_path / "EDITED.JSON"  # found by its content, not a lowercase suffix
    path.write_text(json.dumps(ir))
    return str(path)


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda ir: ir["layers"][0].update(macs="many"), "layer record conv1 of the IR is incomplete or not numbers"),
    (lambda ir: ir["layers"][0]["energy"].update(total="x"), "incomplete or not numbers"),
    (lambda ir: ir["layers"][0]["accesses"].pop("dram"), "incomplete or not numbers"),
    (lambda ir: ir["layers"][0].update(mapping="m1"), "incomplete or not numbers"),
    (lambda ir: ir["layers"][0].update(macs=-5), "incomplete or not numbers"),
    (lambda ir: ir["layers"][0].update(name=7), "layer record 0 of the IR is incomplete"),
    (lambda ir: ir["layers"][0].update(role=3), "incomplete or not numbers"),
    (lambda ir: ir["layers"][0].update(macs=ir["layers"][0]["macs"] * 2), "total macs"),
    (lambda ir: ir["totals"].update(energy=1.0), "total energy"),
    (lambda ir: ir["totals"].update(latency_ms="fast"), "not a number"),
])
def test_inspect_refuses_an_ir_it_cannot_show_truthfully(tmp_path, edit, needle) -> None:
    assert_user_error(run_cli("inspect", _edited_ir(tmp_path, edit)), needle)


def test_inspect_of_an_ir_refuses_options_that_build_a_model(tmp_path) -> None:
    path = _edited_ir(tmp_path, lambda ir: None)
    shown = run_cli("inspect", path)
    assert shown.returncode == 0 and "conv1" in shown.stdout
    assert_user_error(run_cli("inspect", path, "--pass", "eliminate_dead_code", "--input-shape", "1,3,8,8"),
                      "--input-shape, --pass: only for inspecting a model")


def test_relower_refuses_a_role_that_is_not_text(tmp_path) -> None:
    path = _edited_ir(tmp_path, lambda ir: ir["layers"][0].update(role=3))
    assert_user_error(run_cli("lower", path), "layer record conv1 of the IR is incomplete or inconsistent")


def test_inspect_of_a_compiled_directory_shows_its_dynamic_ir(tmp_path) -> None:
    """``prunec lower DIR`` costs a compiled model's directory again; ``inspect DIR`` used to refuse it as
    "a directory, not a .pt file". It shows the directory's ir.json, as inspecting that file does."""
    compiled = os.path.join(ROOT, "benchmarks", "results", "artifacts", "resnet20_cifar10")
    as_dir = run_cli("inspect", compiled, "--format", "json")
    as_file = run_cli("inspect", os.path.join(compiled, "ir.json"), "--format", "json")
    assert as_dir.returncode == 0, as_dir.stderr
    assert json.loads(as_dir.stdout) == json.loads(as_file.stdout)
    assert any(layer["role"] == "selector" for layer in json.loads(as_dir.stdout)["layers"])
    (tmp_path / "not_compiled").mkdir()
    assert_user_error(run_cli("inspect", str(tmp_path / "not_compiled")), "not a compiled model's (no ir.json)")
    assert_user_error(run_cli("inspect", str(tmp_path / "missing") + os.sep), "not found")
    assert_user_error(run_cli("inspect", compiled, "--arch", "zoo:resnet20"), "only for inspecting a model")


def test_a_conv1d_model_lowers_from_an_input_shape_n_c_l() -> None:
    """--input-shape took N,C,H,W only, so a 1-D model could not be inspected, pruned or lowered from the
    command line; its adaptive pool was unmapped."""
    args = ["tests.model_fixtures:signal_net", "--input-shape", "2,3,100", "--format", "json"]
    lowered = run_cli("lower", *args)
    assert lowered.returncode == 0, lowered.stderr
    ir = json.loads(lowered.stdout)
    conv, pool, linear = ir["layers"]
    assert (conv["shape"]["N"], conv["shape"]["Hin"], conv["shape"]["Win"], conv["shape"]["S"]) == (2, 1, 100, 5)
    assert pool["kind"] == "pool" and linear["kind"] == "linear" and ir["unmapped"] == []
    assert ir["totals"]["macs"] == 2 * (8 * 3 * 5 * 100 + 8 * 4)
    inspected = run_cli("inspect", *args)
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["totals"]["macs"] == ir["totals"]["macs"]
    for bad in ("1,3,4,5,6", "7", "1,0,8"):
        assert_user_error(run_cli("lower", "tests.model_fixtures:signal_net", "--input-shape", bad),
                          "--input-shape must be 2 to 4 positive integers")


@pytest.mark.parametrize(("model", "shape", "layout"), [("conv1d_only_net", "3,100", "N,C,L"),
                                                      ("conv_only_net", "3,16,16", "N,C,H,W")])
def test_an_input_shape_without_its_batch_is_refused(tmp_path, model, shape, layout) -> None:
    """torch runs a convolution on one unbatched sample: C,H,W traced, then lower crashed with a traceback
    and prune pruned nothing into a checkpoint no command could read."""
    for command in (["lower"], ["inspect"], ["prune", "--ratio", "0.5", "-o", str(tmp_path / "p.pt")]):
        assert_user_error(run_cli(*command, f"tests.model_fixtures:{model}", "--input-shape", shape),
                          f"takes {layout}: give the batch N too")
    assert not (tmp_path / "p.pt").exists()
    # the first convolution's own input decides: features reshaped to images are batched
    generated = run_cli("lower", "tests.model_fixtures:generator_net", "--input-shape", "2,16", "--format", "json")
    assert generated.returncode == 0 and json.loads(generated.stdout)["layers"][-1]["kind"] == "conv", generated.stderr
    assert_user_error(run_cli("compile", "zoo:resnet20", "--data", "synthetic", "--input-shape", "3,16,16",
                              "-o", str(tmp_path / "out")), "give N,")


def test_names_are_printed_as_written_not_read_as_markup(tmp_path) -> None:
    """A chip named "chip[/x]" (or a layer, a role) crashed the table with rich's MarkupError, after
    the IR had not been written; "chip[bold]v2" lost its brackets."""
    from prunec.backends.eyeriss.hardware import DEFAULT_HW

    chip = tmp_path / "chip.yaml"
    chip.write_text(open(DEFAULT_HW).read().replace("name: eyeriss_v1", 'name: "chip[/x][bold]v2"'))
    out = tmp_path / "ir.json"
    result = run_cli("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--hw", str(chip), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "on chip[/x][bold]v2" in result.stdout and out.is_file()
    compared = run_cli("lower", str(out), "--compare", "--hw", str(chip))
    assert compared.returncode == 0 and "chip[/x][bold]v2" in compared.stdout, compared.stderr


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda ir: ir["totals"].update(latency_ms=-3), "negative latency_ms"),
    (lambda ir: ir["totals"].update(energy_per_inference=-7), "negative energy_per_inference"),
    (lambda ir: ir.update(unmapped=5), "the IR's unmapped must be a list"),
])
def test_inspect_refuses_negative_totals_and_a_scalar_unmapped(tmp_path, edit, needle) -> None:
    assert_user_error(run_cli("inspect", _edited_ir(tmp_path, edit)), needle)


def test_inspect_shows_an_ir_whose_optional_totals_are_null(tmp_path) -> None:
    """Optional totals may be null (not measured); the table formatted them and crashed."""
    def null(ir):
        ir["totals"].update(energy_per_inference=None, latency_ms=None, by_role=None)

    shown = run_cli("inspect", _edited_ir(tmp_path, null))
    assert shown.returncode == 0 and "MACs" in shown.stdout and "Traceback" not in shown.stderr, shown.stderr


def test_weight_sparsity_reads_the_weights_of_functional_layers() -> None:
    """F.conv2d / F.linear on the model's own parameters were lowered with no weights, so their zero share
    read 0 under --weight-sparsity: the same zeros in an nn.Conv2d saved MAC energy, here none."""
    import torch.nn.functional as F

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w, self.w2 = nn.Parameter(torch.randn(8, 3, 3, 3)), nn.Parameter(torch.randn(10, 8 * 16 * 16))

        def forward(self, x):
            return F.linear(torch.flatten(F.conv2d(x, self.w, stride=2, padding=1), 1), self.w2)

    model = Functional()
    with torch.no_grad():
        model.w[..., :2] = 0
        model.w2[:, ::2] = 0
    x = torch.randn(1, 3, 32, 32)
    layers = prunec.lower(model, x, weight_sparsity=True).to_dict()["layers"]
    assert [round(layer["sparsity"]["weight"], 4) for layer in layers] == [0.6667, 0.5]
    dense = prunec.lower(model, x).to_dict()["layers"]
    assert all(s["energy"]["mac"] < d["energy"]["mac"] for s, d in zip(layers, dense, strict=True))
