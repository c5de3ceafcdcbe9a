"""Benchmark: wall time of lowering zoo models onto Eyeriss (one core, median of repeats).

Cold = first lowering in a fresh process state (mapper caches cleared); warm = repeated
lowering of the same graph (memoized mapping search). Tracing/shape propagation is not timed.
Writes benchmarks/results/bench_lowering.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

import prunec
from prunec.backends.eyeriss import mapper
from prunec.backends.eyeriss.cost import strip_rows
from prunec.frontend import example_input, trace
from prunec.zoo import build

CASES = [("zoo:alexnet", (4, 3, 224, 224), 1000), ("zoo:resnet56", (1, 3, 32, 32), 10),
         ("zoo:resnet20", (1, 3, 32, 32), 10), ("zoo:vgg16_bn", (1, 3, 32, 32), 10),
         ("zoo:mobilenetv2", (1, 3, 32, 32), 10)]
REPEATS = 7
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _clear() -> None:
    mapper.search.cache_clear()
    mapper._distinct_minimal.cache_clear()
    strip_rows.cache_clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"runs per model (default {REPEATS})")
    parser.add_argument("--out", default=OUT, help="results folder (default: benchmarks/results)")
    parser.add_argument("--note", default="", help="a line on the machine's state (e.g. other jobs running)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    torch.set_num_threads(1)
    rows = []
    for name, shape, classes in CASES:
        gm = trace(build(name, shape[1], classes), example_input(shape))
        cold, warm = [], []
        for _ in range(args.repeats):
            _clear()
            t0 = time.perf_counter()
            prog = prunec.lower(gm, None, batch=shape[0])
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            prunec.lower(gm, None, batch=shape[0])
            warm.append(time.perf_counter() - t0)
        tot = prog.totals
        rows.append({"model": name, "batch": shape[0], "input_shape": list(shape),
                     "layers": len(prog.layers), "cold_median_s": statistics.median(cold),
                     "warm_median_s": statistics.median(warm), "repeats": args.repeats,
                     "energy_per_inference": tot["energy_per_inference"], "macs": tot["macs"],
                     "latency_ms": tot["latency_ms"]})
        print(f"{name:16s} batch {shape[0]}  cold {rows[-1]['cold_median_s'] * 1e3:7.1f} ms  "
              f"warm {rows[-1]['warm_median_s'] * 1e3:7.1f} ms  E/inf {tot['energy_per_inference']:.4g}")
    meta = {"python": sys.version.split()[0], "torch": torch.__version__, "machine": platform.machine(),
            "threads": 1, "note": args.note}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_lowering.json"), "w") as fh:
        json.dump({"schema_version": 1, "benchmark": "lowering", "meta": meta, "results": rows}, fh, indent=2)
    lines = ["# Lowering speed (Eyeriss target)", "",
             f"Median of {args.repeats} runs, one thread; cold = mapper caches cleared."
             + (f" {args.note}" if args.note else ""), "",
             "| model | batch | layers | cold (ms) | warm (ms) | energy / inference | latency (ms) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['layers']} | {r['cold_median_s'] * 1e3:.1f} | "
                     f"{r['warm_median_s'] * 1e3:.1f} | {r['energy_per_inference']:.4g} | "
                     f"{r['latency_ms']:.2f} |")
    with open(os.path.join(args.out, "bench_lowering.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
