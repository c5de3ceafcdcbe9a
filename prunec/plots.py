"""The two PNG views of a report: where the energy goes, and what it buys.

Both take a validated report dict (see :mod:`prunec.report`) and nothing else, so they can
be redrawn from ``report.json`` alone. Figures are built as ``matplotlib.figure.Figure``
objects on the Agg backend: no display is needed and no pyplot state is left behind.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from prunec.outdir import write_atomic
from prunec.report import (  # noqa: E402
    LEVEL_LABELS,
    MEMORY_LEVELS,
    PAPER_ACCURACY_DROP,
    PAPER_ENERGY_REDUCTION,
    ROLES,
    TARGET_ENERGY_REDUCTION,
    TARGET_MAX_ACCURACY_DROP,
    costed_on,
    energy_unit_label,
    fmt_energy,
    reported_sweep,
)

DPI = 150
LEVEL_COLORS = {"mac": "#4c72b0", "rf": "#55a868", "array": "#8172b2", "glb": "#ccb974",
                "dram": "#c44e52", "static": "#999999"}
ROLE_COLORS = {"trunk": "#222222", "head": "#8c564b", "selector": "#e377c2", "mild": "#17becf"}
ROLE_HATCH = {"trunk": "", "head": "//", "selector": "xx", "mild": ".."}


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes: rendered in memory, so a failed plot never leaves a stub file."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _reduction(before: float, after: float) -> str:
    """How much less ``after`` is than ``before``, signed: a level that costs more reads +20 %, not −-20 %,
    and a change too small for whole percents keeps two significant digits (−0.31 %), not "−0 %"."""
    change = after / before - 1
    if change == 0:
        return "±0%"
    size = (f"{abs(change):.0%}" if abs(change) >= 0.005 else f"{100 * abs(change):.2g}%" if abs(change) >= 1e-4
            else "<0.01%")
    return f"{'−' if change < 0 else '+'}{size}"


def _unit(d: dict[str, Any]) -> str:
    """The energy unit of the hardware the report was costed on, for axis labels."""
    return energy_unit_label(costed_on(d))


def _stacked_layers(ax: Any, names: list[str], energies: list[dict[str, float]],
                    roles: list[str] | None = None) -> None:
    x = range(len(names))
    bottom = [0.0] * len(names)
    for lvl in MEMORY_LEVELS:
        heights = [e[lvl] for e in energies]
        bars = ax.bar(x, heights, bottom=bottom, color=LEVEL_COLORS[lvl], width=0.8,
                      edgecolor="white", linewidth=0.3)
        if roles is not None:
            for bar, role in zip(bars, roles, strict=True):
                if ROLE_HATCH[role]:
                    bar.set_hatch(ROLE_HATCH[role])
                    bar.set_edgecolor(ROLE_COLORS[role])
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(list(x))
    fontsize = 7 if len(names) <= 40 else 5
    ax.set_xticklabels(names, rotation=90, fontsize=fontsize)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if roles is not None:
        for label, role in zip(ax.get_xticklabels(), roles, strict=True):
            label.set_color(ROLE_COLORS[role])
        # Tint each contiguous run of one role and name it, so the routing is visible.
        start = 0
        for i in range(1, len(roles) + 1):
            if i == len(roles) or roles[i] != roles[start]:
                ax.axvspan(start - 0.5, i - 0.5, color=ROLE_COLORS[roles[start]], alpha=0.06, lw=0)
                ax.text((start + i - 1) / 2, 1.0, roles[start], transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=8, color=ROLE_COLORS[roles[start]])
                start = i


def energy_breakdown(d: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`energy_breakdown_figure` as a PNG at ``path`` (atomically)."""
    return write_atomic(path, png(energy_breakdown_figure(d)))


