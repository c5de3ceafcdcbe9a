"""A bounded accuracy drop: the binomial bound against its definition, its coverage by
simulation, the fixed-sequence choice, and the sweep's lost/gained counts against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from prunec.accuracy_bound import drop_upper_bound, format_confidence, guaranteed_point, point_bound
from prunec.calibration import SweepPoint, choose_threshold, sweep

COSTS = {"base": 10.0, "mild": 50.0, "original": 80.0}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), data=st.data(), confidence=st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99]))
def test_the_bound_is_the_clopper_pearson_pair_of_its_definition(n: int, data, confidence: float) -> None:
    lost = data.draw(st.integers(0, n))
    gained = data.draw(st.integers(0, n - lost))
    alpha = (1 - confidence) / 2
    # with nothing gained the lower limit on p_gained is 0, so the bound is the upper limit on p_lost
    upper = float(drop_upper_bound(lost, 0, n, confidence)) / 100
    upper_none_lost = float(drop_upper_bound(0, 0, n, confidence)) / 100
    lower = upper_none_lost - float(drop_upper_bound(0, gained, n, confidence)) / 100
    # the upper limit u solves P(Bin(n, u) <= lost) = alpha; the lower limit l solves P(Bin(n, l) >= gained) = alpha
    if lost < n:
        assert binom.cdf(lost, n, upper) == pytest.approx(alpha, abs=1e-6)
    else:
        assert upper == 1.0
    assert binom.cdf(0, n, upper_none_lost) == pytest.approx(alpha, abs=1e-6)
    if gained > 0:
        assert binom.sf(gained - 1, n, lower) == pytest.approx(alpha, abs=1e-6)
    else:
        assert lower == pytest.approx(0.0, abs=1e-12)
    bound = float(drop_upper_bound(lost, gained, n, confidence))
    assert bound == pytest.approx(100 * (upper - lower), abs=1e-9)
    assert bound >= 100 * (lost - gained) / n - 1e-9  # never below the estimate


@settings(max_examples=40, deadline=None)
@given(n=st.integers(20, 5000), lost_share=st.floats(0, 0.3), gained_share=st.floats(0, 0.3))
def test_more_confidence_or_fewer_images_loosen_the_bound(n: int, lost_share: float, gained_share: float) -> None:
    lost, gained = int(lost_share * n), int(gained_share * n)
    bounds = [float(drop_upper_bound(lost, gained, n, c)) for c in (0.5, 0.8, 0.9, 0.99)]
    assert np.all(np.diff(bounds) > 0)
    quarter = drop_upper_bound(lost // 4, gained // 4, n // 4, 0.9)
    # same proportions (up to rounding) on a quarter of the images: wider by more than the rounding
    assert quarter > drop_upper_bound(lost, gained, n, 0.9) - 100 * 4 / n


@pytest.mark.parametrize("p_lost,p_gained", [(0.05, 0.02), (0.01, 0.0), (0.2, 0.15), (0.002, 0.001)])
def test_the_bound_covers_the_true_drop_at_least_as_often_as_stated(p_lost: float, p_gained: float) -> None:
    rng = np.random.default_rng(0)
    n, trials, confidence = 800, 4000, 0.9
    counts = rng.multinomial(n, [p_lost, p_gained, 1 - p_lost - p_gained], size=trials)
    bounds = drop_upper_bound(counts[:, 0], counts[:, 1], n, confidence)
    coverage = float(np.mean(bounds >= 100 * (p_lost - p_gained)))
    assert coverage >= confidence - 3 * np.sqrt(confidence * (1 - confidence) / trials)


def _population(size: int, seed: int):
    """Scores and correctness where routing fewer inputs to mild costs more accuracy."""
    rng = np.random.default_rng(seed)
    original = rng.random(size) < 0.9
    mild = np.where(rng.random(size) < 0.995, original, ~original)  # 0.4 points below the original
    hard = rng.random(size)  # how likely the aggressive network errs; the score sees it noisily
    aggressive = np.where(rng.random(size) < 0.25 * hard**2, ~original, original)  # 6.7 points below
    scores = hard + 0.3 * rng.standard_normal(size)
    return scores, aggressive, mild, original


def _population_drop(threshold: float, population) -> float:
    scores, aggressive, mild, original = population
    dynamic = np.where(scores > threshold, mild, aggressive)
    return 100 * float(original.mean() - dynamic.mean())


def test_the_bounded_threshold_keeps_the_budget_on_new_data_where_the_estimate_does_not() -> None:
    """The whole procedure, many times: calibrate on n images, judge on a large population."""
    population = _population(400_000, seed=1)
    budget, confidence, n, trials = 1.5, 0.9, 2000, 200
    rng = np.random.default_rng(2)
    over = {"estimate": 0, "bounded": 0}
    shares = {"estimate": [], "bounded": []}
    for _ in range(trials):
        idx = rng.choice(len(population[0]), n, replace=False)
        s, a, m, o = (v[idx] for v in population)
        points = sweep(s, a, m, None, COSTS, original_correct=o)
        for rule, point in (("estimate", choose_threshold(points, budget)),
                            ("bounded", choose_threshold(points, budget, confidence=confidence))):
            over[rule] += _population_drop(point.threshold, population) > budget
            shares[rule].append(point.mild_share)
    assert over["bounded"] / trials <= 1 - confidence  # the exact bound under a union bound: about 1 %
    assert over["estimate"] / trials > 3 * (1 - confidence)  # about half the time: why the bound is needed
    assert np.mean(shares["bounded"]) > np.mean(shares["estimate"])  # and what it costs


def _point(share: float, lost: int, gained: int, n: int = 1000) -> SweepPoint:
    return SweepPoint(threshold=1 - share, mild_share=share, accuracy=0.9 - (lost - gained) / n,
                      expected_energy=10 + 50 * share, accuracy_drop=100 * (lost - gained) / n,
                      samples=n, lost=lost, gained=gained)


def test_fixed_sequence_stops_at_the_first_threshold_it_cannot_certify() -> None:
    budget = 2.0
    points = [_point(0.0, 10, 5), _point(0.4, 20, 5), _point(0.7, 5, 3), _point(1.0, 2, 2)]
    bounds = [point_bound(p, 0.9) for p in points]
    assert bounds[0] < budget < bounds[1] and bounds[2] < budget and bounds[3] < budget
    chosen = guaranteed_point(points, budget, 0.9)
    # share 0.0 is certified on its own, but the sequence from share 1 stops at 0.4
    assert chosen.mild_share == 0.7 and chosen.feasible
    assert choose_threshold(points, max_accuracy_drop=budget, confidence=0.9) == chosen


def test_nothing_certifiable_routes_everything_to_mild_and_says_so() -> None:
    chosen = guaranteed_point([_point(0.0, 60, 0), _point(1.0, 30, 0)], 2.0, 0.9)
    assert chosen.mild_share == 1.0 and not chosen.feasible


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 200))
def test_sweep_counts_lost_and_gained_images_as_brute_force_routing(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(n), 1)  # ties
    aggressive, mild, original = (rng.random(n) < q for q in (0.6, 0.8, 0.85))
    points = sweep(scores, aggressive, mild, None, COSTS, original_correct=original)
    for p in points:
        dynamic = np.where(scores > p.threshold, mild, aggressive)
        assert (p.samples, p.lost, p.gained) == (n, int(np.sum(original & ~dynamic)),
                                                  int(np.sum(~original & dynamic)))
        assert p.accuracy_drop == pytest.approx(100 * (p.lost - p.gained) / n)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="confidence"):
        drop_upper_bound(1, 1, 10, 1.0)
    with pytest.raises(ValueError, match="lost"):
        drop_upper_bound(8, 5, 10, 0.9)
    with pytest.raises(ValueError, match="whole numbers"):
        drop_upper_bound(2.5, 0, 10, 0.9)
    no_counts = [SweepPoint(0.5, 0.5, 0.9, 1.0, 0.5)]
    with pytest.raises(ValueError, match="counts"):
        choose_threshold(no_counts, max_accuracy_drop=1.0, confidence=0.9)
    with pytest.raises(ValueError, match="mild_rate"):
        choose_threshold([_point(0.5, 1, 1)], mild_rate=0.5, confidence=0.9)
    assert np.isnan(point_bound(no_counts[0], 0.9))


@pytest.mark.parametrize(("confidence", "shown"), [(0.9, "90%"), (0.995, "99.5%"), (0.99999, "99.999%")])
def test_a_confidence_is_shown_without_rounding_up(confidence: float, shown: str) -> None:
    assert format_confidence(confidence) == shown
