"""Verdicts about a recipe, not one trajectory: a recipe's finetuning seeds as replicates.

One run answers "did this trajectory, on these examples, fall?"; the same recipe with another
seed (or on another machine) can wander the other way. Given the results folders of one
recipe's seeds, :func:`detect_inversion` tests the recipe's mean curve over seeds with the
seed as the unit (:func:`harness.stats.replicate_max_test`: random-effects max-t, so seeds
that disagree widen the bounds) and shows each seed's own verdict beside it ("inversion in 2
of 3 seeds"). With one folder it gives that run's verdict, which is about that trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.conjugates import ENGLISH
from harness.errors import ReportError
from harness.reports.inversion import (
    ALPHA, Change, Inversion, checkpoint_matrix, change_of, inversion_of, reason_for, verdict_for,
)
from harness.reports.runs import CheckpointPoint, RunResults
from harness.scoring import GENERATE
from harness.stats import MONTE_CARLO_FLIPS, replicate_max_test

#: How a recipe's verdict is reached, in words.
RECIPE_METHOD = (
    "over the seeds (the unit a claim about a recipe generalises over): one-sided random-effects max-t tests "
    "at the 5% level on the mean curve over seeds, the spread between seeds estimated from them but never "
    "below the examples' own noise, with a parametric bootstrap that pays for estimating it from few seeds "
    "(a rise: some checkpoint above the first; a fall: some checkpoint above the last); each seed's own "
    "verdict beside it"
)


@dataclass(frozen=True)
class RecipeInversion:
    """Whether a recipe's ``metric`` rises and then falls, over its seeds (:func:`detect_inversion`).

    ``curve`` is the mean over seeds at each of ``checkpoints`` (those every seed evaluated);
    ``rise`` and ``drop`` are peak minus first and peak minus last of that curve, with the
    bound that made each test's verdict. ``per_seed`` holds each run's own verdict and
    ``seeds`` each run's seed number (None where no recipe.json says it: :attr:`RunResults.seed`)
    and ``folders`` each run's results folder.
    """

    task: str
    metric: str
    condition: str
    conjugate: str
    runs: tuple[str, ...]
    checkpoints: tuple[CheckpointPoint, ...]
    curve: tuple[float, ...]
    peak_index: int
    rise: Change
    drop: Change
    reason: str
    per_seed: tuple[Inversion, ...]
    seeds: tuple[int | None, ...] = ()
    folders: tuple[str, ...] = ()
    method: str = RECIPE_METHOD

    @property
    def verdict(self) -> str:
        """The recipe's verdict in the words of :attr:`Inversion.verdict`."""
        return verdict_for(self.metric, self.rise, self.drop)

    @property
    def found(self) -> bool:
        return self.rise.significant and self.drop.significant

    @property
    def seed_verdicts(self) -> str:
        """How many seeds gave which verdict: ``inversion in 2 of 3 seeds; rise in 1``."""
        counts: dict[str, int] = {}
        for inversion in self.per_seed:
            counts[inversion.verdict] = counts.get(inversion.verdict, 0) + 1
        ordered = sorted(counts.items(), key=lambda item: -item[1])
        head, *rest = ordered
        return "; ".join([f"{head[0]} in {head[1]} of {len(self.per_seed)} seeds",
                          *(f"{verdict} in {count}" for verdict, count in rest)])

    def __str__(self) -> str:
        peak = self.checkpoints[self.peak_index]
        seeds = "\n".join(f"  {name}: {inversion.verdict}: {inversion.reason}; first {inversion.first:.3f}, peak "
                          f"{inversion.peak:.3f} at {inversion.peak_checkpoint.where}, last {inversion.last:.3f}; "
                          f"drop {inversion.drop}"
                          for name, inversion in zip(self.runs, self.per_seed))
        return (f"{self.task} {self.metric} ({self.condition}, {self.conjugate}) over {len(self.runs)} seeds: "
                f"{self.verdict}: {self.reason}; mean first {self.curve[0]:.3f}, peak {self.curve[self.peak_index]:.3f} "
                f"at {peak.where}, last {self.curve[-1]:.3f}; rise {self.rise}, drop {self.drop}\n"
                f"  per seed: {self.seed_verdicts}\n{seeds}")


