"""Calibration of the inversion verdicts by simulation: how often a rise and then a plateau is
called "inversion" (the false-inversion rate, nominally at most 5%), for one run and for a
recipe's seeds, and how often a real fall of 0.10 is found (power).

Each simulated run is a (checkpoints, examples) matrix of 0/1 outcomes whose population rate
at checkpoint t is ``rates[t]``. Checkpoints are independent, or correlated: an example keeps
its answer from one checkpoint to the next with probability .9 (otherwise it draws again, at a
rate chosen to keep the population's). A recipe's seeds each wander around the recipe's curve
(a seed effect, sd .04 per checkpoint). The Monte Carlo tests draw 999 sign patterns here, not
9,999: their p-value counts the observed pattern in, so the level holds for any number; fewer
draws only cost a little power. Each test prints its measured rate (pytest -s shows them);
docs/metrics.md records them. A rate is checked against 5% plus two Monte Carlo standard errors
of a rate of 5% over that many runs (the margin is printed with it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.reports.inversion import inversion_tests
from harness.stats import replicate_max_test

PLATEAU = [0.2, 0.3, 0.4, 0.5] + [0.5] * 7
FALL = [0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5, 0.475, 0.45, 0.425, 0.4]  # peak - last = 0.10
FLIPS = 999
KEEP = 0.9  # correlated checkpoints: an example keeps its answer with this probability
SEED_SD = 0.04  # how far a seed's rate wanders from the recipe's, per checkpoint


def simulated_run(rates, n: int, keep: float, rng: np.random.Generator) -> np.ndarray:
    """A (checkpoints, examples) matrix of 0/1 outcomes with population rate ``rates[t]`` at
    checkpoint t (where a rate rises faster than ``keep`` allows, the population lags behind it,
    never above it); each example keeps its outcome from the previous checkpoint with
    probability ``keep``."""
    rates = np.asarray(rates, dtype=float)
    outcomes = np.empty((rates.size, n))
    outcomes[0] = rng.random(n) < rates[0]
    for t in range(1, rates.size):
        fresh = np.clip((rates[t] - keep * rates[t - 1]) / (1 - keep), 0, 1)
        redraw = rng.random(n) >= keep
        outcomes[t] = np.where(redraw, rng.random(n) < fresh, outcomes[t - 1])
    return outcomes


def margin(runs: int, level: float = 0.05) -> float:
    """Two Monte Carlo standard errors of a rate of ``level`` measured over ``runs`` runs."""
    return 2 * math.sqrt(level * (1 - level) / runs)


def single_run_rate(rates, n: int, keep: float, runs: int, seed: int = 0) -> float:
    """How often one run's verdict is "rise, then fall" (both tests significant)."""
    rng = np.random.default_rng(seed)
    found = 0
    for index in range(runs):
        rise, drop = inversion_tests(simulated_run(rates, n, keep, rng), n_flips=FLIPS, seed=index)
        found += rise.significant and drop.significant
    return found / runs


def recipe_rate(rates, n: int, keep: float, seed_sd: float, runs: int, seeds: int = 3, seed: int = 0) -> float:
    """How often a recipe's verdict over ``seeds`` seeds is "rise, then fall"."""
    rng = np.random.default_rng(seed)
    found = 0
    for index in range(runs):
        matrices = [simulated_run(np.clip(np.asarray(rates) + rng.normal(0, seed_sd, len(rates)), 0, 1), n, keep, rng)
                    for _ in range(seeds)]
        rise, drop = (replicate_max_test(matrices, reference, n_draws=FLIPS, seed=index)
                      for reference in (0, len(rates) - 1))
        found += rise.significant and drop.significant
    return found / runs


@pytest.mark.parametrize("keep", [0.0, KEEP], ids=["independent", "correlated"])
@pytest.mark.parametrize("n", [3, 10])
def test_few_examples_on_a_plateau_are_rarely_called_inversion(n, keep):
    runs = 1000
    rate = single_run_rate(PLATEAU, n, keep, runs)
    print(f"\nfalse inversions, one run, n={n}, keep={keep}: {rate:.1%} of {runs} (limit 5% + {margin(runs):.1%})")
    assert rate <= 0.05 + margin(runs)
    if n == 3:
        assert rate == 0  # three examples can never reach p <= .05 (the best is 1/8): no verdict


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0.0, KEEP], ids=["independent", "correlated"])
def test_a_plateau_of_300_examples_is_rarely_called_inversion(keep):
    runs = 600
    rate = single_run_rate(PLATEAU, 300, keep, runs)
    print(f"\nfalse inversions, one run, n=300, keep={keep}: {rate:.1%} of {runs} (limit 5% + {margin(runs):.1%})")
    assert rate <= 0.05 + margin(runs)


@pytest.mark.slow
def test_a_fall_of_ten_points_is_found_in_one_run():
    runs = 300
    rate = single_run_rate(FALL, 300, 0.0, runs)
    print(f"\npower, one run, n=300, fall 0.10: {rate:.1%} of {runs}")
    assert rate >= 0.75


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0.0, KEEP], ids=["independent", "correlated"])
def test_a_recipe_whose_seeds_wander_on_a_plateau_is_rarely_called_inversion(keep):
    # One seed of such a recipe is called "inversion" in about 30% of runs (each seed's own
    # curve does fall); the recipe's mean curve does not, and the recipe verdict says so.
    runs = 400
    rate = recipe_rate(PLATEAU, 300, keep, SEED_SD, runs)
    print(f"\nfalse inversions, recipe of 3 seeds (seed sd {SEED_SD}), n=300, keep={keep}: {rate:.1%} of {runs} "
          f"(limit 5% + {margin(runs):.1%})")
    assert rate <= 0.05 + margin(runs)


@pytest.mark.slow
def test_a_fall_shared_by_three_seeds_is_found():
    runs = 300
    rate = recipe_rate(FALL, 300, 0.0, 0.0, runs)
    print(f"\npower, recipe of 3 seeds sharing a fall of 0.10, n=300: {rate:.1%} of {runs}")
    assert rate >= 0.80
