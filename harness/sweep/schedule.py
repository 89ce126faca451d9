"""Adaptive checkpoint schedules: evaluate the checkpoints that can change the verdict.

``--schedule adaptive`` evaluates a coarse subset of a run's checkpoints first (the first, the
last and evenly spaced ones between), then, round after round, the middle checkpoint of every
gap between evaluated checkpoints that is still *open*, until none is or ``--max-checkpoints``
are evaluated. What decides is the series the inversion verdict is about: context reliance
(``context_hit_rate``) on conflicting contexts in the base (English) prompt, by generation, of
every task that has it (:func:`decision_series`).

**The stopping rule** (:data:`RULE`). Let ``m`` be a series' mean over the examples scored at
every evaluated checkpoint, ``P`` its highest value (the peak), ``d(a, b)`` the noise of the
difference between neighbouring evaluated checkpoints ``a`` and ``b`` (1.96 standard errors of
their paired per-example difference) and ``L`` the steepest change per checkpoint beyond that
noise seen between neighbouring evaluated checkpoints, times ``slope_factor`` (2). The
assumption is that the curve moves by at most ``L`` per checkpoint. A gap ``a < j < b`` is open
when

1. it could hold a checkpoint above the peak: for some ``j``,
   ``min(m_a + L (j - a), m_b + L (b - j)) + d(a, b) > P``; or
2. the verdict is not settled: a test of the verdict (some checkpoint above the first: a rise;
   above the last: a fall; each the one-sided max-t test of :func:`harness.stats.max_change_test`)
   is significant on the evaluated checkpoints but would not survive the multiplicity of all
   ``N`` checkpoints: ``p (N - 1) / (k - 1) >= alpha`` with ``k`` evaluated (a Bonferroni bound
   on what adding the others can do to the max-t test). Then every gap is open.

Rule 1 is what refines the peak (bracketing it from both sides) and the steepest stretch of
the fall (where ``L`` comes from). A test that is not significant stays so: by rule 1 no
unevaluated checkpoint can be above the peak, so it cannot raise the largest difference, and
more checkpoints only raise the critical value. So when no gap is open, neither the peak's
checkpoint nor the verdict can change by evaluating the rest, under the assumption about
``L``. Where the curve is flat at its top (a plateau), every plateau checkpoint is within the
noise of the peak, so the rule evaluates most of them; which one is highest is then noise.
A series whose ends are not evaluated, or that has no example scored at every evaluated
checkpoint, keeps every gap open.

The assumption is the rule's weak point: ``L`` is learnt from the checkpoints evaluated, so a
rise and fall that lies wholly between two checkpoints of the first round, which differ by
less than the noise, is never seen (the curve looks flat, ``L`` is 0, every gap closes). On
the README's demo base it missed the narrow peaks (.047, .083) of two of six runs this way;
on short runs, evaluate all. When the rule stops while a series it follows looked flat between
the evaluated checkpoints, the run warns and records why (:func:`flat_caveat`: run.json's
``schedule.caveat``, the report's warnings).

The results folder is an ordinary one: a later ``--schedule all`` run into it evaluates only
the checkpoints left out. ``run.json``'s ``schedule`` records which were left out and why the
schedule stopped; the report lists them.

:func:`replay` runs the rule on a finished full sweep, without an engine: which checkpoints it
would have evaluated, and whether the verdict and the peak would have been the full sweep's.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from harness.backends.api import Backend
from harness.checkpoints import Checkpoint, split_loadable
from harness.checkpoints.prefetch import Prefetcher
from harness.errors import RunError
from harness.results.folder import RunDirectory
from harness.scoring import GENERATE
from harness.scoring.metrics import sample_values
from harness.stats import MONTE_CARLO_FLIPS, max_change_test
from harness.sweep.config import ADAPTIVE
from harness.sweep.jobs import has_mode
from harness.sweep.plan import task_conjugates, task_modes

log = logging.getLogger("harness")

#: The series that decides, per task: context reliance on conflicting contexts, by generation.
METRIC, CONDITION = "context_hit_rate", "conflicting"
Z = 1.96
ALPHA = 0.05
RULE = ("refine a gap between evaluated checkpoints while it could hold a checkpoint above the peak (the curve "
        "moving at most twice the steepest change beyond the noise seen, plus 1.96 standard errors of the ends' "
        "paired difference), or, anywhere, while a significant rise or fall would not survive the multiplicity "
        "of every checkpoint")

#: Why a schedule stops when the rule is met.
NOTHING_OPEN = "no gap could change the peak or the verdict"
#: One series' per-example values at each evaluated checkpoint: checkpoint index -> example id -> value.
SeriesValues = Mapping[int, Mapping[str, float]]


@dataclass(frozen=True)
class Series:
    """The series a schedule follows: one task's metric in one condition, conjugate and mode."""

    task: str
    conjugate: str
    metric: str = METRIC
    condition: str = CONDITION
    mode: str = GENERATE

    @property
    def name(self) -> str:
        """How the console, run.json and a replay name the series."""
        return f"{self.task} {self.metric} ({self.condition}, {self.conjugate})"


