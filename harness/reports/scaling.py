"""Down-scaling curves: a probe's score against sparsity, relative to the dense model.

The chart of Jin et al. (2023): each probe's score on the down-scaled variants of one model
(:mod:`harness.downscaling.variants`) against the sparsity of the pruned layers, normalised to the dense
model's score, and the sparsity up to which a probe keeps 90% and 50% of it.

Normalised score: ``(score - chance) / (dense - chance)``, 1 at the dense model and 0 at
chance. ``chance`` is what a model without the ability gets: 0.5 for the two-way
log-likelihood comparisons (the target against one plausible wrong answer), 0 for generated
answers. Without it a two-way comparison could never fall below 50% of a dense score of
about 1, however broken the model. Where the dense model is not above chance the normalised
score is undefined (NaN).

Retention: the sparsity where the normalised curve first falls below a level, linearly
interpolated between the last variant above it and the first below; ``inf`` when no variant
of the sweep falls below it. The curve is read through its non-increasing least-squares fit
(isotonic regression, pool-adjacent-violators): pruning more is taken to remove ability, not
add it, so a variant that scores a few examples better than a sparser one is noise, and
without the fit one such dip before a recovery would set the threshold. Intervals are
percentile bootstraps over examples, each
resample drawing the same examples at every sparsity (the dense score is resampled with
them), so they carry the uncertainty of the dense score too; resamples whose dense score is
not above chance are left out of the normalised score's interval.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from harness.reports.runs import RunResults
from harness.errors import ReportError
from harness.scoring.metrics import METRICS
from harness.stats import bootstrap_ci, percentile_interval, rate_interval

log = logging.getLogger("harness")

#: The levels of the retention table: a probe keeps 90% and 50% of its dense score.
RETENTION_LEVELS = (0.9, 0.5)


def chance_level(metric: str) -> float:
    """The score of a model without the ability (module docstring and
    :attr:`harness.scoring.metrics.Metric.chance`): 0.5 for two-way log-likelihood
    comparisons, 0 otherwise."""
    return METRICS[metric].chance if metric in METRICS else 0.0


@dataclass(frozen=True)
class Retention:
    """The sparsity up to which a probe keeps ``level`` of its dense score, with its CI.

    ``sparsity`` (and ``ci_high``) is ``inf`` when the sweep never falls below the level (in
    more than the interval's upper tail of resamples), NaN when the dense model is at chance.
    """

    level: float
    sparsity: float
    ci_low: float
    ci_high: float

    def __str__(self) -> str:
        def show(value: float) -> str:
            return "beyond the sweep" if math.isinf(value) else ("n/a" if math.isnan(value) else f"{value:.2f}")

        if math.isinf(self.sparsity):
            return f"not reached [{show(self.ci_low)}, {show(self.ci_high)}]"
        return f"{show(self.sparsity)} [{show(self.ci_low)}, {show(self.ci_high)}]"


@dataclass(frozen=True)
class DownscalingCurve:
    """One probe (task, condition, metric) over the variants of a down-scaling run.

    Per variant, in order of sparsity: ``labels``, ``sparsity`` (measured over the pruned
    layers), ``asked``; the score and its 95% interval (``score``, ``score_low``,
    ``score_high``: Clopper–Pearson for rates) and the normalised score with its bootstrap
    interval. ``n`` examples were scored at every variant; ``retention`` has one entry per
    level of :data:`RETENTION_LEVELS`.
    """

    task: str
    condition: str
    conjugate: str
    metric: str
    chance: float
    n: int
    labels: tuple[str, ...]
    sparsity: tuple[float, ...]
    asked: tuple[float, ...]
    score: tuple[float, ...]
    score_low: tuple[float, ...]
    score_high: tuple[float, ...]
    normalised: tuple[float, ...]
    normalised_low: tuple[float, ...]
    normalised_high: tuple[float, ...]
    retention: tuple[Retention, ...]

    @property
    def name(self) -> str:
        """The probe as the chart names it: the task, and its condition where that says more."""
        return self.task if self.condition == self.task or "+" in self.condition else f"{self.task} ({self.condition})"


def _normalise(means: np.ndarray, dense: np.ndarray, chance: float) -> np.ndarray:
    """``(means - chance) / (dense - chance)``, NaN where the dense score is not above chance."""
    above = dense - chance
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(above > 0, (means - chance) / np.where(above > 0, above, 1.0), np.nan)


def non_increasing(values: np.ndarray) -> np.ndarray:
    """The non-increasing least-squares fit of each column (pool adjacent violators)."""
    columns = np.asarray(values, dtype=float).reshape(len(values), -1)
    fitted = np.empty_like(columns)
    for j in range(columns.shape[1]):
        blocks: list[list[float]] = []  # [mean, size] of each pooled run, left to right
        for value in columns[:, j]:
            blocks.append([value, 1.0])
            while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
                mean, size = blocks.pop()
                blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + mean * size) / (blocks[-1][1] + size),
                              blocks[-1][1] + size]
        fitted[:, j] = np.repeat([b[0] for b in blocks], [int(b[1]) for b in blocks])
    return fitted


def crossing(sparsity: np.ndarray, normalised: np.ndarray, level: float) -> np.ndarray:
    """Where the non-increasing fit of each column of ``normalised`` (variants x curves, in
    order of ``sparsity``) first falls below ``level``, interpolated linearly; inf where it
    never does, NaN where the curve is undefined."""
    raw = normalised.reshape(len(sparsity), -1)
    curves = non_increasing(np.where(np.isnan(raw), 0.0, raw))
    below = curves < level
    below[0] = False  # the dense model is the reference, at 1
    first = np.argmax(below, axis=0)
    found = below.any(axis=0)
    result = np.full(curves.shape[1], np.inf)
    k = first[found]
    columns = np.flatnonzero(found)
    before, after = curves[k - 1, columns], curves[k, columns]
    with np.errstate(divide="ignore", invalid="ignore"):  # undefined curves, set to NaN below
        fraction = (before - level) / (before - after)
    result[found] = sparsity[k - 1] + fraction * (sparsity[k] - sparsity[k - 1])
    result[np.isnan(raw).any(axis=0)] = np.nan
    return result


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """A percentile interval that keeps inf (not reached) as an order statistic."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail], method="inverted_cdf")
    return float(low), float(high)


def _pooled_values(run: RunResults, label: str, task: str, metric: str, conditions: list[str],
                   conjugate: str) -> dict[tuple[str, str], float]:
    return {(condition, key): value for condition in conditions
            for key, value in run.values(label, task, metric, condition, conjugate).items()}


def downscaling_curve(run: RunResults, task: str, metric: str, condition: str, conjugate: str, *,
                      n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> DownscalingCurve:
    """``metric`` of one probe over the variants of a down-scaling run (module docstring).

    ``condition`` may join several with ``+`` (``linear+mlp+tree``): their examples are pooled
    into one probe.

    Raises :class:`ReportError` when the run has no such series, no dense (sparsity 0)
    variant among those that scored it, or no example scored at every variant.
    """
    conditions = condition.split("+")
    evaluated = set.intersection(*(set(run.rows(task, metric, c, conjugate)["checkpoint"]) for c in conditions))
    points = sorted((p for p in run.checkpoints if p.label in evaluated and p.label in run.variants),
                    key=lambda p: run.variants[p.label]["sparsity"])
    if not points or run.variants[points[0].label]["sparsity"] != 0:
        raise ReportError(f"run {run.name}: {task} {metric} ({condition}): no dense (sparsity 0) variant to "
                          "normalise to")
    per_variant = [_pooled_values(run, point.label, task, metric, conditions, conjugate) for point in points]
    common = sorted(set.intersection(*(set(values) for values in per_variant)))
    if not common:
        raise ReportError(f"run {run.name}: {task} {metric} ({condition}): no example was scored at every variant")
    matrix = np.array([[values[key] for key in common] for values in per_variant])
    n = matrix.shape[1]
    means = matrix.mean(axis=1)
    binary = bool(np.isin(matrix, (0.0, 1.0)).all())
    intervals = [rate_interval(int(row.sum()), n, confidence) if binary
                 else bootstrap_ci(row, n_resamples=n_resamples, seed=seed, confidence=confidence) for row in matrix]
    chance = chance_level(metric)
    # Resampling examples is weighting them by how often they were drawn: one matrix product.
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=n_resamples).T
    resampled = matrix @ counts / n  # (variants, resamples)
    normalised = _normalise(means, means[0], chance)
    resampled_normalised = _normalise(resampled, resampled[0], chance)
    bands = [percentile_interval(row[~np.isnan(row)], confidence) if not np.isnan(normalised[0])
             else (math.nan, math.nan) for row in resampled_normalised]
    sparsity = np.array([run.variants[p.label]["achieved"] for p in points], dtype=float)
    retention = []
    for level in RETENTION_LEVELS:
        observed = float(crossing(sparsity, normalised, level)[0])
        # Undefined at the dense model's own score (at chance): no interval from the resamples
        # that happen to lie above it either.
        low, high = ((math.nan, math.nan) if math.isnan(observed)
                     else _interval(crossing(sparsity, resampled_normalised, level), confidence))
        retention.append(Retention(level, observed, low, high))
    return DownscalingCurve(
        task=task, condition=condition, conjugate=conjugate, metric=metric, chance=chance, n=n,
        labels=tuple(p.label for p in points), sparsity=tuple(float(s) for s in sparsity),
        asked=tuple(float(run.variants[p.label]["sparsity"]) for p in points),
        score=tuple(float(m) for m in means), score_low=tuple(i[0] for i in intervals),
        score_high=tuple(i[1] for i in intervals), normalised=tuple(float(v) for v in normalised),
        normalised_low=tuple(b[0] for b in bands), normalised_high=tuple(b[1] for b in bands),
        retention=tuple(retention))


def downscaling_curves(run: RunResults, *, n_resamples: int = 1000, seed: int = 0) -> tuple[list[DownscalingCurve],
                                                                                             list[str]]:
    """Every task's headline metric (base conjugate) as one curve, and the reasons for the
    tasks that could not be made one. The conditions that report the headline metric are
    pooled (icl_functions' three function classes are one probe of in-context learning; a
    knowledge-conflict task reports its headline only on conflicting contexts)."""
    curves, problems = [], []
    for task in run.tasks:
        metric = run.headline(task)
        if metric is None:
            continue
        try:
            curves.append(downscaling_curve(run, task, metric, "+".join(run.conditions(task, metric)),
                                            run.base_conjugate(task), n_resamples=n_resamples, seed=seed))
        except ReportError as error:
            problems.append(str(error))
    return curves, problems
