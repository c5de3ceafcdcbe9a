"""Analytical cost of a row-stationary mapping: accesses per level and data type, energy, cycles.

Everything is numpy-vectorized over candidate mappings so the mapper can score thousands of
them at once. The loop nest it counts (outermost first), following Eyeriss JSSC 2017:

    for each group block (g groups side by side on the array)
      for each ifmap block (n images)                     -- filters re-streamed per block
        for each ofmap-channel block (m channels)          -- psums of m channels live in the GLB
          for each strip of e ofmap rows                   -- filters re-streamed per strip
            for each channel block (q channels/PE x r PE sets)
              for each filter block (p filters/PE x t PE sets)
                processing pass: filters DRAM -> spads; ifmap tile GLB -> array (multicast);
                                 psums GLB -> array -> GLB (accumulated across channel blocks)

Conventions (calibrated on the AlexNet chip numbers, see tests/test_eyeriss_validation.py):
weights do not pass through the GLB; an ifmap tile is read from the GLB once per filter block
and reaches every PE that needs it by multicast (one array access per word); psums cost one
GLB write per channel block and one GLB read per channel block (accumulation, then the read
out to DRAM); psums travel up the R x r stacked PEs (R*r - 1 array hops); each MAC reads
ifmap, filter and psum and writes psum in the RF. With ``ifmap_resident`` the whole ifmap
block (all C channels) stays in the GLB across ofmap-channel blocks, so it is read from DRAM
once per strip instead of once per ofmap-channel block.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .hardware import Hardware
from .sparsity import LayerSparsity
from .workload import ConvShape

LEVELS = ("dram", "glb", "array", "rf")
TYPES = ("ifmap", "filter", "psum")


@lru_cache(maxsize=4096)
def strip_rows(shape: ConvShape, e: int) -> tuple[int, int, int]:
    """(strips, real ifmap rows read over all strips, rows of one strip's tile incl. padding).

    Overlapping rows (the halo between strips) are read once per strip; rows no output needs
    (skipped by a stride, or below the last window) still come along, so every ifmap row is
    fetched at least once.
    """
    strips = -(-shape.E // e)
    span = (e - 1) * shape.U + (shape.R - 1) * shape.Dh + 1
    lo_real, hi_real = shape.pad_h, shape.pad_h + shape.Hin - 1
    total, prev_hi = 0, lo_real - 1
    for s in range(strips):
        rows = min(e, shape.E - s * e)
        lo = s * e * shape.U
        hi = lo + (rows - 1) * shape.U + (shape.R - 1) * shape.Dh
        lo = min(lo, prev_hi + 1)  # rows a stride skips still come along: DRAM moves row ranges
        if s == strips - 1:
            hi = max(hi, hi_real)
        total += max(0, min(hi, hi_real) - max(lo, lo_real) + 1)
        prev_hi = max(prev_hi, hi)
    return strips, total, min(shape.H, span)


def _ceil(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -(-a // b)


def evaluate(shape: ConvShape, hw: Hardware, sp: LayerSparsity, c: dict[str, np.ndarray]) -> dict:
    """Score candidate mappings ``c`` (arrays e, h, p, q, r, t, g, n, m, res, strips, rows_total).

    Returns arrays: ``acc[level][type]`` in words, ``energy[level]``, ``energy_total``,
    ``compute_cycles``, ``dram_cycles``, ``cycles``, ``passes``, ``active_pes``, ``macs``.
    """
    s = shape
    e, h, p, q, r, t, g = c["e"], c["h"], c["p"], c["q"], c["r"], c["t"], c["g"]
    n, m, res = c["n"], c["m"], c["res"]
    strips, rows_total = c["strips"], c["rows_total"]
    f = np.float64
    macs = f(s.macs)
    ofmap = f(s.N * s.G * s.M * s.E * s.F)
    filt = f(s.G * s.M * s.C * s.R * s.S)
    sweep = f(s.N * s.G * s.C * s.Win) * rows_total          # ifmap words read in one pass over strips
    rc = _ceil(np.int64(s.R), h)                             # filter-row chunks when R > array rows
    nb = _ceil(np.int64(s.N), n)
    mb = _ceil(np.int64(s.M), m)
    ptl = p * t
    ftot = (s.M // m) * _ceil(m, ptl) + _ceil(s.M % m, ptl)  # filter blocks over all M
    cb = _ceil(np.int64(s.C), q * r) * rc                    # channel blocks (psum accumulations)
    gb = _ceil(np.int64(s.G), g)

    ifmap_fetches = np.where(res.astype(bool), 1, mb)
    dram_if = sweep * ifmap_fetches
    filt_stream = filt * nb * strips
    acc = {
        "dram": {"ifmap": dram_if * sp.dram_factor("ifmap", hw.word_bits),
                 "filter": filt_stream * sp.dram_factor("filter", hw.word_bits),
                 "psum": np.full_like(dram_if, ofmap * sp.dram_factor("ofmap", hw.word_bits))},
        "glb": {"ifmap": dram_if + sweep * ftot, "filter": np.zeros_like(dram_if),
                "psum": 2.0 * ofmap * cb},
        "array": {"ifmap": sweep * ftot, "filter": filt_stream, "psum": ofmap * cb * (h * r - 1)},
    }
    share = sp.mac_share
    acc["rf"] = {"ifmap": macs + acc["array"]["ifmap"],
                 "filter": macs * share + filt_stream * e,
                 "psum": np.full_like(dram_if, 2.0 * macs * share)}
    costs = {"dram": hw.e_dram, "glb": hw.e_glb, "array": hw.e_array, "rf": hw.e_rf}
    energy = {lvl: costs[lvl] * (acc[lvl]["ifmap"] + acc[lvl]["filter"] + acc[lvl]["psum"]) for lvl in LEVELS}
    energy["mac"] = np.full_like(dram_if, hw.e_mac * macs * share)

    passes = gb * nb * strips * ftot * cb
    load = _ceil(g * ptl * q * r * h * s.S, np.int64(1)) / hw.filter_bus_words_per_cycle
    per_pass = n * p * q * s.S * s.F + np.ceil(load)
    compute = passes.astype(f) * per_pass
    dram_words = acc["dram"]["ifmap"] + acc["dram"]["filter"] + acc["dram"]["psum"]
    dram_cycles = dram_words / hw.dram_words_per_cycle
    cycles = np.maximum(compute, dram_cycles)
    energy["static"] = hw.e_static * hw.num_pes * cycles
    total = energy["mac"] + energy["rf"] + energy["array"] + energy["glb"] + energy["dram"] + energy["static"]
    return {"acc": acc, "energy": energy, "energy_total": total, "compute_cycles": compute,
            "dram_cycles": dram_cycles, "cycles": cycles, "passes": passes,
            "active_pes": h * e * r * t * g, "macs": macs}


def data_movement(kind: str, in_elems: list[int], out_elems: int, hw: Hardware) -> dict:
    """Accesses of pooling / residual add / concatenation.

    They run on the ofmap stream between layers: pooling reads its input from and writes its
    output to the GLB; an add also fetches its second operand (the shortcut) from DRAM;
    concatenation is only an address layout, so it moves nothing.
    """
    acc = {lvl: {"ifmap": 0.0, "filter": 0.0, "psum": 0.0} for lvl in LEVELS}
    if kind == "pool":
        acc["glb"]["ifmap"] = float(sum(in_elems))
        acc["glb"]["psum"] = float(out_elems)
    elif kind == "add":
        side = float(min(in_elems)) if in_elems else 0.0
        acc["dram"]["ifmap"] = side
        acc["glb"]["ifmap"] = side + float(sum(in_elems))
        acc["glb"]["psum"] = float(out_elems)
    costs = {"dram": hw.e_dram, "glb": hw.e_glb, "array": hw.e_array, "rf": hw.e_rf}
    energy = {lvl: costs[lvl] * sum(acc[lvl].values()) for lvl in LEVELS}
    energy["mac"] = 0.0
    dram = sum(acc["dram"].values())
    glb = sum(acc["glb"].values())
    # the GLB traffic overlaps the next layer's passes; only the DRAM transfer can stall
    del glb
    cycles = dram / hw.dram_words_per_cycle
    return {"acc": acc, "energy": energy, "cycles": cycles}


__all__ = ["evaluate", "data_movement", "strip_rows", "LEVELS", "TYPES"]
