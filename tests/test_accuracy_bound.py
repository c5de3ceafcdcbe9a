"""A bounded accuracy drop: the test's law against brute force, the bound against its definition
and the Clopper-Pearson pair, its coverage by simulation, the fixed-sequence choice, and the
sweep's lost/gained counts against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import beta, binom, multinomial

from prunec.accuracy_bound import (
    NUISANCE_SHARE,
    certifies,
    difference_cdfs,
    drop_p_values,
    drop_upper_bound,
    format_confidence,
    guaranteed_point,
    point_bound,
)
from prunec.calibration import SweepPoint, choose_threshold, sweep

COSTS = {"base": 10.0, "mild": 50.0, "original": 80.0}


def _union_bound(lost: int, gained: int, n: int, confidence: float) -> float:
    """The Clopper-Pearson pair under a union bound: exact, and what the test is to improve on."""
    alpha = (1 - confidence) / 2
    upper = 1.0 if lost >= n else beta.ppf(1 - alpha, lost + 1, n - lost)
    lower = 0.0 if gained <= 0 else beta.ppf(alpha, gained, n - gained + 1)
    return 100 * (upper - lower)


def _difference_cdf(t: int, n: int, drop: float, share: float) -> float:
    """P(lost - gained <= t), conditioning on the discordant count (lost | d is binomial)."""
    d = np.arange(n + 1)
    q = (share + drop) / (2 * share)
    return float(np.sum(binom.pmf(d, n, share) * binom.cdf(np.floor((t + d) / 2), d, q)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), drop=st.floats(-0.5, 0.5), extra=st.floats(0, 1))
def test_the_law_of_lost_minus_gained_is_the_trinomial_s(n: int, drop: float, extra: float) -> None:
    share = abs(drop) + extra * (1 - abs(drop))
    p_lost, p_gained = (share + drop) / 2, (share - drop) / 2
    brute = np.zeros(2 * n + 1)
    for lost in range(n + 1):
        for gained in range(n + 1 - lost):
            brute[lost - gained + n] += multinomial.pmf([lost, gained, n - lost - gained], n,
                                                        [p_lost, p_gained, 1 - share])
    assert np.allclose(difference_cdfs(n, drop, [share])[0], np.cumsum(brute), atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(50, 3000), data=st.data(), confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_the_bound_is_the_least_budget_whose_p_value_is_within_one_minus_the_confidence(
        n: int, data, confidence: float) -> None:
    lost = data.draw(st.integers(0, n // 4))
    gained = data.draw(st.integers(0, n // 4))
    bound = float(drop_upper_bound(lost, gained, n, confidence))
    assert certifies(lost, gained, n, bound, confidence)
    assert not certifies(lost, gained, n, bound - 1.5e-5, confidence)
    assert bound >= 100 * (lost - gained) / n  # never below the estimate
    # the p-value is at least the largest tail probability over the nuisance set, found here on a
    # fine grid with an independent formula: the test's own grid does not miss the supremum
    gamma = NUISANCE_SHARE * (1 - confidence)
    low = 0.0 if lost + gained == 0 else beta.ppf(gamma / 2, lost + gained, n - lost - gained + 1)
    high = 1.0 if lost + gained == n else beta.ppf(1 - gamma / 2, lost + gained + 1, n - lost - gained)
    drop = bound / 100 - 1e-4
    shares = np.linspace(max(low, abs(drop)), high, 25)
    sup = max(_difference_cdf(lost - gained, n, drop, s) for s in shares if s > 0)
    assert float(drop_p_values(lost, gained, n, 100 * drop, confidence)) >= gamma + sup - 1e-9


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1000, 10000), lost_share=st.floats(0.01, 0.12), gained_share=st.floats(0.0, 0.1),
       confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_where_budgets_bind_the_bound_is_tighter_than_the_clopper_pearson_pair(
        n: int, lost_share: float, gained_share: float, confidence: float) -> None:
    lost, gained = int(lost_share * n), int(gained_share * n)
    assume(lost + gained >= 100)  # with a few discordant images the pair can be tighter (a budget hardly binds)
    assert float(drop_upper_bound(lost, gained, n, confidence)) < _union_bound(lost, gained, n, confidence)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(200, 3000), lost_share=st.floats(0, 0.3), gained_share=st.floats(0, 0.3))
def test_more_confidence_or_fewer_images_loosen_the_bound(n: int, lost_share: float, gained_share: float) -> None:
    lost, gained = int(lost_share * n), int(gained_share * n)
    bounds = [float(drop_upper_bound(lost, gained, n, c)) for c in (0.5, 0.9, 0.99)]
    assert np.all(np.diff(bounds) > 0)
    quarter = drop_upper_bound(lost // 4, gained // 4, n // 4, 0.9)
    # same proportions (up to rounding) on a quarter of the images: wider by more than the rounding
    assert quarter > drop_upper_bound(lost, gained, n, 0.9) - 100 * 4 / n


def _wrong_certification_rate(n: int, budget: float, share: float, confidence: float) -> float:
    """Exact chance, over every (lost, gained) outcome, that the test certifies a budget the truth equals."""
    drop = budget / 100
    lost, gained = (a.ravel() for a in np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij"))
    keep = lost + gained <= n
    lost, gained = lost[keep], gained[keep]
    probs = np.array([(share + drop) / 2, (share - drop) / 2, 1 - share])
    pmf = multinomial.pmf(np.stack([lost, gained, n - lost - gained], axis=1), n, probs)
    return float(np.sum(pmf * certifies(lost, gained, n, budget, confidence)))


@pytest.mark.parametrize(("n", "budget", "confidence"), [(30, 99.5, 0.9), (30, 96.0, 0.3), (5, 87.0, 0.5),
                                                         (3, 96.5, 0.9), (25, 4.0, 0.9), (30, 0.0, 0.8),
                                                         (20, -3.0, 0.9)])
def test_at_the_null_s_least_share_the_test_keeps_its_level_exactly(n: int, budget: float,
                                                                    confidence: float) -> None:
    # the least share a drop allows (all discordant images lost) is where small samples are most at risk
    for share in (abs(budget) / 100, min(1.0, abs(budget) / 100 + 0.05), 0.5 * (1 + abs(budget) / 100)):
        assert _wrong_certification_rate(n, budget, share, confidence) <= 1 - confidence + 1e-12


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), budget=st.floats(-20, 100), extra=st.floats(0, 1),
       confidence=st.sampled_from([0.3, 0.5, 0.8, 0.9, 0.99]))
def test_the_test_keeps_its_level_exactly_on_small_samples(n: int, budget: float, extra: float,
                                                          confidence: float) -> None:
    share = abs(budget) / 100 + extra * (1 - abs(budget) / 100)
    assert _wrong_certification_rate(n, budget, share, confidence) <= 1 - confidence + 1e-12


def test_many_thresholds_at_once_give_each_one_s_p_value() -> None:
    rng = np.random.default_rng(3)
    lost, gained = rng.integers(0, 300, 40), rng.integers(0, 200, 40)
    together = drop_p_values(lost, gained, 5000, 2.0, 0.9)
    alone = [float(drop_p_values(a, b, 5000, 2.0, 0.9)) for a, b in zip(lost, gained, strict=True)]
    assert np.allclose(together, alone, atol=1e-12)
    with pytest.raises(ValueError, match="finite"):
        certifies(10, 0, 100, float("nan"), 0.9)


@pytest.mark.parametrize("p_lost,p_gained", [(0.05, 0.02), (0.01, 0.0), (0.2, 0.15), (0.002, 0.001)])
def test_the_test_wrongly_certifies_the_true_drop_at_most_as_often_as_allowed(p_lost: float,
                                                                              p_gained: float) -> None:
    rng = np.random.default_rng(0)
    n, trials, confidence = 800, 4000, 0.9
    counts = rng.multinomial(n, [p_lost, p_gained, 1 - p_lost - p_gained], size=trials)
    # certifying a budget equal to the true drop is the error (the bound would be below the truth)
    wrong = float(np.mean(certifies(counts[:, 0], counts[:, 1], n, 100 * (p_lost - p_gained), confidence)))
    assert wrong <= (1 - confidence) + 3 * np.sqrt(confidence * (1 - confidence) / trials)


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
    assert over["bounded"] / trials <= 1 - confidence
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
