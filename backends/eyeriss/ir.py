"""The lowered program: per-layer records and totals, serializable as the IR JSON."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
ENERGY_KEYS = ("mac", "rf", "array", "glb", "dram", "static")
MILD = "mild"


def routed_expectation(by_role: Mapping[str, float], share: float) -> float:
    """A dynamic model's cost per input: every role that always runs, plus the mild network's cost
    weighted by the share of inputs routed to it (share 1 gives the worst case)."""
    return sum(v for k, v in by_role.items() if k != MILD) + float(share) * by_role.get(MILD, 0.0)


@dataclass
class LoweredProgram:
    """A model lowered onto a target. ``layers`` are the IR layer records (dicts).

    Energies in records and ``totals["energy"]`` are for the whole batch; the
    ``*_per_inference`` fields divide by the batch.
    """

    target: str
    batch: int
    hardware: dict[str, Any]
    layers: list[dict[str, Any]]
    unmapped: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    routed_share: float | None = None
    #: where a re-costed IR came from (:func:`prunec.relower`): its file, the chip file, the old chip
    recosted_from: dict[str, Any] | None = None

    @property
    def is_dynamic(self) -> bool:
        return any(rec.get("role") for rec in self.layers)

    @property
    def totals(self) -> dict[str, Any]:
        layers = self.layers
        energy = {k: sum(r["energy"][k] for r in layers) for k in ENERGY_KEYS}
        energy["total"] = sum(energy.values())
        acc = {lvl: sum(r["accesses"][lvl] for r in layers) for lvl in ("dram", "glb", "array", "rf")}
        cycles = sum(r["cycles"] for r in layers)
        clock = self.hardware.get("clock_hz")
        out: dict[str, Any] = {
            "macs": sum(r["macs"] for r in layers),
            "energy": energy["total"],
            "energy_per_inference": energy["total"] / self.batch,
            "energy_by_level": energy,
            "accesses": acc,
            "cycles": cycles,
            **({"latency_ms": cycles / float(clock) * 1e3} if clock else {}),
            "mapped_layers": sum(1 for r in layers if r["kind"] in ("conv", "depthwise", "linear")),
            "unmapped_nodes": len(self.unmapped),
        }
        if self.is_dynamic:
            out["by_role"] = {role: {"energy": e * self.batch, "energy_per_inference": e}
                              for role, e in self.energy_by_role().items()}
            if self.routed_share is not None:
                out["routed_share"] = self.routed_share
                out["expected_energy_per_inference"] = self.expected_energy(self.routed_share)
                if (latency := self.expected_latency_ms()) is not None:
                    out["expected_latency_ms"] = latency
        return out

    def energy_by_role(self, per_inference: bool = True) -> dict[str, float]:
        """Energy of each role ("trunk", "head", "selector", "mild"; "none" for role-less
        layers), per inference unless ``per_inference=False`` (then per batch)."""
        scale = 1.0 / self.batch if per_inference else 1.0
        return self._sum_by_role(lambda rec: rec["energy"]["total"] * scale)

    def _sum_by_role(self, value: Callable[[dict[str, Any]], float]) -> dict[str, float]:
        """``value`` of each layer record summed per role, roles sorted."""
        out: dict[str, float] = {}
        for rec in self.layers:
            role = rec.get("role") or "none"
            out[role] = out.get(role, 0.0) + value(rec)
        return dict(sorted(out.items()))

    def latency_ms_by_role(self) -> dict[str, float] | None:
        """Processing latency of each role in ms for one batch (the layers' cycles at the hardware's
        clock; layers run one after another), or None where the hardware names no clock."""
        clock = self.hardware.get("clock_hz")
        if not clock:
            return None
        return self._sum_by_role(lambda rec: rec["cycles"] / float(clock) * 1e3)

    def expected_latency_ms(self, routed_share: float | None = None) -> float | None:
        """Latency of a batch with ``routed_share`` of it sent to mild, the mild network's time
        scaled by the share (exact at batch 1), or None without a clock or a share."""
        share = self.routed_share if routed_share is None else routed_share
        by_role = self.latency_ms_by_role()
        if by_role is None or share is None:
            return None
        return routed_expectation(by_role, share)

    def expected_energy(self, routed_share: float | None = None, per_inference: bool = True) -> float:
        """E(trunk) + E(head) + E(selector) + routed_share * E(mild), per inference by default.

        ``routed_share`` is the share of inputs the selector sends to the mild network.
        """
        share = self.routed_share if routed_share is None else routed_share
        if share is None:
            raise ValueError("expected_energy needs routed_share (share of inputs routed to mild)")
        return routed_expectation(self.energy_by_role(per_inference), share)

    def to_dict(self) -> dict[str, Any]:
        """The IR JSON (see module ``prunec.lowering``)."""
        return {"schema_version": SCHEMA_VERSION, "target": self.target, "batch": self.batch,
                "hardware": self.hardware, "options": self.options, "layers": self.layers,
                "unmapped": self.unmapped, "totals": self.totals,
                **({"recosted_from": self.recosted_from} if self.recosted_from is not None else {})}


__all__ = ["LoweredProgram", "SCHEMA_VERSION", "ENERGY_KEYS", "routed_expectation"]
