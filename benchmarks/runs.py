"""What the long, resumable benchmark runs (reproduce.py, bench_levels.py) share: their
common options and the atomic result writes that let a run stop anywhere."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--seed, --threads, --work, --results, --redo, --quiet."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads; results are reproducible for the same seed and thread count")
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "work"),
                        help="where checkpoints and finished rows are cached (resumed from)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                        help="where the result files go (rows already there are kept unless recomputed)")
    parser.add_argument("--redo", action="store_true", help="recompute rows already finished")
    parser.add_argument("--quiet", action="store_true")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: never half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def previous_rows(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows an earlier run (another session, or a run beside this one) left in ``path``, by
    (network, data set): they are kept unless this run recomputes them."""
    if not path.exists():
        return {}
    return {(r["network"], r["dataset"]): r for r in json.loads(path.read_text()).get("rows", [])}
