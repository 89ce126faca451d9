"""Reports: charts of context reliance over training, and comparisons of runs.

Two entry points:

- :func:`write_report` turns one results folder into ``plots/*.png`` and a self-contained
  ``report.html`` (images embedded, inline CSS: it opens offline and can be mailed as one
  file);
- :func:`compare` overlays several runs (model families, data mixtures, mitigations) task by
  task, against training step, epoch or tokens seen, and writes ``compare.html``, which
  links each run's own report.

Both can export the verdict tables (CSV, LaTeX: :mod:`harness.exports`) and every figure as
PDF/SVG beside its PNG. Rate charts fit their y axis to the data, 0 included, unless
``ylim`` fixes it; a run keeps its colour in every figure of a comparison (runs are coloured
in the order of their names, not of the arguments).

The numbers come from :mod:`harness.analysis` and :mod:`harness.items`; this module and
:mod:`harness.report_details` only lay them out.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from harness.analysis import (
    ALARMING,
    HEADLINE_METRICS,
    INVERSION_METHOD,
    X_AXES,
    Inversion,
    RunResults,
    conjugate_gap,
    inversion_of,
)
from harness.conjugates import CONJUGATES
from harness.errors import ReportError
from harness.html import escape as _e
from harness.html import figure as _figure
from harness.html import page as _page
from harness.html import table as _table
from harness.html import warnings as _warnings
from harness.io import atomic_write_text
from harness.exports import EXPORTS, FIGURE_FORMATS, TABLES, check_exports, write_tables
from harness.plots import Line, Panel, Style, XAxis, save_panels, style
from harness.report_details import samples_section, settings_section, transitions_section
from harness.scaling import RETENTION_LEVELS, DownscalingCurve, downscaling_curves

log = logging.getLogger("harness")

__all__ = ["EXPORTS", "compare", "write_report"]

REPORT_HTML = "report.html"
COMPARE_HTML = "compare.html"
PLOTS = "plots"
_X_LABELS = {"step": "training step", "epoch": "epoch", "tokens": "tokens seen", "params": "parameters"}

# Metrics tabulated per task: rates, so that a peak and a drop mean the same thing for all.
_TABLED = ("context_hit_rate", "parametric_hit_rate", "context_rate", "parametric_rate", "ll_context_win_rate",
           "accuracy", "ll_accuracy", "icl_rate", "instruction_rate", "ll_icl_win_rate")

_LABELS = {
    "context_hit_rate": "context reliance",
    "parametric_hit_rate": "parametric answers",
    "context_rate": "context answer only",
    "parametric_rate": "parametric answer only",
    "ll_context_win_rate": "log-likelihood: context wins",
    "accuracy": "accuracy",
    "ll_accuracy": "log-likelihood accuracy",
    "icl_rate": "ICL answers",
    "instruction_rate": "instruction answers",
    "ll_icl_win_rate": "log-likelihood: ICL wins",
}

# The overview of conflicting contexts: a panel each, a line per task.
_OVERVIEW = ("context_hit_rate", "parametric_hit_rate", "ll_context_win_rate")

# The lines of a knowledge-conflict panel: (metric, conditions it is read at (None: any),
# label, style). Closed-book and open-book accuracy sit on the same axes as context reliance:
# context reliance falling while open-book accuracy holds is inversion; both falling is the
# model forgetting how to read a context at all.
_CONFLICT_LINES: tuple[tuple[str, tuple[str, ...] | None, str, Style], ...] = (
    ("context_hit_rate", None, "context reliance (conflicting context)", style(0)),
    ("parametric_hit_rate", None, "parametric answers (conflicting context)", style(1)),
    ("ll_context_win_rate", None, "log-likelihood: context wins", style(2, "-.")),
    ("accuracy", ("closed_book",), "closed-book accuracy (fact recall)", style(3, ":")),
    ("accuracy", ("agreeing", "open_book"), "open-book accuracy (agreeing context)", style(4, "--")),
)


_HOW_TO_READ = (
    "Context reliance (context_hit_rate, the inversion paper's counterfactual accuracy) is the rate at "
    "which the output contains the answer a conflicting context states, whatever else it says. An "
    "inversion is flagged when it rises from the first checkpoint and then falls by the last: "
    f"{INVERSION_METHOD}. Rise and drop are shown as peak minus first and peak minus last with their "
    "one-sided lower bounds and p-values. Values in tables are over the examples scored at every "
    "checkpoint; bands in charts are the per-checkpoint 95% intervals of the summary (Clopper–Pearson "
    "for rates)."
)



def _line(run: RunResults, xs: Mapping[str, float], task: str, metric: str, condition: str, conjugate: str,
          label: str, line_style: Style) -> Line | None:
    """One summary series as a chart line with its CI band; None when it has no points."""
    rows = run.rows(task, metric, condition, conjugate)
    rows = rows[rows["checkpoint"].isin(list(xs))]
    if rows.empty:
        return None
    return Line(label, [xs[c] for c in rows["checkpoint"]], rows["value"].tolist(), rows["ci_low"].tolist(),
                rows["ci_high"].tolist(), line_style)


def _gap_line(run: RunResults, xs: Mapping[str, float], task: str, metric: str, condition: str, conjugate: str,
              line_style: Style) -> Line | None:
    """``metric`` on ``conjugate`` minus on the base (English) prompt, checkpoint by checkpoint,
    with a paired-bootstrap band over the examples scored in both."""
    gaps = [(point, gap) for point, gap in conjugate_gap(run, task, metric, condition, conjugate)
            if point.label in xs]
    if not gaps:
        return None
    return Line(conjugate, [xs[point.label] for point, _ in gaps], [gap.value for _, gap in gaps],
                [gap.ci_low for _, gap in gaps], [gap.ci_high for _, gap in gaps], line_style)


_INVERSION_HEADER = ("first", "peak [95% CI]", "last", "rise: peak − first (lower bound, p)",
                     "drop: peak − last (lower bound, p)", "verdict")


def _inversion(run: RunResults, task: str, metric: str, condition: str) -> Inversion | ReportError:
    """One series' inversion check, or the error that says why it cannot be made."""
    try:
        return inversion_of(run, task, metric, condition, run.base_conjugate(task))
    except ReportError as error:
        return error


