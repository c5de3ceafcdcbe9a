"""Redo the selector and its calibration of compiled-model directories with this prunec, and compare.

A compiled directory holds its original, mild and aggressive networks, so ``--reuse-levels`` on
the directory itself recompiles it without fine-tuning: same levels, same data, same budget and
seed, this version's selector training and threshold rule. The table says how far the committed
numbers move when the calibration changes (for example when the learned selector's threshold
came to be carried over by share). The recompiled directories go to a scratch folder; the
committed ones are not touched.

    python benchmarks/recalibrate.py benchmarks/results/artifacts/*/ \\
        --scratch /tmp/recalibrated --out benchmarks/results/recalibrate.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.runs import compiled_original, write_atomic  # noqa: E402
from prunec.errors import UserError  # noqa: E402


def recompile(directory: Path, scratch: Path, data: str | None = None) -> dict[str, Any]:
    """``directory`` compiled again from its own levels; returns the new report.json.

    The budget, confidence, seed, batch, target and selector carry over; a compile on another chip
    than the target's shipped one is refused (the report names the chip, not its file), and an
    .npz data set must be given again as ``data`` (the report keeps only its name)."""
    from prunec.pipeline import compile as compile_model

    made = json.loads((directory / "report.json").read_text())
    selector = made["selector"]
    if selector.get("max_accuracy_drop") is None:
        raise UserError(f"{directory}: recalibrate handles reports compiled with an accuracy budget")
    chip = made.get("hardware", {}).get("name", "eyeriss_v1")
    if chip != "eyeriss_v1":
        raise UserError(f"{directory} was costed on chip {chip!r}, not the shipped one; recompile it with its --hw")
    original, meta = compiled_original(directory)
    out = scratch / directory.name
    result = compile_model(original, data or made["data"]["name"], output=str(out), force=True, model_meta=meta,
                           reuse_levels=str(directory), selector=selector["kind"], target=made["target"],
                           max_accuracy_drop=selector["max_accuracy_drop"], confidence=selector.get("confidence"),
                           seed=made["seed"], batch=made["batch"], progress=False, command=" ".join(sys.argv))
    return result.report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="compiled-model directories")
    parser.add_argument("--scratch", type=Path, required=True, help="where the recompiled directories go")
    parser.add_argument("--out", type=Path, help="markdown table (default: print it)")
    parser.add_argument("--data", help="the data set again, for directories compiled on an .npz or image folder")
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.dirs if not (d / "report.json").is_file()]
    if missing:  # before any recompile, not after the first
        parser.error(f"not a compiled-model directory (no report.json): {', '.join(missing)}")
    start = time.perf_counter()
    rows = ["| directory | accuracy % (was → now) | to mild (was → now) | energy reduction (was → now) |",
            "|---|---:|---:|---:|"]
    try:
        for directory in args.dirs:
            was = json.loads((directory / "report.json").read_text())
            now = recompile(directory, args.scratch, args.data)
            rows.append(f"| {directory} | {was['accuracy']['dynamic']:.2f} → {now['accuracy']['dynamic']:.2f} "
                        f"| {100 * was['mild_share']:.2f} % → {100 * now['mild_share']:.2f} % "
                        f"| {100 * was['energy_reduction']:.2f} % → {100 * now['energy_reduction']:.2f} % |")
    except UserError as exc:
        print(f"recalibrate: {exc}", file=sys.stderr)
        return 2
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    text = "\n".join([f"# Recalibrated at commit {commit}", "",
                      f"`python {' '.join(sys.argv)}` ({time.perf_counter() - start:.0f} s)", "", *rows, ""])
    if args.out:
        write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
