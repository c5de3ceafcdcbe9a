"""Benchmark: the Eyeriss model against the chip's headline figures for AlexNet and VGG-16.

The JSSC 2017 paper (Chen, Krishna, Emer, Sze, IEEE JSSC 52(1)) states in its abstract that
the chip processes the CONV layers of AlexNet at 35 frames/s and 0.0029 DRAM accesses per
MAC (batch 4) and those of VGG-16 at 0.7 frames/s and 0.0035 DRAM accesses per MAC (batch 3).
Per-layer figures for AlexNet are in ../shared/reference and are checked by
tests/test_eyeriss_validation.py; this script puts both networks' headline figures side by
side and compares VGG-16 per layer with the paper's Table VI (benchmarks/reference/).
Frames/s here are the chip's total (with DRAM and configuration time); the model's are from
its cycle count. For the headline rows VGG-16's activation zeros (which the chip's run-length
coding exploits on DRAM traffic) are taken as none (an upper bound) and as the share measured
for AlexNet's deeper layers in Table V; the per-layer comparison uses Table VI's own zeros.

The static energy share (idle and active PEs' clock and leakage, which scales with the
cycle count) says how much an optimistic cycle count understates the energy.

Writes benchmarks/results/bench_headline.json and .md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import torch

import prunec
from prunec.frontend import example_input, trace
from prunec.zoo import build

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE_V = os.path.join(HERE, "..", "..", "shared", "reference", "eyeriss_jssc2017_alexnet_tableV.csv")
CHIP = {"alexnet": {"fps": 35.0, "dram_per_mac": 0.0029, "batch": 4},
        "vgg16": {"fps": 0.7, "dram_per_mac": 0.0035, "batch": 3}}
TABLE_VI = os.path.join(HERE, "reference", "eyeriss_jssc2017_vgg16_tableVI.csv")
SOURCE = "Chen et al., IEEE JSSC 52(1), 2017, abstract"


def _conv_names(gm: torch.fx.GraphModule) -> list[str]:
    return [n.name for n in gm.graph.nodes if n.op == "call_module" and str(n.target).startswith("features")
            and isinstance(gm.get_submodule(n.target), torch.nn.Conv2d)]


def _alexnet_zeros(convs: list[str], table_v: str) -> dict[str, float]:
    with open(table_v) as fh:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(fh)]
    rows = [r for r in rows if r["Layer"].startswith("CONV")]
    return {c: float(r["Zeros in Ifmaps"].rstrip("%")) / 100 for c, r in zip(convs, rows, strict=True)}


def _measure(arch: str, batch: int, zeros: dict[str, float] | None) -> dict:
    gm = trace(build(arch, 3, 1000), example_input((1, 3, 224, 224)))
    convs = _conv_names(gm)
    prog = prunec.lower(gm, None, batch=batch, activation_sparsity=zeros or {})
    layers = [r for r in prog.layers if r["name"] in set(convs)]
    macs = sum(r["macs"] for r in layers)
    dram = sum(r["accesses"]["dram"] for r in layers)
    latency_ms = sum(r["latency_ms"] for r in layers)
    energy = {k: sum(r["energy"].get(k, 0.0) for r in layers) for k in ("static", "total")}
    return {"conv_layers": len(layers), "static_energy_share": energy["static"] / energy["total"],
            "macs_per_batch": macs, "latency_ms_per_batch": latency_ms,
            "fps": 1000.0 * batch / latency_ms, "dram_per_mac": dram / macs,
            "active_pes": [r["active_pes"] for r in layers]}


def _table(path: str) -> list[dict[str, str]]:
    with open(path) as fh:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(fh)]
    return [r for r in rows if r["Layer"].startswith("CONV")]


def _vgg_per_layer(table_vi: str) -> list[dict]:
    """Each VGG-16 CONV layer at batch 3 with the table's zeros, against the table."""
    gm = trace(build("zoo:vgg16_bn", 3, 1000), example_input((1, 3, 224, 224)))
    convs, ref = _conv_names(gm), _table(table_vi)
    zeros = {c: float(r["Zeros in Ifmaps"].rstrip("%")) / 100 for c, r in zip(convs, ref, strict=True)}
    prog = prunec.lower(gm, None, batch=3, activation_sparsity=zeros)
    layers = {r["name"]: r for r in prog.layers}
    word_mb = prog.hardware["word_bits"] / 8 / 1e6
    rows = []
    for conv, r in zip(convs, ref, strict=True):
        mine = layers[conv]
        rows.append({"layer": r["Layer"], "active_pes": [mine["active_pes"], int(r["Num. of Active PEs"])],
                     "glb_mb": [mine["accesses"]["glb"] * word_mb, float(r["Global Buffer Accesses (MB)"])],
                     "dram_mb": [mine["accesses"]["dram"] * word_mb, float(r["DRAM Accesses (MB)"])],
                     "processing_ms": [mine["latency_ms"], float(r["Processing Latency (ms)"])],
                     "chip_glb_gb_per_s": float(r["Global Buffer Accesses (MB)"]) / float(r["Processing Latency (ms)"]),
                     "mapping": mine["mapping"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-v", default=TABLE_V, help="JSSC 2017 Table V CSV (AlexNet zeros per layer)")
    parser.add_argument("--table-vi", default=TABLE_VI, help="JSSC 2017 Table VI CSV (VGG-16 per layer)")
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    alex_gm = trace(build("zoo:alexnet", 3, 1000), example_input((1, 3, 224, 224)))
    alex_zeros = _alexnet_zeros(_conv_names(alex_gm), args.table_v)
    deep_share = sum(list(alex_zeros.values())[2:]) / 3  # CONV3-5: the deeper layers
    vgg_gm = trace(build("zoo:vgg16_bn", 3, 1000), example_input((1, 3, 224, 224)))
    vgg_convs = _conv_names(vgg_gm)
    rows = [
        {"network": "AlexNet", "zeros": "Table V, per layer", **_measure("zoo:alexnet", 4, alex_zeros),
         "chip": CHIP["alexnet"]},
        {"network": "VGG-16", "zeros": "none (upper bound)", **_measure("zoo:vgg16_bn", 3, None),
         "chip": CHIP["vgg16"]},
        {"network": "VGG-16", "zeros": f"{deep_share:.1%} in every layer but the first (AlexNet CONV3-5's mean)",
         **_measure("zoo:vgg16_bn", 3, {c: deep_share for c in vgg_convs[1:]}), "chip": CHIP["vgg16"]},
    ]
    for r in rows:
        r["fps_ratio"] = r["fps"] / r["chip"]["fps"]
        r["dram_ratio"] = r["dram_per_mac"] / r["chip"]["dram_per_mac"]
    per_layer = _vgg_per_layer(args.table_vi)
    payload = {"benchmark": "headline", "source": SOURCE, "command": " ".join(["python", *sys.argv]),
               "prunec": prunec.__version__, "torch": torch.__version__, "rows": rows, "vgg16_per_layer": per_layer}
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "bench_headline.json"), "w") as fh:
        json.dump(payload, fh, indent=2)
    lines = ["# The Eyeriss model against the chip's headline figures", "",
             f"Command: `{payload['command']}`; prunec {payload['prunec']}, torch {payload['torch']}. "
             f"Chip figures: {SOURCE} (CONV layers only; frames/s include DRAM and configuration time).", "",
             "| network | batch | activation zeros | frames/s (model / chip) | DRAM accesses per MAC (model / chip) "
             "| static share of the model's energy |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        c = r["chip"]
        lines.append(f"| {r['network']} | {c['batch']} | {r['zeros']} | {r['fps']:.2f} / {c['fps']:g} "
                     f"({r['fps_ratio']:.2f}x) | {r['dram_per_mac']:.4f} / {c['dram_per_mac']:g} "
                     f"({r['dram_ratio']:.2f}x) | {r['static_energy_share']:.1%} |")
    lines += ["", "## VGG-16 per layer (Table VI, batch 3, the table's zeros)", "",
              "Table VI as transcribed in `benchmarks/reference/` (see its README for the corrections). "
              "Model / chip; the last column is the chip's global-buffer traffic over its processing time.", "",
              "| layer | active PEs | GLB MB | DRAM MB | processing ms | chip GLB GB/s |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in per_layer:
        lines.append(f"| {r['layer']} | {r['active_pes'][0]} / {r['active_pes'][1]} | "
                     f"{r['glb_mb'][0]:.1f} / {r['glb_mb'][1]:.1f} | {r['dram_mb'][0]:.1f} / {r['dram_mb'][1]:.1f} | "
                     f"{r['processing_ms'][0]:.1f} / {r['processing_ms'][1]:.1f} | {r['chip_glb_gb_per_s']:.2f} |")
    totals = {k: [sum(r[k][i] for r in per_layer) for i in (0, 1)] for k in ("glb_mb", "dram_mb", "processing_ms")}
    lines.append(f"| total | | {totals['glb_mb'][0]:.0f} / {totals['glb_mb'][1]:.0f} | "
                 f"{totals['dram_mb'][0]:.0f} / {totals['dram_mb'][1]:.0f} | "
                 f"{totals['processing_ms'][0]:.0f} / {totals['processing_ms'][1]:.0f} | |")
    with open(os.path.join(args.results, "bench_headline.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
