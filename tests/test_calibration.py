"""Calibration of the inversion verdicts by simulation: how often a rise and then a plateau is
called "inversion" (the false-inversion rate, nominally at most 5%), for one run and for a
recipe's seeds, and how often a real fall of 0.10 is found (power); and how often the 95%
interval of a mitigation's drop (and peak) minus the standard recipe's, over 3 seeds each,
covers the true difference.

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
from harness.stats import replicate_max_test, seed_difference

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


def seed_curves(rates, seed_effects: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Each seed's curve over independent checkpoints: the rate at checkpoint t of n examples
    whose population rate is ``rates[t]`` plus that seed's effect (``seed_effects``: (..., checkpoints))."""
    return rng.binomial(n, np.clip(np.asarray(rates) + seed_effects, 0, 1)) / n


def drop_and_peak(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each curve's drop (its highest checkpoint minus its last) and peak, as a run's verdict has them."""
    peak = curves.max(axis=-1)
    return peak - curves[..., -1], peak


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_intervals_of_a_mitigation_against_a_recipe_over_3_seeds_cover(paired):
    # The standard recipe falls by .10 (FALL); the mitigation plateaus. Each of 3 seeds wanders
    # (sd .04 a checkpoint); paired seeds share half of that variance (the same seed: data order,
    # initialisation), unpaired ones are independent. The truth is the difference of the mean
    # drop (and peak) of a seed of each recipe, from 200,000 simulated seeds.
    rng = np.random.default_rng(7)
    shared = 0.5 if paired else 0.0
    n, seeds, pairs, truths = 300, 3, 400, 200_000

    def effects(size):
        common = rng.normal(0, SEED_SD, (*size, len(FALL)))
        own = [rng.normal(0, SEED_SD, (*size, len(FALL))) for _ in range(2)]
        return [math.sqrt(shared) * common + math.sqrt(1 - shared) * mine for mine in own]

    standard, mitigated = effects((truths,))
    (drop_s, peak_s), (drop_m, peak_m) = (drop_and_peak(seed_curves(rates, e, n, rng))
                                          for rates, e in ((FALL, standard), (PLATEAU, mitigated)))
    truth = {"drop": drop_m.mean() - drop_s.mean(), "peak": peak_m.mean() - peak_s.mean()}
    standard, mitigated = effects((pairs, seeds))
    values = {"standard": drop_and_peak(seed_curves(FALL, standard, n, rng)),
              "mitigated": drop_and_peak(seed_curves(PLATEAU, mitigated, n, rng))}
    tolerance = 3 * math.sqrt(0.95 * 0.05 / pairs)
    for which, index in (("drop", 0), ("peak", 1)):
        intervals = [seed_difference(values["mitigated"][index][i], values["standard"][index][i], paired=paired)
                     for i in range(pairs)]
        coverage = np.mean([i.low <= truth[which] <= i.high for i in intervals])
        width = np.median([i.high - i.low for i in intervals])
        print(f"\n{'paired' if paired else 'Welch'} 95% interval of the {which} difference over 3 seeds "
              f"(truth {truth[which]:+.3f}): coverage {coverage:.1%} of {pairs} (95% +- {tolerance:.1%}), "
              f"median width {width:.3f}")
        assert abs(coverage - 0.95) <= tolerance
