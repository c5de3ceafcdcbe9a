"""Record the input normalization in compiled-model directories made before compile wrote it:
report.json's ``data.normalization`` and model.onnx's ``prunec.mean`` / ``prunec.std`` metadata.

The normalization is the compiled model's own (``model/manifest.json``, which load_compiled reads),
so nothing is recomputed: someone handed only model.onnx or report.json learns what the graph
expects. Only missing records are added; report.md is redrawn.

    python benchmarks/backfill_normalization.py benchmarks/results/artifacts/*/
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backfill import run_backfill  # noqa: E402

from prunec.errors import UserError  # noqa: E402


def backfill(directory: Path) -> list[str]:
    """Add the missing records to ``directory``; return what was added."""
    import onnx

    from prunec import load_compiled
    from prunec.artifact import preprocess_spec
    from prunec.export import normalization_props
    from prunec.report import load_report, render_all, save_report

    spec = preprocess_spec(load_compiled(directory / "model").preprocess)
    if spec is None:
        raise UserError(f"{directory}: the compiled model takes no normalization to record")
    added = []
    report = load_report(directory)
    if not report["data"].get("normalization"):
        report["data"]["normalization"] = spec
        save_report(report, directory)
        added.append("report.json data.normalization")
    model = onnx.load(directory / "model.onnx")
    if not any(p.key == "prunec.mean" for p in model.metadata_props):
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                            **normalization_props(spec)})
        staged = directory / "model.onnx.tmp"
        try:
            onnx.save(model, staged)
            os.replace(staged, directory / "model.onnx")
        finally:
            staged.unlink(missing_ok=True)
        added.append("model.onnx metadata")
    if added:
        render_all(directory)
    return added


def _step(directory: Path) -> str:
    added = backfill(directory)
    return f"{directory}: " + (", ".join(f"added {a}" for a in added) if added else "already recorded")


def main(argv: list[str] | None = None) -> int:
    return run_backfill(__doc__.splitlines()[0], _step, argv)


if __name__ == "__main__":
    sys.exit(main())
