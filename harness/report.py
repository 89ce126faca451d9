"""Reports: charts of context reliance over training, inversion detection, comparisons of runs.

Three entry points:

- :func:`write_report` turns one results folder into ``plots/*.png`` and a self-contained
  ``report.html`` (images embedded as data URIs, inline CSS: it opens offline and can be
  mailed as one file);
- :func:`detect_inversion` decides whether a metric rises and then significantly falls over
  the run's checkpoints (context-parametric inversion, Goyal et al. 2025);
- :func:`compare` overlays several runs (model families, data mixtures, mitigations) task by
  task, against training step, epoch or tokens seen, and writes ``compare.html``.

Charts come from ``summary.jsonl`` (point estimates and bootstrap CIs as evaluated); every
paired comparison (inversion, conjugate gaps) goes back to the per-example scores in
``samples/``, where the same example can be lined up across checkpoints or conjugates.

Checkpoints are ordered by step, unknown steps last, ties by label (as discovery orders
them). A run whose steps are all known is plotted against the step; otherwise every
checkpoint is plotted at its index and labelled with its name.
"""

from __future__ import annotations

import base64
import datetime
import html
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from harness.conjugates import CONJUGATES, ENGLISH
from harness.plots import Line, Panel, Style, XAxis, save_panels, style
from harness.results import SUMMARY, RunDirectory, load
from harness.scoring import GENERATE, MetricValue, bootstrap_ci, paired_bootstrap_diff, sample_values

log = logging.getLogger("harness")

REPORT_HTML = "report.html"
COMPARE_HTML = "compare.html"
PLOTS = "plots"
X_AXES = ("step", "epoch", "tokens")
_X_KEYS = {"epoch": "epoch", "tokens": "num_input_tokens_seen"}  # their trainer_state.json keys
_X_LABELS = {"step": "training step", "epoch": "epoch", "tokens": "tokens seen"}

# The summary columns the report reads.
_COLUMNS = frozenset({"checkpoint", "step", "task", "condition", "conjugate", "mode", "metric", "value",
                      "ci_low", "ci_high"})

# The metric that stands for a task (first one present wins): what its verdict, its conjugate
# gap and its comparison chart are about.
_HEADLINE = ("context_rate", "icl_rate", "accuracy", "ll_context_win_rate", "ll_icl_win_rate", "ll_accuracy")
# Metrics tabulated per task: rates, so that a peak and a drop mean the same thing for all.
_TABLED = ("context_rate", "parametric_rate", "ll_context_win_rate", "accuracy", "ll_accuracy", "icl_rate",
           "instruction_rate", "ll_icl_win_rate")

_LABELS = {
    "context_rate": "context reliance",
    "parametric_rate": "parametric answers",
    "ll_context_win_rate": "log-likelihood: context wins",
    "accuracy": "accuracy",
    "ll_accuracy": "log-likelihood accuracy",
    "icl_rate": "ICL answers",
    "instruction_rate": "instruction answers",
    "ll_icl_win_rate": "log-likelihood: ICL wins",
}

# The overview of conflicting contexts: a panel each, a line per task.
_OVERVIEW = ("context_rate", "parametric_rate", "ll_context_win_rate")

# The lines of a knowledge-conflict panel: (metric, conditions it is read at (None: any),
# label, style). Closed-book and open-book accuracy sit on the same axes as context reliance:
# context reliance falling while open-book accuracy holds is inversion; both falling is the
# model forgetting how to read a context at all.
_CONFLICT_LINES: tuple[tuple[str, tuple[str, ...] | None, str, Style], ...] = (
    ("context_rate", None, "context reliance (conflicting context)", style(0)),
    ("parametric_rate", None, "parametric answers (conflicting context)", style(1)),
    ("ll_context_win_rate", None, "log-likelihood: context wins", style(2, "-.")),
    ("accuracy", ("closed_book",), "closed-book accuracy (fact recall)", style(3, ":")),
    ("accuracy", ("agreeing", "open_book"), "open-book accuracy (agreeing context)", style(4, "--")),
)


class ReportError(ValueError):
    """A results folder (or set of them) that cannot be reported as asked; the message says why."""