def coarse(total: int, budget: int | None = None) -> list[int]:
    """The first round: the first and last checkpoints and evenly spaced ones between, about
    one in ten (three at least), never more than ``budget``."""
    count = min(total, max(3, math.ceil(total / 10) + 1), budget or total)
    if count <= 1:
        return [0][:total]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


@dataclass
class Gaps:
    """Why each open gap of one series is open (module docstring): (a, b) -> reason.
    ``flat``: checkpoints are left out between evaluated ones, yet no change beyond the noise
    was seen anywhere, so the rule takes the curve as flat across every gap (``L`` = 0)."""

    open: dict[tuple[int, int], str] = field(default_factory=dict)
    peak: int | None = None
    flat: bool = False


def open_gaps(values: SeriesValues, total: int, *, slope_factor: float = 2.0, alpha: float = ALPHA,
              n_flips: int = MONTE_CARLO_FLIPS, seed: int = 0) -> Gaps:
    """The gaps of one series that are still open under the stopping rule (module docstring)."""
    indices = sorted(values)
    gaps = [(a, b) for a, b in zip(indices, indices[1:]) if b - a > 1]
    if indices and (indices[0] != 0 or indices[-1] != total - 1):  # the ends are not in yet: not a verdict
        edges = [(-1, indices[0])] if indices[0] != 0 else []
        edges += [(indices[-1], total)] if indices[-1] != total - 1 else []
        return Gaps({gap: "an end is not evaluated" for gap in edges + gaps})
    common = sorted(set.intersection(*(set(values[i]) for i in indices))) if indices else []
    if len(indices) < 2 or not common:
        return Gaps({gap: "too little to compare" for gap in gaps})
    matrix = np.array([[values[i][key] for key in common] for i in indices], dtype=float)
    means = matrix.mean(axis=1)
    top = int(np.argmax(means))
    peak = float(means[top])
    # Noise of each neighbouring pair's difference; the slope counts only the change beyond it,
    # or neighbouring checkpoints' noise would pass for a steep curve.
    noise = [Z * float(np.std(matrix[k + 1] - matrix[k])) / math.sqrt(len(common)) for k in range(len(indices) - 1)]
    slopes = [max(0.0, abs(means[k + 1] - means[k]) - noise[k]) / (indices[k + 1] - indices[k])
              for k in range(len(indices) - 1)]
    steepness = slope_factor * max(slopes)
    result = Gaps(peak=indices[top], flat=steepness == 0 and bool(gaps))
    position = {index: k for k, index in enumerate(indices)}
    for a, b in gaps:
        ka, kb = position[a], position[b]
        highest = max(min(means[ka] + steepness * (j - a), means[kb] + steepness * (b - j)) for j in range(a + 1, b))
        if highest + noise[ka] > peak:
            result.open[(a, b)] = "could hold the peak"
    k = len(indices)
    for name, reference in (("rise", 0), ("fall", k - 1)):
        test = max_change_test(matrix, reference, n_flips=n_flips, seed=seed, alpha=alpha)
        if test.significant and test.p_value * (total - 1) / (k - 1) >= alpha:
            for gap in gaps:
                result.open.setdefault(gap, f"the {name} is significant, but not over every checkpoint")
    return result


def _pick(a: int, b: int, tried: set[int], total: int) -> int | None:
    """The untried checkpoint of gap (a, b) nearest its middle (None: every one was tried)."""
    middle = (a + b) / 2
    candidates = [j for j in range(max(a + 1, 0), min(b, total)) if j not in tried]
    return min(candidates, key=lambda j: (abs(j - middle), j)) if candidates else None


