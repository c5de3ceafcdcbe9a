"""Add the processing latency (report.json's ``latency_ms``) to compiled-model directories made before
compile wrote it, and redraw their report.md.

The latencies come from the directory's own ir.json and ir_original.json, as compile computes them:
the layers' cycles at the recorded clock, by role; the mild network alone is its role in the dynamic
model and the aggressive network alone its trunk and head (compile lowers the same layers, and its
test holds the two equal). Written only when ir.json is the model report.json describes: its
expected energy at the report's routed share must be report.json's dynamic energy, and
ir_original.json's the original's.

    python benchmarks/backfill_latency.py benchmarks/results/artifacts/*/
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backfill import run_backfill  # noqa: E402

from prunec.errors import UserError  # noqa: E402


def _program(path: Path, routed_share: float | None = None) -> Any:
    from prunec.backends.eyeriss.ir import LoweredProgram
    from prunec.lowering import load_ir

    ir = load_ir(path)
    return LoweredProgram(target=ir["target"], batch=ir["batch"], hardware=ir.get("hardware", {}),
                          layers=ir["layers"], unmapped=ir.get("unmapped", []), options=ir.get("options", {}),
                          routed_share=routed_share)


def with_latency(directory: Path) -> dict[str, Any]:
    """``directory``'s report.json with ``latency_ms`` and the hardware's timing added."""
    from prunec.pipeline import hardware_timing, latency_record
    from prunec.report import load_report

    report = load_report(directory)
    if not (directory / "ir_original.json").is_file():
        raise UserError(f"{directory}: no ir_original.json (python benchmarks/backfill_original_ir.py makes it)")
    share = report["mild_share"]
    dynamic, original = _program(directory / "ir.json", share), _program(directory / "ir_original.json")
    for what, have, want in (("ir.json's expected energy", dynamic.expected_energy(), report["energy"]["dynamic"]),
                             ("ir_original.json's energy", original.totals["energy_per_inference"],
                              report["energy"]["original"])):
        if not math.isclose(have, want, rel_tol=1e-9):
            raise UserError(f"{directory}: {what} is {have:.6g}, report.json says {want:.6g}; not written")
    by_role, alone = dynamic.latency_ms_by_role(), original.latency_ms_by_role()
    if by_role is None or alone is None:
        raise UserError(f"{directory}: the IRs record no clock, so there is no latency to add")
    report["latency_ms"] = latency_record(sum(alone.values()), by_role.get("mild", 0.0),
                                          by_role.get("trunk", 0.0) + by_role.get("head", 0.0), by_role, share)
    if "hardware" in report:  # reports too old to record the hardware get none of it
        report["hardware"].update(hardware_timing(dynamic.hardware))
    return report


def _step(directory: Path) -> str:
    from prunec.report import render_all, save_report

    if "latency_ms" in json.loads((directory / "report.json").read_text()):
        return f"{directory}: has latency_ms already"
    save_report(with_latency(directory), directory)
    render_all(directory)
    return f"added latency_ms to {directory / 'report.json'} and redrew its views"


def main(argv: list[str] | None = None) -> int:
    return run_backfill(__doc__.splitlines()[0], _step, argv)


if __name__ == "__main__":
    sys.exit(main())
