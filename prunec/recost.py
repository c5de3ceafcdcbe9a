"""Costing saved lowered IRs again on other hardware, without the model.

A lowered IR records every layer's shape, zero shares and pinned mapping, and the chip it was
costed on: mapping and costing those layers anew on another chip gives what lowering the model
itself on that chip gives. A compiled model's directory holds two IRs, ``ir.json`` (the dynamic
model) and ``ir_original.json`` (the original network): costed again together they give the
energy reduction on the new chip at the compile's routed share.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunec.errors import UserError, is_number
from prunec.lowering import LoweredProgram, load_ir, naming_chip_file


def relower(ir: Mapping[str, Any] | str | os.PathLike[str], hw: Any = None, routed_share: float | None = None,
            unpin: bool = False, **options: Any) -> LoweredProgram:
    """Cost a saved lowered IR again on other hardware.

    ``ir`` is an IR (``LoweredProgram.to_dict()``) or the path of its JSON file (``prunec lower -o``,
    a compile's ``ir.json`` / ``ir_original.json``). Every layer is mapped and costed anew on ``hw``
    (a hardware YAML path; default: the chip the IR records) from its recorded shape, zero shares
    and pinned mapping. Target options (Eyeriss: ``zero_gating``, ``rlc``, ``weight_sparsity``)
    default to the IR's; ``routed_share`` (dynamic models) to the one it records. ``unpin`` drops
    the IR's pinned mappings and searches every layer's mapping on ``hw``.

    The result records where it came from (``recosted_from``: the IR's file, the hardware file,
    the chip the IR was costed on), so a saved re-costed IR can be traced back.
    """
    from prunec.backends import get_target

    source = None
    if isinstance(ir, (str, os.PathLike)):
        source, ir = os.fspath(ir), load_ir(ir)
    if not isinstance(ir, Mapping):
        raise UserError(f"relower() takes an IR (a dict or the path of its JSON file), not {type(ir).__name__}")
    tgt = get_target(str(ir.get("target", "eyeriss")))
    if not hasattr(tgt, "relower"):
        raise UserError(f"target {ir.get('target')!r} cannot cost a saved IR again; lower the model instead")
    with naming_chip_file(hw):
        program = tgt.relower(ir, hw=hw, **({"unpin": True} if unpin else {}), **options)
    program.recosted_from = _provenance(ir, source, hw, unpin)
    if routed_share is not None:
        if not program.is_dynamic:
            raise UserError("routed_share applies only to a dynamic model's IR (mild and aggressive networks)")
        if not is_number(routed_share) or not 0 <= routed_share <= 1:
            raise UserError(f"routed_share must be between 0 and 1, got {routed_share!r}")
        program.routed_share = float(routed_share)
    return program


def _provenance(ir: Mapping[str, Any], source: str | None, hw: Any, unpin: bool) -> dict[str, Any]:
    """What a re-costed IR was made from; an IR costed again keeps its own record as ``previous``."""
    chip = ir.get("hardware")
    if hw is not None:  # a hardware file; a Hardware object (the backend's) by its name
        hw = os.fspath(hw) if isinstance(hw, (str, os.PathLike)) else getattr(hw, "name", str(hw))
    record = {"ir": source, "hardware_file": hw,
              "costed_before_on": chip.get("name") if isinstance(chip, Mapping) else None, "unpinned": bool(unpin)}
    if isinstance(ir.get("recosted_from"), Mapping):
        record["previous"] = dict(ir["recosted_from"])
    return record


@dataclass
class CompiledCost:
    """A compiled model costed again: the dynamic model, the original (None for a directory compiled
    before ``ir_original.json`` existed) and what could not be costed, as notes for the user."""

    dynamic: LoweredProgram
    original: LoweredProgram | None
    notes: list[str] = field(default_factory=list)

    @property
    def energy_reduction(self) -> float | None:
        """1 - expected dynamic energy / original energy, per inference (None when unknown)."""
        if self.original is None or self.dynamic.routed_share is None:
            return None
        e0 = self.original.totals["energy_per_inference"]
        return 1 - self.dynamic.expected_energy() / e0 if e0 > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The dynamic model's IR, its totals holding the original's energy and the reduction."""
        ir = self.dynamic.to_dict()
        if self.original is not None:
            ir["totals"]["original_energy_per_inference"] = self.original.totals["energy_per_inference"]
            if "latency_ms" in self.original.totals:
                ir["totals"]["original_latency_ms"] = self.original.totals["latency_ms"]
        if self.energy_reduction is not None:
            ir["totals"]["energy_reduction"] = self.energy_reduction
        return ir


def recost_compiled(directory: str | os.PathLike[str], hw: Any = None, routed_share: float | None = None,
                    unpin: bool = False, **options: Any) -> CompiledCost:
    """Cost the compiled model in ``directory`` (``prunec compile -o``) again on ``hw`` (default: the
    chip it was compiled for): its ``ir.json`` and ``ir_original.json``, at its routed share."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"compiled-model directory not found: {directory}")
    if not (directory / "ir.json").is_file():
        raise UserError(f"{directory} is not a compiled model's directory (no ir.json)")
    dynamic_ir = load_ir(directory / "ir.json")
    notes = []
    original_ir = None
    if (directory / "ir_original.json").is_file():
        original_ir = load_ir(directory / "ir_original.json")
        _check_pair(dynamic_ir, original_ir, directory, same_chip=hw is None)
    else:
        notes.append(f"{directory} has no ir_original.json (compiled by an earlier prunec; "
                     "benchmarks/backfill_original_ir.py writes one): no energy reduction")
    dynamic = _relower_file(dynamic_ir, directory / "ir.json", hw, unpin, options, routed_share)
    if dynamic.routed_share is None and (directory / "report.json").is_file():  # IRs from before it was recorded
        from prunec.report import load_report

        dynamic.routed_share = load_report(directory / "report.json")["mild_share"]
    if dynamic.routed_share is None:
        notes.append("neither ir.json nor report.json records the share routed to the mild network: give it "
                     "(--routed-share) for the expected energy and the reduction")
    original = None if original_ir is None else _relower_file(original_ir, directory / "ir_original.json", hw, unpin,
                                                              options)
    return CompiledCost(dynamic, original, notes)


def _relower_file(ir: dict[str, Any], path: Path, hw: Any, unpin: bool, options: dict[str, Any],
                  routed_share: float | None = None) -> LoweredProgram:
    """``relower`` of an IR already read from ``path``, recording that path."""
    program = relower(ir, hw=hw, routed_share=routed_share, unpin=unpin, **options)
    assert program.recosted_from is not None
    program.recosted_from["ir"] = os.fspath(path)
    return program


def _check_pair(dynamic: Mapping[str, Any], original: Mapping[str, Any], directory: Path, same_chip: bool) -> None:
    """ir.json and ir_original.json must be one compile's: a dynamic model and its original network,
    lowered for the same target, batch and (when costed on their own chip) chip, fed the same input."""
    def first_input(ir: Mapping[str, Any]) -> tuple | None:
        rec = next((r for r in ir["layers"] if r.get("kind") in ("conv", "depthwise", "linear")), None)
        shape = (rec or {}).get("shape") or {}
        return tuple(shape.get(k) for k in ("Hin", "Win")) + (shape.get("C", 0) * shape.get("G", 1),) if rec else None

    roles = [any(r.get("role") for r in ir["layers"]) for ir in (dynamic, original)]
    problems = []
    if roles != [True, False]:
        problems.append("ir.json must be the dynamic model and ir_original.json a single network")
    for key in ("target", "batch"):
        if dynamic.get(key) != original.get(key):
            problems.append(f"{key} {dynamic.get(key)!r} against {original.get(key)!r}")
    if same_chip and dynamic.get("hardware") != original.get("hardware"):
        problems.append("they were costed on different chips")
    if first_input(dynamic) != first_input(original):
        problems.append(f"their first layers take different inputs ({first_input(dynamic)} against "
                        f"{first_input(original)})")
    if problems:
        raise UserError(f"{directory}: ir.json and ir_original.json are not one compile's: {'; '.join(problems)}")


__all__ = ["relower", "recost_compiled", "CompiledCost"]
