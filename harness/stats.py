"""Statistics of per-example values: intervals for rates and means, paired differences, and
the test behind the inversion verdict.

Everything here works on plain arrays of per-example values (one value an example), so it
knows nothing about tasks or metrics; :mod:`harness.scoring` and :mod:`harness.reports.inversion`
call it. Every procedure is deterministic for a given ``seed``. The test suite checks each by
simulation: the coverage of :func:`rate_interval`, and the false-positive rate of
:func:`max_change_test` (and its power) and of :func:`mcnemar_exact`.

- :func:`rate_interval`: the Clopper–Pearson (exact binomial) interval of a rate. Unlike a
  percentile bootstrap it does not collapse to ``[0, 0]`` at 0 of n, and it keeps its
  coverage at small n (it is conservative: at least the nominal level).
- :func:`bootstrap_ci`: percentile bootstrap, for means of continuous values (log-odds).
- :func:`paired_bootstrap_diff`: a difference of two statistics over the same examples.
- :func:`max_change_test`: is some checkpoint above a reference checkpoint, allowing for
  having picked the highest — a one-sided max-t test with a paired bootstrap.
- :func:`mcnemar_exact`: did a yes/no outcome change between two checkpoints, over the same
  examples — McNemar's test in its exact (binomial) form.
- :func:`seed_difference`: one recipe's mean over its seeds minus another's, with a t
  interval (paired by seed, else Welch's).
- :func:`holm`: Holm's step-down adjustment of a table's p-values for the number of tests.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import binomtest, ttest_ind, ttest_rel


@dataclass(frozen=True)
class MetricValue:
    """An estimate with its confidence interval and the number of examples behind it.

    ``value``, ``ci_low`` and ``ci_high`` are NaN where the metric is undefined (no examples;
    a memorisation ratio with no context or parametric answers).
    """

    value: float
    ci_low: float
    ci_high: float
    n: int


def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    # One (n_resamples, n) index matrix: every resample is drawn at once, so the statistic
    # is computed for all of them in one vectorised reduction.
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def percentile_interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if statistics.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[..., Any] = np.mean,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``statistic(values)``.

    ``statistic`` must accept ``axis=`` as numpy reductions do (``np.mean``, ``np.median``):
    it is applied once to the ``(n_resamples, n)`` matrix of resamples. The result is
    deterministic for a given ``seed``. With no values the interval is ``(nan, nan)``;
    with all values equal it is that value at both ends.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return percentile_interval(np.empty(0), confidence)
    indices = resample_indices(data.size, n_resamples, seed)
    return percentile_interval(np.asarray(statistic(data[indices], axis=1)), confidence)


def paired_bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    *,
    statistic: Callable[..., Any] = np.mean,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> MetricValue:
    """``statistic(a) - statistic(b)`` with a paired percentile-bootstrap CI.

    ``a[i]`` and ``b[i]`` must be the same example (e.g. scored at two checkpoints; see
    :func:`sample_values`); each resample draws examples and keeps both of their values, so
    the example-to-example variation shared by ``a`` and ``b`` cancels and the interval is
    much narrower than one from independent resamples. ``statistic`` must accept ``axis=``.
    Identical inputs give ``0`` with CI ``[0, 0]``; empty inputs give NaN.
    """
    first = np.asarray(a, dtype=float)
    second = np.asarray(b, dtype=float)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(
            f"paired samples must be 1-d and of equal length, got {first.shape} and {second.shape}"
        )
    n = first.size
    if n == 0:
        low, high = percentile_interval(np.empty(0), confidence)
        return MetricValue(float("nan"), low, high, 0)
    value = float(statistic(first) - statistic(second))
    indices = resample_indices(n, n_resamples, seed)
    differences = np.asarray(statistic(first[indices], axis=1)) - np.asarray(
        statistic(second[indices], axis=1)
    )
    low, high = percentile_interval(differences, confidence)
    return MetricValue(value, low, high, n)


def rate_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson interval of a rate of ``successes`` in ``n``: (nan, nan) when n is 0."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n == 0:
        return float("nan"), float("nan")
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)


#: Below this many examples that change, a sign-flip test enumerates every sign pattern
#: (2**16 = 65,536); above it, it draws :data:`MONTE_CARLO_FLIPS` random ones.
EXACT_UP_TO = 16
MONTE_CARLO_FLIPS = 9_999


@dataclass(frozen=True)
class ChangeTest:
    """Whether some checkpoint's mean is above a reference checkpoint's (:func:`max_change_test`).

    ``differences[t]`` is checkpoint ``t``'s mean minus the reference's (0 at the reference)
    and ``lowers[t]`` a lower bound of it at the test's critical value (``-inf`` where no
    example changes); the test is ``significant`` (p <= alpha) exactly when some bound is at or above 0, and
    ``deciding`` is the checkpoint whose bound is highest: the one that made the verdict.
    ``changing`` is how many examples differ from the reference at some checkpoint; with so
    few that even the most lopsided outcome has a p-value above ``alpha``
    (2**-changing > alpha: 1 to 4 at the 5% level) the test cannot resolve anything and
    ``resolvable`` is False (with none, nothing changed: that is resolved). ``exact`` says
    whether every sign pattern was enumerated.
    """

    reference: int
    differences: tuple[float, ...]
    lowers: tuple[float, ...]
    critical: float
    p_value: float
    alpha: float
    changing: int
    exact: bool

    @property
    def significant(self) -> bool:
        return self.p_value <= self.alpha

    @property
    def resolvable(self) -> bool:
        return self.changing == 0 or 2.0 ** -self.changing <= self.alpha

    @property
    def deciding(self) -> int:
        return int(np.argmax(self.lowers))


def sign_patterns(m: int, *, n_flips: int = MONTE_CARLO_FLIPS, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Signs (+1/-1) for ``m`` examples, a row a pattern: all 2**m patterns when ``m`` is at
    most :data:`EXACT_UP_TO` (exact), else ``n_flips`` random ones (Monte Carlo)."""
    if m <= EXACT_UP_TO:
        bits = (np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1
        return 1.0 - 2.0 * bits, True
    return random_signs(np.random.default_rng(seed), (n_flips, m)), False


def random_signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Independent +1/-1 signs, each with probability 1/2."""
    return 1.0 - 2.0 * rng.integers(0, 2, size=shape)


def max_change_test(values: np.ndarray, reference: int, *, n_flips: int = MONTE_CARLO_FLIPS, seed: int = 0,
                    alpha: float = 0.05) -> ChangeTest:
    """One-sided test of "some checkpoint is above checkpoint ``reference``" over the same examples.

    ``values`` is a (checkpoints, examples) matrix of per-example values; every other row is
    compared with row ``reference``. Each example's vector of differences to the reference
    is d_i; the statistic is the largest standardised sum, max_t sum_i d_ti / sqrt(sum_i d_ti^2).
    Under "no checkpoint differs from the reference" each example's vector is as likely to
    point either way, so the null distribution flips the sign of whole vectors (keeping the
    correlation between checkpoints: the max-T of Westfall and Young), and picking the
    highest checkpoint is paid for. The scale is sign-invariant, so it needs no floor: with
    three examples that move together, the best p-value is 1/8 and no verdict is possible
    (``resolvable``). Exact (every pattern) up to :data:`EXACT_UP_TO` changing examples;
    above, ``n_flips`` random patterns with the observed one counted in, p = (1 + #{T* >= T})
    / (1 + n_flips), which keeps the level exactly for any ``n_flips``. The test suite
    measures the false-positive rate and power by simulation (docs/metrics.md).
    """
    matrix = np.asarray(values, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] < 2 or matrix.shape[1] == 0:
        raise ValueError(f"expected a (checkpoints >= 2, examples >= 1) matrix, got shape {matrix.shape}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    n = matrix.shape[1]
    paired = matrix - matrix[reference]  # (checkpoints, examples); the reference's row is 0
    observed = paired.mean(axis=1)
    moving = paired[:, np.abs(paired).sum(axis=0) > 0]  # examples that never change add only zeros
    # The mean's standard deviation over sign flips; a checkpoint where nothing changed has none
    # and takes no part (its difference is exactly 0).
    scale = np.sqrt((moving ** 2).sum(axis=1)) / n
    live = scale > 0
    if not live.any():
        return ChangeTest(reference, tuple(float(d) for d in observed), tuple(-np.inf for _ in observed),
                          float("inf"), 1.0, alpha, 0, True)
    signs, exact = sign_patterns(moving.shape[1], n_flips=n_flips, seed=seed)
    flipped = (signs @ moving[live].T / n / scale[live]).max(axis=1)  # (patterns,)
    largest = float((observed[live] / scale[live]).max())
    return _decide(reference, observed, scale, live, flipped, largest, alpha, int(moving.shape[1]), exact)


def _decide(reference: int, observed: np.ndarray, scale: np.ndarray, live: np.ndarray, null: np.ndarray,
            largest: float, alpha: float, changing: int, exact: bool) -> ChangeTest:
    """A max-t test's result from its observed statistic ``largest`` and its null draws: the
    p-value (a Monte Carlo one counts the observed draw in), the critical value and the
    simultaneous lower bounds observed - critical * scale."""
    # Compare with a relative tolerance: the observed pattern (all +1) must count as >= itself.
    at_least = int((null >= largest - 1e-9 * max(1.0, abs(largest))).sum())
    counted = 0 if exact else 1
    p_value = (at_least + counted) / (null.size + counted)
    # The smallest value whose tail probability is at most alpha: T >= critical <=> p <= alpha.
    ordered = np.sort(null)
    tail = (ordered.size - np.searchsorted(ordered, ordered, "left") + counted) / (ordered.size + counted)
    allowed = ordered[tail <= alpha]
    critical = float(allowed.min()) if allowed.size else float("inf")
    lowers = np.full(observed.shape, -np.inf)
    lowers[live] = observed[live] - critical * scale[live]
    return ChangeTest(reference=reference, differences=tuple(float(d) for d in observed),
                      lowers=tuple(float(b) for b in lowers), critical=critical, p_value=float(p_value),
                      alpha=alpha, changing=changing, exact=exact)


def replicate_max_test(matrices: Sequence[np.ndarray], reference: int, *, n_draws: int = MONTE_CARLO_FLIPS,
                       seed: int = 0, alpha: float = 0.05) -> ChangeTest:
    """One-sided test of "some checkpoint is above checkpoint ``reference``" for a recipe, over
    its seed replicates: the seed, not the example, is the unit a claim about the recipe
    generalises over.

    ``matrices`` holds one (checkpoints, examples) matrix per seed (the same checkpoints).
    Each seed's mean difference to the reference, d_s(t), is the recipe's difference plus a
    seed effect (variance tau^2(t), how finetuning seeds wander) plus example noise (variance
    v_s(t), known within the seed from its examples). The statistic is the random-effects
    max-t: max_t mean_s d_s(t) / sqrt(max(var_s d_s(t), mean_s v_s(t)) / S) — the spread over
    seeds, but never below what the examples alone imply, so identical seeds do not become
    certainty. Its null distribution is a parametric bootstrap: seed effects drawn with the
    estimated tau^2(t) (moment estimate) plus each seed's own example noise by sign flips, the statistic recomputed on
    each draw (so estimating tau^2 from a few seeds is paid for, like a t test's few degrees of
    freedom). ``changing`` and ``exact`` describe the examples pooled over seeds. The test
    suite measures its level with a seed effect and its power by simulation (docs/metrics.md).
    """
    seeds = [np.asarray(m, dtype=float) for m in matrices]
    if len(seeds) < 2:
        raise ValueError(f"a replicate test needs at least 2 seeds, got {len(seeds)}")
    if len({m.shape[0] for m in seeds}) != 1 or any(m.ndim != 2 or m.shape[1] == 0 for m in seeds):
        raise ValueError(f"expected (checkpoints, examples >= 1) matrices with the same checkpoints, got "
                         f"{[m.shape for m in seeds]}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    paired = [m - m[reference] for m in seeds]
    means = np.array([p.mean(axis=1) for p in paired])  # (seeds, checkpoints)
    noise = np.array([(p ** 2).sum(axis=1) / p.shape[1] ** 2 for p in paired]).mean(axis=0)  # mean_s v_s(t)
    count = len(seeds)
    spread = means.var(axis=0, ddof=1)
    live = noise > 0

    def statistic(d: np.ndarray) -> np.ndarray:
        """max_t over the live checkpoints of the random-effects t, for (..., seeds, checkpoints)."""
        scale = np.sqrt(np.maximum(d.var(axis=-2, ddof=1), noise) / count)
        return (d.mean(axis=-2)[..., live] / scale[..., live]).max(axis=-1)

    observed = means.mean(axis=0)
    changing = sum(int((np.abs(p).sum(axis=0) > 0).sum()) for p in paired)
    if not live.any():
        return ChangeTest(reference, tuple(float(d) for d in observed), tuple(-np.inf for _ in observed),
                          float("inf"), 1.0, alpha, changing, True)
    # Example noise: each seed's examples with random signs (their correlation over checkpoints
    # kept). Seed effects: normal with variance tau^2(t), independent over checkpoints — a few
    # seeds cannot estimate their correlation, and independence makes the largest of the
    # checkpoints' statistics the most extreme, so the test errs on the safe side.
    drawn = np.stack([random_signs(rng, (n_draws, p.shape[1])) @ p.T / p.shape[1] for p in paired], axis=1)
    # tau^2 itself is uncertain with few seeds: each draw takes a total variance from its
    # scaled inverse chi-square (S - 1 degrees of freedom) around the observed one, so that
    # seeds that happen to agree do not shrink the null's tails (a plug-in tau^2 did: 7% of
    # plateaus were called a fall with 3 seeds).
    total = (count - 1) * spread / rng.chisquare(count - 1, size=(n_draws, 1, observed.size))
    drawn += rng.standard_normal((n_draws, count, observed.size)) * np.sqrt(np.maximum(total - noise, 0.0))
    scale = np.sqrt(np.maximum(spread, noise) / count)
    return _decide(reference, observed, scale, live, statistic(drawn), float(statistic(means)), alpha, changing,
                   False)


def format_p(p_value: float) -> str:
    """A p-value as a table shows it: ``p=0.123``, or ``p<0.001`` (three decimals cannot show
    less, and a Monte Carlo p-value is never exactly 0)."""
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided p-value of McNemar's exact test for paired yes/no outcomes.

    ``lost`` examples went from yes to no between two checkpoints and ``gained`` from no to
    yes; examples that stayed put carry no information about a change. Under no change each
    discordant example is equally likely to go either way, so ``lost`` is binomial with
    ``lost + gained`` trials and probability 1/2. 1.0 when nothing changed.
    """
    if lost < 0 or gained < 0:
        raise ValueError(f"counts must be non-negative, got {lost} and {gained}")
    if lost + gained == 0:
        return 1.0
    return float(binomtest(lost, lost + gained, 0.5).pvalue)


@dataclass(frozen=True)
class SeedDifference:
    """A recipe's mean over its seeds minus a reference recipe's (``value``), with the
    confidence interval ``[low, high]`` of :func:`seed_difference` (NaN where there are too
    few seeds to estimate their spread). ``paired``: by seed (a t interval on the per-seed
    differences, ``df`` = pairs - 1), else Welch's interval (Welch–Satterthwaite ``df``);
    ``n`` and ``n_reference`` count the seeds."""

    value: float
    low: float
    high: float
    paired: bool
    df: float
    n: int
    n_reference: int

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.value:+.3f} (no interval: one seed)"
        return f"{self.value:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def seed_difference(values: Sequence[float], reference: Sequence[float], *, paired: bool,
                    confidence: float = 0.95) -> SeedDifference:
    """mean(``values``) - mean(``reference``), one value a seed, with a t interval over seeds.

    Paired (``values[i]`` and ``reference[i]`` come from the same seed): the one-sample t
    interval of the per-seed differences, S - 1 degrees of freedom. Unpaired: Welch's
    interval (unequal variances, Welch–Satterthwaite degrees of freedom). The seed is the unit
    (each value already averages a seed's examples, so their noise is in the spread between
    seeds). Why t and not a bootstrap: a percentile bootstrap over 3 seeds has only 10
    distinct resamples and covers well below its nominal level, while the t interval is exact
    for normal seed effects and pays for estimating the spread from few seeds. It is wide with
    3 seeds: t(2) = 4.30, so the half-width is 2.5 times the sd of the seed differences
    (docs/metrics.md; coverage by simulation in tests/test_calibration.py). Fewer than two
    seeds (pairs; or in either recipe, unpaired) give a NaN interval: no spread to estimate.
    """
    ours, theirs = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if paired and ours.shape != theirs.shape:
        raise ValueError(f"paired by seed needs equally many pairs, got {ours.size} and {theirs.size} values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    value = float(ours.mean() - theirs.mean())
    differences = ours - theirs if paired else None
    few = ours.size < 2 if paired else min(ours.size, theirs.size) < 2
    if few:
        return SeedDifference(value, float("nan"), float("nan"), paired, float("nan"), ours.size, theirs.size)
    spread = np.ptp(differences) if paired else max(np.ptp(ours), np.ptp(theirs))
    if spread == 0:  # every seed agrees: no spread, the interval is the point
        return SeedDifference(value, value, value, paired, float(ours.size - 1), ours.size, theirs.size)
    with warnings.catch_warnings():
        # scipy warns of "catastrophic cancellation" for a recipe whose seeds agree exactly (its
        # variance is then exactly 0, which Welch's interval handles); nothing is lost.
        warnings.simplefilter("ignore", RuntimeWarning)
        test = ttest_rel(ours, theirs) if paired else ttest_ind(ours, theirs, equal_var=False)
        interval = test.confidence_interval(confidence_level=confidence)
    return SeedDifference(value, float(interval.low), float(interval.high), paired, float(test.df), ours.size,
                          theirs.size)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of ``p_values`` for testing them all (NaN, no test, is
    left out of the count and stays NaN).

    With the m p-values sorted, p_(1) <= ... <= p_(m), the adjusted one is the running
    maximum of (m - j + 1) p_(j), capped at 1: rejecting where it is at most alpha keeps the
    chance of any false rejection in the whole table at most alpha, whatever the tests'
    dependence.
    """
    adjusted = np.array(p_values, dtype=float)
    tested = np.flatnonzero(~np.isnan(adjusted))
    order = tested[np.argsort(adjusted[tested], kind="stable")]
    factors = np.arange(order.size, 0, -1)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(factors * adjusted[order]))
    return adjusted