def _inversion_cells(inversion: Inversion | ReportError, x: str = "step",
                     xs: Mapping[str, float] | None = None) -> list[str]:
    """The table cells of one series' inversion check (the error, if it could not be made);
    the peak is placed by its step, and where ``xs`` places it on an ``x`` axis other than
    steps (epoch, tokens), there too. Falls are drawn in warning colours; nothing is drawn
    as good news."""
    if isinstance(inversion, ReportError):
        return ["", "", "", "", "", _e(inversion)]
    peak = inversion.peak_checkpoint
    where = peak.where
    if x != "step" and xs and peak.label in xs:
        where += f" ({x} {xs[peak.label]:g})"
    kind = "found" if inversion.verdict in ALARMING else "none"
    verdict = f'<span class="{kind}">{_e(inversion.verdict)}</span>'
    return [
        f"{inversion.first:.3f}",
        f"{inversion.peak:.3f} [{inversion.peak_ci[0]:.3f}, {inversion.peak_ci[1]:.3f}] at {_e(where)}",
        f"{inversion.last:.3f}",
        _e(inversion.rise),
        _e(inversion.drop),
        f'{verdict}<br><span class="why">{_e(inversion.reason)} (n={inversion.n})</span>',
    ]


def _metric_label(metric: str, condition: str) -> str:
    return f"{_LABELS.get(metric, metric)} ({condition})"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _xaxis(run: RunResults, xs: Mapping[str, float]) -> XAxis:
    """The x axis of a single run: steps, or checkpoint names at their index."""
    if run.steps_known:
        return XAxis(_X_LABELS["step"])
    return XAxis("checkpoint", ([xs[p.label] for p in run.checkpoints], [p.label for p in run.checkpoints]))


