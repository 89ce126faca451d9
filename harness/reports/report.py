"""One run's report: charts of context reliance over training and the verdicts, as
``plots/*.png`` and a self-contained ``report.html`` (images embedded, inline CSS: it opens
offline and can be mailed as one file).

The tables can be exported (CSV, LaTeX: :mod:`harness.reports.exports`) and every figure as
PDF/SVG beside its PNG. Rate charts fit their y axis to the data, 0 included, unless ``ylim``
fixes it. The numbers come from :mod:`harness.reports.inversion` and
:mod:`harness.reports.items`; this module, :mod:`~harness.reports.figures`,
:mod:`~harness.reports.verdicts` and :mod:`~harness.reports.details` only lay them out.
Several runs side by side: :mod:`harness.reports.compare`.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Mapping, Sequence

from harness.conjugates import CONJUGATES
from harness.errors import ReportError
from harness.io import atomic_write_text, check_output_folder
from harness.reports import noise, verdicts
from harness.reports.details import downscaling_section, samples_section, settings_section, transitions_section
from harness.reports.exports import FIGURE_FORMATS, TABLES, check_exports, write_tables
from harness.reports.figures import PLOTS, Figures, gap_line, line, metric_label, run_xaxis
from harness.reports.html import escape as _e
from harness.reports.html import figure as _figure
from harness.reports.html import page as _page
from harness.reports.html import table as _table
from harness.reports.html import warnings as _warnings
from harness.reports.inversion import Inversion
from harness.reports.plots import Band, Line, Panel, Style, style
from harness.reports.runs import RunResults
from harness.scoring.metrics import OVERVIEW_METRICS, TABLED_METRICS, label

log = logging.getLogger("harness")

REPORT_HTML = "report.html"

# The lines of a knowledge-conflict panel: (metric, conditions it is read at (None: any),
# label, style). Closed-book and open-book accuracy sit on the same axes as context reliance:
# context reliance falling while open-book accuracy holds is inversion; both falling is the
# model forgetting how to read a context at all.
CONFLICT_LINES: tuple[tuple[str, tuple[str, ...] | None, str, Style], ...] = (
    ("context_hit_rate", None, "context reliance (conflicting context)", style(0)),
    ("parametric_hit_rate", None, "parametric answers (conflicting context)", style(1)),
    ("ll_context_win_rate", None, "log-likelihood: context wins", style(2, "-.")),
    ("accuracy", ("closed_book",), "closed-book accuracy (fact recall)", style(3, ":")),
    ("accuracy", ("agreeing", "open_book"), "open-book accuracy (agreeing context)", style(4, "--")),
)


#: The continuous margin beside each conflict panel (harness.scoring.metrics).
MARGIN = "ll_mean_logodds"
MARGIN_LABEL = "log-odds margin (95% CI)"
MARGIN_CAPTION = (" Beside each task, where log-likelihood mode ran: the mean over examples of log P(context "
                  "answer) − log P(memorised answer), summed over answer tokens, with its 95% bootstrap "
                  "interval; above 0 the context answer is the likelier on average. It moves less by chance "
                  "than a rate.")
NOISE_BAND = "headline ± noise sd between neighbouring checkpoints"


def _noise_band(series: Line, sd: float | None) -> Band | None:
    """``series`` ± its checkpoint-to-checkpoint noise sd; None where it has too few checkpoints
    for one."""
    if sd is None:
        return None
    return Band(NOISE_BAND, series.x, [y - sd for y in series.y], [y + sd for y in series.y])


def _conflict_panel(run: RunResults, xs: Mapping[str, float], task: str, ylim: tuple[float, float] | None,
                    noise_sd: Mapping[tuple[str, str, str], float | None]) -> Panel | None:
    """A knowledge-conflict task's lines; its headline with a band of ``noise_sd`` (by task,
    metric, condition: :func:`harness.reports.noise.run_noise`)."""
    conjugate = run.base_conjugate(task)
    headline = run.headline(task)
    lines, bands = [], []
    for metric, wanted, words, line_style in CONFLICT_LINES:
        conditions = [c for c in run.conditions(task, metric) if wanted is None or c in wanted]
        for condition in conditions:
            # A task with the same quantity at two conditions names the condition.
            name = words if len(conditions) == 1 else f"{words}: {condition}"
            series = line(run, xs, task, metric, condition, conjugate, name, line_style)
            lines.append(series)
            if metric == headline and series is not None:
                bands.append(_noise_band(series, noise_sd.get((task, metric, condition))))
    lines = [line for line in lines if line is not None]
    bands = [band for band in bands if band is not None]
    return Panel(task, lines, "share of examples", ylim=ylim, ymax=1.0, bands=bands) if lines else None


def _margin_panel(run: RunResults, xs: Mapping[str, float], task: str) -> Panel | None:
    """The log-odds margin of a knowledge-conflict task with its interval and 0 marked; None
    where log-likelihood mode did not run."""
    conditions = run.conditions(task, MARGIN)
    lines = [line(run, xs, task, MARGIN, condition, run.base_conjugate(task),
                  MARGIN_LABEL if len(conditions) == 1 else f"{MARGIN_LABEL}: {condition}", style(5 + index))
             for index, condition in enumerate(conditions)]
    lines = [line for line in lines if line is not None]
    return Panel(f"{task}: log P(context answer) − log P(memorised answer)", lines, "log-odds margin",
                 zero_line=True) if lines else None


def _report_figures(run: RunResults, xs: Mapping[str, float], figures: Figures,
                    curves: Sequence[noise.CurveNoise]) -> list[str]:
    """Draw the run's charts and return their HTML sections; ``curves`` give the noise bands."""
    xaxis = run_xaxis(run, xs)
    sections = []

    # One panel a conflict metric, one line a task (a colour a task, the same in every panel).
    overview = []
    for metric in OVERVIEW_METRICS:
        lines = []
        for index, task in enumerate(run.tasks):
            conditions = run.conditions(task, metric)
            for condition in conditions:
                series = task if len(conditions) == 1 else f"{task} ({condition})"
                lines.append(line(run, xs, task, metric, condition, run.base_conjugate(task), series, style(index)))
        lines = [line for line in lines if line is not None]
        if lines:
            name = label(metric)
            overview.append(figures.rates(f"{name[:1].upper()}{name[1:]} on conflicting contexts", lines, name))
    noise_sd = {(curve.task, curve.metric, curve.condition): curve.floor.sd for curve in curves}
    pairs = [(_conflict_panel(run, xs, task, figures.ylim, noise_sd), _margin_panel(run, xs, task))
             for task in run.tasks]
    pairs = [(panel, margin) for panel, margin in pairs if panel is not None]
    # With margins, each conflict panel has its margin beside it: two columns, a task a row.
    with_margins = any(margin is not None for _, margin in pairs)
    by_task = [panel for pair in pairs for panel in (pair if with_margins else pair[:1])]
    if overview or by_task:
        parts = ["<section><h2>Context reliance</h2>\n"]
        if overview:
            path = figures.save("context_reliance.png", overview, xaxis)
            parts.append(_figure(path, "Context reliance (the output gives the answer the conflicting context "
                                       "states), parametric answers (it gives the real-world fact) and, where "
                                       "scored, the rate at which the context answer is the likelier "
                                       "continuation, per task, with 95% bootstrap intervals."))
        if by_task:
            path = figures.save("context_reliance_by_task.png", by_task, xaxis, ncols=2 if with_margins else 3)
            parts.append(_figure(path, "Per task: context reliance and parametric answers on conflicting "
                                       "contexts, with closed-book (fact recall) and open-book accuracy on the "
                                       "same axes; grey hatching: the headline curve ± its noise between "
                                       "neighbouring checkpoints (Noise floor). Context reliance falling while "
                                       "open-book accuracy holds is inversion; both falling is forgetting."
                                 + (MARGIN_CAPTION if with_margins else "")))
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
            lines = [gap_line(run, xs, task, metric, condition, conjugate, style(palette.index(conjugate)))
                     for conjugate in conjugates[1:]]
            lines = [line for line in lines if line is not None]
            if lines:
                gaps.append(Panel(f"{task}: {metric_label(metric, condition)}", lines,
                                  f"{label(metric)}: conjugate − {conjugates[0]}", zero_line=True))
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
            lines = [line(run, xs, task, metric, condition, conjugate, label(metric), style(index))
                     for index, metric in enumerate(("icl_rate", "instruction_rate"))]
            icl.append(figures.rates(f"{task}: {condition}", [line for line in lines if line is not None],
                                     "share of examples"))
    if icl:
        path = figures.save("icl_vs_instruction.png", icl, xaxis)
        sections.append("<section><h2>In-context learning vs instruction following</h2>\n" + _figure(
            path, "Rate at which the output follows the demonstrated transformation (ICL) or answers the "
                  "instruction-looking query, per condition, with 95% bootstrap intervals.") + "</section>\n")
    return sections


