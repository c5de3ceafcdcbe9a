"""Threshold calibration: the vectorised sweep against brute force, the choice rules, AUC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from prunec.calibration import choose_threshold, count_macs, roc_auc, sweep, thresholds_for_shares

COSTS = {"base": 10.0, "mild": 50.0, "original": 80.0}


def _data(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(n), 2)  # plenty of ties
    agg = rng.random(n) > scores  # high score: aggressive more often wrong
    mild = rng.random(n) > 0.1
    return scores, agg, mild


def test_sweep_matches_brute_force_routing() -> None:
    scores, agg, mild = _data()
    points = sweep(scores, agg, mild, 0.9, COSTS)
    assert len(points) == len(np.unique(scores)) + 1
    for p in points:
        route = scores > p.threshold
        acc = np.where(route, mild, agg).mean()
        assert p.mild_share == pytest.approx(route.mean())
        assert p.accuracy == pytest.approx(acc)
        assert p.expected_energy == pytest.approx(10.0 + 50.0 * route.mean())
        assert p.accuracy_drop == pytest.approx((0.9 - acc) * 100)
        assert p.energy_reduction == pytest.approx(1 - p.expected_energy / 80.0)
    assert points[0].mild_share == 0 and points[-1].mild_share == 1


@given(base=st.floats(-10, 10, allow_nan=False, width=32), steps=st.lists(st.integers(0, 3), min_size=1, max_size=30),
       as_float32=st.booleans())
def test_every_sweep_threshold_routes_its_share_as_the_model_compares(base: float, steps: list[int],
                                                                      as_float32: bool) -> None:
    """Scores a few floats apart (neighbouring float32 values included): each sweep point routes
    exactly its mild_share when its threshold meets the scores as a tensor of their own dtype, as the
    deployed model compares them (a float64 midpoint once rounded onto the upper float32 score)."""
    dtype = np.float32 if as_float32 else np.float64
    values, s = [], dtype(base)
    for k in steps:  # k floats above the last score (0: a tie)
        for _ in range(k):
            s = np.nextafter(s, dtype(np.inf))
        values.append(s)
    scores = np.array(values, dtype=dtype)
    rng = np.random.default_rng(len(steps))
    for p in sweep(scores, rng.random(len(scores)) > 0.5, rng.random(len(scores)) > 0.2, 0.9, COSTS):
        routed = float((torch.from_numpy(scores) > p.threshold).double().mean())
        assert routed == pytest.approx(p.mild_share, abs=1e-12), (p.threshold, scores)


def test_choose_threshold_least_energy_within_drop() -> None:
    scores, agg, mild = _data()
    points = sweep(scores, agg, mild, mild.mean(), COSTS)
    chosen = choose_threshold(points, max_accuracy_drop=2.0)
    assert chosen.feasible and chosen.accuracy_drop <= 2.0 + 1e-9
    cheaper = [p for p in points if p.expected_energy < chosen.expected_energy]
    assert all(p.accuracy_drop > 2.0 for p in cheaper)


def test_choose_threshold_infeasible_routes_everything() -> None:
    scores, agg, mild = _data()
    points = sweep(scores, agg, mild, 1.0, COSTS)  # an original nobody can match
    chosen = choose_threshold(points, max_accuracy_drop=0.0)
    assert not chosen.feasible and chosen.mild_share == 1.0


def test_choose_threshold_mild_rate() -> None:
    scores, agg, mild = _data()
    points = sweep(scores, agg, mild, 0.9, COSTS)
    chosen = choose_threshold(points, mild_rate=0.3)
    assert chosen.mild_share <= 0.3
    assert not any(chosen.mild_share < p.mild_share <= 0.3 for p in points)
    with pytest.raises(ValueError):
        choose_threshold(points)


def test_roc_auc_matches_pair_count() -> None:
    scores, agg, _ = _data(120, seed=3)
    wrong = ~agg
    pos, neg = scores[wrong], scores[~wrong]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(scores, wrong) == pytest.approx(pairs)
    assert np.isnan(roc_auc(scores, np.zeros_like(wrong)))


def test_count_macs_of_a_linear_layer() -> None:
    assert count_macs(nn.Linear(8, 3), torch.zeros(1, 8)) == 24


@given(scores=st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=1, max_size=60),
       shares=st.lists(st.floats(0, 1), min_size=1, max_size=8), as_float32=st.booleans())
def test_thresholds_for_shares_route_those_shares(scores: list[float], shares: list[float],
                                                   as_float32: bool) -> None:
    """Each threshold routes round(share * n) samples where the scores are distinct, and where
    they tie the whole run of equal scores (never fewer: the accuracy budget's safe side); a
    larger share never gets a higher threshold; float32 scores are split as a float32 tensor
    compares them (with neighbouring floats too)."""
    s = np.asarray(scores, dtype=np.float32 if as_float32 else np.float64)
    thresholds = thresholds_for_shares(s, shares)
    want = np.rint(np.asarray(shares) * len(s)).astype(int)
    routed = np.array([int((torch.from_numpy(s) > t).sum()) for t in thresholds])
    assert (routed >= want).all()
    kth = np.sort(s)[::-1][np.maximum(want - 1, 0)]
    assert (routed[want > 0] == np.array([(s >= v).sum() for v in kth])[want > 0]).all()
    assert (routed[want == 0] == 0).all()
    if len(np.unique(s)) == len(s):
        assert (routed == want).all()
    order = np.argsort(shares, kind="stable")
    assert (np.diff(thresholds[order]) <= 0).all()
    # a rate limit (--mild-rate) rounds the other way: never more than asked, the tie left out
    capped = np.array([int((torch.from_numpy(s) > t).sum()) for t in thresholds_for_shares(s, shares, False)])
    assert (capped <= want).all()
    ordered = np.sort(s)[::-1]
    assert (capped[want < len(s)] == np.array([(s > ordered[k]).sum() for k in want[want < len(s)]])).all()
    assert (capped[want == len(s)] == len(s)).all()


def test_nan_scores_are_refused_rather_than_routed_at_random() -> None:
    from prunec.errors import UserError

    scores = np.array([0.9, np.nan, 0.1, 0.5], dtype=np.float32)
    correct = np.array([True, False, True, True])
    with pytest.raises(UserError, match="1 of 4 selector scores are NaN"):
        sweep(scores, correct, correct, None, {"base": 1.0, "mild": 1.0})
    with pytest.raises(UserError, match="1 of 4 selector scores are NaN"):
        thresholds_for_shares(torch.from_numpy(scores), [0.5])
