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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import binomtest


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


@dataclass(frozen=True)
class ChangeTest:
    """Whether some checkpoint's mean is above a reference checkpoint's (:func:`max_change_test`).

    ``differences[t]`` is checkpoint ``t``'s mean minus the reference's (0 at the reference)
    and ``lowers[t]`` a lower confidence bound of it; the bounds hold simultaneously for every
    checkpoint, so they stay valid for a checkpoint picked after looking (the highest). The
    test is ``significant`` when some bound is above 0; ``p_value`` is the max-t test's.
    """

    reference: int
    differences: tuple[float, ...]
    lowers: tuple[float, ...]
    critical: float
    p_value: float
    alpha: float

    @property
    def significant(self) -> bool:
        return max(self.lowers) > 0


def max_change_test(values: np.ndarray, reference: int, *, n_resamples: int = 1000, seed: int = 0,
                    alpha: float = 0.05) -> ChangeTest:
    """One-sided test of "some checkpoint is above checkpoint ``reference``" over the same examples.

    ``values`` is a (checkpoints, examples) matrix of per-example values; every other row is
    compared with row ``reference``. The statistic is the largest standardised difference of
    means, max_t (m_t - m_ref) / s_t, where s_t is the paired bootstrap's standard deviation
    of that difference; its null distribution is the same bootstrap's, centred at the
    observed differences (the max-t step of Romano and Wolf), so picking the highest
    checkpoint is paid for: under "no checkpoint is above the reference" the test rejects with
    probability about ``alpha`` at most (the test suite measures it by simulation at n=300,
    11 checkpoints). The scale s_t is fixed, not re-estimated in each resample: with a handful
    of examples that change, a re-estimated scale is near 0 in most resamples and the test
    would call two examples of two hundred significant.
    """
    matrix = np.asarray(values, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] < 2 or matrix.shape[1] == 0:
        raise ValueError(f"expected a (checkpoints >= 2, examples >= 1) matrix, got shape {matrix.shape}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    n = matrix.shape[1]
    paired = matrix - matrix[reference]  # (checkpoints, examples); the reference's row is 0
    observed = paired.mean(axis=1)
    # Resampling examples with replacement is weighting each by how often it was drawn: the
    # resampled differences are one matrix product, (checkpoints, resamples).
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=n_resamples).T
    resampled = paired @ counts / n
    # A difference that is the same in every resample (every example moved alike, or the
    # reference itself) has no spread: a tiny scale makes it significant unless it is 0.
    scale = np.maximum(resampled.std(axis=1), 1e-9)
    others = [t for t in range(matrix.shape[0]) if t != reference]
    centred = ((resampled[others] - observed[others, None]) / scale[others, None]).max(axis=0)
    critical = float(np.quantile(centred, 1 - alpha))
    lowers = observed - critical * scale
    lowers[reference] = 0.0
    largest = float((observed[others] / scale[others]).max())
    return ChangeTest(reference=reference, differences=tuple(float(d) for d in observed),
                      lowers=tuple(float(b) for b in lowers), critical=critical,
                      p_value=float((centred >= largest).mean()), alpha=alpha)


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
