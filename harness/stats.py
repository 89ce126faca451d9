"""Statistics of per-example values: bootstrap intervals, paired differences.

Everything here works on plain arrays of per-example values (one value an example), so it
knows nothing about tasks or metrics; :mod:`harness.scoring` and :mod:`harness.analysis`
call it. Every procedure is deterministic for a given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


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
