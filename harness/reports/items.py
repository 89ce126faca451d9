"""Per-item analysis: every scored sample as a table row, and the items that changed between
two checkpoints.

- :func:`load_samples`: the sample files of one or more runs as one pandas DataFrame, a row a
  scored sample, with its checkpoint, step, task and flat score columns (what a researcher
  filters and groups with pandas);
- :func:`transitions`: for one metric, how each item's state moved between two checkpoints
  (by default the peak and the last one): the transition matrix (context → parametric, ...),
  McNemar's exact test of the change (descriptive only after a data-picked peak), and a
  seeded handful of the items that flipped, with their prompt and both outputs. The report's
  transitions section and ``harness flips`` print it.

An aggregate curve says *that* context reliance fell; the transitions say whether the same
items moved from the context's answer to the remembered one (inversion) or to neither
(the model stopped answering), which the rates alone cannot tell apart.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.reports.runs import CheckpointPoint, RunResults
from harness.reports.inversion import inversion_of
from harness.errors import ReportError, did_you_mean
from harness.results import RunDirectory, SampleRecord, run_folders
from harness.scoring.metrics import metric as metric_named
from harness.scoring.metrics import sample_values
from harness.stats import mcnemar_exact

#: How many flipped items a transitions table shows by default.
FLIPS_SHOWN = 10


def states(metric: str) -> tuple[str, ...]:
    """The states an item can be in for ``metric``, in the order the matrix lists them
    (:attr:`harness.scoring.metrics.Metric.states`).

    Raises :class:`ReportError` for a metric that is not a yes/no per item (a mean of
    log-odds has no transitions to count)."""
    try:
        found = metric_named(metric).states
    except ValueError as error:
        raise ReportError(str(error)) from None
    if not found:
        raise ReportError(f"{metric}: not a yes/no per item, so it has no transitions (use a rate)")
    return found


def item_state(metric: str, scores: Mapping[str, Any]) -> str:
    """The state of one item for ``metric``, from its per-sample scores."""
    return metric_named(metric).item_state(scores)


# ---------------------------------------------------------------------------------------------
# Samples as a table
# ---------------------------------------------------------------------------------------------


def _flat(record: SampleRecord) -> dict[str, Any]:
    """One sample line as flat columns: its fields, its scores, each role's log-likelihood
    (``logprob_<role>``, ``n_tokens_<role>``, ``is_greedy_<role>``) and its ``meta_*``."""
    row: dict[str, Any] = {
        "id": record.id, "condition": record.condition, "conjugate": record.conjugate, "prompt": record.prompt,
        "output": record.output, "answers": record.answers, "truncated": bool(record.truncated),
    }
    row.update(record.scores)
    for role, score in (record.loglikelihoods or {}).items():
        row.update({f"{key}_{role}": value for key, value in score.items()})
    row.update({f"meta_{key}": value for key, value in (record.meta or {}).items()})
    return row


def load_samples(runs: str | os.PathLike | Iterable[str | os.PathLike]):
    """The scored samples of one or more runs as a pandas DataFrame, a row a sample.

    ``runs`` is a results folder, a glob (``"results/*"``) or a list of either. Columns:
    ``run`` (the folder's name), ``checkpoint``, ``step``, ``task``, ``condition``,
    ``conjugate``, ``id``, ``prompt``, ``output`` (None where only log-likelihoods were
    scored), ``answers``, ``truncated``, then every per-sample score of
    :mod:`harness.scoring` as its own column (``hit_context``, ``outcome``, ``ll_margin``,
    ...), each role's ``logprob_<role>``/``n_tokens_<role>``/``is_greedy_<role>``, and the
    example's ``meta_*`` fields. A score a sample lacks is NaN or None.

    Steps come from ``run.json`` (what the sweep recorded for each checkpoint). Raises
    :class:`ReportError` for a folder that holds no samples.
    """
    import pandas as pd

    rows = []
    for path in run_folders(runs):
        folder = RunDirectory(path)
        record = folder.read_record()
        steps = {entry.label: entry.step for entry in (record.checkpoints if record else [])}
        files = list(folder.sample_files())
        if not files:
            raise ReportError(f"{path}: no samples/ files (is it the --output folder of harness evaluate?)")
        for checkpoint, task, _ in files:
            try:
                records = folder.read_samples(checkpoint, task)
            except ValueError as error:
                raise ReportError(f"{folder.samples_file(checkpoint, task)}: {error}") from None
            for record in records:
                rows.append({"run": folder.path.resolve().name, "checkpoint": checkpoint,
                             "step": steps.get(checkpoint), "task": task, **_flat(record)})
    frame = pd.DataFrame(rows)
    frame["step"] = frame["step"].astype("Int64")  # integer steps, missing where unknown
    return frame


# ---------------------------------------------------------------------------------------------
# Transitions between two checkpoints
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flip:
    """One item whose yes/no changed between the two checkpoints: what it was asked and
    what the model gave at each (the output, or the log-likelihoods where none was generated)."""

    id: str
    prompt: str
    before_state: str
    after_state: str
    before: str
    after: str


@dataclass(frozen=True)
class Transitions:
    """How the items of one series moved between checkpoints ``before`` and ``after``.

    ``counts[i][j]`` items were in state ``states[i]`` at ``before`` and ``states[j]`` at
    ``after``, over the ``n`` items scored at both. ``lost`` items went from yes to no for
    ``metric`` (from the context's answer to anything else, for context reliance), ``gained``
    the other way; ``p_value`` is McNemar's exact test of lost against gained. ``flips`` are
    up to :data:`FLIPS_SHOWN` of the items that changed, the lost ones first, drawn with a
    fixed seed. ``descriptive``: one of the checkpoints is the peak, picked as the highest on
    these same items, so McNemar's p-value is too small to be a test (on a plateau it calls a
    fall more often than its level) and is shown as a description only; the inversion verdict's
    max-t test is the one that pays for the pick.
    """

    run: str
    task: str
    metric: str
    condition: str
    conjugate: str
    before: CheckpointPoint
    after: CheckpointPoint
    states: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    n: int
    lost: int
    gained: int
    p_value: float
    flips: tuple[Flip, ...]
    descriptive: bool = False

    @property
    def method(self) -> str:
        test = (f"McNemar's exact test (two-sided) of the {self.lost + self.gained} items whose {self.metric} "
                f"changed between {self.before.where} and {self.after.where}")
        if not self.descriptive:
            return test
        return (f"{test}; descriptive only, not a test: the peak was picked as the highest checkpoint on these same "
                "items, which makes this p-value too small; the inversion verdict's max-t test allows for the pick")

    def __str__(self) -> str:
        width = max(len(state) for state in self.states) + 2
        corner = f"{self.before.where} \\ {self.after.where}"
        first = max(width, len(corner) + 2)
        lines = [f"{self.run}: {self.task} {self.metric} ({self.condition}, {self.conjugate}), "
                 f"{self.before.where} -> {self.after.where}, n={self.n}", "",
                 corner.ljust(first) + "".join(state.rjust(width) for state in self.states)]
        for state, row in zip(self.states, self.counts):
            lines.append(state.ljust(first) + "".join(str(count).rjust(width) for count in row))
        lines += ["", f"lost {self.lost}, gained {self.gained}: p = {self.p_value:.3g} ({self.method})"]
        if self.flips:
            lines += ["", f"{len(self.flips)} of the {self.lost + self.gained} items that flipped:"]
            for flip in self.flips:
                lines += [f"- {flip.id}: {flip.before_state} -> {flip.after_state}",
                          f"    prompt: {_one_line(flip.prompt)}",
                          f"    {self.before.where}: {_one_line(flip.before)}",
                          f"    {self.after.where}: {_one_line(flip.after)}"]
        return "\n".join(lines)


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else "…" + flat[-(limit - 1):]  # the question is at the end


def _shown(record: SampleRecord) -> str:
    """What the model gave: its output, or each role's log-likelihood where none was generated."""
    if record.output is not None:
        return record.output
    return ", ".join(f"{role} {score['logprob']:.2f}" for role, score in (record.loglikelihoods or {}).items())


def find_checkpoint(run: RunResults, name: str | int, *, peak: CheckpointPoint | None = None) -> CheckpointPoint:
    """A checkpoint of ``run`` by label, by step (a number), or ``first``/``last``/``peak``
    (``peak`` needs the peak passed in). Raises :class:`ReportError` naming the choices."""
    text = str(name)
    named = {"first": run.checkpoints[0], "last": run.checkpoints[-1]}
    if peak is not None:
        named["peak"] = peak
    if text in named:
        return named[text]
    for point in run.checkpoints:
        if point.label == text or (text.isdigit() and point.step == int(text)):
            return point
    choices = ["first", "peak", "last", *(p.label for p in run.checkpoints)]
    raise ReportError(f"run {run.name}: no checkpoint {text!r}{did_you_mean(text, choices)}; "
                      f"choose one of: {', '.join(choices)}, or a step")


def transitions(run: RunResults | str | Path, task: str | None = None, before: str | int = "peak",
                after: str | int = "last", *,
                metric: str | None = None, condition: str | None = None, conjugate: str | None = None,
                shown: int = FLIPS_SHOWN, seed: int = 0) -> Transitions:
    """The transitions of ``task``'s items between two checkpoints of a run.

    ``metric`` defaults to the task's headline metric (context reliance where measured),
    ``condition`` to its first condition for that metric (``conflicting``), ``conjugate``
    to the English prompt. ``before`` and ``after`` name checkpoints as
    :func:`find_checkpoint` does; by default the peak of the metric (over the items scored
    at every checkpoint, as the inversion verdict finds it) and the last checkpoint. ``task``
    may be left out when one task of the run has context reliance (``context_hit_rate``; or
    ``metric``, when given) in ``condition``.
    """
    run = run if isinstance(run, RunResults) else RunResults(run)
    task = task or run.task_measuring(metric or "context_hit_rate", condition)
    if task not in run.tasks:
        raise ReportError(f"run {run.name}: no results for task {task!r}{did_you_mean(task, run.tasks)}; "
                          f"it has: {', '.join(run.tasks)}")
    metric = metric or run.headline(task)
    if metric is None:
        raise ReportError(f"run {run.name}: task {task!r} has no headline metric; pass one")
    state_names = states(metric)
    conditions = run.conditions(task, metric)
    if not conditions:
        raise ReportError(f"run {run.name}: task {task!r} has no {metric} results")
    condition = condition or conditions[0]
    conjugate = conjugate or run.base_conjugate(task)
    peak = None
    if "peak" in (str(before), str(after)):
        peak = inversion_of(run, task, metric, condition, conjugate, n_resamples=200, seed=seed).peak_checkpoint
    first, second = (find_checkpoint(run, name, peak=peak) for name in (before, after))

    def scored(point: CheckpointPoint) -> dict[str, SampleRecord]:
        records = run.folder.read_samples(point.label, task)
        return {r.id: r for r in records
                if r.condition == condition and r.conjugate == conjugate and _has_metric(metric, r.scores)}

    earlier, later = scored(first), scored(second)
    common = sorted(earlier.keys() & later.keys())
    if not common:
        raise ReportError(f"run {run.name}: {task} {metric} ({condition}, {conjugate}): no item was scored at "
                          f"both {first.where} and {second.where}")
    index = {state: i for i, state in enumerate(state_names)}
    counts = [[0] * len(state_names) for _ in state_names]
    lost, gained = [], []
    for key in common:
        a, b = earlier[key], later[key]
        counts[index[item_state(metric, a.scores)]][index[item_state(metric, b.scores)]] += 1
        yes_before, yes_after = (sample_values(metric, [r.scores])[0] == 1.0 for r in (a, b))
        if yes_before and not yes_after:
            lost.append(key)
        elif yes_after and not yes_before:
            gained.append(key)
    draw = random.Random(seed)
    chosen = draw.sample(lost, min(shown, len(lost)))
    chosen += draw.sample(gained, min(shown - len(chosen), len(gained)))
    flips = tuple(Flip(key, earlier[key].prompt, item_state(metric, earlier[key].scores),
                       item_state(metric, later[key].scores), _shown(earlier[key]), _shown(later[key]))
                  for key in chosen)
    return Transitions(run=run.name, task=task, metric=metric, condition=condition, conjugate=conjugate,
                       before=first, after=second, states=state_names,
                       counts=tuple(tuple(row) for row in counts), n=len(common), lost=len(lost),
                       gained=len(gained), p_value=mcnemar_exact(len(lost), len(gained)), flips=flips,
                       descriptive="peak" in (str(before), str(after)))


def _has_metric(metric: str, scores: Mapping[str, Any]) -> bool:
    try:
        value = sample_values(metric, [scores])[0]
    except (KeyError, TypeError, ValueError):
        return False
    return not math.isnan(value)


def transition_rows(result: Transitions) -> Sequence[Sequence[str]]:
    """The matrix as table rows (state, counts...), for HTML and CSV."""
    return [[state, *map(str, row)] for state, row in zip(result.states, result.counts)]


def flips(run_dir: str | Path, *, task: str | None = None, before: str | int = "peak", after: str | int = "last",
          metric: str | None = None, condition: str | None = None, conjugate: str | None = None,
          shown: int = FLIPS_SHOWN) -> list[Transitions]:
    """The :func:`transitions` of ``task``, or of every task of the run whose metric (``metric``,
    else its headline) is a yes/no per item and was scored (in ``condition``, when given): what
    ``harness flips`` prints. Raises :class:`ReportError` when no task has one."""
    run = RunResults(run_dir)
    if task:
        return [transitions(run, task, before, after, metric=metric, condition=condition, conjugate=conjugate,
                            shown=shown)]
    tasks = [t for t in run.tasks if _has_states(metric or run.headline(t))]
    if not tasks:
        raise ReportError(f"{run_dir}: no task has a yes/no headline metric; pass --task and --metric")
    found, missing = [], []
    for name in tasks:  # a task without this metric or condition is left out, not an error
        try:
            found.append(transitions(run, name, before, after, metric=metric, condition=condition,
                                     conjugate=conjugate, shown=shown))
        except ReportError as error:
            missing.append(str(error))
    if not found:
        raise ReportError("; ".join(dict.fromkeys(missing)))
    return found


def _has_states(metric: str | None) -> bool:
    try:
        states(metric or "")
    except ReportError:
        return False
    return True