# ---------------------------------------------------------------------------------------------
# One run's report
# ---------------------------------------------------------------------------------------------


def _conflict_panel(run: RunResults, xs: Mapping[str, float], task: str,
                    ylim: tuple[float, float] | None) -> Panel | None:
    conjugate = run.base_conjugate(task)
    lines = []
    for metric, wanted, label, line_style in _CONFLICT_LINES:
        conditions = [c for c in run.conditions(task, metric) if wanted is None or c in wanted]
        for condition in conditions:
            # A task with the same quantity at two conditions names the condition.
            name = label if len(conditions) == 1 else f"{label}: {condition}"
            lines.append(_line(run, xs, task, metric, condition, conjugate, name, line_style))
    lines = [line for line in lines if line is not None]
    return Panel(task, lines, "share of examples", ylim=ylim, ymax=1.0) if lines else None


@dataclass(frozen=True)
class _Figures:
    """Where a page's figures go and how they are drawn: the plots folder, the y range of rate
    charts (None: fitted), and the formats written beside each PNG."""

    folder: Path
    ylim: tuple[float, float] | None = None
    formats: Sequence[str] = ()

    def rates(self, title: str, lines: Sequence[Line], ylabel: str) -> Panel:
        return Panel(title, lines, ylabel, ylim=self.ylim, ymax=1.0)

    def save(self, name: str, panels: Sequence[Panel], xaxis: XAxis, **options) -> Path:
        return save_panels(self.folder / name, panels, xaxis, formats=self.formats, **options)


def _report_figures(run: RunResults, xs: Mapping[str, float], figures: _Figures) -> list[str]:
    """Draw the run's charts and return their HTML sections."""
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
            overview.append(figures.rates(f"{label[:1].upper()}{label[1:]} on conflicting contexts", lines, label))
    by_task = [panel for panel in (_conflict_panel(run, xs, task, figures.ylim) for task in run.tasks)
               if panel is not None]
    if overview or by_task:
        parts = ["<section><h2>Context reliance</h2>\n"]
        if overview:
            path = figures.save("context_reliance.png", overview, xaxis)
            parts.append(_figure(path, "Context reliance (the output gives the answer the conflicting context "
                                       "states), parametric answers (it gives the real-world fact) and, where "
                                       "scored, the rate at which the context answer is the likelier "
                                       "continuation, per task, with 95% bootstrap intervals."))
        if by_task:
            path = figures.save("context_reliance_by_task.png", by_task, xaxis)
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
                                  f"{_LABELS.get(metric, metric)}: conjugate − {conjugates[0]}", zero_line=True))
    if gaps:
        path = figures.save("conjugate_gap.png", gaps, xaxis)
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
            icl.append(figures.rates(f"{task}: {condition}", [line for line in lines if line is not None],
                                     "share of examples"))
    if icl:
        path = figures.save("icl_vs_instruction.png", icl, xaxis)
        sections.append("<section><h2>In-context learning vs instruction following</h2>\n" + _figure(
            path, "Rate at which the output follows the demonstrated transformation (ICL) or answers the "
                  "instruction-looking query, per condition, with 95% bootstrap intervals.") + "</section>\n")
    return sections


def _checkpoint_summary(run: RunResults) -> str:
    steps = [p.step for p in run.checkpoints if p.step is not None]
    span = f"steps {min(steps)}–{max(steps)}" if steps else "steps unknown"
    return f"{len(run.checkpoints)} checkpoint{'s' * (len(run.checkpoints) != 1)} ({span})"


def _run_warnings(run: RunResults) -> list[str]:
    messages = [f"task {task}: results from {len(run.task_hashes(task))} task versions "
                f"({', '.join(sorted(run.task_hashes(task)))}) are mixed in this run"
                for task in run.tasks if len(run.task_hashes(task)) > 1]
    messages += [f"checkpoint {label} was skipped: {reason}"
                 for label, reason in run.record.get("skipped_checkpoints", {}).items()]
    return messages