def _run_warnings(run: RunResults) -> list[str]:
    messages = [f"task {task}: results from {len(run.task_hashes(task))} task versions "
                f"({', '.join(sorted(run.task_hashes(task)))}) are mixed in this run"
                for task in run.tasks if len(run.task_hashes(task)) > 1]
    messages += [f"checkpoint {checkpoint} was skipped: {reason}"
                 for checkpoint, reason in run.record.skipped_checkpoints.items()]
    schedule = run.record.schedule
    if schedule and schedule.get("left_out"):
        messages.append(f"adaptive schedule: {schedule['evaluated']} of {schedule['checkpoints']} checkpoints "
                        f"evaluated ({schedule['stopped']}); not evaluated: {', '.join(schedule['left_out'])}")
        if schedule.get("caveat"):
            messages.append(f"adaptive schedule: {schedule['caveat']}")
    return messages


def write_report(run_dir: str | Path, output: str | Path | None = None, *, exports: Sequence[str] = (),
                 ylim: tuple[float, float] | None = None) -> Path:
    """Write ``plots/*.png`` and a self-contained ``report.html`` for a results folder.

    The report holds: the inversion verdict of each task's headline metric; context
    reliance per task over training (with parametric answers, closed-book and open-book
    accuracy, and log-likelihood context wins where measured), with the headline's noise band
    and, where log-likelihood mode ran, the log-odds margin beside it; the noise floor of each
    headline curve (:mod:`harness.reports.noise`); the gap between English and
    conjugate prompts; ICL-vs-instruction rates; the items that changed between the peak and
    the last checkpoint (:func:`harness.reports.items.transitions`); per task a table of the first,
    peak and last values of every rate with its verdict (:func:`detect_inversion`); one
    prompt and a few outputs per task; the run's settings.

    ``output`` is where the report and ``plots/`` go (default: the results folder);
    ``exports`` adds ``tables/inversion.csv`` / ``.tex``, ``tables/noise.csv`` and every figure as PDF/SVG
    (:data:`EXPORTS`); ``ylim`` fixes the y axis of rate charts (default: fitted, 0
    included). Returns the path of ``report.html``.

    Raises :class:`ReportError` when ``run_dir`` is not a results folder or has no results.
    """
    exports = check_exports(exports)
    run = RunResults(run_dir)
    folder = check_output_folder(output, ReportError, what="the report") if output is not None else run.folder.path
    figures = Figures(folder / PLOTS, ylim, [kind for kind in exports if kind in FIGURE_FORMATS])
    xs, _ = run.x_values("step")  # a run's own axis names its checkpoints where steps are unknown
    messages = _run_warnings(run)
    for message in messages:
        log.warning("%s", message)

    headlines, verdict_rows, verdict_checks, task_sections = [], [], [], []
    for task in run.tasks:
        # Every headline metric is tabled too: its verdict row reuses the table's check.
        checks = {(metric, condition): verdicts.check(run, task, metric, condition)
                  for metric in TABLED_METRICS for condition in run.conditions(task, metric)}
        headline = run.headline(task)
        for (metric, condition), check in checks.items():
            if metric == headline:
                verdict_rows.append([_e(task), _e(metric_label(metric, condition)), *verdicts.cells(check)])
                verdict_checks.append(check)
                headlines += [check] if isinstance(check, Inversion) else []
        rows = [[_e(metric_label(metric, condition)), *verdicts.cells(check)]
                for (metric, condition), check in checks.items()]
        if rows:
            task_sections.append(f"<h3>{_e(task)} <span class=\"meta\">({_e(run.base_conjugate(task))} "
                                 f"prompts)</span></h3>\n" + _table(("metric", *verdicts.HEADER), rows)
                                 + f'<p class="why">{_e(verdicts.caption([m for m, _ in checks]))}</p>\n')

    model = run.record.config.get("model") or run.record.config.get("checkpoints")
    parts = [
        f"<h1>Context reliance over training: {_e(run.name)}</h1>\n",
        f'<p class="meta">{_e(verdicts.checkpoint_summary(run))}; tasks: {_e(", ".join(run.tasks))}'
        + (f"; model: {_e(model)}" if model else "")
        + f"; written {_e(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>\n",
        _warnings(messages),
        f"<p>{_e(verdicts.HOW_TO_READ)}</p>\n",
    ]
    if run.is_downscaling:
        parts.append(downscaling_section(run, figures.folder))
    if verdict_rows:
        parts.append("<section><h2>Inversion</h2>\n"
                     + verdicts.holm_table(("task", "metric", *verdicts.HEADER), verdict_rows, verdict_checks)
                     + f'<p class="why">{_e(verdicts.caption([v.metric for v in headlines]))}</p>\n</section>\n')
    curves = noise.run_noise(run, xs)
    parts += _report_figures(run, xs, figures, curves)
    parts.append(noise.section(curves))
    parts.append(transitions_section(run))
    if task_sections:
        parts.append("<section><h2>Per task</h2>\n" + "".join(task_sections) + "</section>\n")
    parts += [samples_section(run), settings_section(run)]
    write_tables(folder / TABLES, run.name, headlines, exports, caption=verdicts.caption([v.metric for v in headlines]),
                 noise=curves)
    path = folder / REPORT_HTML
    atomic_write_text(path, _page(f"Report: {run.name}", parts))
    return path
