"""Results folders loaded for analysis: a run's summary as a table, its checkpoints in
training order, and the per-example values of its sample files.

- :func:`load_results`: a run's summary as a pandas DataFrame (one row a metric value);
- :class:`RunResults`: one results folder as the reports read it (summary rows, checkpoints
  in training order, per-example values from the sample files, the down-scaled variants of
  a ``prune:`` run);
- :func:`parameter_count`: a model's parameters from its config (``compare --x params``).

Charts come from ``summary.jsonl`` (point estimates and CIs as evaluated); every paired
comparison goes back to the per-example scores in ``samples/``, where the same example can be
lined up across checkpoints or conjugates.

Checkpoints are ordered by step, unknown steps last, ties by label (as discovery orders
them). A run whose steps are all known is placed by its steps; otherwise every checkpoint is
placed at its index.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from harness.checkpoints import Checkpoint, training_progress
from harness.checkpoints.identity import model_config
from harness.checkpoints.interp import level_of
from harness.conjugates import CONJUGATES
from harness.errors import ReportError
from harness.results import RECIPE_JSON, SUMMARY, RunDirectory, RunRecord, run_folders
from harness.scoring.metrics import HEADLINE_METRICS, sample_values

log = logging.getLogger("harness")

X_AXES = ("step", "epoch", "tokens", "params")
_X_KEYS = {"epoch": "epoch", "tokens": "num_input_tokens_seen"}  # their trainer_state.json keys

_COLUMNS = frozenset({"checkpoint", "step", "task", "condition", "conjugate", "mode", "metric", "value",
                      "ci_low", "ci_high"})


def checkpoint_progress(record: RunRecord | None) -> dict[str, dict[str, int | float]]:
    """Each checkpoint's training progress (label -> :func:`harness.checkpoints.training_progress`).

    As recorded in ``run.json`` when each checkpoint was evaluated; for folders written before
    that was recorded (format < 3), read from the checkpoint folders' ``trainer_state.json``
    (a folder that is gone or has none gives an empty dict).
    """
    if record is None:
        return {}
    if record.format < 3:
        return {entry.label: training_progress(entry.folder) for entry in record.checkpoints}
    return {entry.label: {key: value for key, value in (("global_step", entry.step), ("epoch", entry.epoch),
                                                        ("num_input_tokens_seen", entry.tokens)) if value is not None}
            for entry in record.checkpoints}


def _load_one(run_dir: str | Path):
    import pandas as pd

    run = RunDirectory(run_dir)
    rows = run.read_summary()
    if not rows and not run.summary_file.is_file():
        raise ReportError(f"{run.summary_file}: no summary (is {run_dir} a results folder?)")
    frame = pd.DataFrame([row.to_dict() for row in rows])
    frame.insert(0, "run", run.path.resolve().name)
    progress = checkpoint_progress(run.read_record())
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
    :func:`harness.reports.items.load_samples`.
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
        """How the checkpoint is named in text: its level λ for an interpolated checkpoint
        (:mod:`harness.checkpoints.interp`), else its step when known, else its label."""
        level = level_of(self.label)
        if level is not None:
            return f"λ = {level:g}"
        return f"step {self.step}" if self.step is not None else self.label


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
            self.record = folder.read_record() or RunRecord()
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
        #: down-scaled variants (label -> their run.json summary, :mod:`harness.downscaling.variants`)
        self.variants: dict[str, dict] = {entry.label: entry.variant for entry in self.record.checkpoints
                                          if entry.variant}

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

    def task_measuring(self, metric: str, condition: str | None = None) -> str:
        """The one task of the run with ``metric`` (in ``condition``, when given): what a call
        that names no task is about. A :class:`ReportError` naming the candidates otherwise."""
        frame = self.frame
        rows = frame["metric"] == metric
        if condition is not None:
            rows &= frame["condition"] == condition
        candidates = list(dict.fromkeys(frame.loc[rows, "task"]))
        if len(candidates) == 1:
            return candidates[0]
        where = f"{metric}" + (f" on {condition} examples" if condition else "")
        if not candidates:
            raise ReportError(f"run {self.name}: no task has {where}; its tasks: {', '.join(self.tasks)}")
        raise ReportError(f"run {self.name}: several tasks have {where} ({', '.join(candidates)}); name one")

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
        recorded = self.record.task_hashes.get(task)
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

    # ------------------------------------------------------------------ the recipe's seed
    @property
    def seed(self) -> int | None:
        """The finetuning seed of this run, from the recipe.json ``harness finetune`` wrote beside
        its checkpoints (the folder holding the last evaluated checkpoint; or one copied into the
        results folder, which wins); None where there is none. Raises :class:`ReportError`
        naming a recipe.json without an integer ``seed``."""
        entries = self.record.checkpoints
        places = [self.folder.path] + ([Path(entries[-1].folder).parent] if entries and entries[-1].folder else [])
        for path in (place / RECIPE_JSON for place in places):
            if not path.is_file():
                continue
            try:
                seed = json.loads(path.read_text(encoding="utf-8")).get("seed")
            except (OSError, ValueError, AttributeError) as error:
                raise ReportError(f"{path}: not a recipe record ({error})") from None
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise ReportError(f"{path}: 'seed' must be an integer, got {seed!r}")
            return seed
        return None

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
            hint = (" or give --tokens-per-step" if tokens_per_step is None else
                    " (--tokens-per-step needs steps, and its checkpoints have none)") if x == "tokens" else ""
            raise ReportError(f"--x {x}: no checkpoint of run {self.name} recorded {_X_KEYS[x]} (its folder had "
                              f"no trainer_state.json saying it when evaluated); use --x step{hint}")
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
        for entry in self.record.checkpoints:
            count = parameter_count(entry.model, entry.revision)
            if count is not None:
                counts[entry.label] = float(count - (entry.variant or {}).get("zeros_added", 0))
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