def detect_inversion(runs: str | Path | Sequence[str | Path], task: str | None = None,
                     metric: str = "context_hit_rate",
                     condition: str = "conflicting", conjugate: str = ENGLISH, mode: str = GENERATE, *,
                     n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> Inversion | RecipeInversion:
    """Whether ``metric`` of ``task`` rises and then significantly falls.

    ``runs`` is one results folder — the verdict (an :class:`Inversion`) is then about that
    trajectory on these examples — or a list of the folders of one recipe's seeds: the
    verdict (a :class:`RecipeInversion`) is then about the recipe (:data:`RECIPE_METHOD`),
    with each seed's own verdict beside it. ``mode`` is the scoring mode of the summary rows
    (``generate`` or ``loglikelihood``); ``confidence`` and ``n_resamples`` set the peak's
    interval of one run. ``task`` may be left out when one task of the (first) run has
    ``metric`` in ``condition`` (the demo's ``world_conflict``, say).

    Raises :class:`ReportError` when a folder is not a results folder, has no such series, no
    example was scored at every checkpoint, or the seeds share fewer than two checkpoints.
    """
    folders = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not folders:
        raise ReportError("detect_inversion: no results folders given")
    loaded = [RunResults(folder) for folder in folders]
    task = task or loaded[0].task_measuring(metric, condition)
    if len(loaded) == 1:
        return inversion_of(loaded[0], task, metric, condition, conjugate, mode, n_resamples=n_resamples,
                            seed=seed, confidence=confidence)
    return recipe_inversion(loaded, task, metric, condition, conjugate, mode, seed=seed)


def recipe_inversion(runs: Sequence[RunResults], task: str, metric: str, condition: str, conjugate: str,
                     mode: str | None = None, *, seed: int = 0,
                     n_draws: int = MONTE_CARLO_FLIPS) -> RecipeInversion:
    """The verdict over the seeds ``runs`` of one recipe (see :func:`detect_inversion`)."""
    if len(runs) < 2:
        raise ReportError(f"a recipe's verdict needs at least two seeds' results folders, got {len(runs)}")
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        names = [str(run.folder.path) for run in runs]
    series = [checkpoint_matrix(run, task, metric, condition, conjugate, mode) for run in runs]
    shared = _shared_checkpoints([points for points, _ in series], names)
    matrices = [matrix[[_position(points, key) for key in shared]] for points, matrix in series]
    checkpoints = tuple(next(p for p in series[0][0] if _key(p) == key) for key in shared)
    curve = np.mean([matrix.mean(axis=1) for matrix in matrices], axis=0)
    peak = int(np.argmax(curve))
    tests = [replicate_max_test(matrices, reference, n_draws=n_draws, seed=seed, alpha=ALPHA)
             for reference in (0, len(shared) - 1)]
    rise, drop = (change_of(test, peak, checkpoints) for test in tests)
    per_seed = tuple(inversion_of(run, task, metric, condition, conjugate, mode, seed=seed) for run in runs)
    return RecipeInversion(task=task, metric=metric, condition=condition, conjugate=conjugate, runs=tuple(names),
                           checkpoints=checkpoints, curve=tuple(float(v) for v in curve), peak_index=peak,
                           rise=rise, drop=drop, reason=reason_for(rise, drop, peak, checkpoints),
                           per_seed=per_seed, seeds=tuple(run.seed for run in runs),
                           folders=tuple(str(run.folder.path.resolve()) for run in runs))


def _key(point: CheckpointPoint) -> str:
    """What lines up checkpoints across seeds: the step where known, else the label."""
    return point.where


def _position(points: Sequence[CheckpointPoint], key: str) -> int:
    return next(index for index, point in enumerate(points) if _key(point) == key)


def _shared_checkpoints(per_run: Sequence[Sequence[CheckpointPoint]], names: Sequence[str]) -> list[str]:
    """The checkpoints every seed evaluated, in training order; an error naming the runs when
    fewer than two are shared (the seeds were not checkpointed alike)."""
    shared = [_key(point) for point in per_run[0]
              if all(any(_key(other) == _key(point) for other in points) for points in per_run[1:])]
    if len(shared) < 2:
        raise ReportError(f"runs {', '.join(names)}: fewer than two checkpoints (steps) are shared by every seed "
                          f"({', '.join(shared) or 'none'}); a recipe's seeds must be checkpointed alike")
    return shared


def recipe_verdicts(runs: Sequence[RunResults]) -> list[RecipeInversion | ReportError]:
    """The recipe verdict of each task's headline metric in each of its conditions, over the
    seeds ``runs`` (tasks every seed evaluated); a series that cannot be tested gives the error
    that says why."""
    verdicts: list[RecipeInversion | ReportError] = []
    for task in [task for task in runs[0].tasks if all(task in run.tasks for run in runs[1:])]:
        metric = runs[0].headline(task)
        if metric is None:
            continue
        for condition in runs[0].conditions(task, metric):
            try:
                verdicts.append(recipe_inversion(runs, task, metric, condition, runs[0].base_conjugate(task)))
            except ReportError as error:
                verdicts.append(error)
    return verdicts
