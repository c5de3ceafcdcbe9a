"""Threshold calibration: the whole accuracy / mild-share / energy trade-off of a selector.

For a threshold ``t`` the inputs with ``score > t`` go to the mild network. Sorting the
scores once (descending) makes every possible routing a prefix of that order, so the
whole sweep is a couple of cumulative sums. Expected energy per inference is

    E = costs["base"] + share * costs["mild"]      (base = trunk + head + selector)

with costs given by the caller: the Eyeriss backend's energies, or MACs from
:func:`mac_costs` as a stand-in until a backend is available.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunec.errors import UserError


@dataclass(frozen=True)
class SweepPoint:
    """One operating point; ``feasible`` is False only on a fallback from choose_threshold."""

    threshold: float
    mild_share: float
    accuracy: float
    expected_energy: float
    accuracy_drop: float = float("nan")  # percentage points below the original
    energy_reduction: float = float("nan")  # 1 - expected_energy / costs["original"]
    feasible: bool = True
    # with the original's per-image correctness: images the dynamic model loses / gains against
    # it, out of ``samples`` (what prunec.accuracy_bound bounds the drop from)
    samples: int | None = None
    lost: int | None = None
    gained: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep(scores: Sequence[float] | np.ndarray | torch.Tensor,
          aggressive_correct: Sequence[bool] | np.ndarray | torch.Tensor,
          mild_correct: Sequence[bool] | np.ndarray | torch.Tensor,
          original_accuracy: float | None, costs: dict[str, float],
          original_correct: Sequence[bool] | np.ndarray | torch.Tensor | None = None) -> list[SweepPoint]:
    """Every distinct routing of the samples, from none routed to all routed.

    Each point records its accuracy drop against ``original_accuracy`` (percentage points)
    and its energy reduction against ``costs["original"]`` when given. Thresholds are
    midpoints between neighbouring distinct scores, so a sample exactly at a calibration
    score does not flip the decision. With the original's per-sample ``original_correct``
    (its mean stands in for a missing ``original_accuracy``) each point also counts the samples it loses
    and gains against the original, for :mod:`prunec.accuracy_bound`.
    """
    native = _native(_scores(scores))
    s = native.astype(np.float64)
    a = _np(aggressive_correct).astype(np.float64)
    m = _np(mild_correct).astype(np.float64)
    n = len(s)
    o = None if original_correct is None else _np(original_correct).astype(np.float64)
    if n == 0 or len(a) != n or len(m) != n or (o is not None and len(o) != n):
        raise ValueError("scores, aggressive_correct, mild_correct and original_correct must be non-empty and "
                         "equally long")
    if o is not None and original_accuracy is None:
        original_accuracy = float(o.mean())
    order = np.argsort(-s, kind="stable")
    s, a, m, native = s[order], a[order], m[order], native[order]
    # routing the top k: accuracy = (sum of m over the first k + sum of a over the rest) / n
    gain = np.concatenate([[0.0], np.cumsum(m - a)])
    acc = (a.sum() + gain) / n
    k = np.arange(n + 1)
    # a routing of k is reachable by a threshold only where the k-th and (k+1)-th scores differ
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[:-1] > s[1:]
    thr = np.empty(n + 1)
    thr[0] = s[0]
    thr[n] = s[-1] - 1.0
    thr[1:n] = _between(native)
    base, mild = float(costs["base"]), float(costs["mild"])
    share = k / n
    energy = base + share * mild
    drop = (original_accuracy - acc) * 100.0 if original_accuracy is not None else np.full(n + 1, np.nan)
    orig = float(costs.get("original") or 0.0)
    reduction = 1.0 - energy / orig if orig > 0 else np.full(n + 1, np.nan)
    if o is None:
        return [SweepPoint(float(thr[i]), float(share[i]), float(acc[i]), float(energy[i]),
                           float(drop[i]), float(reduction[i]))
                for i in np.flatnonzero(valid)]
    o = o[order]
    # routing the top k: the first k answer as mild, the rest as aggressive
    lost = np.concatenate([[0.0], np.cumsum(o * (1 - m))]) + _suffix_sums(o * (1 - a))
    gained = np.concatenate([[0.0], np.cumsum((1 - o) * m)]) + _suffix_sums((1 - o) * a)
    return [SweepPoint(float(thr[i]), float(share[i]), float(acc[i]), float(energy[i]),
                       float(drop[i]), float(reduction[i]), samples=n, lost=int(round(lost[i])),
                       gained=int(round(gained[i])))
            for i in np.flatnonzero(valid)]


def thresholds_for_shares(scores: Sequence[float] | np.ndarray | torch.Tensor,
                          shares: Sequence[float] | np.ndarray, whole_ties: bool = True) -> np.ndarray:
    """For each share, the threshold that sends that share of ``scores`` (rounded to whole samples) to mild;
    where equal scores straddle it, the whole run of them (``whole_ties``) or none of it.

    A sweep made on one set of scores carries over to another scorer of the same samples by share,
    not by threshold value: two selectors fitted on different samples need not share a scale.
    Thresholds follow :func:`sweep`'s convention (midpoints; ``s_max`` routes none, ``s_min - 1``
    all), so they decrease as the share grows.
    """
    s = np.sort(_native(_scores(scores)))[::-1]
    n = len(s)
    if n == 0:
        raise ValueError("no scores")
    k = np.clip(np.rint(np.asarray(shares, dtype=np.float64) * n).astype(np.int64), 0, n)
    edges = np.concatenate([[s[0]], _between(s), [s[-1] - 1]])
    if not whole_ties:  # a rate limit: a share that ends inside a run of equal scores routes none of it
        return edges[np.where(k < n, np.searchsorted(-s, -s[np.minimum(k, n - 1)], side="left"), n)
                     ].astype(np.float64)
    # a share that ends inside a run of equal scores routes the whole run: more to mild, the safe
    # side of an accuracy budget (index of the first score below the k-th one)
    after_ties = np.where(k > 0, np.searchsorted(-s, -s[np.maximum(k - 1, 0)], side="right"), 0)
    return edges[after_ties].astype(np.float64)


def _native(s: np.ndarray) -> np.ndarray:
    """Scores in their own float precision (float32 stays float32), anything else as float64."""
    return s if s.dtype in (np.float32, np.float64) else s.astype(np.float64)


def _between(s: np.ndarray) -> np.ndarray:
    """Thresholds between neighbouring scores sorted high to low, in the scores' own precision: a float32
    score is compared with a float32 threshold, and a float64 midpoint of two neighbouring float32 values
    can round onto the upper one there, routing one sample fewer than the sweep counts."""
    upper, lower = s[:-1], s[1:]
    mid = upper / 2 + lower / 2
    return np.where(mid >= upper, lower, mid).astype(np.float64)  # neighbouring floats: the lower one splits


def _suffix_sums(v: np.ndarray) -> np.ndarray:
    """``out[k] = v[k:].sum()`` for k = 0..len(v)."""
    return np.concatenate([np.cumsum(v[::-1])[::-1], [0.0]])


def choose_threshold(points: Sequence[SweepPoint], max_accuracy_drop: float | None = None,
                     mild_rate: float | None = None, original_accuracy: float | None = None,
                     confidence: float | None = None) -> SweepPoint:
    """The operating point to deploy.

    * ``max_accuracy_drop`` (percentage points against the original, as recorded by
      :func:`sweep` or given as ``original_accuracy``): the least
      expected energy whose calibration accuracy is within the drop (ties: more accurate).
      If no point qualifies, everything goes to mild and the point has ``feasible=False``.
      With ``confidence``, the drop's upper confidence bound must be within the budget
      instead of its estimate (:func:`prunec.accuracy_bound.guaranteed_point`).
    * ``mild_rate``: the largest share routed to mild that does not exceed the rate.
    """
    if not points:
        raise ValueError("empty sweep")
    if (max_accuracy_drop is None) == (mild_rate is None):
        raise ValueError("give exactly one of max_accuracy_drop and mild_rate")
    if confidence is not None:
        if max_accuracy_drop is None:
            raise ValueError("confidence bounds an accuracy budget; it does not apply to mild_rate")
        from prunec.accuracy_bound import guaranteed_point

        return guaranteed_point(points, max_accuracy_drop, confidence)
    if mild_rate is not None:
        within = [p for p in points if p.mild_share <= mild_rate + 1e-12]
        return max(within, key=lambda p: (p.mild_share, p.accuracy)) if within else points[0]
    if original_accuracy is not None:
        ok = [p for p in points if p.accuracy >= original_accuracy - max_accuracy_drop / 100.0 - 1e-12]
    elif all(np.isfinite(p.accuracy_drop) for p in points):
        ok = [p for p in points if p.accuracy_drop <= max_accuracy_drop + 1e-9]
    else:
        raise ValueError("max_accuracy_drop needs original_accuracy (in the sweep or given here)")
    if ok:
        return min(ok, key=lambda p: (p.expected_energy, -p.accuracy))
    return replace(max(points, key=lambda p: p.mild_share), feasible=False)


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula with average ranks for ties.

    ``labels`` 1 = the aggressive answer is wrong (the class a selector should score high).
    NaN when only one class is present.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over runs of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(s)]])
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


# --------------------------------------------------------------------------- costs


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> float:
    """MACs of one call (FlopCounterMode counts 2 flops per multiply-accumulate)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() / 2.0


def mac_costs(model: Any, example_input: torch.Tensor) -> dict[str, float]:
    """Per-sample MAC costs of a DynamicModel: the stand-in for energies without a backend.

    ``example_input`` should have batch size 1. ``original`` falls back to the mild
    network when the model carries no original.
    """
    x = example_input[:1]
    with torch.no_grad():
        front_out = model.front(x)
    base = count_macs(model.front, x) + count_macs(model.selector, *front_out)
    mild = count_macs(model.mild, x)
    original = count_macs(model.original, x) if model.original is not None else mild
    return {"base": base, "mild": mild, "original": original}


def _scores(values: Any) -> np.ndarray:
    """Selector scores as an array; NaN would sort anywhere and route at random, so it is refused."""
    s = _np(values)
    if np.isnan(s.astype(np.float64)).any():
        raise UserError(f"{int(np.isnan(s.astype(np.float64)).sum())} of {len(s)} selector scores are NaN: the "
                        "networks or the selector output NaN (a diverged fine-tune?); retrain with a lower --lr")
    return s


def _np(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


__all__ = ["SweepPoint", "sweep", "choose_threshold", "thresholds_for_shares", "roc_auc", "mac_costs",
           "count_macs"]
