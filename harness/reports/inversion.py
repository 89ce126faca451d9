"""Whether a metric rises and then falls over a run (context-parametric inversion), and the
gap between conjugate prompts, both paired over the same examples.

- :func:`inversion_of`: whether a metric rises and then significantly falls over one run
  (context-parametric inversion, Goyal et al. 2025); :mod:`harness.reports.recipes` asks it
  of a recipe over its seeds;
- :func:`conjugate_gap`: a conjugate prompt's metric minus the English prompt's, paired over
  the same examples, checkpoint by checkpoint.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from harness.errors import ReportError
from harness.reports.runs import CheckpointPoint, RunResults
from harness.scoring.metrics import ACCURACY, CONTEXT_RELIANCE, with_role
from harness.stats import (MONTE_CARLO_FLIPS, ChangeTest, MetricValue, bootstrap_ci, format_p, max_change_test,
                           paired_bootstrap_diff, rate_interval)

log = logging.getLogger("harness")

#: How the inversion verdict is reached, in words (the report and the demo summary say it).
INVERSION_METHOD = (
    "one-sided sign-flip max-t tests at the 5% level over the examples scored at every checkpoint (paired; "
    "exact up to 16 changing examples, else 9,999 random flips): a rise (some checkpoint above the first) and "
    "a fall (some checkpoint above the last), each allowing for the highest checkpoint having been picked; "
    "no verdict where fewer than 5 examples change, since no test at the 5% level can resolve that"
)
ALPHA = 0.05

#: Metrics of how often the model goes with what the context says: a rise and then a
#: significant fall of one of them is context-parametric inversion.
RELIANCE_METRICS = with_role(CONTEXT_RELIANCE)
#: Accuracies: a significant fall of one is the model forgetting what it could do.
ACCURACY_METRICS = with_role(ACCURACY)

#: The verdicts, in words, and whether each is a change to look at (drawn in warning colours).
INVERSION, FORGETTING, RISE_FALL, FALL, RISE, NO_CHANGE, SINGLE, NO_VERDICT = (
    "inversion", "fall (forgetting)", "rise, then fall", "fall", "rise", "no significant change", "one checkpoint",
    "no verdict")
ALARMING = frozenset({INVERSION, FORGETTING, RISE_FALL, FALL})


@dataclass(frozen=True)
class Change:
    """A difference of a metric between the peak and a reference checkpoint (``value``), and
    the max-t test's verdict that some checkpoint is above the reference
    (:func:`harness.stats.max_change_test`). ``lower`` is the one-sided lower bound that made
    the verdict: the highest of the test's simultaneous bounds, at checkpoint ``at`` (the
    peak's own bound may be lower when another checkpoint stands out more clearly). ``changing``
    examples differ from the reference somewhere; ``resolvable`` is False when they are too few
    for any test at the 5% level."""

    value: float
    lower: float
    p_value: float
    significant: bool
    at: str = ""
    changing: int = 0
    resolvable: bool = True

    def __str__(self) -> str:
        if not self.resolvable:
            return f"{self.value:+.3f} (only {self.changing} examples change: unresolvable)"
        where = f" at {self.at}" if self.at else ""
        return f"{self.value:+.3f} (>= {self.lower:+.3f}{where}, {format_p(self.p_value)})"


@dataclass(frozen=True)
class Inversion:
    """Whether a metric rises and then falls significantly over a run (see :func:`detect_inversion`).

    ``first``, ``peak`` and ``last`` are the metric over the ``n`` examples scored at every
    checkpoint; ``peak_ci`` is its confidence interval at the peak (the checkpoint where it is
    highest). ``rise`` is peak minus first and ``drop`` peak minus last, each with its lower
    bound from the max-t tests (:data:`INVERSION_METHOD`). ``reason`` says in words why the
    verdict is what it is; ``str()`` gives the verdict with every number.
    """

    task: str
    metric: str
    condition: str
    conjugate: str
    found: bool
    n: int
    first: float
    first_checkpoint: CheckpointPoint
    peak: float
    peak_ci: tuple[float, float]
    peak_checkpoint: CheckpointPoint
    last: float
    last_checkpoint: CheckpointPoint
    rise: Change
    drop: Change
    reason: str
    method: str = INVERSION_METHOD

    @property
    def peak_step(self) -> int | None:
        return self.peak_checkpoint.step

    @property
    def verdict(self) -> str:
        """The verdict in words: ``inversion`` only for a context-reliance metric
        (:data:`RELIANCE_METRICS`) that rises and then falls; a significant fall of an accuracy is
        ``fall (forgetting)``; otherwise ``rise, then fall``, ``fall``, ``rise`` or
        ``no significant change`` (``one checkpoint`` when there is nothing to compare, ``no
        verdict`` when too few examples change for a test to tell a fall or a rise from none)."""
        return verdict_for(self.metric, self.rise, self.drop)

    def __str__(self) -> str:
        return (f"{self.task} {self.metric} ({self.condition}, {self.conjugate}): {self.verdict}: {self.reason}; "
                f"first {self.first:.3f} ({self.first_checkpoint.where}), peak {self.peak:.3f} at "
                f"{self.peak_checkpoint.where}, last {self.last:.3f} ({self.last_checkpoint.where}); "
                f"rise {self.rise}, drop {self.drop}; n={self.n}")


def verdict_for(metric: str, rise: Change, drop: Change) -> str:
    """The verdict in words from the rise and fall tests (see :attr:`Inversion.verdict`)."""
    if math.isnan(drop.p_value):
        return SINGLE
    if drop.significant:
        if metric in ACCURACY_METRICS:
            return FORGETTING
        if rise.significant:
            return INVERSION if metric in RELIANCE_METRICS else RISE_FALL
        return FALL
    if not (drop.resolvable and rise.resolvable):
        return NO_VERDICT
    return RISE if rise.significant else NO_CHANGE


def inversion_of(run: RunResults, task: str, metric: str, condition: str, conjugate: str, mode: str | None = None, *,
                 n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> Inversion:
    """Whether ``metric`` of ``task`` rises and then significantly falls over one run: a verdict
    about this trajectory, on these examples (:func:`harness.reports.recipes.detect_inversion`
    takes a recipe's seeds).

    The examples scored at every checkpoint (lined up by id within ``condition`` and
    ``conjugate``) give the metric at each checkpoint; the peak is the checkpoint where it is
    highest (the earliest, on ties). An inversion is found when some checkpoint is
    significantly above the first and some checkpoint significantly above the last
    (:data:`INVERSION_METHOD`: two one-sided sign-flip max-t tests at the 5% level, which pay
    for picking the highest checkpoint on the same data; the test suite measures by
    simulation how often a rise and then a plateau is called "inversion", docs/metrics.md).
    ``confidence`` is the level of the peak's interval; ``n_resamples`` that of its bootstrap
    for means of continuous values. ``metric`` must be a mean of per-example values (rates,
    mean log-odds); ``mode`` the scoring mode of the summary rows.

    Raises :class:`ReportError` when the run has no such series or no example was scored at
    every checkpoint.
    """
    points, matrix = checkpoint_matrix(run, task, metric, condition, conjugate, mode)
    means = matrix.mean(axis=1)
    peak = int(np.argmax(means))
    if len(points) == 1:
        nothing = Change(0.0, float("nan"), float("nan"), False)
        rise = drop = nothing
        reason = "one checkpoint: nothing to compare"
    else:
        rise, drop = (change_of(test, peak, points) for test in inversion_tests(matrix, seed=seed))
        reason = reason_for(rise, drop, peak, points)
    peak_ci = (rate_interval(int(matrix[peak].sum()), matrix.shape[1], confidence) if _is_binary(matrix[peak])
               else bootstrap_ci(matrix[peak], n_resamples=n_resamples, seed=seed, confidence=confidence))
    return Inversion(
        task=task, metric=metric, condition=condition, conjugate=conjugate,
        found=rise.significant and drop.significant, n=matrix.shape[1],
        first=float(means[0]), first_checkpoint=points[0],
        peak=float(means[peak]), peak_ci=peak_ci, peak_checkpoint=points[peak],
        last=float(means[-1]), last_checkpoint=points[-1],
        rise=rise, drop=drop, reason=reason,
    )


def checkpoint_matrix(run: RunResults, task: str, metric: str, condition: str, conjugate: str,
                      mode: str | None = None) -> tuple[list[CheckpointPoint], np.ndarray]:
    """The evaluated checkpoints of a series and its (checkpoints, examples) matrix of
    per-example values over the examples scored at every checkpoint (sorted by id)."""
    rows = run.rows(task, metric, condition, conjugate, mode)
    if rows.empty:
        raise ReportError(f"run {run.name}: no {metric} results{f' ({mode})' if mode else ''} for task {task!r}, "
                          f"condition {condition!r}, conjugate {conjugate!r}")
    evaluated = set(rows["checkpoint"])
    points = [point for point in run.checkpoints if point.label in evaluated]
    per_checkpoint = [run.values(point.label, task, metric, condition, conjugate) for point in points]
    common = sorted(set.intersection(*(set(values) for values in per_checkpoint)))
    if not common:
        raise ReportError(f"run {run.name}: {task} {metric} ({condition}, {conjugate}): no example was "
                          "scored at every checkpoint")
    if any(len(values) > len(common) for values in per_checkpoint):
        log.warning("%s: %s %s (%s, %s): comparing the %d examples scored at every checkpoint (some "
                    "checkpoints have more)", run.name, task, metric, condition, conjugate, len(common))
    return points, np.array([[values[key] for key in common] for values in per_checkpoint])


def reason_for(rise: Change, drop: Change, peak: int, points: Sequence[CheckpointPoint]) -> str:
    """Why the verdict is what it is, in words."""
    if drop.significant:
        if rise.significant:
            return f"rises to a peak at {points[peak].where}, then falls by {drop.value:.3f}"
        why = ("no rise: the first checkpoint is the highest" if peak == 0 else
               f"only {rise.changing} examples change from the first checkpoint: too few for any test at the 5% "
               "level to show a rise" if not rise.resolvable else
               "no checkpoint is significantly above the first: the rise is within the noise")
        return why + f"; it falls by {drop.value:.3f} from {points[peak].where} to the last"
    for test, reference in ((drop, "last"), (rise, "first")):
        if not test.resolvable:
            return (f"only {test.changing} examples differ from the {reference} checkpoint anywhere: even if all moved "
                    f"the same way, the chance of that under no change (1/2^{test.changing}) is above 5%, so no "
                    "test can tell a change from noise")
    if not rise.significant:
        return ("no rise: the first checkpoint is the highest" if peak == 0 else
                "no checkpoint is significantly above the first: the rise is within the noise")
    if peak == len(points) - 1:
        return "no fall: the last checkpoint is the highest"
    return "no checkpoint is significantly above the last: the fall is within the noise"


def inversion_tests(matrix: np.ndarray, *, n_flips: int = MONTE_CARLO_FLIPS, seed: int = 0,
                    alpha: float = ALPHA) -> tuple[ChangeTest, ChangeTest]:
    """The two tests of the inversion verdict on a (checkpoints, examples) matrix of
    per-example values: some checkpoint above the first (rise), some above the last (fall)."""
    return (max_change_test(matrix, 0, n_flips=n_flips, seed=seed, alpha=alpha),
            max_change_test(matrix, matrix.shape[0] - 1, n_flips=n_flips, seed=seed, alpha=alpha))


def change_of(test: ChangeTest, peak: int, points: Sequence[CheckpointPoint]) -> Change:
    """The change from the test's reference to the peak, the bound that made the test's verdict
    and where it lies."""
    return Change(test.differences[peak], test.lowers[test.deciding], test.p_value, test.significant,
                  at=points[test.deciding].where if math.isfinite(test.lowers[test.deciding]) else "",
                  changing=test.changing, resolvable=test.resolvable)


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0.0, 1.0)).all())


def conjugate_gap(run: RunResults, task: str, metric: str, condition: str,
                  conjugate: str) -> list[tuple[CheckpointPoint, MetricValue]]:
    """``metric`` on ``conjugate`` minus on the base (English) prompt at each checkpoint, with a
    paired-bootstrap CI over the examples scored in both (checkpoints with none left out)."""
    base = run.base_conjugate(task)
    gaps = []
    for point in run.checkpoints:
        ours = run.values(point.label, task, metric, condition, conjugate)
        theirs = run.values(point.label, task, metric, condition, base)
        common = sorted(ours.keys() & theirs.keys())
        if common:
            gaps.append((point, paired_bootstrap_diff([ours[k] for k in common], [theirs[k] for k in common])))
    return gaps