def _verdict_caption(metrics: Sequence[str]) -> str:
    """Which metric and which test made a table's verdicts."""
    return (f"Verdicts on {', '.join(dict.fromkeys(metrics))} over the examples scored at every checkpoint: "
            f"{INVERSION_METHOD}. 'inversion' is said only of context reliance (a rise, then a fall); a "
            "significant fall of an accuracy is 'fall (forgetting)'.")


def write_report(run_dir: str | Path, output: str | Path | None = None, *, exports: Sequence[str] = (),
                 ylim: tuple[float, float] | None = None) -> Path:
    """Write ``plots/*.png`` and a self-contained ``report.html`` for a results folder.

    The report holds: the inversion verdict of each task's headline metric; context
    reliance per task over training (with parametric answers, closed-book and open-book
    accuracy, and log-likelihood context wins where measured); the gap between English and
    conjugate prompts; ICL-vs-instruction rates; the items that changed between the peak and
    the last checkpoint (:func:`harness.items.transitions`); per task a table of the first,
    peak and last values of every rate with its verdict (:func:`detect_inversion`); one
    prompt and a few outputs per task; the run's settings.

    ``output`` is where the report and ``plots/`` go (default: the results folder);
    ``exports`` adds ``tables/inversion.csv`` / ``.tex`` and every figure as PDF/SVG
    (:data:`EXPORTS`); ``ylim`` fixes the y axis of rate charts (default: fitted, 0
    included). Returns the path of ``report.html``.

    Raises :class:`ReportError` when ``run_dir`` is not a results folder or has no results.
    """
    exports = check_exports(exports)
    run = RunResults(run_dir)
    folder = Path(output) if output is not None else run.folder.path
    figures = _Figures(folder / PLOTS, ylim, [kind for kind in exports if kind in FIGURE_FORMATS])
    xs, _ = run.x_values("step")  # a run's own axis names its checkpoints where steps are unknown
    messages = _run_warnings(run)
    for message in messages:
        log.warning("%s", message)

    headlines, verdicts, task_sections = [], [], []
    for task in run.tasks:
        # Every headline metric is tabled too: its verdict row reuses the table's check.
        checks = {(metric, condition): _inversion(run, task, metric, condition)
                  for metric in _TABLED for condition in run.conditions(task, metric)}
        headline = run.headline(task)
        for (metric, condition), check in checks.items():
            if metric == headline:
                verdicts.append([_e(task), _e(_metric_label(metric, condition)), *_inversion_cells(check)])
                headlines += [check] if isinstance(check, Inversion) else []
        rows = [[_e(_metric_label(metric, condition)), *_inversion_cells(check)]
                for (metric, condition), check in checks.items()]
        if rows:
            task_sections.append(f"<h3>{_e(task)} <span class=\"meta\">({_e(run.base_conjugate(task))} "
                                 f"prompts)</span></h3>\n" + _table(("metric", *_INVERSION_HEADER), rows)
                                 + f'<p class="why">{_e(_verdict_caption([m for m, _ in checks]))}</p>\n')

    model = run.record.get("config", {}).get("model") or run.record.get("config", {}).get("checkpoints")
    parts = [
        f"<h1>Context reliance over training: {_e(run.name)}</h1>\n",
        f'<p class="meta">{_e(_checkpoint_summary(run))}; tasks: {_e(", ".join(run.tasks))}'
        + (f"; model: {_e(model)}" if model else "")
        + f"; written {_e(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>\n",
        _warnings(messages),
        f"<p>{_e(_HOW_TO_READ)}</p>\n",
    ]
    if run.is_downscaling:
        parts.append(_downscaling_section(run, figures.folder))
    if verdicts:
        parts.append("<section><h2>Inversion</h2>\n" + _table(("task", "metric", *_INVERSION_HEADER), verdicts)
                     + f'<p class="why">{_e(_verdict_caption([v.metric for v in headlines]))}</p>\n</section>\n')
    parts += _report_figures(run, xs, figures)
    parts.append(transitions_section(run))
    if task_sections:
        parts.append("<section><h2>Per task</h2>\n" + "".join(task_sections) + "</section>\n")
    parts += [samples_section(run), settings_section(run)]
    write_tables(folder / TABLES, run.name, headlines, exports, caption=_verdict_caption([v.metric for v in headlines]))
    path = folder / REPORT_HTML
    atomic_write_text(path, _page(f"Report: {run.name}", parts))
    return path


