"""``--reuse-levels DIR``: the pruned, fine-tuned networks of an earlier compile, rebuilt.

Fine-tuning is hours of a compile; the selector, its calibration, the lowering and the
report are minutes. Changing the selector, the accuracy budget or prunec's calibration
should not cost the fine-tuning again. An earlier output DIR holds the mild and the
aggressive network as torch.export archives, and their parameter names are those of the
pruned ``fx.GraphModule``. So pruning the user's model at the same ratios gives the same
architecture, and loading DIR's weights into it gives the same network, checked here
output for output. DIR must carry the original it was compiled from, and that original
must equal the user's model tensor for tensor, so one model's levels never stand in for
another's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from prunec.data import same_normalization
from prunec.errors import UserError


@dataclass
class ReusedLevels:
    """The rebuilt networks and the report of the compile that fine-tuned them."""

    mild: fx.GraphModule
    aggressive: fx.GraphModule
    source: dict[str, Any]
    directory: Path


def read_source_report(directory: str | Path) -> tuple[Path, dict[str, Any]]:
    """DIR's report.json (the levels it records), refusing anything that is not a compile output."""
    root = Path(directory)
    path = root / "report.json"
    if not path.is_file():
        raise UserError(f"--reuse-levels {root}: no report.json there; give a `prunec compile` output directory")
    try:
        report = json.loads(path.read_text())
        levels = report["levels"]
        for role in ("mild", "aggressive"):
            float(levels[role]["ratio"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--reuse-levels {root}: report.json is unreadable or records no levels ({exc})") from None
    return root, report


def reuse_levels(directory: str | Path, original: fx.GraphModule, x: torch.Tensor, cfg: Any,
                 data_name: str, check_inputs: torch.Tensor, calibration_sha256: str | None = None) -> ReusedLevels:
    """Rebuild DIR's mild and aggressive networks on ``original`` (see the module docstring).

    Fills ``cfg``'s level ratios, methods and fine-tuning epochs from DIR's report, so the new
    report states how the reused networks were made; ratios the user gave must match them.
    ``check_inputs`` are a few images on which the rebuilt networks must reproduce DIR's (fed
    the same inputs, so the normalization is checked apart: :func:`check_same_normalization`).
    """
    from prunec.artifact import load_compiled
    from prunec.pipeline import prune_level

    root, report = read_source_report(directory)
    made_on = report.get("data", {}).get("name")
    if made_on != data_name:
        raise UserError(f"--reuse-levels {root} was compiled on {made_on}, not {data_name}")
    made_with = report.get("data", {}).get("calibration_sha256")  # absent in reports made before it was recorded
    if made_with is not None and calibration_sha256 is not None and made_with != calibration_sha256:
        raise UserError(f"--reuse-levels {root} was compiled on other data named {made_on}: its calibration "
                        "images or labels differ from these (another folder of that name, or one changed since)")
    levels = report["levels"]
    for role in ("mild", "aggressive"):
        asked, made = getattr(cfg, role), float(levels[role]["ratio"])
        if asked is not None and abs(asked - made) > 1e-9:
            raise UserError(f"--{role} {asked:g} differs from the {role} level {made:g} in --reuse-levels {root}")
    compiled = load_compiled(root / report.get("files", {}).get("model_dir", "model"))
    _check_same_original(compiled.model.original, original, root)

    cfg.mild, cfg.aggressive = float(levels["mild"]["ratio"]), float(levels["aggressive"]["ratio"])
    cfg.method = levels["mild"].get("method", cfg.method)
    cfg.aggressive_method = levels["aggressive"].get("method", cfg.aggressive_method)
    cfg.epochs = float(levels["mild"].get("fine_tune_epochs", 0.0))
    cfg.aggressive_epochs = float(levels["aggressive"].get("fine_tune_epochs", 0.0))
    rebuilt = {}
    for role, part, method in (("mild", compiled.model.mild, cfg.method),
                               ("aggressive", compiled.model.front, cfg.aggressive_method)):
        network = prune_level(original, x, getattr(cfg, role), cfg, method)
        try:
            network.load_state_dict(part.state_dict(), strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"the {role} network in {root} does not fit this model pruned at "
                            f"{getattr(cfg, role):g} with --pruner {cfg.pruner} ({first})") from None
        network.eval()
        with torch.no_grad():
            mine, theirs = network(check_inputs), part(check_inputs)
        theirs = theirs[0] if isinstance(theirs, (tuple, list)) else theirs
        if mine.shape != theirs.shape or not torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5):
            raise UserError(f"the rebuilt {role} network does not reproduce the one in {root}; "
                            "compile without --reuse-levels")
        rebuilt[role] = network
    return ReusedLevels(rebuilt["mild"], rebuilt["aggressive"], report, root)


def check_same_normalization(root: Path, report: dict[str, Any], normalization: dict[str, list[float]],
                             recorded_default: dict[str, list[float]] | None = None) -> None:
    """Refuse to reuse networks fine-tuned on inputs normalized otherwise than this run's.

    A report from before prunec recorded the normalization used the data set's own:
    ``recorded_default`` (without it such a report is not checked).
    """
    data = report.get("data")
    theirs = data.get("normalization", recorded_default) if isinstance(data, dict) else recorded_default
    if theirs is None:
        return
    try:
        same = same_normalization(theirs, normalization)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"--reuse-levels {root}: report.json records an unreadable data.normalization") from None
    if not same:
        raise UserError(f"--reuse-levels {root} was compiled with --mean {_csv(theirs['mean'])} --std "
                        f"{_csv(theirs['std'])}; give the same (now: --mean {_csv(normalization['mean'])} "
                        f"--std {_csv(normalization['std'])})")


def _csv(values: list[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _check_same_original(theirs: nn.Module | None, mine: nn.Module, root: Path) -> None:
    if theirs is None:
        raise UserError(f"--reuse-levels {root}: the compiled model carries no original network, so it cannot "
                        "be checked against this model")
    a, b = theirs.state_dict(), mine.state_dict()
    if set(a) != set(b) or any(a[k].shape != b[k].shape or not torch.equal(a[k], b[k]) for k in a):
        raise UserError(f"--reuse-levels {root} was compiled from another model (its original network's "
                        "weights differ from this one's)")


__all__ = ["ReusedLevels", "reuse_levels", "read_source_report", "check_same_normalization"]