def energy_breakdown_figure(d: dict[str, Any]) -> Figure:
    """Per-layer energy stacked by memory level, original vs dynamic, plus per-level totals.

    The dynamic panel shows *expected* energy per inference: mild-network layers are scaled
    by the mild share p, because they only run for that share of inputs.
    """
    p = d["mild_share"]
    orig = d["layers"]["original"]
    dyn = d["layers"]["dynamic"]
    dyn_energy = [{lvl: rec["energy"][lvl] * (p if rec["role"] == "mild" else 1.0)
                   for lvl in MEMORY_LEVELS} for rec in dyn]
    n = max(len(orig), len(dyn), 1)
    width = min(max(10.0, 0.22 * n + 5.0), 26.0)
    fig = Figure(figsize=(width, 9.5), layout="constrained")
    gs = fig.add_gridspec(2, 2, width_ratios=[4.0, 1.3])
    ax_o = fig.add_subplot(gs[0, 0])
    ax_d = fig.add_subplot(gs[1, 0], sharey=ax_o)
    ax_t = fig.add_subplot(gs[:, 1])

    e = d["energy"]
    _stacked_layers(ax_o, [r["name"] for r in orig], [r["energy"] for r in orig])
    ax_o.set_title(f"Original network — {fmt_energy(e['original'])} per inference",
                   loc="left", fontsize=11)
    ax_o.set_ylabel(f"energy per inference\n({_unit(d)})")

    _stacked_layers(ax_d, [r["name"] for r in dyn], dyn_energy, [r["role"] for r in dyn])
    change = e["dynamic"] / e["original"] - 1 if e["original"] else 0.0
    ax_d.set_title(f"Dynamic model — {fmt_energy(e['dynamic'])} expected per inference "
                   f"({abs(change):.1%} {'less' if change <= 0 else 'more'})" if e["original"] else
                   "Dynamic model", loc="left", fontsize=11, pad=14)
    ax_d.set_ylabel(f"expected energy per inference\n(mild layers × p = {p:.3f})")
    if not orig:
        ax_o.text(0.5, 0.5, "no per-layer data", transform=ax_o.transAxes, ha="center")
    if not dyn:
        ax_d.text(0.5, 0.5, "no per-layer data", transform=ax_d.transAxes, ha="center")

    # Per-level totals: where the saving comes from.
    bl = e["by_level"]
    xs = range(len(MEMORY_LEVELS))
    w = 0.38
    o_vals = [bl["original"][lvl] for lvl in MEMORY_LEVELS]
    d_vals = [bl["dynamic"][lvl] for lvl in MEMORY_LEVELS]
    colors = [LEVEL_COLORS[lvl] for lvl in MEMORY_LEVELS]
    ax_t.bar([x - w / 2 for x in xs], o_vals, w, color=colors, edgecolor="black", linewidth=0.6)
    ax_t.bar([x + w / 2 for x in xs], d_vals, w, color=colors, alpha=0.55, hatch="//",
             edgecolor="black", linewidth=0.6)
    for x, a, b in zip(xs, o_vals, d_vals, strict=True):
        if a > 0:
            ax_t.annotate(_reduction(a, b), (x + w / 2, b), textcoords="offset points",
                          xytext=(0, 3), ha="center", va="bottom", fontsize=8)
    ax_t.set_xticks(list(xs))
    ax_t.set_xticklabels([LEVEL_LABELS[lvl] for lvl in MEMORY_LEVELS], rotation=35, ha="right",
                         fontsize=8)
    ax_t.set_ylabel(f"energy per inference ({_unit(d)})")
    ax_t.set_title("Totals per memory level", loc="left", fontsize=11)
    ax_t.grid(axis="y", alpha=0.3)
    ax_t.set_axisbelow(True)
    ax_t.legend(handles=[Patch(facecolor="#999999", edgecolor="black", label="original"),
                         Patch(facecolor="#999999", alpha=0.55, hatch="//", edgecolor="black",
                               label="dynamic (expected)")], fontsize=8, loc="upper left")

    level_handles = [Patch(facecolor=LEVEL_COLORS[lvl], label=LEVEL_LABELS[lvl])
                     for lvl in reversed(MEMORY_LEVELS)]
    ax_o.legend(handles=level_handles, fontsize=8, ncol=len(level_handles), frameon=False,
                loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
    present = [r for r in ROLES if any(rec["role"] == r for rec in dyn)]
    role_handles = [Patch(facecolor="white", edgecolor=ROLE_COLORS[r], hatch=ROLE_HATCH[r],
                          label=r + (f" (× p = {p:.3f})" if r == "mild" else "")) for r in present]
    if role_handles:
        ax_d.legend(handles=role_handles, title="role", fontsize=8, title_fontsize=8,
                    loc="upper right", framealpha=0.9)
    m = d["model"]
    fig.suptitle(f"Where the energy goes — {m['arch']} on {d['data']['name']}, {d['target']} "
                 f"(batch {d['batch']})", fontsize=13)
    return fig


def tradeoff(d: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Accuracy against energy relative to the original: is the dynamic model worth it?

    Shows single-level pruning (the alternative), the selector's threshold sweep, the chosen
    operating point, the oracle bound, the paper's result and the target region.
    """
    return write_atomic(path, png(tradeoff_figure(d)))


def tradeoff_figure(d: dict[str, Any]) -> Figure:
    """The figure :func:`tradeoff` saves."""
    e0, a0 = d["energy"]["original"], d["accuracy"]["original"]

    def rel(energy: float) -> float:
        return 100.0 * energy / e0 if e0 else 0.0

    fig = Figure(figsize=(9.0, 6.5), layout="constrained")
    ax = fig.add_subplot()
    ys: list[float] = [a0]

    # Target region: energy <= 30 % of original and accuracy >= original - 2.
    x_max = (1 - TARGET_ENERGY_REDUCTION) * 100
    y_min = a0 - TARGET_MAX_ACCURACY_DROP
    ax.add_patch(Rectangle((0, y_min), x_max, 100 - y_min, facecolor="#2ca02c", alpha=0.12,
                           edgecolor="#2ca02c", linestyle="--", linewidth=1.0,
                           label=f"target: ≤ {x_max:.0f} % energy, ≥ {y_min:.2f} % acc."))

    single = sorted(d["single_level"], key=lambda s: s["ratio"])
    if single:
        xs = [rel(s["energy"]) for s in single]
        acc = [s["accuracy"] for s in single]
        ys += acc
        ax.plot(xs, acc, "o-", color="#7f7f7f", ms=5, lw=1.5, label="single pruning level")
        for s, x, y in zip(single, xs, acc, strict=True):
            ax.annotate(f"{s['ratio']:.0%}", (x, y), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color="#555555")

    sweep, split = reported_sweep(d)
    if d.get("test_sweep") and d["sweep"]:
        cal = sorted(d["sweep"], key=lambda s: s["energy"])
        ax.plot([rel(s["energy"]) for s in cal], [s["accuracy"] for s in cal], "--", color="#6baed6",
                lw=1.4, zorder=3, label="dynamic, threshold sweep (calibration split)")
    if sweep:
        pts = sorted(sweep, key=lambda s: s["energy"])
        ys += [s["accuracy"] for s in pts]
        ax.plot([rel(s["energy"]) for s in pts], [s["accuracy"] for s in pts], ".-", color="#1f77b4",
                lw=1.8, ms=6, label=f"dynamic, threshold sweep ({split} split)")

    ax.plot([100.0], [a0], "*", color="black", ms=16, label=f"original ({a0:.2f} %)", zorder=5)
    for name, marker, color in (("mild", "s", "#17becf"), ("aggressive", "D", "#d62728")):
        lvl = d["levels"][name]
        acc = d["accuracy"][name]
        ys.append(acc)
        ax.plot([rel(d["energy"][name])], [acc], marker, color=color, ms=9, zorder=5,
                label=f"{name} alone ({lvl['ratio']:.0%} pruned)")
    o = d["oracle"]
    ys.append(o["accuracy"])
    ax.plot([rel(o["energy"])], [o["accuracy"]], "^", color="#9467bd", ms=11, zorder=5,
            mfc="none", mew=2, label=f"oracle selector (bound), p = {o['mild_share']:.2f}")
    paper_x, paper_y = (1 - PAPER_ENERGY_REDUCTION) * 100, a0 - PAPER_ACCURACY_DROP
    ys.append(paper_y)
    ax.plot([paper_x], [paper_y], "X", color="#ff7f0e", ms=10, zorder=5,
            label=f"paper (TODAES 2021): ~{PAPER_ENERGY_REDUCTION:.0%} less "
                  f"at ~{PAPER_ACCURACY_DROP:.0f} pts")

    dx, dy = rel(d["energy"]["dynamic"]), d["accuracy"]["dynamic"]
    ys.append(dy)
    # The numbers go in the legend rather than an annotation, which would hide other markers.
    ax.plot([dx], [dy], "o", color="#1f77b4", ms=14, mfc="none", mew=2.5, zorder=6,
            label=f"chosen (dynamic): {dy:.2f} % at {dx:.1f} % energy, "
                  f"τ = {d['selector']['threshold']:.3g}, p = {d['mild_share']:.2f}")

    # Keep the interesting region readable: very low accuracies (e.g. 90 % pruning with no
    # fine-tuning) would squash everything else, so they are clipped and counted.
    lo = max(min(ys) - 1.0, a0 - 15.0)
    hi = max(ys) + 1.0
    ax.set_ylim(lo, hi)
    hidden = sum(1 for y in ys if y < lo)
    if hidden:
        ax.text(0.99, 0.01, f"{hidden} point(s) below {lo:.1f} % not shown", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="#555555")
    # a dynamic model can cost more than the original (everything routed to a mild level that
    # costs more with the selector): widen the axis rather than drop the chosen point
    x_hi = max([108.0, *(1.04 * x for line in ax.get_lines() for x in line.get_xdata())])
    ax.set_xlim(0, x_hi)
    ax.set_xlabel(f"energy per inference, % of the original network (costed on {costed_on(d)['name']})")
    ax.set_ylabel(f"test accuracy (%) — {d['data']['name']}")
    ax.set_title(f"Accuracy vs energy — {d['model']['arch']} on {d['data']['name']}", fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if not hidden else "lower center")
    return fig


__all__ = ["energy_breakdown", "tradeoff", "tradeoff_figure"]