# ---------------------------------------------------------------------------------------------
# Down-scaling runs (prune: checkpoints)
# ---------------------------------------------------------------------------------------------

_DOWNSCALING_HOW = (
    "Each probe's headline score on the pruned variants of one model, against the sparsity measured over "
    "the pruned layers (Jin et al. 2023: fact recall falls before in-context processing). Left: the score "
    "relative to the dense model above chance, (score - chance) / (dense - chance), 1 at the dense model and "
    "0 at chance (0.5 for the two-way log-likelihood comparisons, 0 for generated answers), with 95% "
    "bootstrap bands over the examples (the dense score resampled with them). Right: the scores as measured, "
    "with Clopper–Pearson 95% intervals. The table gives the sparsity up to which each probe keeps 90% and "
    "50% of its dense score: where a non-increasing (isotonic) fit of its normalised curve first falls below "
    "the level, interpolated between variants, with a 95% bootstrap interval; 'beyond the sweep' means no "
    "variant fell below it, 'n/a' that the dense model is not above chance."
)


def _curve_line(curve: DownscalingCurve, index: int, normalised: bool) -> Line:
    values = (curve.normalised, curve.normalised_low, curve.normalised_high) if normalised else (
        curve.score, curve.score_low, curve.score_high)
    return Line(curve.name, list(curve.sparsity), *map(list, values), style(index))


def _level_line(level: float, top: float) -> Line:
    return Line(f"{level:.0%} of the dense score", [0.0, top], [level, level],
                style=Style("#777777", "", ":" if level < 0.75 else "--"))


def _share(value: float) -> str:
    return f"{value:.3f}"


def _downscaling_section(run: RunResults, plots: Path) -> str:
    """The chart of score against sparsity, the retention table and the variants' table."""
    curves, problems = downscaling_curves(run)
    parts = ["<section><h2>Down-scaling</h2>\n", _warnings(problems)]
    if curves:
        top = max(max(curve.sparsity) for curve in curves)
        relative = [_curve_line(curve, i, True) for i, curve in enumerate(curves)]
        relative += [_level_line(level, top) for level in RETENTION_LEVELS]
        raw = [_curve_line(curve, i, False) for i, curve in enumerate(curves)]
        raw += [Line(f"chance ({chance:g})", [0.0, top], [chance, chance], style=Style("#777777", "", "-."))
                for chance in sorted({curve.chance for curve in curves} - {0.0})]
        # Small probes put the normalised bands far outside [0, 1]; the view keeps the curves legible.
        panels = [Panel("Score relative to the dense model (above chance)", relative, "normalised score",
                        ylim=(-1.0, 1.6), zero_line=True),
                  Panel("Score", raw, "score")]
        path = save_panels(plots / "downscaling.png", panels, XAxis("sparsity of the pruned layers"), ncols=2)
        parts.append(_figure(path, _DOWNSCALING_HOW))
        header = ("probe", "metric (chance)", "n", "dense [95% CI]", "at the highest sparsity [95% CI]",
                  *(f"keeps {level:.0%} up to sparsity [95% CI]" for level in RETENTION_LEVELS))
        rows = [[_e(curve.name), _e(f"{curve.metric} ({curve.chance:g})"), str(curve.n),
                 f"{curve.score[0]:.3f} [{curve.score_low[0]:.3f}, {curve.score_high[0]:.3f}]",
                 f"{curve.score[-1]:.3f} [{curve.score_low[-1]:.3f}, {curve.score_high[-1]:.3f}] "
                 f"at {curve.sparsity[-1]:.2f}",
                 *(_e(retention) for retention in curve.retention)] for curve in curves]
        parts.append(_table(header, rows))
    variants = [(point.label, run.variants[point.label]) for point in run.checkpoints]
    parts.append(_table(
        ("checkpoint", "method", "structure", "calibration", "sparsity asked", "achieved (pruned layers)",
         "per layer", "whole model", "parameters left"),
        [[_e(label), _e(v["method"]), _e(v["structure"]), _e(v.get("calibration") or "none"),
          f"{v['sparsity']:.2f}", _share(v["achieved"]), f"{_share(v['layer_min'])}–{_share(v['layer_max'])}",
          _share(v["achieved_model"]), f"{v['params'] - v['zeros_added']:,}"] for label, v in variants]))
    return "".join(parts) + "</section>\n"


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