class AdaptiveSchedule:
    """Which checkpoints (by index, in step order) to evaluate next (module docstring).

    :meth:`first` gives the coarse round; :meth:`next` the following round from the series'
    values so far, empty when the rule is met or the budget ``max_checkpoints`` is spent
    (``stopped`` then says which). ``tried`` holds every index handed out. ``flat`` lists
    the series (by position) whose stop rests on a curve seen flat between the evaluated
    checkpoints (:attr:`Gaps.flat`): a rise and fall inside a gap would have been missed.
    """

    def __init__(self, total: int, max_checkpoints: int | None = None, *, slope_factor: float = 2.0,
                 n_flips: int = MONTE_CARLO_FLIPS, seed: int = 0):
        self.total, self.budget = total, max_checkpoints
        self.slope_factor, self.n_flips, self.seed = slope_factor, n_flips, seed
        self.tried: set[int] = set()
        self.stopped: str | None = None
        self.reasons: dict[int, str] = {}
        self.flat: list[int] = []

    def _take(self, wanted: dict[int, str]) -> list[int]:
        """Hand out ``wanted`` (in priority order) as far as the budget goes."""
        room = len(wanted) if self.budget is None else max(0, self.budget - len(self.tried))
        chosen = list(wanted)[:room]
        if len(chosen) < len(wanted):
            self.stopped = f"the budget of {self.budget} checkpoints is spent"
        self.tried.update(chosen)
        self.reasons.update({index: wanted[index] for index in chosen})
        return sorted(chosen)

    def first(self) -> list[int]:
        return self._take({index: "coarse" for index in coarse(self.total, self.budget)})

    def next(self, series: Sequence[SeriesValues]) -> list[int]:
        if self.stopped:
            return []
        wanted: dict[int, str] = {}
        self.flat = []
        for position, values in enumerate(series):
            gaps = open_gaps(values, self.total, slope_factor=self.slope_factor, n_flips=self.n_flips,
                             seed=self.seed)
            if gaps.flat:
                self.flat.append(position)
            for (a, b), why in gaps.open.items():
                index = _pick(a, b, self.tried, self.total)
                if index is not None:
                    wanted.setdefault(index, why)
        if not wanted:
            self.stopped = NOTHING_OPEN
            return []
        # Peak gaps first when the budget cannot take them all: they decide where the peak is.
        order = sorted(wanted, key=lambda index: (wanted[index] != "could hold the peak", index))
        return self._take({index: wanted[index] for index in order})


def flat_caveat(schedule: AdaptiveSchedule, names: Sequence[str]) -> str | None:
    """A sentence for the user when the schedule stopped on the rule while some series
    (``names``, by position) looked flat between its evaluated checkpoints; else None."""
    if schedule.stopped != NOTHING_OPEN or not schedule.flat:
        return None
    tried = sorted(schedule.tried)
    widest = max(b - a - 1 for a, b in zip(tried, tried[1:]))
    return (f"{', '.join(names[k] for k in schedule.flat)} changed by no more than the noise between the "
            f"{len(tried)} checkpoints evaluated, so the rule took the curve as flat between them: a rise and "
            f"fall within a gap (up to {widest} checkpoints left out) would be missed; --schedule all "
            "evaluates the rest into the same folder")


def run_schedule(schedule: AdaptiveSchedule, evaluate: Callable[[list[int]], None],
                 series_values: Callable[[], Sequence[SeriesValues]]) -> None:
    """Evaluate round after round: ``evaluate`` the schedule's indices, read back the series'
    values, ask for the next round, until the schedule stops."""
    batch = schedule.first()
    while batch:
        evaluate(batch)
        batch = schedule.next(series_values())


# --------------------------------------------------------------------------- on a sweep


def decision_series(sweep) -> list[Series]:
    """The series the schedule follows: each task with a conflicting condition scored by
    generation, in its base prompt (English when it has it)."""
    chosen = []
    for task in sweep.tasks:
        conjugates = task_conjugates(task, sweep.config)
        if (GENERATE in task_modes(task, sweep.config) and conjugates
                and any(example.condition == CONDITION for example in task.examples)):
            chosen.append(Series(task.name, "en" if "en" in conjugates else conjugates[0]))
    if not chosen:
        raise RunError("schedule: adaptive follows context reliance on conflicting contexts (context_hit_rate, by "
                       "generation); none of the tasks "
                       f"({', '.join(t.name for t in sweep.tasks)}) has a conflicting condition scored by "
                       "generation. Use --schedule all")
    return chosen


