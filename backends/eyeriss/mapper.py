"""Row-stationary mapper: search (m, n, e, p, q, r, t, g) for one layer, minimizing energy.

The search space is that of Eyeriss JSSC 2017: a logical PE set is R filter rows x e ofmap
rows (folded into strips of array width when e is wider than the array); r sets work on
different channels, t on different filters (and g on different groups of a grouped conv);
each PE holds p filters x q channels of one filter row; m ofmap channels and n images share
the global buffer. Constraints: ifmap spad q*S', filter spad p*q*S, psum spad p, the array,
and the GLB (m*n*e*F psums + the ifmap tile).

Pruning keeps it fast: for every tiling factor only the smallest value giving each distinct
block count is kept (a larger value with the same count costs the same or more), t only at
the largest that fits beside r and g unless the GLB cannot then hold m >= p*t psums (then at
every such value), and m is the largest (or largest multiple of p*t) the GLB holds. The
block counts are of M, so where the GLB caps m well below M, or filter-load cycles favour a
smaller t, the search can miss the least energy: by under 1 % in a test against every factor
value, on buffers of 2-3 KB only.
The choice is deterministic: lowest energy, then fewest cycles, then first generated.
Results are memoized per (shape, hardware, sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .cost import evaluate, strip_rows
from .hardware import Hardware
from .sparsity import LayerSparsity
from .workload import ConvShape

#: Ifmap tiles in the GLB are double-buffered.
DB = 2


class NoMapping(Exception):
    """No mapping satisfies the hardware constraints; the message says which one binds."""


@dataclass(frozen=True)
class Mapping:
    m: int
    n: int
    e: int
    p: int
    q: int
    r: int
    t: int
    g: int
    h: int
    ifmap_resident: bool
    strips: int

    def to_dict(self) -> dict:
        return {"m": self.m, "n": self.n, "e": self.e, "p": self.p, "q": self.q, "r": self.r,
                "t": self.t, "g": self.g, "pe_set_rows": self.h, "strips": self.strips,
                "ifmap_resident": self.ifmap_resident}


@lru_cache(maxsize=65536)
def _distinct_minimal(total: int, upto: int) -> tuple[int, ...]:
    """Smallest x in 1..upto for each distinct ceil(total / x)."""
    out, last = [], None
    for x in range(1, max(1, upto) + 1):
        blocks = -(-total // x)
        if blocks != last:
            out.append(x)
            last = blocks
    return tuple(out)


def _sets_capacity(hw: Hardware, h: int, e: int) -> int:
    if e <= hw.pe_cols:
        return (hw.pe_cols // e) * (hw.pe_rows // h)
    return hw.pe_rows // (h * -(-e // hw.pe_cols))


def candidates(shape: ConvShape, hw: Hardware) -> dict[str, np.ndarray]:
    """All pruned candidate mappings of ``shape`` that fit the spads, the array and the GLB."""
    s = shape
    h = s.R if s.R <= hw.pe_rows else -(-s.R // -(-s.R // hw.pe_rows))
    sx = s.S  # a dilated filter row runs on D interleaved ifmap phases, each a dense window of S
    qmax = min(s.C, hw.spad_ifmap // sx)
    if qmax < 1:
        raise NoMapping(f"a filter row spans {sx} ifmap values but the ifmap scratchpad holds "
                        f"{hw.spad_ifmap} words")
    if hw.spad_filter < s.S:
        raise NoMapping(f"a filter row of {s.S} weights exceeds the filter scratchpad "
                        f"({hw.spad_filter} words)")
    rows: list[tuple] = []
    n_vals = _distinct_minimal(s.N, s.N)

    def glb_psums(g: int, channels: int, tile_rows: int, e: int, n: int) -> int:
        """Ofmap channels of n images whose psums the GLB holds beside a double-buffered ifmap tile."""
        return max(hw.glb_words // g - DB * n * channels * tile_rows * s.W, 0) // (n * e * s.F)

    for e in sorted({-(-s.E // k) for k in range(1, s.E + 1)}, reverse=True):
        cap = _sets_capacity(hw, h, e)
        if cap < 1:
            continue
        strips, rows_total, tile_rows = strip_rows(s, e)
        for q in range(1, qmax + 1):
            pmax = min(s.M, hw.spad_psum, hw.spad_filter // (q * s.S))
            if pmax < 1:
                continue
            c_blocks = -(-s.C // q)
            p_vals = _distinct_minimal(s.M, pmax)
            for g in _distinct_minimal(s.G, min(s.G, cap)):
                for r in _distinct_minimal(c_blocks, min(c_blocks, cap // g)):
                    for p in p_vals:
                        p_blocks = -(-s.M // p)
                        t_max = min(cap // (r * g), p_blocks)
                        if t_max < 1:
                            continue
                        # the largest t costs least unless the GLB cannot hold m >= p*t psums for
                        # some n and ifmap residency: then a smaller t may fit, and cost less
                        fits = glb_psums(g, max(s.C, q * r), tile_rows, e, s.N) >= min(s.M, p * t_max)
                        t_vals = (t_max,) if fits else sorted({*_distinct_minimal(p_blocks, t_max), t_max})
                        rows.extend((e, q, p, r, t, g, strips, rows_total, tile_rows) for t in t_vals)
    if not rows:
        raise NoMapping("no PE set fits the array and scratchpads")
    base = np.array(rows, dtype=np.int64)
    k = len(base)
    nv = np.array(n_vals, dtype=np.int64)
    # cross each row with the n it admits (n images' psums of an ofmap row, n*e*F words, beside their
    # ifmap tiles must fit its GLB share: a large batch is not crossed with every row), then with
    # ifmap residency and the two m choices; row by row, n ascending, as the search breaks ties
    e0, q0, r0, g0, tile0 = base[:, 0], base[:, 1], base[:, 3], base[:, 5], base[:, 8]
    caps = (hw.glb_words // g0) // (e0 * s.F + DB * np.minimum(s.C, q0 * r0) * tile0 * s.W)
    counts = np.searchsorted(nv, caps, side="right")
    rows_of = np.repeat(np.arange(k), counts)
    n_of = nv[np.arange(len(rows_of)) - np.repeat(np.cumsum(counts) - counts, counts)]
    idx, n = np.repeat(rows_of, 4), np.repeat(n_of, 4)
    res = np.tile(np.array([0, 0, 1, 1], dtype=np.int64), len(rows_of))
    mult = np.tile(np.array([0, 1, 0, 1], dtype=np.int64), len(rows_of))
    e, q, p, r, t, g, strips, rows_total, tile_rows = (base[idx, j] for j in range(9))
    ch = np.where(res == 1, s.C, q * r)
    avail = hw.glb_words // g - DB * n * ch * tile_rows * s.W
    m_max = np.maximum(avail, 0) // (n * e * s.F)
    pt = p * t
    m = np.minimum(s.M, np.where(mult == 1, (m_max // pt) * pt, m_max))
    ok = (avail > 0) & (m >= np.minimum(s.M, pt)) & (m >= 1)
    # residency is only worth a candidate where ifmap blocks would otherwise be refetched
    ok &= (res == 0) | (m < s.M)
    if not ok.any():
        raise NoMapping(f"the global buffer ({hw.glb_bytes} bytes) cannot hold the psums of one "
                        f"ofmap row ({s.F} words) plus one ifmap tile")
    sel = np.flatnonzero(ok)
    return {"e": e[sel], "h": np.full(len(sel), h, dtype=np.int64), "p": p[sel], "q": q[sel],
            "r": r[sel], "t": t[sel], "g": g[sel], "n": n[sel], "m": m[sel], "res": res[sel],
            "strips": strips[sel], "rows_total": rows_total[sel]}


@lru_cache(maxsize=2048)
def search(shape: ConvShape, hw: Hardware, sp: LayerSparsity) -> tuple[Mapping, dict]:
    """Best mapping of ``shape`` and its scored metrics (scalars). Raises :class:`NoMapping`."""
    cand = candidates(shape, hw)
    with np.errstate(over="ignore", invalid="ignore"):  # a chip costing to inf is refused once, by the caller
        scores = evaluate(shape, hw, sp, cand)
        energy = scores["energy_total"]
        rounded = np.round(energy / max(float(energy.min()), 1e-30), 9)
    best = int(np.lexsort((np.arange(len(energy)), scores["cycles"], rounded))[0])
    return mapping_at(cand, best), _pick(scores, best)


def evaluate_mapping(shape: ConvShape, hw: Hardware, sp: LayerSparsity, mapping: Mapping) -> dict:
    """Metrics of one given mapping (e.g. the chip's own Table IV mapping)."""
    strips, rows_total, _ = strip_rows(shape, mapping.e)
    c = {k: np.array([v], dtype=np.int64) for k, v in
         {"e": mapping.e, "h": mapping.h, "p": mapping.p, "q": mapping.q, "r": mapping.r, "t": mapping.t,
          "g": mapping.g, "n": mapping.n, "m": mapping.m, "res": int(mapping.ifmap_resident),
          "strips": strips, "rows_total": rows_total}.items()}
    with np.errstate(over="ignore", invalid="ignore"):  # as in search: an overflowing chip is refused by the caller
        return _pick(evaluate(shape, hw, sp, c), 0)


PINNED_FIELDS = ("m", "n", "e", "p", "q", "r", "t")


def pinned(shape: ConvShape, hw: Hardware, sp: LayerSparsity, fields: dict[str, int]) -> tuple[Mapping, dict]:
    """Metrics of a mapping given as (m, n, e, p, q, r, t) -- e.g. the chip's own Table IV one --
    instead of searched. ``g`` (groups at once) defaults to 1; ifmap residency is whichever of
    the two fits and costs less. The scratchpads, the array and the GLB must hold it
    (:class:`NoMapping` says which does not), under the same constraints as the search.
    """
    missing = [f for f in PINNED_FIELDS if f not in fields]
    if missing:
        raise NoMapping(f"a pinned mapping needs {', '.join(PINNED_FIELDS)}; missing {', '.join(missing)}")
    unknown = sorted(set(fields) - {*PINNED_FIELDS, "g"})
    if unknown:
        raise NoMapping(f"unknown mapping parameter(s) {', '.join(unknown)}; give {', '.join(PINNED_FIELDS)} (and g)")
    f = {k: int(v) for k, v in fields.items()}
    f.setdefault("g", 1)
    if min(f.values()) < 1:
        raise NoMapping("every mapping parameter must be at least 1")
    s = shape
    bounds = {"m": s.M, "n": s.N, "e": s.E, "p": s.M, "q": s.C, "g": s.G, "r": -(-s.C // f["q"]),
              "t": -(-s.M // f["p"])}
    over = [f"{k} = {f[k]} > {v}" for k, v in bounds.items() if f[k] > v]
    if over:
        raise NoMapping(f"beyond the layer ({s.G} groups of {s.C}->{s.M} channels, {s.E} ofmap rows, batch "
                        f"{s.N}): {', '.join(over)}")
    if f["m"] < min(s.M, f["p"] * f["t"]):
        raise NoMapping(f"m = {f['m']} ofmap channels in the GLB < the p*t = {f['p'] * f['t']} the array computes")
    g = f["g"]
    h = s.R if s.R <= hw.pe_rows else -(-s.R // -(-s.R // hw.pe_rows))
    checks = [(f["q"] * s.S <= hw.spad_ifmap, f"q*S = {f['q'] * s.S} ifmap words > the scratchpad's "
               f"{hw.spad_ifmap}"),
              (f["p"] * f["q"] * s.S <= hw.spad_filter, f"p*q*S = {f['p'] * f['q'] * s.S} weights > the "
               f"filter scratchpad's {hw.spad_filter}"),
              (f["p"] <= hw.spad_psum, f"p = {f['p']} psums > the psum scratchpad's {hw.spad_psum}"),
              (f["r"] * f["t"] * g <= _sets_capacity(hw, h, f["e"]),
               f"r*t*g = {f['r'] * f['t'] * g} PE sets of {h}x{f['e']} do not fit the {hw.pe_rows}x{hw.pe_cols} array")]
    for ok, why in checks:
        if not ok:
            raise NoMapping(why)
    strips, _, tile_rows = strip_rows(s, f["e"])
    best: tuple[Mapping, dict] | None = None
    for resident in (False, True):
        mp = Mapping(m=f["m"], n=f["n"], e=f["e"], p=f["p"], q=f["q"], r=f["r"], t=f["t"], g=g, h=h,
                     ifmap_resident=resident, strips=strips)
        channels = s.C if resident else mp.q * mp.r
        if mp.g * (mp.m * mp.n * mp.e * s.F + DB * mp.n * channels * tile_rows * s.W) > hw.glb_words:
            continue
        metrics = evaluate_mapping(s, hw, sp, mp)
        if best is None or metrics["energy_total"] < best[1]["energy_total"]:
            best = (mp, metrics)
    if best is None:
        raise NoMapping(f"m*n*e*F = {f['m'] * f['n'] * f['e'] * s.F} psums plus the double-buffered ifmap tile "
                        f"exceed the global buffer ({hw.glb_words} words)")
    return best


def mapping_at(cand: dict[str, np.ndarray], i: int) -> Mapping:
    return Mapping(m=int(cand["m"][i]), n=int(cand["n"][i]), e=int(cand["e"][i]), p=int(cand["p"][i]),
                   q=int(cand["q"][i]), r=int(cand["r"][i]), t=int(cand["t"][i]), g=int(cand["g"][i]),
                   h=int(cand["h"][i]), ifmap_resident=bool(cand["res"][i]), strips=int(cand["strips"][i]))


def _pick(scores: dict, i: int) -> dict:
    def at(v):  # noqa: ANN001, ANN202
        return float(np.asarray(v).reshape(-1)[i]) if np.ndim(v) else float(v)

    return {
        "acc": {lvl: {typ: at(v) for typ, v in d.items()} for lvl, d in scores["acc"].items()},
        "energy": {k: at(v) for k, v in scores["energy"].items()},
        "energy_total": at(scores["energy_total"]),
        "compute_cycles": at(scores["compute_cycles"]),
        "dram_cycles": at(scores["dram_cycles"]),
        "cycles": at(scores["cycles"]),
        "passes": int(at(scores["passes"])),
        "active_pes": int(at(scores["active_pes"])),
        "macs": int(at(scores["macs"])),
    }


__all__ = ["Mapping", "NoMapping", "search", "candidates", "evaluate_mapping", "pinned", "PINNED_FIELDS"]
