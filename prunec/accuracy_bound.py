"""A threshold whose accuracy drop is bounded with a stated confidence, not just estimated.

A threshold chosen so that the calibration drop is within the budget overshoots it on new
data about half the time when the budget binds, because the calibration drop is itself a
sample. Here each threshold's drop against the original network is tested and bounded:

* per calibration image, the dynamic model either *loses* an image the original classifies
  correctly, *gains* one the original gets wrong, or agrees with it; the population drop is
  ``p_lost - p_gained``, and ``T = lost - gained`` over ``n`` images is its statistic;
* the null hypothesis "the drop is at least the budget B" is tested with an exact unconditional
  test of the paired difference (Berger & Boos 1994): the p-value is ``gamma`` plus the largest
  ``P(T <= t_observed)`` under any trinomial in the null whose discordant share
  ``s = p_lost + p_gained`` lies in its exact two-sided (Clopper-Pearson) interval at level
  ``gamma``. For a given ``s``, drops above the null's least one, ``max(B, -s)``, only make
  ``T`` larger, so that drop suffices; a drop of ``B > 0`` needs ``s >= B``. ``T``'s law is
  computed exactly (a discrete Fourier transform of the trinomial). The one approximation is
  that the largest probability over ``s`` is taken on a grid 1.1 % apart, widened outwards at
  both ends (and evaluated at ``s = B`` itself where the interval reaches below it);
* the upper confidence bound of a threshold's drop is the least budget its test certifies;
  with few discordant images it can sit above the Clopper-Pearson pair's, with many
  (where budgets bind) it is closer to the estimate (benchmarks/bench_guarantee.py compares the two);
* thresholds are tested in a fixed sequence, from routing everything to the mild network
  towards routing nothing, stopping at the first the test cannot certify. Fixed-sequence
  testing keeps the chance that *any* accepted threshold exceeds the budget below
  ``1 - confidence`` without a multiple-testing correction (as in Learn-then-Test,
  Angelopoulos et al. 2021), so the cheapest accepted one can be deployed.

What is promised: with probability at least ``confidence`` over the draw of the calibration
images, a threshold reported as meeting the budget (``feasible``) has an expected accuracy drop
on new images drawn like them of at most the budget. (A finite test set still shows sampling
noise around that expectation; where no threshold is certified, everything goes to the mild
network, which may itself lose more, and the point says so.) The bound of the chosen point is a
pointwise bound at a threshold chosen on the same images; the fixed-sequence test certifies
the budget, not that number. The promise holds when the scores come from one fixed
function (a zero-parameter selector) and nothing else was chosen on the calibration images.
It is approximate when a learned selector is thresholded on cross-fitted scores (several
selectors, each fitted on the other folds) and when the pruning levels were searched on the
same images; :func:`caveats` names them for a report. It assumes the original network was
not trained on the calibration images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.stats import beta

#: Confidence of the bound that reports state when the threshold was chosen on the estimate.
REPORT_CONFIDENCE = 0.9

#: Share of ``1 - confidence`` spent on the discordant share's confidence limit (Berger & Boos' gamma).
NUISANCE_SHARE = 0.01

# discordant shares at which the test's null is evaluated: 64 per octave, from 2**-24 to 1
_GRID = 2.0 ** (np.arange(-24 * 64, 1) / 64)
_LEVELS_PER_BLOCK = 64


def certifies(lost: Any, gained: Any, samples: int, budget: float, confidence: float) -> np.ndarray:
    """Whether each threshold's drop is below ``budget`` (points), tested at ``1 - confidence``.

    ``lost`` / ``gained``: counts (scalars or arrays) of calibration images the dynamic model
    gets wrong where the original is right / right where the original is wrong, out of
    ``samples``.
    """
    return drop_p_values(lost, gained, samples, budget, confidence) <= 1.0 - confidence


def drop_p_values(lost: Any, gained: Any, samples: int, budget: float, confidence: float) -> np.ndarray:
    """Berger-Boos p-values of "the drop is at least ``budget`` points" (see the module docstring)."""
    check_confidence(confidence)
    if not np.isfinite(budget):
        raise ValueError(f"the budget must be a finite number of points, got {budget}")
    n, x, y = _counts(lost, gained, samples)
    gamma = NUISANCE_SHARE * (1.0 - confidence)
    b = float(budget) / 100.0
    low_share, high_share = _discordant_limits(x + y, n, gamma)
    # the grid levels each null ranges over, widened outwards; a drop of b > 0 needs s >= b, and
    # the level just below b stands for s = b itself (see _peak_cdfs)
    first = np.maximum(np.searchsorted(_GRID, np.maximum(low_share, b), side="right") - 1, 0)
    last = np.minimum(np.searchsorted(_GRID, high_share, side="left"), len(_GRID) - 1)
    p = np.full(x.shape, gamma)
    live = high_share >= b  # else no trinomial with this drop has a plausible discordant share
    if np.any(live):
        p[live] += _peak_cdfs(n, b, (x - y)[live].astype(np.int64), first[live], last[live])
    return p


def drop_upper_bound(lost: Any, gained: Any, samples: int, confidence: float, tolerance: float = 1e-5
                     ) -> np.ndarray:
    """Upper confidence bound, in percentage points, on the population accuracy drop.

    The least budget :func:`certifies` accepts, by bisection to ``tolerance`` points (rounded up,
    so the bound itself is always certified).
    """
    check_confidence(confidence)
    n, x, y = _counts(lost, gained, samples)
    out = np.empty(x.shape)
    for i in np.ndindex(x.shape):
        lo = 100.0 * (x[i] - y[i]) / n  # not certified there unless the confidence is below about a half
        if certifies(x[i], y[i], n, lo, confidence):
            lo = -100.0 - tolerance  # no drop is below -100 points
        hi = 100.0 * float(_discordant_limits(x[i] + y[i], n, NUISANCE_SHARE * (1.0 - confidence))[1]) + tolerance
        while hi - lo > tolerance:
            mid = (lo + hi) / 2
            if certifies(x[i], y[i], n, mid, confidence):
                hi = mid
            else:
                lo = mid
        out[i] = hi
    return out


def point_bound(point: Any, confidence: float) -> float:
    """:func:`drop_upper_bound` of one :class:`prunec.calibration.SweepPoint` (NaN without counts)."""
    if point.samples is None or point.lost is None or point.gained is None:
        return float("nan")
    return float(drop_upper_bound(point.lost, point.gained, point.samples, confidence))


def guaranteed_point(points: Sequence[Any], max_accuracy_drop: float, confidence: float,
                     certify: Callable[..., np.ndarray] = certifies) -> Any:
    """The cheapest threshold that passes the fixed-sequence test of its drop against the budget.

    ``points`` are :class:`prunec.calibration.SweepPoint` with ``lost``/``gained``/``samples``.
    If even routing every input to the mild network cannot be certified, that point is
    returned with ``feasible=False``. ``certify`` is the per-threshold test, with the signature
    of :func:`certifies` (another one can be compared against it).
    """
    if not points:
        raise ValueError("empty sweep")
    if any(p.samples is None or p.lost is None or p.gained is None for p in points):
        raise ValueError("a bounded threshold needs each point's lost/gained counts (sweep with original_correct)")
    ordered = sorted(points, key=lambda p: -p.mild_share)  # the order the fixed-sequence test visits them
    passed = np.asarray(certify(np.array([p.lost for p in ordered]), np.array([p.gained for p in ordered]),
                                ordered[0].samples, max_accuracy_drop, confidence), dtype=bool)
    stop = int(np.argmin(passed)) if not passed.all() else len(ordered)
    if stop == 0:
        return replace(ordered[0], feasible=False)
    return min(ordered[:stop], key=lambda p: (p.expected_energy, -p.accuracy))


def _counts(lost: Any, gained: Any, samples: int) -> tuple[int, np.ndarray, np.ndarray]:
    n = int(samples)
    x = np.asarray(lost, dtype=np.float64)
    y = np.asarray(gained, dtype=np.float64)
    if n != samples or n < 1 or np.any(x < 0) or np.any(y < 0) or np.any(x + y > n):
        raise ValueError(f"need 0 <= lost, gained and lost + gained <= samples ({samples})")
    if np.any(x != np.round(x)) or np.any(y != np.round(y)):
        raise ValueError("lost and gained are counts of images: whole numbers")
    return n, x, y


def _discordant_limits(discordant: np.ndarray, n: int, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) limits on ``p_lost + p_gained``, ``gamma`` outside them in all."""
    d = np.asarray(discordant, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = np.where(d <= 0, 0.0, beta.ppf(gamma / 2, np.maximum(d, 1), n - d + 1))
        high = np.where(d >= n, 1.0, beta.ppf(1.0 - gamma / 2, d + 1, np.maximum(n - d, 1)))
    return low, high


def _peak_cdfs(n: int, drop: float, t: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Per threshold, the largest ``P(lost - gained <= t)`` over grid levels ``first .. last``.

    Level ``k`` is the share ``max(_GRID[k], drop)`` with the least drop its null allows,
    ``max(drop, -share)``. Computed a block of levels at a time, keeping only the thresholds'
    columns, so memory stays at a block times the number of thresholds.
    """
    peak = np.zeros(len(t))
    for start in range(int(first.min()), int(last.max()) + 1, _LEVELS_PER_BLOCK):
        levels = np.arange(start, min(start + _LEVELS_PER_BLOCK, int(last.max()) + 1))
        shares = np.maximum(_GRID[levels], drop)
        cdfs = difference_cdfs(n, np.maximum(drop, -shares), shares)[:, t + n]  # [level, threshold]
        inside = (levels[:, None] >= first) & (levels[:, None] <= last)
        peak = np.maximum(peak, np.where(inside, cdfs, 0.0).max(axis=0))
    return peak


def _reach(n: int, discordant: float, log_tail: float = 18 * np.log(10)) -> int:
    """A count ``lost + gained`` (which bounds ``|lost - gained|``) exceeds with probability below
    ``exp(-log_tail)``, by Bernstein's inequality, so the law can be computed on ``[-reach, reach]``."""
    variance = n * discordant * (1.0 - discordant)
    excess = (2 * log_tail / 3 + np.sqrt((2 * log_tail / 3) ** 2 + 8 * log_tail * variance)) / 2
    return int(min(n, np.ceil(n * discordant + excess)))


def difference_cdfs(n: int, drop: Any, discordant: Any) -> np.ndarray:
    """``[i, t + n] = P(lost - gained <= t)`` for ``n`` trinomial draws with ``p_lost - p_gained = drop[i]``
    and ``p_lost + p_gained = discordant[i]`` (exact, by the discrete Fourier transform of its law)."""
    d = np.atleast_1d(np.asarray(discordant, dtype=np.float64))[:, None]
    m = np.broadcast_to(np.asarray(drop, dtype=np.float64), d.shape[:1])[:, None]
    reach = _reach(n, float(d.max()))
    size = 1 << (2 * reach).bit_length()  # at least 2 reach + 1: no wrap-around
    z = np.exp(2j * np.pi * np.arange(size) / size)
    transform = ((1.0 - d) + (d + m) / 2 * z + (d - m) / 2 * np.conj(z)) ** n
    law = np.fft.fft(transform, axis=1).real / size  # index t (mod size) holds P(T = t)
    law = np.clip(np.concatenate([law[:, size - reach:], law[:, :reach + 1]], axis=1), 0.0, None)
    cdf = np.ones((len(d), 2 * n + 1))
    cdf[:, :n - reach] = 0.0
    cdf[:, n - reach:n + reach + 1] = np.minimum(np.cumsum(law, axis=1), 1.0)
    return cdf


def caveats(selector: str, levels_searched: bool) -> list[str]:
    """Why a compile's bound is approximate rather than exact (empty: exact)."""
    found = []
    if selector == "learned":
        found.append("the learned selector's threshold is chosen on cross-fitted scores of several selectors, "
                     "each fitted on the other folds, and the deployed one is fitted on all of them")
    if levels_searched:
        found.append("the pruning levels were searched on the same calibration images")
    return found


def format_confidence(confidence: float) -> str:
    """``0.9`` as ``90%``, ``0.99999`` as ``99.999%``: up to 10 significant digits, so not rounded up to 100%."""
    return f"{100 * confidence:.10g}%"


def check_confidence(confidence: float) -> None:
    """Refuse a confidence outside (0, 1), NaN included."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


__all__ = ["NUISANCE_SHARE", "REPORT_CONFIDENCE", "caveats", "certifies", "check_confidence", "difference_cdfs",
           "drop_p_values", "drop_upper_bound", "format_confidence", "guaranteed_point", "point_bound"]