def series_values(run: RunDirectory, label: str, series: Series) -> dict[str, float]:
    """One series' per-example values at the evaluated checkpoint ``label``, by example id."""
    samples = [s for s in run.read_samples(label, series.task)
               if s.condition == series.condition and s.conjugate == series.conjugate and has_mode(s, series.mode)]
    return dict(zip((s.id for s in samples), sample_values(series.metric, [s.scores for s in samples])))


def sweep_adaptive(sweep, checkpoints: Sequence[Checkpoint], backend: Backend, observers, *, progress: bool) -> None:
    """Evaluate ``checkpoints`` (step order) on one engine by an adaptive schedule (module
    docstring); record in run.json which were left out and why the schedule stopped."""
    loadable, broken = split_loadable(list(checkpoints))
    for checkpoint, reason in broken:
        sweep.skip(checkpoint, reason)
    series = decision_series(sweep)
    config = sweep.config
    schedule = AdaptiveSchedule(len(loadable), config.max_checkpoints, seed=config.seed)
    evaluated: dict[int, Checkpoint] = {}
    prefetcher = Prefetcher(config.fingerprint, enabled=config.prefetch)

    def evaluate(batch: list[int]) -> None:
        if not evaluated:
            backend.expect_job(checkpoints=len(batch), requests=sum(len(item.modes) for item in sweep.items))
        for index, following in zip(batch, batch[1:] + [None]):
            checkpoint = loadable[index]
            prefetcher.wait(checkpoint)
            sweep.identify(checkpoint, backend)
            read_ahead = None if following is None else functools.partial(prefetcher.ahead, loadable[following])
            rows = sweep.run_checkpoint(checkpoint, backend, position=f"checkpoint {index + 1}/{len(loadable)} ",
                                        progress=progress, on_loaded=read_ahead)
            if checkpoint.label not in sweep.record.skipped_checkpoints:
                evaluated[index] = checkpoint
            for observe in observers:
                observe(checkpoint, rows)

    def values() -> list[dict[int, dict[str, float]]]:
        return [{index: series_values(sweep.run, checkpoint.label, one) for index, checkpoint in evaluated.items()}
                for one in series]

    with prefetcher:
        run_schedule(schedule, evaluate, values)
    left_out = [c.label for i, c in enumerate(loadable) if i not in schedule.tried]
    log.info("adaptive schedule: evaluated %d of %d checkpoints; stopped: %s", len(schedule.tried), len(loadable),
             schedule.stopped)
    names = [one.name for one in series]
    caveat = flat_caveat(schedule, names)
    if caveat:
        log.warning("adaptive schedule: %s", caveat)
    sweep.record.schedule = {
        "kind": ADAPTIVE, "checkpoints": len(loadable), "evaluated": len(schedule.tried), "left_out": left_out,
        "stopped": schedule.stopped, "series": names, "rule": RULE, "caveat": caveat,
    }
    sweep.run.write_record(sweep.record)


# --------------------------------------------------------------------------- on a finished sweep


def verdict_and_peak(values: Sequence[Mapping[str, float]], indices: Sequence[int]) -> tuple[tuple[bool, bool], int]:
    """The inversion tests' verdicts (rise, fall) and the peak's index over the checkpoints
    ``indices`` of one series (``values[i]``: example id -> value at checkpoint ``i``), on the
    examples scored at all of them: what an adaptive schedule must agree on with the full sweep."""
    common = sorted(set.intersection(*(set(values[i]) for i in indices)))
    matrix = np.array([[values[i][key] for key in common] for i in indices], dtype=float)
    rise, fall = (max_change_test(matrix, reference) for reference in (0, len(indices) - 1))
    return (rise.significant, fall.significant), list(indices)[int(np.argmax(matrix.mean(axis=1)))]


