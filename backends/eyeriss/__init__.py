"""Eyeriss v1 backend: row-stationary mapping and per-layer energy of a traced model.

Modules, one job each: :mod:`.hardware` (YAML description), :mod:`.workload` (FX graph ->
layer shapes), :mod:`.mapper` (mapping search), :mod:`.cost` (accesses, energy, cycles),
:mod:`.sparsity` (zero gating, RLC), :mod:`.ir` (the lowered program).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping as MappingABC
from typing import Any

import torch
from torch import fx

from prunec.errors import UserError, is_number

from .cost import data_movement
from .hardware import Hardware, load_hardware, recorded_hardware
from .ir import SCHEMA_VERSION, LoweredProgram
from .mapper import NoMapping, pinned, search
from .sparsity import LayerSparsity, zero_share
from .workload import ConvShape, Op, extract_ops, whole_number

_MAPPED = ("conv", "depthwise", "linear")
_MOVEMENT = ("pool", "add", "concat")


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
        mapped = {op.name for op in ops if op.kind in _MAPPED}
        for what, names in (("mappings", pins), ("activation sparsity", act)):
            if unknown := sorted(set(names) - mapped):  # a misspelt name would be silently ignored
                raise UserError(f"{what} name layers that are not mapped convolutions/linears: "
                                f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} (layer names are "
                                "graph node names, as `prunec lower --format json` lists them)")
        for op in ops:
            if op.kind in _MAPPED:
                sp = self._sparsity(op, act, zero_gating, rlc, weight_sparsity)
                layers.append(self._layer(op, hardware, sp, pins.get(op.name)))
            elif op.kind in _MOVEMENT:
                layers.append(self._movement(op, hardware))
            else:
                unmapped.append({"name": op.name, "node": op.target, "role": op.role})
        return self._program(hardware, batch, layers, unmapped,
                             {"zero_gating": zero_gating, "rlc": rlc, "weight_sparsity": weight_sparsity,
                              "pinned_mappings": sorted(pins),
                              "activation_sparsity": "given" if act else "none (0 % zeros assumed)"},
                             routed_share)

    def relower(self, ir: MappingABC[str, Any], *, hw: str | Hardware | None = None,
                zero_gating: bool | None = None, rlc: bool | None = None,
                weight_sparsity: bool | None = None, unpin: bool = False, **options: Any) -> LoweredProgram:
        """Cost a saved IR (``LoweredProgram.to_dict()``) again on ``hw`` (default: the chip it was
        lowered on), without the model: every layer is mapped and costed anew from its recorded
        shape, zero shares and pinned mapping, which is what lowering the model on ``hw`` gives.
        Options left at None keep the IR's; ``unpin`` drops the pinned mappings, so every layer's
        mapping is searched on ``hw`` (a mapping pinned for one chip may be poor on another)."""
        if options:
            raise UserError(f"unknown option(s) for target eyeriss: {', '.join(sorted(options))}")
        try:
            records, batch, made = list(ir["layers"]), ir["batch"], dict(ir.get("options") or {})
            totals = dict(ir.get("totals") or {})
        except (KeyError, TypeError, ValueError):
            raise UserError("not a prunec lowered IR: it needs 'layers', 'batch' and 'options'") from None
        if ir.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise UserError(f"the IR has schema version {ir.get('schema_version')!r}; this prunec reads version "
                            f"{SCHEMA_VERSION}")
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise UserError(f"the IR's batch must be a positive integer, got {batch!r}")
        share = totals.get("routed_share")
        if share is not None and not (is_number(share) and 0 <= share <= 1):
            raise UserError(f"the IR's routed_share must be a share between 0 and 1, got {share!r}")
        if ir.get("target", self.name) != self.name:
            raise UserError(f"this IR was lowered for target {ir.get('target')!r}, not {self.name}")
        gating = _recorded_flag(made, "zero_gating", True) if zero_gating is None else zero_gating
        rlc = _recorded_flag(made, "rlc", True) if rlc is None else rlc
        weights = _recorded_flag(made, "weight_sparsity", False) if weight_sparsity is None else weight_sparsity
        if weights and not _recorded_flag(made, "weight_sparsity", False):
            raise UserError("the IR was lowered without weight sparsity, so it does not record its weights' zero "
                            "share: lower the model with --weight-sparsity instead")
        hardware = hw if isinstance(hw, Hardware) else (
            load_hardware(hw) if hw is not None else recorded_hardware(ir.get("hardware")))
        layers = []
        for rec in records:
            try:
                op, sp, pin = self._from_record(rec, gating, rlc, weights)
                pin = None if unpin else pin
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                name = rec.get("name", "?") if isinstance(rec, MappingABC) else repr(rec)
                raise UserError(f"layer record {name} of the IR is incomplete or inconsistent "
                                f"({type(exc).__name__}: {exc}); lower the model again") from None
            # energy per inference divides by the batch, so an edited batch its layers do not hold is wrong;
            # a layer holds a multiple of it: a linear layer on (batch, ..., features) batch x the middle dims
            # rows, a model folding views into the leading dim as many images per sample
            if op.shape is not None and op.shape.N % batch:
                raise UserError(f"the IR's batch is {batch} but its layer {op.name} holds {op.shape.N} inputs: "
                                f"lower the model again with --batch {batch}, not an edited IR")
            layers.append(self._movement(op, hardware) if sp is None else self._layer(op, hardware, sp, pin))
        unmapped = ir.get("unmapped") or []
        if not isinstance(unmapped, list) or not all(isinstance(u, MappingABC) for u in unmapped):
            raise UserError(f"the IR's unmapped must be a list of layer records, got {unmapped!r}")
        # lowering names each layer after its own graph node: a repeated name is an edit, and the per-layer
        # views and comparisons (which match layers by name) would merge two layers into one
        unnamed = [u.get("name") for u in unmapped if not isinstance(u.get("name"), (str, type(None)))]
        if unnamed:
            raise UserError(f"the IR's unmapped records must name their nodes as text, got {unnamed[0]!r}")
        names = Counter([r["name"] for r in layers] + [u["name"] for u in unmapped if u.get("name") is not None])
        repeated = sorted(str(n) for n, k in names.items() if k > 1)
        if repeated:
            raise UserError(f"the IR names layer {repeated[0]!r} more than once; layer names must be unique "
                            "(lower the model again)")
        return self._program(hardware, batch, layers, list(unmapped),
                             {"zero_gating": gating, "rlc": rlc, "weight_sparsity": weights,
                              "pinned_mappings": sorted(r["name"] for r in layers
                                                        if (r.get("mapping") or {}).get("pinned")),
                              "activation_sparsity": made.get("activation_sparsity", "given")},
                             share)

    @staticmethod
    def _from_record(rec: MappingABC[str, Any], gating: bool, rlc: bool, weights: bool
                     ) -> tuple[Op, LayerSparsity | None, dict[str, int] | None]:
        """An IR layer record as the op it was lowered from, its zero shares (None for data movement)
        and its pinned mapping (None when searched)."""
        if not isinstance(rec["name"], str) or not isinstance(rec.get("role"), (str, type(None))):
            raise ValueError("a layer's name and role are text")
        op = Op(name=rec["name"], kind=rec["kind"], role=rec.get("role"), target=rec.get("node", ""),
                folded=list(rec.get("folded", [])))
        if op.kind in _MOVEMENT:
            elems = rec["shape"]
            op.in_elems, op.out_elems = [whole_number(n) for n in elems["in_elems"]], whole_number(elems["out_elems"])
            if min(op.in_elems, default=0) < 0 or op.out_elems < 0:
                raise ValueError(f"element counts must not be negative: {rec['shape']}")
            return op, None, None
        if op.kind not in _MAPPED:
            raise ValueError(f"unknown kind {op.kind!r}")
        op.shape = ConvShape.from_dict(rec["shape"])
        zeros = dict(rec.get("sparsity") or {})
        if not all(is_number(v) and 0.0 <= v <= 1.0 for v in zeros.values()):  # NaN fails too
            raise ValueError(f"zero shares must be numbers in [0, 1], got {zeros}")
        zeros = {k: float(v) for k, v in zeros.items()}
        sp = LayerSparsity(ifmap=zeros.get("ifmap", 0.0), ofmap=zeros.get("ofmap", 0.0),
                           weight=zeros.get("weight", 0.0) if weights else 0.0,
                           zero_gating=gating, rlc=rlc, weight_gating=weights)
        mapping = rec.get("mapping") or {}
        pin = ({k: whole_number(mapping[k]) for k in (*"mnepqrt", "g") if k in mapping}
               if _recorded_flag(mapping, "pinned", False) else None)
        return op, sp, pin

    def _program(self, hardware: Hardware, batch: int, layers: list[dict[str, Any]], unmapped: list[dict[str, Any]],
                 options: dict[str, Any], routed_share: float | None) -> LoweredProgram:
        for rec in layers:
            rec["energy_per_inference"] = rec["energy"]["total"] / batch
            costs = [rec["energy"]["total"], *(rec.get(k, 0.0) for k in ("cycles", "latency_ms"))]
            if not all(math.isfinite(c) for c in costs):  # the numbers would be inf/NaN, the mappings arbitrary
                raise UserError(f"chip {hardware.name}: layer {rec['name']} costs {costs[0]:g} energy over "
                                f"{costs[-1]:g} ms, not a finite number: the chip file's energies, bandwidths or "
                                "clock are out of any useful range")
        return LoweredProgram(target=self.name, batch=batch, hardware=hardware.to_dict(), layers=layers,
                              unmapped=unmapped, options=options, routed_share=routed_share)

    # -- records -----------------------------------------------------------------------------
    @staticmethod
    def _sparsity(op: Op, act: dict[str, float], gating: bool, rlc: bool, weight_sparsity: bool) -> LayerSparsity:
        ws = 0.0
        if weight_sparsity:
            # the weights themselves are the truth (fine-tuning may have revived pruned ones);
            # the pruner's record only stands in where the graph holds no weight tensor
            ws = zero_share(op.weight.detach()) if isinstance(op.weight, torch.Tensor) else (
                op.weight_sparsity or 0.0)
        return LayerSparsity(ifmap=float(act.get(op.name, 0.0)),
                             ofmap=float(act.get(op.next_layer, 0.0)) if op.next_layer else 0.0,
                             weight=ws, zero_gating=gating, rlc=rlc, weight_gating=weight_sparsity)

    def _layer(self, op: Op, hw: Hardware, sp: LayerSparsity, pin: dict[str, int] | None = None) -> dict[str, Any]:
        s = op.shape
        zeros = {"ifmap": sp.ifmap, "ofmap": sp.ofmap, "weight": sp.weight}
        if pin is not None:
            try:
                mapping, m = pinned(s, hw, sp, pin)
            except NoMapping as exc:
                raise UserError(f"the pinned mapping of layer {op.name} does not fit {hw.name}: {exc}") from None
            rec = self._record(op, hw, m, mapping.to_dict(), zeros)
            rec["mapping"]["pinned"] = True
            return rec
        try:
            mapping, m = search(s, hw, sp)
        except NoMapping as exc:
            raise UserError(
                f"layer {op.name} ({op.kind} {s.C * s.G}->{s.M * s.G} channels, {s.R}x{s.S} filter, "
                f"{s.Hin}x{s.Win} input) is too large for any row-stationary mapping on {hw.name}: {exc}"
            ) from None
        return self._record(op, hw, m, mapping.to_dict(), zeros)

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


def _recorded_flag(options: MappingABC[str, Any], key: str, default: bool) -> bool:
    """An on/off option an IR records; JSON's true/false only, since the text "no" would read as on."""
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise UserError(f"the IR's option {key!r} must be true or false, got {value!r}")
    return value