def _report_link(run: RunResults, folder: Path) -> str:
    """A link from ``folder`` to the run's own report.html (its folder when it has none yet)."""
    target = run.folder.path / REPORT_HTML
    href = os.path.relpath(target if target.is_file() else run.folder.path, folder.resolve())
    text = "report" if target.is_file() else "folder (no report.html yet: harness report)"
    return f'<a href="{_e(Path(href).as_posix())}">{_e(text)}</a>'


def compare(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None, x: str = "step",
            output: str | Path | None = None, *, ylim: tuple[float, float] | None = None,
            tokens_per_step: Mapping[str | None, float] | None = None, exports: Sequence[str] = ()) -> Path:
    """Overlay several runs task by task and write ``compare.html`` with ``plots/*.png``.

    Each task gets one chart (a panel per condition of its headline metric: context
    reliance where measured) with a line per run, against ``x``: ``step``, ``epoch`` or
    ``tokens`` (input tokens seen; epoch and tokens come from each checkpoint's
    trainer_state.json, the base model at 0), or ``params``; and a table of each run's
    first, peak and last values with its verdict. ``labels`` name the runs (default: their
    folder names); a run keeps one colour in every figure, given by the order of the names.
    ``output`` defaults to a ``compare`` folder beside the runs; the page links each run's
    report.

    ``tokens_per_step`` places the checkpoints of runs without trainer states on ``--x
    tokens``: run name -> tokens per step, the key None for every run. ``ylim`` and
    ``exports`` as for :func:`write_report` (the tables are written per run and task).

    Runs whose results for a task were made with different task versions (content hashes)
    are flagged, in the HTML and as a logged warning: their numbers are not comparable.
    Returns the path of ``compare.html``; raises :class:`ReportError` for a folder that is
    not a results folder, bad labels or an x axis the runs do not record.
    """
    if x not in X_AXES:
        raise ReportError(f"--x {x}: expected one of {', '.join(X_AXES)}")
    exports = check_exports(exports)
    paths = [Path(d) for d in run_dirs]
    if not paths:
        raise ReportError("no runs to compare")
    names = list(labels) if labels is not None else _default_labels(paths)
    if len(names) != len(paths):
        raise ReportError(f"{len(names)} labels for {len(paths)} runs")
    if len(set(names)) != len(names):
        raise ReportError(f"labels must differ: {', '.join(names)}")
    per_step = dict(tokens_per_step or {})
    unknown = sorted(set(per_step) - set(names) - {None})
    if unknown:
        raise ReportError(f"--tokens-per-step: no run is called {', '.join(unknown)} (runs: {', '.join(names)})")
    runs = [RunResults(path, name) for path, name in zip(paths, names)]
    colour = {name: index for index, name in enumerate(sorted(names))}
    folder = Path(output) if output is not None else (
        Path(os.path.commonpath([p.resolve().parent for p in paths])) / "compare")
    figures = _Figures(folder / PLOTS, ylim, [kind for kind in exports if kind in FIGURE_FORMATS])

    messages: list[str] = []
    positions = []
    for run in runs:
        xs, notes = run.x_values(x, per_step.get(run.name, per_step.get(None)))
        positions.append(xs)
        messages += notes
    by_index = x == "step" and not all(run.steps_known for run in runs)
    xaxis = XAxis("training step (or checkpoint index)" if by_index else _X_LABELS[x])

    sections, headlines = [], []
    for task in dict.fromkeys(task for run in runs for task in run.tasks):
        having = [(run, xs) for run, xs in zip(runs, positions) if task in run.tasks]
        hashes = {run.name: run.task_hashes(task) for run, _ in having}
        mixed = len(set().union(*hashes.values())) > 1
        if mixed:
            messages.append(f"task {task}: the runs used different task versions ("
                            + "; ".join(f"{name}: {', '.join(sorted(h)) or 'unknown'}" for name, h in hashes.items())
                            + "); their numbers are not comparable")
        metric = next((m for m in HEADLINE_METRICS if any(run.headline(task) == m for run, _ in having)), None)
        if metric is None:
            continue
        conditions = list(dict.fromkeys(c for run, _ in having for c in run.conditions(task, metric)))
        panels, rows = [], []
        for condition in conditions:
            lines = [_line(run, xs, task, metric, condition, run.base_conjugate(task), run.name,
                           style(colour[run.name])) for run, xs in sorted(having, key=lambda pair: pair[0].name)]
            panels.append(figures.rates(_metric_label(metric, condition), [line for line in lines if line],
                                        _LABELS.get(metric, metric)))
            for run, xs in having:
                if condition in run.conditions(task, metric):
                    check = _inversion(run, task, metric, condition)
                    headlines += [(run.name, check)] if isinstance(check, Inversion) else []
                    rows.append([_e(run.name), _e(condition), _e(", ".join(sorted(hashes[run.name])) or "unknown"),
                                 *_inversion_cells(check, x, xs)])
        title = task + (" (task versions differ: not comparable)" if mixed else "")
        path = figures.save(f"{_safe_name(task)}.png", panels, xaxis, title=title)
        missing = [run.name for run in runs if task not in run.tasks]
        sections.append(
            f"<section><h2>{_e(title)}</h2>\n"
            + (_warnings([f"task versions differ between runs: {task} results are not comparable"]) if mixed else "")
            + (f'<p class="meta">not in: {_e(", ".join(missing))}</p>\n' if missing else "")
            + _figure(path, f"{task}: {_LABELS.get(metric, metric)} per run against {_X_LABELS[x]}, with 95% "
                            "intervals.")
            + _table(("run", "condition", "task version", *_INVERSION_HEADER), rows)
            + f'<p class="why">{_e(_verdict_caption([metric]))}</p>\n</section>\n')

    for message in messages:
        log.warning("%s", message)
    overview = [[_e(run.name), _e(run.folder.path), _report_link(run, folder), _e(_checkpoint_summary(run)),
                 _e(", ".join(run.tasks))] for run in runs]
    parts = [
        f"<h1>Comparison: {_e(', '.join(names))}</h1>\n",
        f'<p class="meta">x axis: {_e(_X_LABELS[x])}; written '
        f"{_e(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>\n",
        _warnings(messages),
        _table(("run", "folder", "report", "checkpoints", "tasks"), overview),
        f"<p>{_e(_HOW_TO_READ)}</p>\n",
        *sections,
    ]
    for name in dict.fromkeys(name for name, _ in headlines):
        write_tables(folder / TABLES / _safe_name(name), name, [inv for n, inv in headlines if n == name],
                     [kind for kind in exports if kind not in FIGURE_FORMATS])
    path = folder / COMPARE_HTML
    atomic_write_text(path, _page(f"Comparison: {', '.join(names)}", parts))
    return path
