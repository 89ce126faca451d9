"""The statistics behind every headline number, checked the way a statistician would: exact
coverage of the rate intervals, and the inversion verdict's false-positive rate and power by
simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import binom

from harness.reports.inversion import inversion_tests
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

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
DIFFICULTY = 1.0  # sd of the per-example logit offset: examples differ in how hard they are


def _offset(rate: float) -> float:
    """The logit whose rate, averaged over the examples' difficulties, is ``rate``."""
    return brentq(lambda a: (_WEIGHTS / (1 + np.exp(-(a + DIFFICULTY * _NODES)))).sum() - rate, -20, 20)


def simulated_run(rates: list[float], n: int, rng: np.random.Generator) -> np.ndarray:
    """A (checkpoints, examples) matrix of 0/1 outcomes whose population rate at checkpoint t is
    ``rates[t]``; example i has a fixed difficulty, so its outcomes are correlated over time."""
    difficulty = rng.normal(0, DIFFICULTY, n)
    logits = np.array([_offset(rate) for rate in rates])[:, None] + difficulty[None, :]
    return (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(float)


RISE_THEN_PLATEAU = [0.2, 0.3, 0.4, 0.5] + [0.5] * 7
RISE_THEN_DROP = [0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.475, 0.45, 0.425, 0.4]  # peak - last = 0.10


def _verdict(matrix: np.ndarray, seed: int) -> bool:
    rise, drop = inversion_tests(matrix, seed=seed)
    return rise.significant and drop.significant


@pytest.mark.slow
def test_a_rise_then_a_plateau_is_called_inversion_at_most_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    runs = 2000
    false_positives = sum(_verdict(simulated_run(RISE_THEN_PLATEAU, 300, rng), seed) for seed in range(runs))
    assert false_positives / runs <= 0.05


@pytest.mark.slow
def test_a_drop_of_ten_points_is_found_in_most_runs():
    rng = np.random.default_rng(0)
    runs = 500
    found = sum(_verdict(simulated_run(RISE_THEN_DROP, 300, rng), seed) for seed in range(runs))
    assert found / runs >= 0.80


def test_two_examples_in_two_hundred_are_not_a_change():
    matrix = np.zeros((3, 200))
    matrix[1, :2] = 1  # the same two examples flip at the middle checkpoint, and back
    assert not max_change_test(matrix, 0).significant and not max_change_test(matrix, 2).significant


def test_a_change_of_every_example_is_significant():
    matrix = np.zeros((3, 50))
    matrix[1] = 1
    rise, drop = inversion_tests(matrix)
    assert rise.significant and drop.significant
    assert rise.differences[1] == 1 and drop.lowers[1] > 0.9


def test_the_peak_is_paid_for_when_there_are_many_checkpoints():
    # Twenty flat checkpoints: the largest of twenty noisy differences is not a finding.
    rng = np.random.default_rng(3)
    flat = (rng.random((20, 300)) < 0.5).astype(float)
    test = max_change_test(flat, 19)
    one_pair = max_change_test(flat[[int(np.argmax(flat.mean(axis=1))), 19]], 1)
    assert test.critical > one_pair.critical  # a higher bar than one pre-registered comparison


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
