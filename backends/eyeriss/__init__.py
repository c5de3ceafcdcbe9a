"""Eyeriss v1 backend: row-stationary mapping and per-layer energy of a traced model.

Modules, one job each: :mod:`.hardware` (YAML description), :mod:`.workload` (FX graph ->
layer shapes), :mod:`.mapper` (mapping search), :mod:`.cost` (accesses, energy, cycles),
:mod:`.sparsity` (zero gating, RLC), :mod:`.ir` (the lowered program).
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import Any

import torch
from torch import fx

from prunec.errors import UserError

from .cost import data_movement
from .hardware import Hardware, load_hardware
from .ir import LoweredProgram
from .mapper import NoMapping, pinned, search
from .sparsity import LayerSparsity, zero_share
from .workload import Op, extract_ops

_MAPPED = ("conv", "depthwise", "linear")


class EyerissTarget:
    """The ``eyeriss`` lowering target."""

    name = "eyeriss"
    description = "Eyeriss v1 (JSSC 2017): 12x14 row-stationary PE array, 108 KB GLB, per-layer energy"

    def lower(self, gm: fx.GraphModule, *, batch: int = 1, hw: str | Hardware | None = None,
              activation_sparsity: MappingABC[str, float] | None = None,
              routed_share: float | None = None, zero_gating: bool = True, rlc: bool = True,
              weight_sparsity: bool = False, mappings: MappingABC[str, MappingABC[str, int]] | None = None,
              **options: Any) -> LoweredProgram:
        """Lower a shaped GraphModule. See :func:`prunec.lowering.lower` for the options;
        ``mappings`` pins layers (by name) to given (m, n, e, p, q, r, t) instead of searching."""
        if options:
            raise UserError(f"unknown option(s) for target eyeriss: {', '.join(sorted(options))}")
        if batch < 1:
            raise UserError(f"batch must be a positive integer, got {batch}")
        hardware = hw if isinstance(hw, Hardware) else load_hardware(hw)
        act = dict(activation_sparsity or {})
        pins = {k: dict(v) for k, v in (mappings or {}).items()}
        layers, unmapped = [], []
        ops = extract_ops(gm, batch)
        unknown = sorted(set(pins) - {op.name for op in ops if op.kind in _MAPPED})
        if unknown:
            raise UserError(f"mappings name layers that are not mapped convolutions/linears: {', '.join(unknown)}")
        for op in ops:
            if op.kind in _MAPPED:
                layers.append(self._layer(op, hardware, act, zero_gating, rlc, weight_sparsity, pins.get(op.name)))
            elif op.kind in ("pool", "add", "concat"):
                layers.append(self._movement(op, hardware))
            else:
                unmapped.append({"name": op.name, "node": op.target, "role": op.role})
        for rec in layers:
            rec["energy_per_inference"] = rec["energy"]["total"] / batch
        return LoweredProgram(
            target=self.name, batch=batch, hardware=hardware.to_dict(), layers=layers, unmapped=unmapped,
            options={"zero_gating": zero_gating, "rlc": rlc, "weight_sparsity": weight_sparsity,
                     "pinned_mappings": sorted(pins),
                     "activation_sparsity": "given" if act else "none (0 % zeros assumed)"},
            routed_share=routed_share)

    # -- records -----------------------------------------------------------------------------
    def _layer(self, op: Op, hw: Hardware, act: dict[str, float], gating: bool, rlc: bool,
               weight_sparsity: bool, pin: dict[str, int] | None = None) -> dict[str, Any]:
        ws = 0.0
        if weight_sparsity:
            # the weights themselves are the truth (fine-tuning may have revived pruned ones);
            # the pruner's record only stands in where the graph holds no weight tensor
            ws = zero_share(op.weight.detach()) if isinstance(op.weight, torch.Tensor) else (
                op.weight_sparsity or 0.0)
        sp = LayerSparsity(ifmap=float(act.get(op.name, 0.0)),
                           ofmap=float(act.get(op.next_layer, 0.0)) if op.next_layer else 0.0,
                           weight=ws, zero_gating=gating, rlc=rlc, weight_gating=weight_sparsity)
        s = op.shape
        if pin is not None:
            try:
                mapping, m = pinned(s, hw, sp, pin)
            except NoMapping as exc:
                raise UserError(f"the mapping given for layer {op.name} does not fit {hw.name}: {exc}") from None
            rec = self._record(op, hw, m, mapping.to_dict(), {"ifmap": sp.ifmap, "ofmap": sp.ofmap,
                                                               "weight": sp.weight})
            rec["mapping"]["pinned"] = True
            return rec
        try:
            mapping, m = search(s, hw, sp)
        except NoMapping as exc:
            raise UserError(
                f"layer {op.name} ({op.kind} {s.C * s.G}->{s.M * s.G} channels, {s.R}x{s.S} filter, "
                f"{s.Hin}x{s.Win} input) is too large for any row-stationary mapping on {hw.name}: {exc}"
            ) from None
        return self._record(op, hw, m, mapping.to_dict(), {"ifmap": sp.ifmap, "ofmap": sp.ofmap,
                                                            "weight": sp.weight})

    def _movement(self, op: Op, hw: Hardware) -> dict[str, Any]:
        m = data_movement(op.kind, op.in_elems, op.out_elems, hw)
        m.update(compute_cycles=0.0, dram_cycles=m["cycles"], passes=0, active_pes=0, macs=0)
        return self._record(op, hw, m, None, None)

    def _record(self, op: Op, hw: Hardware, m: dict, mapping: dict | None, sparsity: dict | None) -> dict:
        energy = {k: float(m["energy"].get(k, 0.0)) for k in ("mac", "rf", "array", "glb", "dram", "static")}
        energy["total"] = sum(energy.values())
        acc_t = {typ: {lvl: float(m["acc"][lvl][typ]) for lvl in ("dram", "glb", "array", "rf")}
                 for typ in ("ifmap", "filter", "psum")}
        rec: dict[str, Any] = {
            "name": op.name, "kind": op.kind, "role": op.role, "node": op.target,
            "shape": op.shape.to_dict() if op.shape else {"in_elems": op.in_elems, "out_elems": op.out_elems},
            "macs": int(m["macs"]), "active_pes": int(m["active_pes"]), "mapping": mapping,
            "accesses": {lvl: sum(acc_t[t][lvl] for t in acc_t) for lvl in ("dram", "glb", "array", "rf")},
            "accesses_by_type": acc_t,
            "energy": energy,
            "cycles": float(m["cycles"]), "compute_cycles": float(m["compute_cycles"]),
            "dram_cycles": float(m["dram_cycles"]), "latency_ms": float(m["cycles"]) / hw.clock_hz * 1e3,
            "passes": int(m["passes"]),
        }
        if sparsity is not None:
            rec["sparsity"] = sparsity
        if op.folded:
            rec["folded"] = list(op.folded)
        return rec


__all__ = ["EyerissTarget", "LoweredProgram", "Hardware", "load_hardware"]
