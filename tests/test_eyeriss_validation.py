"""Validate the Eyeriss model against the chip: AlexNet, batch 4, JSSC 2017 Table V.

Activation sparsity: the published ifmap zero shares of Table V (the chip gates and
compresses zeros, so its DRAM numbers depend on them). CONV5's ofmap share is not
published; CONV5's own ifmap share (the same ReLU stage one layer earlier) stands in.
Processing latency is compared with compute cycles (the chip's figure excludes DRAM time).
"""

from __future__ import annotations

import csv
import os

import pytest

import prunec
from prunec.frontend import example_input, trace
from prunec.zoo import build

REF = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")
TABLE_V = os.path.join(REF, "eyeriss_jssc2017_alexnet_tableV.csv")
if not os.path.exists(TABLE_V):
    REF = "/work/shared/reference"
    TABLE_V = os.path.join(REF, "eyeriss_jssc2017_alexnet_tableV.csv")


def _table_v() -> list[dict]:
    with open(TABLE_V) as fh:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(fh)]
    return [r for r in rows if r["Layer"].startswith("CONV")]


TABLE_IV = os.path.join(REF, "eyeriss_jssc2017_alexnet_tableIV_mapping.csv")


def _lower_alexnet(pin_chip_mapping: bool) -> tuple[list[dict], list[dict], object]:
    if not os.path.exists(TABLE_V):
        pytest.skip("shared/reference not available")
    ref = _table_v()
    gm = trace(build("zoo:alexnet", 3, 1000), example_input((1, 3, 224, 224)))
    convs = [n.name for n in gm.graph.nodes if n.op == "call_module" and "features" in str(n.target)
             and type(gm.get_submodule(n.target)).__name__ == "Conv2d"]
    zeros = [float(r["Zeros in Ifmaps"].rstrip("%")) / 100 for r in ref]
    sparsity = dict(zip(convs, zeros, strict=True))
    sparsity["classifier_1"] = zeros[-1]
    options = {}
    if pin_chip_mapping:
        with open(TABLE_IV) as fh:
            table_iv = list(csv.DictReader(fh))
        options["mappings"] = {c: {k: int(r[k]) for k in "mnepqrt"} for c, r in zip(convs, table_iv, strict=True)}
    prog = prunec.lower(gm, None, batch=4, activation_sparsity=sparsity, **options)
    layers = {r["name"]: r for r in prog.layers}
    return ref, [layers[c] for c in convs], prog


@pytest.fixture(scope="module")
def alexnet_lowered():
    return _lower_alexnet(pin_chip_mapping=False)


def test_alexnet_matches_table_v(alexnet_lowered):
    _compare(*alexnet_lowered, tolerance=0.25, title="searched mapping")


def test_chip_mapping_matches_table_v(alexnet_lowered):
    """The chip's own Table IV mappings, costed by this model (which separates the cost model
    from the mapper): active PEs are R*e*r*t exactly, DRAM traffic and latency within 15 % of
    Table V, GLB traffic within 2 % on four layers; CONV3 is the outlier (+41 % GLB), so the GLB
    bound is 45 % with the median error held to 5 %."""
    ref, convs, prog = _lower_alexnet(pin_chip_mapping=True)
    assert all(rec["mapping"].get("pinned") for rec in convs)
    with open(TABLE_IV) as fh:
        table_iv = list(csv.DictReader(fh))
    for rec, r in zip(convs, table_iv, strict=True):
        assert {k: rec["mapping"][k] for k in "enrt"} == {k: int(r[k]) for k in "enrt"}
    _compare(ref, convs, prog, tolerance=0.45, title="the chip's Table IV mapping")
    _compare(ref, convs, prog, tolerance=0.15, title="the chip's Table IV mapping", fields=("dram", "lat"))
    # the chip's mappings fit this model's constraints, so the search can only do as well or better
    searched = sum(rec["energy"]["total"] for rec in alexnet_lowered[1])
    chip = sum(rec["energy"]["total"] for rec in convs)
    print(f"CONV1-5 energy, searched / chip mappings: {searched / chip:.4f}")
    assert searched <= chip * (1 + 1e-9)
    glb_errors = sorted(abs(rec["accesses"]["glb"] * 2 / 1e6 / float(r["Global Buffer Accesses (MB)"]) - 1)
                        for rec, r in zip(convs, ref, strict=True))
    assert glb_errors[len(glb_errors) // 2] < 0.05, glb_errors


def _compare(ref: list[dict], convs: list[dict], prog, tolerance: float, title: str,
             fields: tuple[str, ...] = ("glb", "dram", "lat")) -> None:
    rows, failures = [], []
    for r, rec in zip(ref, convs, strict=True):
        ours = {"pes": rec["active_pes"],
                "glb": rec["accesses"]["glb"] * 2 / 1e6,
                "dram": rec["accesses"]["dram"] * 2 / 1e6,
                "lat": rec["compute_cycles"] / prog.hardware["clock_hz"] * 1e3}
        chip = {"pes": int(r["Num. of Active PEs"]), "glb": float(r["Global Buffer Accesses (MB)"]),
                "dram": float(r["DRAM Accesses (MB)"]), "lat": float(r["Processing Latency (ms)"])}
        mp = rec["mapping"]
        rows.append(f"{r['Layer']:6s} PEs {ours['pes']:4d}/{chip['pes']:<4d} "
                    f"GLB MB {ours['glb']:6.1f}/{chip['glb']:<6.1f} "
                    f"DRAM MB {ours['dram']:5.2f}/{chip['dram']:<5.2f} "
                    f"lat ms {ours['lat']:5.1f}/{chip['lat']:<5.1f} "
                    f"m{mp['m']} n{mp['n']} e{mp['e']} p{mp['p']} q{mp['q']} r{mp['r']} t{mp['t']}")
        if ours["pes"] != chip["pes"]:
            failures.append(f"{r['Layer']} active PEs {ours['pes']} != {chip['pes']}")
        for k in fields:
            if abs(ours[k] - chip[k]) > tolerance * chip[k]:
                failures.append(f"{r['Layer']} {k} {ours[k]:.2f} vs chip {chip[k]:.2f}")
    print(f"\nAlexNet batch 4, {title}, ours/chip (JSSC 2017 Table V):\n" + "\n".join(rows))
    assert not failures, failures


def test_alexnet_macs_exact(alexnet_lowered):
    ref, convs, _ = alexnet_lowered
    expected = [55 * 55 * 96 * 3 * 121, 27 * 27 * 256 * 48 * 25, 13 * 13 * 384 * 256 * 9,
                13 * 13 * 384 * 192 * 9, 13 * 13 * 256 * 192 * 9]
    assert [rec["macs"] for rec in convs] == [4 * m for m in expected]
    for r, rec in zip(ref, convs, strict=True):
        assert abs(rec["macs"] / 1e9 - float(r["Num. of MACs (G)"])) < 0.01
