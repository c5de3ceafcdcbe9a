"""Sparsity: what the Eyeriss chip does with zeros.

* Zero gating: a PE that reads a zero ifmap skips the filter read, the MAC and the psum
  update (only the ifmap read remains); cycles are not saved (the chip gates, it does
  not skip).
* Run-length compression (RLC) of ifmaps read from and ofmaps written to DRAM: one 64-bit
  word holds three (5-bit run, 16-bit level) pairs, with one bit left over; a chip with other
  words packs as many (5-bit run, word) pairs into 63 bits as fit. It is bypassed where it would
  not help.
* Unstructured weight sparsity (option, off by default): zero weights gate MACs the same
  way and the filter stream is run-length compressed too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

RLC_RUN_BITS = 5
RLC_MAX_RUN = 2**RLC_RUN_BITS - 1


def rlc_factor(zero_share: float, word_bits: int = 16) -> float:
    """Compressed / raw size of a stream whose values are zero with probability ``zero_share``.

    Each nonzero costs one pair; a run of more than 31 zeros costs an extra (run, 0) pair per
    32 zeros. For i.i.d. zeros the expected pairs per value are (1-z)/(1-z^32). A pair is a
    5-bit run and a ``word_bits`` level, packed into 64-bit words with one bit left over (three
    pairs of 16-bit levels on Eyeriss; none fits beside a 64-bit level, so such a chip never
    compresses). Never above 1: the chip bypasses compression that would not pay.
    """
    z = min(max(float(zero_share), 0.0), 1.0)
    pairs_per_word64 = 63 // (RLC_RUN_BITS + int(word_bits))
    if pairs_per_word64 == 0:
        return 1.0
    pairs = 1.0 / (RLC_MAX_RUN + 1) if z >= 1.0 else (1.0 - z) / (1.0 - z ** (RLC_MAX_RUN + 1))
    words_per_pair = (64 / pairs_per_word64) / word_bits
    return min(1.0, pairs * words_per_pair)


@dataclass(frozen=True)
class LayerSparsity:
    """Zero shares one layer sees, and which zero-saving features are on."""

    ifmap: float = 0.0       # share of zeros in the layer's input activations
    ofmap: float = 0.0       # share of zeros in what it writes back (the next layer's input)
    weight: float = 0.0      # share of zero weights (used only when weight_gating)
    zero_gating: bool = True
    rlc: bool = True
    weight_gating: bool = False

    @property
    def mac_share(self) -> float:
        """Share of MACs actually performed (not gated)."""
        share = 1.0 - self.ifmap if self.zero_gating else 1.0
        if self.weight_gating:
            share *= 1.0 - self.weight
        return share

    def dram_factor(self, data: str, word_bits: int = 16) -> float:
        if data == "filter":
            return rlc_factor(self.weight, word_bits) if self.weight_gating else 1.0
        if not self.rlc:
            return 1.0
        return rlc_factor(self.ifmap if data == "ifmap" else self.ofmap, word_bits)

    def key(self) -> tuple:
        """Rounded, hashable form (the mapper memoizes on it)."""
        return (round(self.ifmap, 3), round(self.ofmap, 3), round(self.weight, 3), self.zero_gating,
                self.rlc, self.weight_gating)


def zero_share(t: torch.Tensor) -> float:
    """Share of exact zeros in a tensor."""
    return float((t == 0).sum().item()) / max(1, t.numel())


__all__ = ["rlc_factor", "LayerSparsity", "zero_share"]