@dataclass(frozen=True)
class CheckpointPoint:
    """One evaluated checkpoint as the report places it: name, step, and training progress
    from its trainer_state.json (None where unknown)."""

    label: str
    step: int | None
    epoch: float | None
    tokens: float | None

    @property
    def where(self) -> str:
        """How the checkpoint is named in text: its step when known, else its label."""
        return f"step {self.step}" if self.step is not None else self.label


@dataclass(frozen=True)
class Inversion:
    """Whether a metric rises and then falls significantly over a run (see :func:`detect_inversion`).

    ``first``, ``peak`` and ``last`` are the metric over the ``n`` examples scored at every
    checkpoint; ``peak_ci`` is its bootstrap CI at the peak. ``rise`` is peak minus first
    and ``drop`` peak minus last, each with a paired-bootstrap CI. ``reason`` says in words
    why the verdict is what it is; ``str()`` gives the verdict with every number.
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
    rise: MetricValue
    drop: MetricValue
    reason: str

    @property
    def peak_step(self) -> int | None:
        return self.peak_checkpoint.step

    def __str__(self) -> str:
        verdict = "inversion" if self.found else "no inversion"
        return (f"{self.task} {self.metric} ({self.condition}, {self.conjugate}): {verdict}: {self.reason}; "
                f"first {self.first:.3f} ({self.first_checkpoint.where}), peak {self.peak:.3f} at "
                f"{self.peak_checkpoint.where}, last {self.last:.3f} ({self.last_checkpoint.where}); "
                f"rise {_with_ci(self.rise)}, drop {_with_ci(self.drop)}; n={self.n}")


def _with_ci(value: MetricValue) -> str:
    return f"{value.value:+.3f} [{value.ci_low:+.3f}, {value.ci_high:+.3f}]"


def _number(value) -> float | None:
    """A summary cell as a float; None for missing values (None or NaN in pandas)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


# ---------------------------------------------------------------------------------------------
# A run, loaded for reporting
# ---------------------------------------------------------------------------------------------


class _Run:
    """One results folder: its summary rows, its checkpoints in training order, and its
    sample files (each read on first use and kept)."""

    def __init__(self, path: str | Path, name: str | None = None):
        folder = RunDirectory(path)
        if not folder.summary_file.is_file():
            raise ReportError(f"{path}: not a results folder (no {SUMMARY}; give the --output folder of "
                              "harness evaluate)")
        self.folder = folder
        try:
            self.frame = load(path)
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
        """The metric that stands for ``task`` (see ``_HEADLINE``), None if it has none."""
        present = set(self.frame.loc[self.frame["task"] == task, "metric"])
        return next((metric for metric in _HEADLINE if metric in present), None)

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
                      if s["condition"] == condition and s["conjugate"] == conjugate]
            values = sample_values(metric, [s["scores"] for s in chosen])
        except ValueError as error:  # a corrupt samples file, or a metric that is not a mean
            raise ReportError(f"{self.name}: {task} at {checkpoint}: {error}") from None
        return dict(zip((str(s["id"]) for s in chosen), values))

    # ------------------------------------------------------------------ x axis
    @property
    def steps_known(self) -> bool:
        return all(point.step is not None for point in self.checkpoints)

    def x_values(self, x: str) -> tuple[dict[str, float], list[str]]:
        """Where each checkpoint goes on an x axis of kind ``x``, and warnings about it.

        ``step``: the step when every checkpoint has one, else the checkpoint's index.
        ``epoch``/``tokens``: from trainer_state.json; checkpoints without it are left out.
        """
        if x == "step":
            if self.steps_known:
                return {point.label: float(point.step) for point in self.checkpoints}, []
            return ({point.label: float(index) for index, point in enumerate(self.checkpoints)},
                    [f"run {self.name}: training steps unknown; checkpoints plotted at their index"])
        known = {point.label: getattr(point, x) for point in self.checkpoints if getattr(point, x) is not None}
        if not known:
            raise ReportError(f"--x {x}: no checkpoint of run {self.name} has a trainer_state.json with "
                              f"{_X_KEYS[x]} (or its folder is gone); use --x step")
        lacking = [point.label for point in self.checkpoints if point.label not in known]
        warnings = [f"run {self.name}: no {x} for {', '.join(lacking)} (no trainer_state.json); left out"
                    ] if lacking else []
        return known, warnings


