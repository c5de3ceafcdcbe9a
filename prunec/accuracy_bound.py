"""A threshold whose accuracy drop is bounded with a stated confidence, not just estimated.

A threshold chosen so that the calibration drop is within the budget overshoots it on new
data about half the time when the budget binds, because the calibration drop is itself a
sample. Here each threshold's drop against the original network is bounded from above:

* per calibration image, the dynamic model either *loses* an image the original classifies
  correctly, *gains* one the original gets wrong, or agrees with it; the population drop is
  ``p_lost - p_gained``;
* an exact (Clopper-Pearson) upper bound on ``p_lost`` and lower bound on ``p_gained``, each
  at ``(1 - confidence) / 2``, bound the drop with probability at least ``confidence`` (union
  bound), for any sample size;
* thresholds are tested in a fixed sequence, from routing everything to the mild network
  towards routing nothing, stopping at the first whose bound exceeds the budget. Fixed-sequence
  testing keeps the chance that *any* accepted threshold exceeds the budget below
  ``1 - confidence`` without a multiple-testing correction (as in Learn-then-Test,
  Angelopoulos et al. 2021), so the cheapest accepted one can be deployed.

What is promised: with probability at least ``confidence`` over the draw of the calibration
images, a threshold reported as meeting the budget (``feasible``) has an expected accuracy drop
on new images drawn like them of at most the budget. (A finite test set still shows sampling
noise around that expectation; where no threshold is certified, everything goes to the mild
network, which may itself lose more, and the point says so.) The bound of the chosen point is a
pointwise bound at a threshold chosen on the same images; the fixed-sequence test certifies
the budget, not that number. The promise is exact when the scores come from one fixed
function (a zero-parameter selector) and nothing else was chosen on the calibration images.
It is approximate when a learned selector is thresholded on cross-fitted scores (several
selectors, each fitted on the other folds) and when the pruning levels were searched on the
same images; :func:`caveats` names them for a report. It assumes the original network was
not trained on the calibration images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.stats import beta

#: Confidence of the bound that reports state when the threshold was chosen on the estimate.
REPORT_CONFIDENCE = 0.9


def drop_upper_bound(lost: Any, gained: Any, samples: int, confidence: float) -> np.ndarray:
    """Upper confidence bound, in percentage points, on the population accuracy drop.

    ``lost`` / ``gained``: counts (scalars or arrays) of calibration images the dynamic model
    gets wrong where the original is right / right where the original is wrong, out of
    ``samples``.
    """
    check_confidence(confidence)
    n = int(samples)
    x = np.asarray(lost, dtype=np.float64)
    y = np.asarray(gained, dtype=np.float64)
    if n != samples or n < 1 or np.any(x < 0) or np.any(y < 0) or np.any(x + y > n):
        raise ValueError(f"need 0 <= lost, gained and lost + gained <= samples ({samples})")
    if np.any(x != np.round(x)) or np.any(y != np.round(y)):
        raise ValueError("lost and gained are counts of images: whole numbers")
    alpha = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):
        upper_lost = np.where(x >= n, 1.0, beta.ppf(1.0 - alpha, x + 1, np.maximum(n - x, 1)))
        lower_gained = np.where(y <= 0, 0.0, beta.ppf(alpha, np.maximum(y, 1), n - y + 1))
    return 100.0 * (upper_lost - lower_gained)


def point_bound(point: Any, confidence: float) -> float:
    """:func:`drop_upper_bound` of one :class:`prunec.calibration.SweepPoint` (NaN without counts)."""
    if point.samples is None or point.lost is None or point.gained is None:
        return float("nan")
    return float(drop_upper_bound(point.lost, point.gained, point.samples, confidence))


def guaranteed_point(points: Sequence[Any], max_accuracy_drop: float, confidence: float) -> Any:
    """The cheapest threshold whose drop bound passes the fixed-sequence test.

    ``points`` are :class:`prunec.calibration.SweepPoint` with ``lost``/``gained``/``samples``.
    If even routing every input to the mild network cannot be certified, that point is
    returned with ``feasible=False``.
    """
    return certified_point(bounded_sequence(points, confidence), max_accuracy_drop)


def bounded_sequence(points: Sequence[Any], confidence: float) -> list[tuple[Any, float]]:
    """``(point, drop bound)`` in the order the fixed-sequence test visits them: most routed to mild first.

    The bounds do not depend on the budget, so several budgets can share one sequence.
    """
    if not points:
        raise ValueError("empty sweep")
    if any(p.samples is None or p.lost is None or p.gained is None for p in points):
        raise ValueError("a bounded threshold needs each point's lost/gained counts (sweep with original_correct)")
    ordered = sorted(points, key=lambda p: -p.mild_share)
    bounds = drop_upper_bound([p.lost for p in ordered], [p.gained for p in ordered], ordered[0].samples,
                              confidence)
    return list(zip(ordered, (float(b) for b in bounds), strict=True))


def certified_point(sequence: Sequence[tuple[Any, float]], max_accuracy_drop: float) -> Any:
    """The cheapest point of a :func:`bounded_sequence` before its first bound above the budget."""
    accepted = []
    for point, bound in sequence:
        if bound > max_accuracy_drop + 1e-9:
            break
        accepted.append(point)
    if not accepted:
        return replace(sequence[0][0], feasible=False)
    return min(accepted, key=lambda p: (p.expected_energy, -p.accuracy))


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


__all__ = ["REPORT_CONFIDENCE", "bounded_sequence", "caveats", "certified_point", "check_confidence",
           "drop_upper_bound", "format_confidence", "guaranteed_point", "point_bound"]
