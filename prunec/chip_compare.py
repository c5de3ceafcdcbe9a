"""One network costed on several chips, side by side: per layer and in total.

An architect weighing chip variants (a larger global buffer, cheaper DRAM, another array)
wants to see which layers gain or lose, at which memory level, and whether the mapper chose
another mapping, not one report per chip. Every column is the same IR (or compiled model, or
model) with the same options; only the chip differs, so the ratios are the chip's doing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from prunec.errors import UserError
from prunec.lowering import LoweredProgram, load_ir, naming_chip_file
from prunec.terminal import make_console

#: energy keys of a layer record and the totals, in the order the tables show them
_LEVELS = ("mac", "rf", "array", "glb", "dram", "static")


@dataclass
class ChipColumn:
    """The network on one chip. ``file`` is the hardware file (None: the chip the IR records, or
    the target's default chip); ``original`` the compiled model's original network on that chip."""

    program: LoweredProgram
    file: str | None = None
    original: LoweredProgram | None = None
    #: what a column without ``file`` is: the chip an IR records, or a target's default chip
    origin: str = "recorded"

    @property
    def chip(self) -> str:
        return str(self.program.hardware.get("name", "?"))

    @property
    def unit(self) -> str:
        return str(self.program.hardware.get("energy_unit", "normalized"))

    @property
    def expected(self) -> bool:
        """Whether the totals are expectations over the routing (a dynamic model with a routed share)."""
        return self.program.is_dynamic and self.program.routed_share is not None

    @property
    def energy(self) -> float:
        """Energy per inference: the expected energy for a dynamic model with a routed share, else
        every layer's (a dynamic model without a share: as if every input ran the mild network)."""
        if self.expected:
            return self.program.expected_energy()
        return float(self.program.totals["energy_per_inference"])

    @property
    def reduction(self) -> float | None:
        """1 - energy / the original's; None without an original, or for a dynamic model whose
        routed share is unknown."""
        if self.original is None or (self.program.is_dynamic and not self.expected):
            return None
        e0 = float(self.original.totals["energy_per_inference"])
        return 1 - self.energy / e0 if e0 > 0 else None

    def _weight(self, rec: Mapping[str, Any]) -> float:
        """A layer's share of the inputs: the routed share for a dynamic model's mild network."""
        share = self.program.routed_share
        return float(share) if share is not None and rec.get("role") == "mild" else 1.0

    def energy_by_level(self) -> dict[str, float]:
        """:attr:`energy` split by memory level (and MACs, static), per inference."""
        batch = self.program.batch
        return {k: sum(self._weight(r) * r["energy"][k] for r in self.program.layers) / batch for k in _LEVELS}

    @property
    def latency_ms(self) -> float:
        """Latency of the whole batch, expected over the routing like :attr:`energy`."""
        return sum(self._weight(r) * r["latency_ms"] for r in self.program.layers)

    def summary(self) -> dict[str, Any]:
        """Totals on this chip. ``energy_by_level_per_inference`` splits the expected energy per
        inference where there is one, else the energy per inference; ``latency_ms_per_batch`` is
        expected likewise."""
        out: dict[str, Any] = {
            "chip": self.chip, "hardware_file": self.file, "energy_unit": self.unit,
            "energy_per_inference": float(self.program.totals["energy_per_inference"]),
        }
        if self.expected:
            out["routed_share"] = self.program.routed_share
            out["expected_energy_per_inference"] = self.energy
        out["energy_by_level_per_inference"] = self.energy_by_level()
        out["batch"] = self.program.batch
        out["latency_ms_per_batch"] = self.latency_ms
        if self.original is not None:
            out["original_energy_per_inference"] = float(self.original.totals["energy_per_inference"])
        if self.reduction is not None:
            out["energy_reduction"] = self.reduction
        return out


@dataclass
class ChipComparison:
    """Columns of one network on several chips; the first is the baseline of every ratio."""

    columns: list[ChipColumn]

    def __post_init__(self) -> None:
        if not self.columns:
            raise UserError("a chip comparison needs at least one chip")
        names = [[r["name"] for r in c.program.layers] for c in self.columns]
        if any(n != names[0] for n in names[1:]):  # the same IR costed again keeps its layers in order
            raise UserError("the chips' programs do not hold the same layers; compare one network's costings")

    @property
    def baseline(self) -> ChipColumn:
        return self.columns[0]

    def ratio(self, column: ChipColumn, mine: float, base: float) -> float | None:
        """``mine / base``, or None where the two chips count energy in different units or the
        baseline's is 0."""
        if column.unit != self.baseline.unit or base == 0:
            return None
        return mine / base

    def layers(self) -> list[dict[str, Any]]:
        """Per layer: energy per inference on each chip (a dynamic model's mild layers: per input
        routed to mild), and whether each chip's mapper chose another mapping than the baseline's."""
        rows = []
        for i, base in enumerate(self.baseline.program.layers):
            recs = [c.program.layers[i] for c in self.columns]
            rows.append({"name": base["name"], "role": base.get("role"), "kind": base["kind"],
                         "energy_per_inference": [float(r["energy_per_inference"]) for r in recs],
                         "mapping_changed": [_mapping(r) != _mapping(base) for r in recs]})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON: the chips' totals (the first is the baseline), the per-layer view
        and every column's IR."""
        from prunec.backends.eyeriss.ir import SCHEMA_VERSION

        base = self.baseline.program
        return {"schema_version": SCHEMA_VERSION, "kind": "chip_comparison", "target": base.target,
                "batch": base.batch, "chips": [c.summary() for c in self.columns], "layers": self.layers(),
                "irs": [_ir(c) for c in self.columns]}


def _mapping(rec: Mapping[str, Any]) -> tuple | None:
    mp = rec.get("mapping")
    return tuple(mp.get(k) for k in "mnepqrt") if mp else None


def _ir(column: ChipColumn) -> dict[str, Any]:
    """The column's IR; a compiled model's carries its original's energy and the reduction."""
    from prunec.recost import CompiledCost

    return CompiledCost(column.program, column.original).to_dict()


def compare_chips(source: Mapping[str, Any] | str | os.PathLike[str], hws: Sequence[Any] | str | os.PathLike[str],
                  *, with_recorded: bool = True, routed_share: float | None = None, unpin: bool = False,
                  **options: Any) -> tuple[ChipComparison, list[str]]:
    """A saved IR, or a compiled model's directory, costed on each chip of ``hws`` (hardware
    files) with the same options. With ``with_recorded`` (the default) the chip it records comes
    first, as the baseline; ``unpin`` re-searches pinned mappings on the chips of ``hws`` while
    that baseline keeps them. Returns the comparison and notes for the user (a directory without
    ``ir_original.json``, ...)."""
    from prunec.recost import recost_compiled, relower

    hws = [hws] if isinstance(hws, (str, os.PathLike)) else list(hws)
    chips: list[Any] = ([None] if with_recorded else []) + hws
    if not chips:
        raise UserError("name the chips to compare (hardware files)")
    is_dir = isinstance(source, (str, os.PathLike)) and (Path(source).is_dir() or os.fspath(source).endswith(os.sep))
    ir = None if is_dir else load_ir(source) if isinstance(source, (str, os.PathLike)) else source
    columns, notes = [], []
    for hw in chips:
        with naming_chip_file(hw):
            if ir is None:
                cost = recost_compiled(source, hw=hw, routed_share=routed_share, unpin=unpin and hw is not None,
                                       **options)
                notes += [n for n in cost.notes if n not in notes]
                columns.append(ChipColumn(cost.dynamic, _file(hw), cost.original))
                continue
            program = relower(ir, hw=hw, routed_share=routed_share, unpin=unpin and hw is not None, **options)
            if isinstance(source, (str, os.PathLike)) and program.recosted_from is not None:
                program.recosted_from["ir"] = os.fspath(source)
            columns.append(ChipColumn(program, _file(hw)))
    if ir is not None and columns[0].program.is_dynamic and not columns[0].expected:
        notes.append("the IR records no share of inputs routed to the mild network: its totals count every "
                     "input through it; give the share (--routed-share) for the expected energy")
    return ChipComparison(columns), notes


def _file(hw: Any) -> str | None:
    return None if hw is None else os.fspath(hw) if isinstance(hw, (str, os.PathLike)) else str(hw)


def render_comparison(comparison: ChipComparison, console: Any = None) -> None:
    """Print the comparison as two rich tables: energy per layer on each chip, then the totals."""
    from rich.table import Table

    console = console or make_console()
    cols = comparison.columns
    base = comparison.baseline
    dynamic = base.program.is_dynamic
    notes = ["x: against the first column", "* another mapping than there"]
    if dynamic:
        notes.append("mild layers: per input routed to mild")
    table = Table(title=f"energy per inference by layer ({'; '.join(notes)})")
    table.add_column("layer")
    if dynamic:
        table.add_column("role")
    table.add_column("kind")
    for i, c in enumerate(cols):
        table.add_column(_label(c), justify="right")
        if i:
            table.add_column("x", justify="right")
    rows = comparison.layers()
    for row in rows:
        cells = [escape(str(row["name"])), *([escape(str(row["role"] or "-"))] if dynamic else []),
                 escape(str(row["kind"]))]
        energies = row["energy_per_inference"]
        for i, (c, e) in enumerate(zip(cols, energies, strict=True)):
            cells.append(f"{e:.4g}")
            if i:
                cells.append(_times(comparison, c, e, energies[0]) + ("*" if row["mapping_changed"][i] else ""))
        table.add_row(*cells)
    console.print(table)

    expected = base.expected
    tot = Table(title=f"totals per inference{' (expected over the routing)' if expected else ''}")
    tot.add_column("")
    for c in cols:
        tot.add_column(_label(c), justify="right")
    by_level = [c.energy_by_level() for c in cols]
    tot.add_row("expected energy" if expected else "energy", *(_cell(comparison, c, c.energy, base.energy)
                                                              for c in cols))
    for level in _LEVELS:
        tot.add_row(f"  {level}", *(_cell(comparison, c, lv[level], by_level[0][level])
                                    for c, lv in zip(cols, by_level, strict=True)))
    if any(c.original is not None for c in cols):
        tot.add_row("original network", *("-" if c.original is None else
                                           f"{c.original.totals['energy_per_inference']:.5g}" for c in cols))
        tot.add_row("energy reduction", *(f"{c.reduction:.1%}" if c.reduction is not None else "-" for c in cols))
    tot.add_row(f"{'expected ' if expected else ''}latency, batch of {base.program.batch} (ms)",
                *(_cell(comparison, c, c.latency_ms, base.latency_ms, any_unit=True) for c in cols))
    tot.add_row("layers remapped", "-", *(str(sum(r["mapping_changed"][i] for r in rows))
                                          for i in range(1, len(cols))))
    console.print(tot)


def _label(column: ChipColumn) -> str:
    where = column.origin if column.file is None else Path(column.file).name
    return escape(f"{column.chip}\n({where})\n{column.unit}")  # names from chip files: never rich markup


def _times(comparison: ChipComparison, column: ChipColumn, value: float, base: float) -> str:
    """The ratio cell: "-" against a baseline of 0, "n/a" across units."""
    if base == 0:
        return "-"
    ratio = comparison.ratio(column, value, base)
    return "n/a" if ratio is None else f"{ratio:.3f}"


def _cell(comparison: ChipComparison, column: ChipColumn, value: float, base: float, any_unit: bool = False) -> str:
    """A totals cell: the value, and on the other chips its ratio to the baseline's."""
    if column is comparison.baseline:
        return f"{value:.5g}"
    if any_unit:  # a quantity every chip counts alike (time)
        return f"{value:.5g} ({value / base:.3f}x)" if base else f"{value:.5g}"
    ratio = _times(comparison, column, value, base)
    return f"{value:.5g} ({ratio}x)" if ratio[0].isdigit() else f"{value:.5g} ({ratio})"


__all__ = ["ChipColumn", "ChipComparison", "compare_chips", "render_comparison"]
