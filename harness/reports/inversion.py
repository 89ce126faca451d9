"""Whether a metric rises and then falls over a run (context-parametric inversion), and the
gap between conjugate prompts, both paired over the same examples.

- :func:`detect_inversion`: whether a metric rises and then significantly falls over a run
  (context-parametric inversion, Goyal et al. 2025);
- :func:`conjugate_gap`: a conjugate prompt's metric minus the English prompt's, paired over
  the same examples, checkpoint by checkpoint.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.conjugates import ENGLISH
from harness.errors import ReportError
from harness.reports.runs import CheckpointPoint, RunResults
from harness.scoring import GENERATE
from harness.scoring.metrics import ACCURACY, CONTEXT_RELIANCE, with_role
from harness.stats import ChangeTest, MetricValue, bootstrap_ci, max_change_test, paired_bootstrap_diff, rate_interval

log = logging.getLogger("harness")

#: How the inversion verdict is reached, in words (the report and the demo summary say it).
INVERSION_METHOD = (
    "one-sided max-t tests at the 5% level over the examples scored at every checkpoint (paired, "
    "studentised bootstrap, 1000 resamples): a rise (some checkpoint above the first) and a fall (some "
    "checkpoint above the last), each allowing for the highest checkpoint having been picked"
)
ALPHA = 0.05

#: Metrics of how often the model goes with what the context says: a rise and then a
#: significant fall of one of them is context-parametric inversion.
RELIANCE_METRICS = with_role(CONTEXT_RELIANCE)
#: Accuracies: a significant fall of one is the model forgetting what it could do.
ACCURACY_METRICS = with_role(ACCURACY)

#: The verdicts, in words, and whether each is a change to look at (drawn in warning colours).
INVERSION, FORGETTING, RISE_FALL, FALL, RISE, NO_CHANGE, SINGLE = (
    "inversion", "fall (forgetting)", "rise, then fall", "fall", "rise", "no significant change", "one checkpoint")
ALARMING = frozenset({INVERSION, FORGETTING, RISE_FALL, FALL})


@dataclass(frozen=True)
class Change:
    """A difference of a metric between the peak and a reference checkpoint, with a one-sided
    lower confidence bound that holds whichever checkpoint was picked, and the max-t test's
    verdict that some checkpoint is above the reference (:func:`harness.stats.max_change_test`)."""

    value: float
    lower: float
    p_value: float
    significant: bool

    def __str__(self) -> str:
        return f"{self.value:+.3f} (>= {self.lower:+.3f}, p={self.p_value:.3f})"


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
        ``no significant change`` (``one checkpoint`` when there is nothing to compare)."""
        if math.isnan(self.drop.p_value):
            return SINGLE
        if self.drop.significant:
            if self.metric in ACCURACY_METRICS:
                return FORGETTING
            if self.rise.significant:
                return INVERSION if self.metric in RELIANCE_METRICS else RISE_FALL
            return FALL
        return RISE if self.rise.significant else NO_CHANGE

    def __str__(self) -> str:
        return (f"{self.task} {self.metric} ({self.condition}, {self.conjugate}): {self.verdict}: {self.reason}; "
                f"first {self.first:.3f} ({self.first_checkpoint.where}), peak {self.peak:.3f} at "
                f"{self.peak_checkpoint.where}, last {self.last:.3f} ({self.last_checkpoint.where}); "
                f"rise {self.rise}, drop {self.drop}; n={self.n}")


def detect_inversion(run_dir: str | Path, task: str, metric: str = "context_hit_rate", condition: str = "conflicting",
                     conjugate: str = ENGLISH, mode: str = GENERATE, *, n_resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> Inversion:
    """Whether ``metric`` of ``task`` rises and then significantly falls over the run.

    The examples scored at every checkpoint (lined up by id within ``condition`` and
    ``conjugate``) give the metric at each checkpoint; the peak is the checkpoint where it is
    highest (the earliest, on ties). An inversion is found when some checkpoint is
    significantly above the first and some checkpoint significantly above the last
    (:data:`INVERSION_METHOD`: two one-sided max-t tests at the 5% level, which pay for
    picking the highest checkpoint on the same data — when the metric rises and then stays
    flat, the verdict is "inversion" in at most about 5% of runs, which the test suite checks
    by simulation). ``confidence`` is the level of the peak's interval.

    ``metric`` must be a mean of per-example values (rates, mean log-odds); ``mode`` is the
    scoring mode of the summary rows (``generate`` or ``loglikelihood``).

    Raises :class:`ReportError` when the folder is not a results folder, has no such series,
    or no example was scored at every checkpoint.
    """
    return inversion_of(RunResults(run_dir), task, metric, condition, conjugate, mode, n_resamples=n_resamples,
                        seed=seed, confidence=confidence)


def inversion_of(run: RunResults, task: str, metric: str, condition: str, conjugate: str, mode: str | None = None, *,
            n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> Inversion:
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
    matrix = np.array([[values[key] for key in common] for values in per_checkpoint])
    means = matrix.mean(axis=1)
    peak = int(np.argmax(means))
    if len(points) == 1:
        nothing = Change(0.0, float("nan"), float("nan"), False)
        rise = drop = nothing
        reason = "one checkpoint: nothing to compare"
    else:
        rise, drop = (_change(test, peak) for test in inversion_tests(matrix, n_resamples=n_resamples, seed=seed))
        if not rise.significant:
            reason = ("no rise: the first checkpoint is the highest" if peak == 0 else
                      "no checkpoint is significantly above the first: the rise is within the noise")
            if drop.significant:
                reason += f"; it falls by {drop.value:.3f} from {points[peak].where} to the last"
        elif not drop.significant and peak == len(points) - 1:
            reason = "no fall: the last checkpoint is the highest"
        elif not drop.significant:
            reason = "no checkpoint is significantly above the last: the fall is within the noise"
        else:
            reason = f"rises to a peak at {points[peak].where}, then falls by {drop.value:.3f}"
    peak_ci = (rate_interval(int(matrix[peak].sum()), matrix.shape[1], confidence) if _is_binary(matrix[peak])
               else bootstrap_ci(matrix[peak], n_resamples=n_resamples, seed=seed, confidence=confidence))
    return Inversion(
        task=task, metric=metric, condition=condition, conjugate=conjugate,
        found=rise.significant and drop.significant, n=len(common),
        first=float(means[0]), first_checkpoint=points[0],
        peak=float(means[peak]), peak_ci=peak_ci, peak_checkpoint=points[peak],
        last=float(means[-1]), last_checkpoint=points[-1],
        rise=rise, drop=drop, reason=reason,
    )


def inversion_tests(matrix: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                    alpha: float = ALPHA) -> tuple[ChangeTest, ChangeTest]:
    """The two tests of the inversion verdict on a (checkpoints, examples) matrix of
    per-example values: some checkpoint above the first (rise), some above the last (fall)."""
    return (max_change_test(matrix, 0, n_resamples=n_resamples, seed=seed, alpha=alpha),
            max_change_test(matrix, matrix.shape[0] - 1, n_resamples=n_resamples, seed=seed, alpha=alpha))


def _change(test: ChangeTest, peak: int) -> Change:
    """The change from the test's reference to the peak, and the test's verdict."""
    return Change(test.differences[peak], test.lowers[peak], test.p_value, test.significant)


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
