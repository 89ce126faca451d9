"""Analysis of results folders: loading them, inversion verdicts, paired comparisons.

- :func:`load_results`: a run's summary as a pandas DataFrame (one row a metric value);
- :class:`RunResults`: one results folder as the report reads it (summary rows, checkpoints
  in training order, per-example values from the sample files);
- :func:`detect_inversion`: whether a metric rises and then significantly falls over a run
  (context-parametric inversion, Goyal et al. 2025);
- :func:`conjugate_gap`: a conjugate prompt's metric minus the English prompt's, paired over
  the same examples, checkpoint by checkpoint;
- :func:`parameter_count`: a model's parameters from its config (``compare --x params``);
  :attr:`RunResults.variants`: the down-scaled variants of a ``prune:`` run, whose curves
  :mod:`harness.scaling` draws.

Charts come from ``summary.jsonl`` (point estimates and bootstrap CIs as evaluated); every
paired comparison goes back to the per-example scores in ``samples/``, where the same example
can be lined up across checkpoints or conjugates.

Checkpoints are ordered by step, unknown steps last, ties by label (as discovery orders
them). A run whose steps are all known is placed by its steps; otherwise every checkpoint is
placed at its index.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from harness.checkpoints import Checkpoint, training_progress
from harness.conjugates import CONJUGATES, ENGLISH
from harness.errors import ReportError
from harness.results import SUMMARY, RunDirectory, run_folders
from harness.scoring import GENERATE, sample_values
from harness.stats import ChangeTest, MetricValue, bootstrap_ci, max_change_test, paired_bootstrap_diff, rate_interval

log = logging.getLogger("harness")

X_AXES = ("step", "epoch", "tokens", "params")
_X_KEYS = {"epoch": "epoch", "tokens": "num_input_tokens_seen"}  # their trainer_state.json keys

_COLUMNS = frozenset({"checkpoint", "step", "task", "condition", "conjugate", "mode", "metric", "value",
                      "ci_low", "ci_high"})

# The metric that stands for a task (first one present wins): what its verdict, its conjugate
# gap and its comparison chart are about.
HEADLINE_METRICS = ("context_hit_rate", "context_rate", "icl_rate", "accuracy", "ll_context_win_rate",
                    "ll_icl_win_rate", "ll_accuracy")

def checkpoint_progress(run: RunDirectory) -> dict[str, dict[str, int | float]]:
    """Each checkpoint's training progress (label -> :func:`harness.checkpoints.training_progress`).

    Read from the ``trainer_state.json`` of the checkpoint folders that ``run.json`` lists
    (the adapter folder of an adapter checkpoint); a folder that is gone or has no such file
    gives an empty dict.
    """
    record = run.read_run() or {}
    return {
        entry["label"]: training_progress(entry.get("adapter") or entry["model"])
        for entry in record.get("checkpoints", [])
    }


def _load_one(run_dir: str | Path):
    import pandas as pd

    run = RunDirectory(run_dir)
    rows = run.read_summary()
    if not rows and not run.summary_file.is_file():
        raise FileNotFoundError(f"{run.summary_file}: no summary (is {run_dir} a results folder?)")
    frame = pd.DataFrame([row.to_dict() for row in rows])
    frame.insert(0, "run", run.path.resolve().name)
    progress = checkpoint_progress(run)
    labels = frame["checkpoint"] if "checkpoint" in frame else []
    for column, key in (("epoch", "epoch"), ("tokens", "num_input_tokens_seen")):
        frame[column] = [float(progress.get(label, {}).get(key, math.nan)) for label in labels]
    return frame


def load_results(runs: str | Path | Iterable[str | Path]):
    """The ``summary.jsonl`` of one or more runs as a pandas DataFrame (one row a metric value).

    ``runs`` is a results folder, a glob (``"results/*"``) or a list of either. Columns:
    ``run`` (the folder's name), checkpoint, step, task, task_version, task_hash, condition,
    conjugate, mode, metric, value, ci_low, ci_high, n, n_truncated, and each checkpoint's
    training progress in ``epoch`` and ``tokens`` (input tokens seen), both from the
    checkpoint's ``trainer_state.json`` and NaN where it has none. Per-sample rows:
    :func:`harness.items.load_samples`.
    """
    import pandas as pd

    frames = [_load_one(path) for path in run_folders(runs)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class CheckpointPoint:
    """One evaluated checkpoint as the report places it: name, step, and training progress
    from its trainer_state.json (None where unknown); ``params`` (its parameter count, see
    :meth:`RunResults.parameter_counts`) is filled in once an x axis of parameters is asked for."""

    label: str
    step: int | None
    epoch: float | None
    tokens: float | None
    params: float | None = None

    @property
    def where(self) -> str:
        """How the checkpoint is named in text: its step when known, else its label."""
        return f"step {self.step}" if self.step is not None else self.label


#: How the inversion verdict is reached, in words (the report and the demo summary say it).
INVERSION_METHOD = (
    "one-sided max-t tests at the 5% level over the examples scored at every checkpoint (paired, "
    "studentised bootstrap, 1000 resamples): a rise (some checkpoint above the first) and a fall (some "
    "checkpoint above the last), each allowing for the highest checkpoint having been picked"
)
ALPHA = 0.05

#: Metrics of how often the model goes with what the context says: a rise and then a
#: significant fall of one of them is context-parametric inversion.
CONTEXT_RELIANCE = frozenset({"context_hit_rate", "context_rate", "ll_context_win_rate",
                              "ll_context_win_rate_per_token"})
#: Accuracies: a significant fall of one is the model forgetting what it could do.
ACCURACIES = frozenset({"accuracy", "ll_accuracy", "ll_accuracy_per_token", "ll_greedy_accuracy"})

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
        (:data:`CONTEXT_RELIANCE`) that rises and then falls; a significant fall of an accuracy is
        ``fall (forgetting)``; otherwise ``rise, then fall``, ``fall``, ``rise`` or
        ``no significant change`` (``one checkpoint`` when there is nothing to compare)."""
        if math.isnan(self.drop.p_value):
            return SINGLE
        if self.drop.significant:
            if self.metric in ACCURACIES:
                return FORGETTING
            if self.rise.significant:
                return INVERSION if self.metric in CONTEXT_RELIANCE else RISE_FALL
            return FALL
        return RISE if self.rise.significant else NO_CHANGE

    def __str__(self) -> str:
        return (f"{self.task} {self.metric} ({self.condition}, {self.conjugate}): {self.verdict}: {self.reason}; "
                f"first {self.first:.3f} ({self.first_checkpoint.where}), peak {self.peak:.3f} at "
                f"{self.peak_checkpoint.where}, last {self.last:.3f} ({self.last_checkpoint.where}); "
                f"rise {self.rise}, drop {self.drop}; n={self.n}")


def with_ci(value: MetricValue) -> str:
    """A difference and its CI as text: ``+0.107 [+0.070, +0.147]``."""
    return f"{value.value:+.3f} [{value.ci_low:+.3f}, {value.ci_high:+.3f}]"


def _number(value) -> float | None:
    """A summary cell as a float; None for missing values (None or NaN in pandas)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


# ---------------------------------------------------------------------------------------------
# A run, loaded for analysis
# ---------------------------------------------------------------------------------------------


class RunResults:
    """One results folder: its summary rows, its checkpoints in training order, and its
    sample files (each read on first use and kept)."""

    def __init__(self, path: str | Path, name: str | None = None):
        folder = RunDirectory(path)
        if not folder.summary_file.is_file():
            raise ReportError(f"{path}: not a results folder (no {SUMMARY}; give the --output folder of "
                              "harness evaluate)")
        self.folder = folder
        try:
            self.frame = _load_one(path)
            self.record = folder.read_run() or {}
        except ValueError as error:  # a corrupt summary.jsonl or run.json
            raise ReportError(f"{path}: {error}") from None
        if self.frame.empty:
            raise ReportError(f"{path}: {SUMMARY} is empty: no checkpoint has been evaluated yet")
        missing = _COLUMNS - set(self.frame.columns)
        if missing:
            raise ReportError(f"{folder.summary_file}: rows lack {', '.join(sorted(missing))}")
        self.name = name or folder.path.name
        self.frame["run"] = self.name
        first_rows = self.frame.drop_duplicates("checkpoint")
        points = [
            CheckpointPoint(row.checkpoint, None if _number(row.step) is None else int(row.step),
                            _number(row.epoch), _number(row.tokens))
            for row in first_rows.itertuples()
        ]
        self.checkpoints = sorted(points, key=lambda p: (p.step is None, p.step or 0, p.label))
        self.tasks: list[str] = list(dict.fromkeys(self.frame["task"]))
        self._samples: dict[tuple[str, str], list[dict]] = {}
        #: down-scaled variants (label -> their run.json summary, :mod:`harness.downscale`)
        self.variants: dict[str, dict] = {entry["label"]: entry["variant"]
                                          for entry in self.record.get("checkpoints", []) if entry.get("variant")}

    # ------------------------------------------------------------------ summary rows
    def rows(self, task: str, metric: str, condition: str, conjugate: str, mode: str | None = None):
        """Summary rows of one series, in checkpoint order."""
        frame = self.frame
        mask = ((frame["task"] == task) & (frame["metric"] == metric) & (frame["condition"] == condition)
                & (frame["conjugate"] == conjugate))
        if mode is not None:
            mask &= frame["mode"] == mode
        order = {point.label: index for index, point in enumerate(self.checkpoints)}
        rows = frame[mask]
        return rows.iloc[np.argsort([order[label] for label in rows["checkpoint"]], kind="stable")]

    def conditions(self, task: str, metric: str) -> list[str]:
        frame = self.frame
        return list(dict.fromkeys(frame.loc[(frame["task"] == task) & (frame["metric"] == metric), "condition"]))

    def conjugates(self, task: str) -> list[str]:
        """The task's conjugates, in the harness's order (en first), then any others."""
        present = set(self.frame.loc[self.frame["task"] == task, "conjugate"])
        return [c for c in CONJUGATES if c in present] + sorted(present - set(CONJUGATES))

    def base_conjugate(self, task: str) -> str:
        """English when the task has it: the prompt the finetuning data looks like."""
        return self.conjugates(task)[0]

    def headline(self, task: str) -> str | None:
        """The metric that stands for ``task`` (see ``HEADLINE_METRICS``), None if it has none."""
        present = set(self.frame.loc[self.frame["task"] == task, "metric"])
        return next((metric for metric in HEADLINE_METRICS if metric in present), None)

    def task_hashes(self, task: str) -> set[str]:
        """Every task version (content hash) the run's results for ``task`` were made with."""
        hashes = set()
        if "task_hash" in self.frame:
            hashes.update(self.frame.loc[self.frame["task"] == task, "task_hash"].dropna())
        recorded = self.record.get("task_hashes", {}).get(task)
        if recorded:
            hashes.add(recorded)
        return hashes

    # ------------------------------------------------------------------ samples
    def values(self, checkpoint: str, task: str, metric: str, condition: str, conjugate: str) -> dict[str, float]:
        """Per-example values of ``metric`` at one checkpoint, by example id."""
        try:
            if (checkpoint, task) not in self._samples:
                self._samples[checkpoint, task] = self.folder.read_samples(checkpoint, task)
            chosen = [s for s in self._samples[checkpoint, task]
                      if s.condition == condition and s.conjugate == conjugate]
            values = sample_values(metric, [s.scores for s in chosen])
        except ValueError as error:  # a corrupt samples file, or a metric that is not a mean
            raise ReportError(f"{self.name}: {task} at {checkpoint}: {error}") from None
        return dict(zip((s.id for s in chosen), values))

    # ------------------------------------------------------------------ x axis
    @property
    def steps_known(self) -> bool:
        return all(point.step is not None for point in self.checkpoints)

    def x_values(self, x: str, tokens_per_step: float | None = None) -> tuple[dict[str, float], list[str]]:
        """Where each checkpoint goes on an x axis of kind ``x``, and warnings about it.

        ``step``: the step when every checkpoint has one, else the checkpoint's index.
        ``epoch``/``tokens``: from trainer_state.json; the base model (step 0) sits at 0; with
        ``tokens_per_step``, a checkpoint without tokens seen sits at step × tokens_per_step;
        the others are left out.
        ``params``: :meth:`parameter_counts`; checkpoints whose config cannot be read are left out.
        """
        if x == "params":
            return self._parameter_axis()
        if x == "step":
            if self.steps_known:
                return {point.label: float(point.step) for point in self.checkpoints}, []
            return ({point.label: float(index) for index, point in enumerate(self.checkpoints)},
                    [f"run {self.name}: training steps unknown; checkpoints plotted at their index"])
        known: dict[str, float] = {}
        for point in self.checkpoints:
            value = getattr(point, x)
            if value is None and x == "tokens" and tokens_per_step is not None and point.step is not None:
                value = point.step * tokens_per_step
            if value is None and point.step == 0:  # the base model: nothing trained yet
                value = 0.0
            if value is not None:
                known[point.label] = float(value)
        if not known or set(known.values()) == {0.0} and len(self.checkpoints) > 1:
            hint = " or give --tokens-per-step" if x == "tokens" else ""
            raise ReportError(f"--x {x}: no checkpoint of run {self.name} has a trainer_state.json with "
                              f"{_X_KEYS[x]} (or its folder is gone); use --x step{hint}")
        lacking = [point.label for point in self.checkpoints if point.label not in known]
        warnings = [f"run {self.name}: no {x} for {', '.join(lacking)} (no trainer_state.json); left out"
                    ] if lacking else []
        return known, warnings

    # ------------------------------------------------------------------ down-scaling
    @property
    def is_downscaling(self) -> bool:
        """Whether every checkpoint is a down-scaled variant (a ``prune:`` run)."""
        return bool(self.variants) and all(point.label in self.variants for point in self.checkpoints)

    def parameter_counts(self) -> dict[str, float]:
        """Each checkpoint's parameter count (label -> count; left out where its config cannot
        be read): :func:`parameter_count` of its model (an adapter's base model), less the
        weights a down-scaled variant set to zero. Also fills ``CheckpointPoint.params``."""
        counts: dict[str, float] = {}
        for entry in self.record.get("checkpoints", []):
            count = parameter_count(entry["model"], entry.get("revision"))
            if count is not None:
                counts[entry["label"]] = float(count - (entry.get("variant") or {}).get("zeros_added", 0))
        self.checkpoints = [replace(point, params=counts.get(point.label)) for point in self.checkpoints]
        return counts

    def _parameter_axis(self) -> tuple[dict[str, float], list[str]]:
        counts = self.parameter_counts()
        known = {point.label: counts[point.label] for point in self.checkpoints if point.label in counts}
        if not known:
            raise ReportError(f"--x params: the config of no checkpoint of run {self.name} can be read "
                              "(its folder is gone, or a hub model is not cached); use --x step")
        lacking = [point.label for point in self.checkpoints if point.label not in known]
        return known, ([f"run {self.name}: no parameter count for {', '.join(lacking)} (config unreadable); "
                        "left out"] if lacking else [])


_PARAMETER_COUNTS: dict[str, int | None] = {}


def parameter_count(model: str, revision: str | None = None) -> int | None:
    """The parameters of the model a config describes (a tied output head counted once),
    from a model built on the meta device: no weights are read. None when the config cannot be
    read or built."""
    import json

    from harness.identity import model_config

    config = model_config(Checkpoint("params", None, model, revision))
    if not config.get("model_type"):
        return None
    key = json.dumps(config, sort_keys=True, default=str)
    if key not in _PARAMETER_COUNTS:
        try:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM

            settings = {k: v for k, v in config.items() if k != "model_type"}
            with torch.device("meta"):
                built = AutoModelForCausalLM.from_config(AutoConfig.for_model(config["model_type"], **settings))
            _PARAMETER_COUNTS[key] = sum(p.numel() for p in built.parameters())
        except Exception as error:  # an architecture transformers does not know
            log.warning("%s: cannot count its parameters from its config (%s)", model, error)
            _PARAMETER_COUNTS[key] = None
    return _PARAMETER_COUNTS[key]


# ---------------------------------------------------------------------------------------------
# Inversion and gaps
# ---------------------------------------------------------------------------------------------


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