@dataclass(frozen=True)
class Replay:
    """What the adaptive schedule would have done on a finished full sweep (:func:`replay`).

    ``labels`` are the sweep's checkpoints in step order and ``evaluated`` the indices the
    schedule would have evaluated; per series, ``same_verdict`` and ``same_peak`` say whether
    its verdict and peak over those equal the full sweep's; ``caveat`` is what an adaptive run
    would have warned (:func:`flat_caveat`), None if nothing.
    """

    folder: str
    labels: list[str]
    series: list[Series]
    evaluated: list[int]
    stopped: str
    same_verdict: list[bool]
    same_peak: list[bool]
    caveat: str | None = None


def recorded_series(run: RunDirectory, label: str) -> list[Series]:
    """The series an adaptive schedule follows, as a results folder holds them at checkpoint
    ``label``: each task with conflicting examples scored by generation, in English when it
    has it, else the first conjugate by name."""
    chosen = []
    record = run.read_record()
    for task in sorted(record.task_hashes if record else []):
        conjugates = {s.conjugate for s in run.read_samples(label, task)
                      if s.condition == CONDITION and has_mode(s, GENERATE)}
        if conjugates:
            chosen.append(Series(task, "en" if "en" in conjugates else sorted(conjugates)[0]))
    return chosen


def saved_every(count: int, every: int) -> list[int]:
    """The indices of ``count`` checkpoints (step order) a run would hold had it saved only
    every ``every``-th of them: the first, every ``every``-th after it, and the last."""
    kept = list(range(0, count, every))
    return kept + ([count - 1] if kept and kept[-1] != count - 1 else [])


def replay(folder: str | Path, max_checkpoints: int | None = None, *, every: int = 1) -> Replay:
    """Run the adaptive schedule's rule (module docstring) on the finished full sweep in
    ``folder``, reading its samples instead of evaluating: a :class:`Replay`, with the run's
    own seed. ``every`` = k replays the run as if it had saved only every k-th checkpoint
    (the first, every k-th after it, and the last): how much the schedule saves at a coarser
    saving interval of the same training. A folder that an adaptive schedule left incomplete,
    with fewer than two checkpoints, or with no series scored at every checkpoint is a
    :class:`RunError`."""
    if every < 1:
        raise RunError(f"every: must be at least 1, not {every}")
    run = RunDirectory(folder)
    record = run.read_record()
    if record is None or not record.checkpoints:
        raise RunError(f"{folder}: no evaluated checkpoints (no run.json, or an empty one)")
    if record.schedule and record.schedule.get("left_out"):
        raise RunError(f"{folder}: an adaptive schedule left out {len(record.schedule['left_out'])} checkpoints; "
                       "replay needs a full sweep (run --schedule all into it first)")
    entries = sorted(record.checkpoints, key=lambda e: (e.step is None, e.step or 0, e.label))  # discovery's order
    labels = [entry.label for entry in entries]
    labels = [labels[index] for index in saved_every(len(labels), every)]
    if len(labels) < 2:
        raise RunError(f"{folder}: one evaluated checkpoint; a schedule chooses among two or more")
    series = recorded_series(run, labels[0])
    if not series:
        tasks = ", ".join(sorted(record.task_hashes)) or "none listed in run.json"
        raise RunError(f"{folder}: no task ({tasks}) has conflicting examples scored by generation at {labels[0]}; "
                       "the adaptive schedule has no series to follow")
    values = [[series_values(run, label, one) for label in labels] for one in series]
    for one, per_series in zip(series, values):
        if not set.intersection(*(set(at) for at in per_series)):
            missing = [label for label, at in zip(labels, per_series) if not at]
            raise RunError(f"{folder}: {one.task} ({one.conjugate}) has no conflicting example scored by generation at "
                           f"every checkpoint{' (none at ' + ', '.join(missing) + ')' if missing else ''}; replay needs "
                           "a full sweep on the same examples")
    schedule = AdaptiveSchedule(len(labels), max_checkpoints, seed=int(record.config.get("seed") or 0))
    done: list[int] = []
    run_schedule(schedule, done.extend, lambda: [{i: per_series[i] for i in done} for per_series in values])
    evaluated, everything = sorted(schedule.tried), list(range(len(labels)))
    agreements = [(verdict_and_peak(per_series, evaluated), verdict_and_peak(per_series, everything))
                  for per_series in values]
    caveat = flat_caveat(schedule, [one.name for one in series])
    return Replay(str(folder), labels, series, evaluated, schedule.stopped or "",
                  [mine[0] == full[0] for mine, full in agreements], [mine[1] == full[1] for mine, full in agreements],
                  caveat)
