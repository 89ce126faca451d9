"""The charts a report page draws from a run's summary: one series as a line with its interval
band, a conjugate's gap to the English prompt, the x axis, and where a page's figures go."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.checkpoints.interp import level_of
from harness.reports.inversion import conjugate_gap
from harness.reports.plots import Line, Panel, Style, XAxis, save_panels
from harness.reports.runs import RunResults
from harness.scoring.metrics import label

PLOTS = "plots"
#: Words for each x axis (:data:`harness.reports.runs.X_AXES`).
X_LABELS = {"step": "training step", "epoch": "epoch", "tokens": "tokens seen", "params": "parameters"}


def metric_label(metric: str, condition: str) -> str:
    """A metric's words with the condition it is read at: ``context reliance (conflicting)``."""
    return f"{label(metric)} ({condition})"


def safe_name(name: str) -> str:
    """``name`` as one safe file name component."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def line(run: RunResults, xs: Mapping[str, float], task: str, metric: str, condition: str, conjugate: str,
         name: str, line_style: Style) -> Line | None:
    """One summary series as a chart line with its CI band; None when it has no points."""
    rows = run.rows(task, metric, condition, conjugate)
    rows = rows[rows["checkpoint"].isin(list(xs))]
    if rows.empty:
        return None
    return Line(name, [xs[c] for c in rows["checkpoint"]], rows["value"].tolist(), rows["ci_low"].tolist(),
                rows["ci_high"].tolist(), line_style)


def gap_line(run: RunResults, xs: Mapping[str, float], task: str, metric: str, condition: str, conjugate: str,
             line_style: Style) -> Line | None:
    """``metric`` on ``conjugate`` minus on the base (English) prompt, checkpoint by checkpoint,
    with a paired-bootstrap band over the examples scored in both."""
    gaps = [(point, gap) for point, gap in conjugate_gap(run, task, metric, condition, conjugate)
            if point.label in xs]
    if not gaps:
        return None
    return Line(conjugate, [xs[point.label] for point, _ in gaps], [gap.value for _, gap in gaps],
                [gap.ci_low for _, gap in gaps], [gap.ci_high for _, gap in gaps], line_style)


def run_xaxis(run: RunResults, xs: Mapping[str, float]) -> XAxis:
    """The x axis of a single run: λ for interpolated checkpoints (each at its step, 100 λ),
    steps, or checkpoint names at their index."""
    levels = {point.label: level_of(point.label) for point in run.checkpoints}
    if levels and None not in levels.values():
        return XAxis("λ: weights base + λ × (finetuned − base)",
                     ([xs[name] for name in levels], [f"{level:g}" for level in levels.values()]))
    if run.steps_known:
        return XAxis(X_LABELS["step"])
    return XAxis("checkpoint", ([xs[p.label] for p in run.checkpoints], [p.label for p in run.checkpoints]))


@dataclass(frozen=True)
class Figures:
    """Where a page's figures go and how they are drawn: the plots folder, the y range of rate
    charts (None: fitted), and the formats written beside each PNG."""

    folder: Path
    ylim: tuple[float, float] | None = None
    formats: Sequence[str] = ()

    def rates(self, title: str, lines: Sequence[Line], ylabel: str) -> Panel:
        """A panel of rates (the y axis fitted, 0 to 1 at most, or this page's ``ylim``)."""
        return Panel(title, lines, ylabel, ylim=self.ylim, ymax=1.0)

    def save(self, name: str, panels: Sequence[Panel], xaxis: XAxis, **options: Any) -> Path:
        return save_panels(self.folder / name, panels, xaxis, formats=self.formats, **options)