def _line(run: _Run, xs: Mapping[str, float], task: str, metric: str, condition: str, conjugate: str,
          label: str, line_style: Style) -> Line | None:
    """One summary series as a chart line with its CI band; None when it has no points."""
    rows = run.rows(task, metric, condition, conjugate)
    rows = rows[rows["checkpoint"].isin(list(xs))]
    if rows.empty:
        return None
    return Line(label, [xs[c] for c in rows["checkpoint"]], rows["value"].tolist(), rows["ci_low"].tolist(),
                rows["ci_high"].tolist(), line_style)


# ---------------------------------------------------------------------------------------------
# Inversion
# ---------------------------------------------------------------------------------------------


def detect_inversion(run_dir: str | Path, task: str, metric: str = "context_rate", condition: str = "conflicting",
                     conjugate: str = ENGLISH, mode: str = GENERATE, *, n_resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> Inversion:
    """Whether ``metric`` of ``task`` rises and then significantly falls over the run.

    The examples scored at every checkpoint (lined up by id within ``condition`` and
    ``conjugate``) give the metric at each checkpoint; the peak is the checkpoint where it is
    highest (the earliest, on ties). An inversion is found when the peak is above the first
    checkpoint and the last checkpoint is below the peak, both significantly: the
    paired-bootstrap CIs (:func:`harness.scoring.paired_bootstrap_diff`, at ``confidence``)
    of peak minus first and of peak minus last both lie above 0. The peak is chosen on the
    same data it is tested on, so a borderline verdict on a noisy run deserves a second look.

    ``metric`` must be a mean of per-example values (rates, mean log-odds); ``mode`` is the
    scoring mode of the summary rows (``generate`` or ``loglikelihood``).

    Raises :class:`ReportError` when the folder is not a results folder, has no such series,
    or no example was scored at every checkpoint.
    """
    return _detect(_Run(run_dir), task, metric, condition, conjugate, mode, n_resamples=n_resamples, seed=seed,
                   confidence=confidence)


def _detect(run: _Run, task: str, metric: str, condition: str, conjugate: str, mode: str | None = None, *,
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
    options = {"n_resamples": n_resamples, "seed": seed, "confidence": confidence}
    rise = paired_bootstrap_diff(matrix[peak], matrix[0], **options)
    drop = paired_bootstrap_diff(matrix[peak], matrix[-1], **options)
    if len(points) == 1:
        reason = "one checkpoint: nothing to compare"
    elif peak == 0:
        reason = "no rise: the first checkpoint is the highest"
    elif rise.ci_low <= 0:
        reason = "the rise to the peak is within the noise (its CI includes 0)"
    elif peak == len(points) - 1:
        reason = "no fall: the last checkpoint is the highest"
    elif drop.ci_low <= 0:
        reason = "the fall after the peak is within the noise (its CI includes 0)"
    else:
        reason = f"rises to a peak at {points[peak].where}, then falls by {drop.value:.3f}"
    return Inversion(
        task=task, metric=metric, condition=condition, conjugate=conjugate,
        found=rise.ci_low > 0 and drop.ci_low > 0, n=len(common),
        first=float(means[0]), first_checkpoint=points[0],
        peak=float(means[peak]), peak_ci=bootstrap_ci(matrix[peak], **options), peak_checkpoint=points[peak],
        last=float(means[-1]), last_checkpoint=points[-1],
        rise=rise, drop=drop, reason=reason,
    )


def _gap_line(run: _Run, xs: Mapping[str, float], task: str, metric: str, condition: str, conjugate: str,
              line_style: Style) -> Line | None:
    """``metric`` on ``conjugate`` minus on the base (English) prompt, checkpoint by checkpoint,
    with a paired-bootstrap band over the examples scored in both."""
    base = run.base_conjugate(task)
    x, y, low, high = [], [], [], []
    for point in run.checkpoints:
        if point.label not in xs:
            continue
        ours = run.values(point.label, task, metric, condition, conjugate)
        theirs = run.values(point.label, task, metric, condition, base)
        common = sorted(ours.keys() & theirs.keys())
        if not common:
            continue
        gap = paired_bootstrap_diff([ours[k] for k in common], [theirs[k] for k in common])
        x.append(xs[point.label])
        y.append(gap.value)
        low.append(gap.ci_low)
        high.append(gap.ci_high)
    return Line(conjugate, x, y, low, high, line_style) if x else None


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1b1b1b; background: #fff; margin: 0; line-height: 1.45; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-top: 1.5em; }
.meta { color: #555; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; max-width: 980px; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #d6d6d6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td { font-variant-numeric: tabular-nums; }
.found { color: #a33b00; font-weight: 600; }
.none { color: #33691e; font-weight: 600; }
.why { color: #555; font-size: 0.9em; }
.warning { background: #fff4e5; border-left: 4px solid #d55e00; padding: 8px 12px; margin: 1em 0; }
.warning ul { margin: 0.3em 0; padding-left: 1.2em; }
"""

_HOW_TO_READ = (
    "Context reliance is the rate at which the model answers with the answer a conflicting "
    "context states (not the real-world fact). An inversion is flagged when it rises from the first "
    "checkpoint to a peak and then falls by the last checkpoint, both changes beyond the 95% "
    "paired-bootstrap interval over the same examples. Values in tables are over the examples scored at "
    "every checkpoint; bands in charts are the per-checkpoint bootstrap intervals of the summary."
)


def _e(text: object) -> str:
    return html.escape(str(text))


def _page(title: str, parts: Iterable[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<style>{_CSS}</style>\n'
            f'</head>\n<body>\n<main>\n{"".join(parts)}</main>\n</body>\n</html>\n')


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>\n")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; header cells are text, body cells are HTML (escape them with ``_e``)."""
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def _warnings(messages: Sequence[str]) -> str:
    if not messages:
        return ""
    items = "".join(f"<li>{_e(message)}</li>" for message in messages)
    return f'<div class="warning"><strong>Warning</strong><ul>{items}</ul></div>\n'


_INVERSION_HEADER = ("first", "peak [95% CI]", "last", "rise: peak − first [CI]", "drop: peak − last [CI]",
                     "verdict")


def _inversion_cells(run: _Run, task: str, metric: str, condition: str, x: str = "step") -> list[str]:
    """The table cells of one series' inversion check (the error, if it cannot be made);
    the peak is placed by its step, and by ``x`` (epoch, tokens) too where that is known."""
    try:
        inversion = _detect(run, task, metric, condition, run.base_conjugate(task))
    except ReportError as error:
        return ["", "", "", "", "", _e(error)]
    peak = inversion.peak_checkpoint
    where = peak.where
    if x != "step" and getattr(peak, x) is not None:
        where += f" ({x} {getattr(peak, x):g})"
    verdict = '<span class="found">inversion</span>' if inversion.found else '<span class="none">no inversion</span>'
    return [
        f"{inversion.first:.3f}",
        f"{inversion.peak:.3f} [{inversion.peak_ci[0]:.3f}, {inversion.peak_ci[1]:.3f}] at {_e(where)}",
        f"{inversion.last:.3f}",
        _e(_with_ci(inversion.rise)),
        _e(_with_ci(inversion.drop)),
        f'{verdict}<br><span class="why">{_e(inversion.reason)} (n={inversion.n})</span>',
    ]


def _metric_label(metric: str, condition: str) -> str:
    return f"{_LABELS.get(metric, metric)} ({condition})"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _xaxis(run: _Run, xs: Mapping[str, float]) -> XAxis:
    """The x axis of a single run: steps, or checkpoint names at their index."""
    if run.steps_known:
        return XAxis(_X_LABELS["step"])
    return XAxis("checkpoint", ([xs[p.label] for p in run.checkpoints], [p.label for p in run.checkpoints]))


# ---------------------------------------------------------------------------------------------
# One run's report
# ---------------------------------------------------------------------------------------------


def _conflict_panel(run: _Run, xs: Mapping[str, float], task: str) -> Panel | None:
    conjugate = run.base_conjugate(task)
    lines = []
    for metric, wanted, label, line_style in _CONFLICT_LINES:
        conditions = [c for c in run.conditions(task, metric) if wanted is None or c in wanted]
        for condition in conditions:
            # A task with the same quantity at two conditions names the condition.
            name = label if len(conditions) == 1 else f"{label}: {condition}"
            lines.append(_line(run, xs, task, metric, condition, conjugate, name, line_style))
    lines = [line for line in lines if line is not None]
    return Panel(task, lines, "rate") if lines else None


def _report_figures(run: _Run, xs: Mapping[str, float], plots: Path) -> list[str]:
    """Draw the run's charts into ``plots`` and return their HTML sections."""
    xaxis = _xaxis(run, xs)
    sections = []

    # One panel a conflict metric, one line a task (a colour a task, the same in every panel).
    overview = []
    for metric in _OVERVIEW:
        lines = []
        for index, task in enumerate(run.tasks):
            conditions = run.conditions(task, metric)
            for condition in conditions:
                label = task if len(conditions) == 1 else f"{task} ({condition})"
                lines.append(_line(run, xs, task, metric, condition, run.base_conjugate(task), label, style(index)))
        lines = [line for line in lines if line is not None]
        if lines:
            label = _LABELS[metric]
            overview.append(Panel(f"{label[:1].upper()}{label[1:]} on conflicting contexts", lines, "rate"))
    by_task = [panel for panel in (_conflict_panel(run, xs, task) for task in run.tasks) if panel is not None]
    if overview or by_task:
        parts = ["<section><h2>Context reliance</h2>\n"]
        if overview:
            path = save_panels(plots / "context_reliance.png", overview, xaxis)
            parts.append(_figure(path, "Context reliance (the output gives the answer the conflicting context "
                                       "states), parametric answers (it gives the real-world fact) and, where "
                                       "scored, the rate at which the context answer is the likelier "
                                       "continuation, per task, with 95% bootstrap intervals."))
        if by_task:
            path = save_panels(plots / "context_reliance_by_task.png", by_task, xaxis)
            parts.append(_figure(path, "Per task: context reliance and parametric answers on conflicting "
                                       "contexts, with closed-book (fact recall) and open-book accuracy on the "
                                       "same axes. Context reliance falling while open-book accuracy holds is "
                                       "inversion; both falling is forgetting."))
        sections.append("".join(parts) + "</section>\n")

    # One colour a conjugate across panels (tasks declare different conjugates): the legend is shared.
    palette = list(CONJUGATES) + sorted(set(run.frame["conjugate"]) - set(CONJUGATES))
    gaps = []
    for task in run.tasks:
        metric = run.headline(task)
        conjugates = run.conjugates(task)
        if metric is None or len(conjugates) < 2:
            continue
        for condition in run.conditions(task, metric):
            lines = [_gap_line(run, xs, task, metric, condition, conjugate, style(palette.index(conjugate)))
                     for conjugate in conjugates[1:]]
            lines = [line for line in lines if line is not None]
            if lines:
                gaps.append(Panel(f"{task}: {_metric_label(metric, condition)}", lines,
                                  f"conjugate − {conjugates[0]}", ylim=None, zero_line=True))
    if gaps:
        path = save_panels(plots / "conjugate_gap.png", gaps, xaxis)
        sections.append("<section><h2>Conjugate prompts</h2>\n" + _figure(
            path, "Each task's headline metric on a conjugate prompt (a translation, leetspeak, pig latin) "
                  "minus on the English prompt, with paired-bootstrap 95% intervals over the same examples. "
                  "A conjugate that moves away from 0 during training recovers (or loses) behaviour that "
                  "finetuning changed on English prompts.") + "</section>\n")

    icl = []
    for task in run.tasks:
        conjugate = run.base_conjugate(task)
        for condition in run.conditions(task, "icl_rate"):
            lines = [_line(run, xs, task, metric, condition, conjugate, _LABELS[metric], style(index))
                     for index, metric in enumerate(("icl_rate", "instruction_rate"))]
            icl.append(Panel(f"{task}: {condition}", [line for line in lines if line is not None], "rate"))
    if icl:
        path = save_panels(plots / "icl_vs_instruction.png", icl, xaxis)
        sections.append("<section><h2>In-context learning vs instruction following</h2>\n" + _figure(
            path, "Rate at which the output follows the demonstrated transformation (ICL) or answers the "
                  "instruction-looking query, per condition, with 95% bootstrap intervals.") + "</section>\n")
    return sections


def _checkpoint_summary(run: _Run) -> str:
    steps = [p.step for p in run.checkpoints if p.step is not None]
    span = f"steps {min(steps)}–{max(steps)}" if steps else "steps unknown"
    return f"{len(run.checkpoints)} checkpoint{'s' * (len(run.checkpoints) != 1)} ({span})"


def _run_warnings(run: _Run) -> list[str]:
    messages = [f"task {task}: results from {len(run.task_hashes(task))} task versions "
                f"({', '.join(sorted(run.task_hashes(task)))}) are mixed in this run"
                for task in run.tasks if len(run.task_hashes(task)) > 1]
    messages += [f"checkpoint {label} was skipped: {reason}"
                 for label, reason in run.record.get("skipped_checkpoints", {}).items()]
    return messages


def write_report(run_dir: str | Path) -> Path:
    """Write ``plots/*.png`` and a self-contained ``report.html`` into a results folder.

    The report holds: context reliance per task over training (with parametric answers,
    closed-book and open-book accuracy, and log-likelihood context wins where measured); the
    gap between English and conjugate prompts; ICL-vs-instruction rates; and per task a
    table of the first, peak and last values with the inversion verdict
    (:func:`detect_inversion`). Returns the path of ``report.html``.

    Raises :class:`ReportError` when ``run_dir`` is not a results folder or has no results.
    """
    run = _Run(run_dir)
    xs, _ = run.x_values("step")  # a run's own axis names its checkpoints where steps are unknown
    messages = _run_warnings(run)
    for message in messages:
        log.warning("%s", message)

    verdicts, task_sections = [], []
    for task in run.tasks:
        # Every headline metric is tabled too: its verdict row reuses the table's cells.
        cells = {(metric, condition): _inversion_cells(run, task, metric, condition)
                 for metric in _TABLED for condition in run.conditions(task, metric)}
        headline = run.headline(task)
        verdicts += [[_e(task), _e(_metric_label(metric, condition)), *row]
                     for (metric, condition), row in cells.items() if metric == headline]
        rows = [[_e(_metric_label(metric, condition)), *row] for (metric, condition), row in cells.items()]
        if rows:
            task_sections.append(f"<h3>{_e(task)} <span class=\"meta\">({_e(run.base_conjugate(task))} "
                                 f"prompts)</span></h3>\n" + _table(("metric", *_INVERSION_HEADER), rows))

    model = run.record.get("config", {}).get("model") or run.record.get("config", {}).get("checkpoints")
    parts = [
        f"<h1>Context reliance over training: {_e(run.name)}</h1>\n",
        f'<p class="meta">{_e(_checkpoint_summary(run))}; tasks: {_e(", ".join(run.tasks))}'
        + (f"; model: {_e(model)}" if model else "")
        + f"; written {_e(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>\n",
        _warnings(messages),
        f"<p>{_e(_HOW_TO_READ)}</p>\n",
    ]
    if verdicts:
        parts.append("<section><h2>Inversion</h2>\n"
                     + _table(("task", "metric", *_INVERSION_HEADER), verdicts) + "</section>\n")
    parts += _report_figures(run, xs, run.folder.path / PLOTS)
    if task_sections:
        parts.append("<section><h2>Per task</h2>\n" + "".join(task_sections) + "</section>\n")
    path = run.folder.path / REPORT_HTML
    path.write_text(_page(f"Report: {run.name}", parts), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Comparing runs
# ---------------------------------------------------------------------------------------------


def _default_labels(paths: Sequence[Path]) -> list[str]:
    """Folder names; parent/name where two runs share a folder name."""
    paths = [p.resolve() for p in paths]  # "." has no name of its own
    for labels in ([p.name for p in paths], [f"{p.parent.name}/{p.name}" for p in paths]):
        if len(set(labels)) == len(labels):
            return labels
    raise ReportError("two runs have the same folder name; name them with --label NAME=RUN_DIR")


def compare(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None, x: str = "step",
            output: str | Path | None = None) -> Path:
    """Overlay several runs task by task and write ``compare.html`` with ``plots/*.png``.

    Each task gets one chart (a panel per condition of its headline metric: context
    reliance where measured) with a line per run, against ``x``: ``step``, ``epoch`` or
    ``tokens`` (input tokens seen; epoch and tokens come from each checkpoint's
    trainer_state.json), and a table of each run's first, peak and last values with its
    inversion verdict. ``labels`` name the runs (default: their folder names).
    ``output`` defaults to a ``compare`` folder beside the runs.

    Runs whose results for a task were made with different task versions (content hashes)
    are flagged, in the HTML and as a logged warning: their numbers are not comparable.
    Returns the path of ``compare.html``; raises :class:`ReportError` for a folder that is
    not a results folder, bad labels or an x axis the runs do not record.
    """
    if x not in X_AXES:
        raise ReportError(f"--x {x}: expected one of {', '.join(X_AXES)}")
    paths = [Path(d) for d in run_dirs]
    if not paths:
        raise ReportError("no runs to compare")
    names = list(labels) if labels is not None else _default_labels(paths)
    if len(names) != len(paths):
        raise ReportError(f"{len(names)} labels for {len(paths)} runs")
    if len(set(names)) != len(names):
        raise ReportError(f"labels must differ: {', '.join(names)}")
    runs = [_Run(path, name) for path, name in zip(paths, names)]
    folder = Path(output) if output is not None else (
        Path(os.path.commonpath([p.resolve().parent for p in paths])) / "compare")

    messages: list[str] = []
    positions = []
    for run in runs:
        xs, notes = run.x_values(x)
        positions.append(xs)
        messages += notes
    by_index = x == "step" and not all(run.steps_known for run in runs)
    xaxis = XAxis("training step (or checkpoint index)" if by_index else _X_LABELS[x])

    sections = []
    for task in dict.fromkeys(task for run in runs for task in run.tasks):
        having = [(index, run, xs) for index, (run, xs) in enumerate(zip(runs, positions)) if task in run.tasks]
        hashes = {run.name: run.task_hashes(task) for _, run, _ in having}
        mixed = len(set().union(*hashes.values())) > 1
        if mixed:
            messages.append(f"task {task}: the runs used different task versions ("
                            + "; ".join(f"{name}: {', '.join(sorted(h)) or 'unknown'}" for name, h in hashes.items())
                            + "); their numbers are not comparable")
        metric = next((m for m in _HEADLINE if any(run.headline(task) == m for _, run, _ in having)), None)
        if metric is None:
            continue
        conditions = list(dict.fromkeys(c for _, run, _ in having for c in run.conditions(task, metric)))
        panels, rows = [], []
        for condition in conditions:
            lines = [_line(run, xs, task, metric, condition, run.base_conjugate(task), run.name, style(index))
                     for index, run, xs in having]
            panels.append(Panel(_metric_label(metric, condition), [line for line in lines if line], "rate"))
            rows += [[_e(run.name), _e(condition), _e(", ".join(sorted(hashes[run.name])) or "unknown"),
                      *_inversion_cells(run, task, metric, condition, x)]
                     for _, run, _ in having if condition in run.conditions(task, metric)]
        title = task + (" (task versions differ: not comparable)" if mixed else "")
        path = save_panels(folder / PLOTS / f"{_safe_name(task)}.png", panels, xaxis, title=title)
        missing = [run.name for run in runs if task not in run.tasks]
        sections.append(
            f"<section><h2>{_e(title)}</h2>\n"
            + (_warnings([f"task versions differ between runs: {task} results are not comparable"]) if mixed else "")
            + (f'<p class="meta">not in: {_e(", ".join(missing))}</p>\n' if missing else "")
            + _figure(path, f"{task}: {_LABELS.get(metric, metric)} per run against {_X_LABELS[x]}, with 95% "
                            "bootstrap intervals.")
            + _table(("run", "condition", "task version", *_INVERSION_HEADER), rows) + "</section>\n")

    for message in messages:
        log.warning("%s", message)
    overview = [[_e(run.name), _e(run.folder.path), _e(_checkpoint_summary(run)), _e(", ".join(run.tasks))]
                for run in runs]
    parts = [
        f"<h1>Comparison: {_e(', '.join(names))}</h1>\n",
        f'<p class="meta">x axis: {_e(_X_LABELS[x])}; written '
        f"{_e(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>\n",
        _warnings(messages),
        _table(("run", "folder", "checkpoints", "tasks"), overview),
        f"<p>{_e(_HOW_TO_READ)}</p>\n",
        *sections,
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / COMPARE_HTML
    path.write_text(_page(f"Comparison: {', '.join(names)}", parts), encoding="utf-8")
    return path
