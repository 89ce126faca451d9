"""The statistics behind every headline number, checked the way a statistician would: exact
coverage of the rate intervals, and the inversion verdict's false-positive rate and power by
simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from harness import stats
from harness.reports.inversion import change_of, inversion_tests
from harness.reports.runs import CheckpointPoint
from harness.scoring import aggregate
from harness.stats import max_change_test, mcnemar_exact, rate_interval

SIZES = (10, 50, 300)
RATES = (0.0, 0.05, 0.5)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", RATES)
def test_rate_intervals_keep_their_coverage_exactly(n, p):
    # The probability that the 95% interval covers p, summed over every outcome k of n.
    coverage = sum(binom.pmf(k, n, p) for k in range(n + 1) if rate_interval(k, n)[0] <= p <= rate_interval(k, n)[1])
    assert coverage >= 0.93


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", RATES)
def test_summary_intervals_of_rates_cover_by_simulation(n, p):
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(1000):
        samples = [{"correct": bool(x)} for x in rng.random(n) < p]
        value = aggregate("accuracy", samples)
        covered += value.ci_low <= p <= value.ci_high
    assert covered / 1000 >= 0.93


def test_a_rate_of_zero_has_an_interval_that_is_not_empty():
    # The percentile bootstrap gave [0, 0] here, as if ten examples proved the rate is 0.
    value = aggregate("accuracy", [{"correct": False}] * 10)
    assert value.value == 0 and value.ci_low == 0 and value.ci_high == pytest.approx(0.3085, abs=1e-4)


# --------------------------------------------------------------------------- the inversion test

def test_two_examples_in_two_hundred_are_not_a_change():
    matrix = np.zeros((3, 200))
    matrix[1, :2] = 1  # the same two examples flip at the middle checkpoint, and back
    assert not max_change_test(matrix, 0).significant and not max_change_test(matrix, 2).significant


def test_a_change_of_every_example_is_significant():
    matrix = np.zeros((3, 50))
    matrix[1] = 1
    rise, drop = inversion_tests(matrix)
    assert rise.significant and drop.significant
    # No variance floor: fifty examples moving alike give the smallest p-value of 9,999 random
    # flips, and a bound that still allows for sampling (1 - critical * sqrt(50) / 50).
    assert rise.differences[1] == 1 and rise.p_value == 1 / 10_000 and 0.6 < drop.lowers[1] < 1


def test_three_examples_that_move_together_are_no_verdict():
    # The case: 3 examples go 0 -> 1 -> 0. The best possible p-value of any sign-flip
    # test is 1/8, so there is no verdict, not "inversion" with p = 0.
    matrix = np.zeros((3, 3))
    matrix[1] = 1
    rise, drop = inversion_tests(matrix)
    assert rise.p_value == drop.p_value == 0.125 and rise.exact
    assert not (rise.resolvable or drop.resolvable or rise.significant or drop.significant)


def test_five_examples_are_the_fewest_a_test_can_resolve():
    matrix = np.zeros((3, 5))
    matrix[1] = 1
    rise, drop = inversion_tests(matrix)
    assert rise.resolvable and rise.p_value == 1 / 32 and rise.significant and drop.significant


def test_the_exact_and_the_monte_carlo_test_agree(monkeypatch):
    rng = np.random.default_rng(4)
    matrix = (rng.random((4, 16)) < [[0.2], [0.7], [0.6], [0.3]]).astype(float)
    exact = max_change_test(matrix, 3)
    monkeypatch.setattr(stats, "EXACT_UP_TO", 0)
    sampled = max_change_test(matrix, 3, n_flips=40_000)
    assert exact.exact and not sampled.exact
    assert sampled.p_value == pytest.approx(exact.p_value, abs=0.006)  # 3 Monte Carlo standard errors


def test_the_bound_shown_is_the_one_that_made_the_verdict():
    # The peak (checkpoint 2: +20 and -8 examples, mean +.12) is less certain than checkpoint 1
    # (+10 examples, mean +.10): the verdict and the bound shown come from checkpoint 1.
    matrix = np.zeros((3, 100))
    matrix[1, :10] = 1
    matrix[2, 10:30] = 1
    matrix[:2, 30:38] = 1  # 8 examples right at the first two checkpoints, lost at the peak
    test = max_change_test(matrix, 0)
    points = [CheckpointPoint(f"c{i}", 10 * i, None, None) for i in range(3)]
    change = change_of(test, 2, points)
    assert test.significant and test.deciding == 1 and test.lowers[1] > test.lowers[2]
    assert change.value == pytest.approx(0.12) and change.lower == test.lowers[1] and change.at == "step 10"


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_exact(3, 3) == pytest.approx(1.0)
    assert mcnemar_exact(0, 0) == 1.0
    # Only the discordant items count: 1 of 9 lost against 8 gained, whatever stayed put.
    assert mcnemar_exact(1, 8) == pytest.approx(2 * binom.cdf(1, 9, 0.5))
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_mcnemar_keeps_its_false_positive_rate_by_simulation():
    # 200 items, each changing with probability 0.15, either way with equal chance: no change overall.
    rng = np.random.default_rng(0)
    runs = 4000
    changed = rng.binomial(200, 0.15, size=runs)
    lost = rng.binomial(changed, 0.5)
    rejected = np.mean([mcnemar_exact(int(a), int(n - a)) < 0.05 for a, n in zip(lost, changed)])
    assert 0.02 < rejected <= 0.05


@pytest.mark.parametrize("p, text", [(0.0, "p<0.001"), (0.0004, "p<0.001"), (0.001, "p=0.001"), (0.8481, "p=0.848")])
def test_a_p_value_below_what_three_decimals_show_is_not_printed_as_zero(p, text):
    from harness.stats import format_p

    assert format_p(p) == text
