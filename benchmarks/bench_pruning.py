"""Pruning wall time and what it buys, per zoo model (not a test: numbers for the README).

For each model: time of the coupling analysis, of the structured pruning pass alone (on an
already traced graph: analysis + selection + surgery + shape re-check) and of the whole
``prunec.prune`` call (copy + trace + pass); then parameters, MACs and warm CPU latency
before and after pruning half the channels. Writes benchmarks/results/bench_pruning.{json,md}.

    .venv/bin/python benchmarks/bench_pruning.py [--ratio 0.5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import torch
from timing import median_seconds

from prunec import zoo
from prunec.frontend import example_input, trace
from prunec.passes.coupling import analyze
from prunec.passes.structured import prune_structured
from prunec.pruning import prune
from prunec.summary import count_macs

HERE = os.path.dirname(os.path.abspath(__file__))


def latency(model, x, repeats: int) -> float:
    with torch.no_grad():
        return median_seconds(lambda: model(x), repeats)


def bench(name: str, ratio: float, repeats: int) -> dict:
    model = zoo.build(name).eval()
    x = example_input(zoo.default_input_shape(name))
    gm = trace(model, x)
    pruned = prune(model, x, ratio)
    report = analyze(gm)
    return {
        "model": name, "input_shape": list(x.shape), "ratio": ratio,
        "groups": len(report.groups), "prunable_groups": sum(g.prunable for g in report.groups),
        "analyze_s": median_seconds(lambda: analyze(gm), repeats),
        "prune_pass_s": median_seconds(lambda: prune_structured(gm, ratio), repeats),
        "prune_api_s": median_seconds(lambda: prune(model, x, ratio), repeats),
        "params_before": sum(p.numel() for p in model.parameters()),
        "params_after": sum(p.numel() for p in pruned.parameters()),
        "macs_before": count_macs(model, x), "macs_after": count_macs(pruned, x),
        "latency_before_ms": 1e3 * latency(model, x, repeats * 6),
        "latency_after_ms": 1e3 * latency(pruned, x, repeats * 6),
    }


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"# Pruning benchmark (structured, l1, uniform, ratio {meta['ratio']})", "",
             f"{meta['machine']}, torch {meta['torch']}, {meta['threads']} threads; median of "
             f"{meta['repeats']} runs after a warm-up.", "",
             "| model | groups (prunable) | analyze s | prune pass s | prune() s | params | MACs "
             "| CPU latency ms |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['groups']} ({r['prunable_groups']}) | {r['analyze_s']:.3f} | "
            f"{r['prune_pass_s']:.3f} | {r['prune_api_s']:.3f} | "
            f"{r['params_before']:,} -> {r['params_after']:,} | "
            f"{r['macs_before'] / 1e6:.1f}M -> {r['macs_after'] / 1e6:.1f}M | "
            f"{r['latency_before_ms']:.2f} -> {r['latency_after_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=list(zoo.MODELS))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 keeps timings stable on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        rows.append(bench(name, args.ratio, args.repeats))
        print(json.dumps(rows[-1]))
    meta = {"schema_version": 1, "ratio": args.ratio, "repeats": args.repeats,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor() or platform.system()}, "
                       f"{os.cpu_count()} CPUs"}
    out = os.path.join(HERE, "results", "bench_pruning")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".json", "w") as fh:
        json.dump({**meta, "results": rows}, fh, indent=2)
    with open(out + ".md", "w") as fh:
        fh.write(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
