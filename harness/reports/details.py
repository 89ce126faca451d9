"""The report's sections beyond the training curves: transitions between the peak and the last
checkpoint, sample prompts and outputs, the run's settings, and a down-scaling run's curves.

The charts say how the rates moved; these sections let a reader check what moved: which
items went from the context's answer to the remembered one, what the model was shown, what
it wrote, and with which settings the run was made. :mod:`harness.reports.report` places them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from harness.reports.runs import RunResults
from harness.errors import ReportError
from harness.reports.html import escape as _e
from harness.reports.html import figure as _figure
from harness.reports.html import table as _table
from harness.reports.html import warnings as _warnings
from harness.reports.plots import Line, Panel, Style, XAxis, save_panels, style
from harness.reports.scaling import RETENTION_LEVELS, DownscalingCurve, downscaling_curves
from harness.reports.items import Transitions, states, transition_rows, transitions

#: How many outputs each task shows in the samples section.
OUTPUTS_SHOWN = 3
_CUT = 400  # characters of an output or prompt excerpt in a table cell


def _excerpt(text: str | None, limit: int = _CUT) -> str:
    if text is None:
        return ""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def _has_transitions(run: RunResults, task: str) -> bool:
    metric = run.headline(task)
    try:
        states(metric or "")
    except ReportError:
        return False
    return len(run.checkpoints) > 1


def transitions_html(result: Transitions) -> str:
    """One task's transition matrix, its McNemar test and the items that flipped."""
    header = (f"{result.before.where} \\ {result.after.where}", *result.states)
    matrix = _table(header, [[_e(cell) for cell in row] for row in transition_rows(result)])
    verdict = (f"<p>{result.lost} of the {result.n} items lost their {_e(result.metric)} between "
               f"{_e(result.before.where)} and {_e(result.after.where)} and {result.gained} gained it: "
               f"p = {result.p_value:.3g} ({_e(result.method)}).</p>\n")
    flips = ""
    if result.flips:
        rows = [[_e(flip.id), f"<pre>{_e(_excerpt(flip.prompt))}</pre>", _e(f"{flip.before_state} → {flip.after_state}"),
                 f"<pre>{_e(_excerpt(flip.before))}</pre>", f"<pre>{_e(_excerpt(flip.after))}</pre>"]
                for flip in result.flips]
        flips = (f"<p>{len(result.flips)} of the {result.lost + result.gained} items that changed (those that "
                 "lost it first, drawn with a fixed seed):</p>\n"
                 + _table(("item", "prompt (its end)", "state", f"output at {result.before.where}",
                           f"output at {result.after.where}"), rows))
    return (f"<h3>{_e(result.task)} <span class=\"meta\">({_e(result.metric)}, {_e(result.condition)}, "
            f"{_e(result.conjugate)})</span></h3>\n" + matrix + verdict + flips)


def transitions_section(run: RunResults) -> str:
    """Per task with a yes/no headline metric: the transitions from its peak to the last checkpoint."""
    parts = []
    for task in run.tasks:
        if not _has_transitions(run, task):
            continue
        try:
            result = transitions(run, task)
        except ReportError as error:
            parts.append(f"<h3>{_e(task)}</h3>\n<p class=\"meta\">{_e(error)}</p>\n")
            continue
        if result.before.label == result.after.label:
            parts.append(f"<h3>{_e(task)}</h3>\n<p class=\"meta\">The peak of {_e(result.metric)} is the last "
                         "checkpoint: no fall to break down.</p>\n")
            continue
        parts.append(transitions_html(result))
    if not parts:
        return ""
    return ("<section><h2>Items that changed between the peak and the last checkpoint</h2>\n"
            "<p>Each item's state at the peak of the task's headline metric (rows) and at the last checkpoint "
            "(columns), over the items scored at both. A fall of context reliance whose items moved to "
            "<em>parametric</em> is the model answering from memory instead; a move to <em>neither</em> is it "
            "no longer giving either answer.</p>\n" + "".join(parts) + "</section>\n")


def samples_section(run: RunResults, *, seed: int = 0) -> str:
    """Per task: one prompt exactly as the model saw it, and a few outputs at the first and
    last checkpoints."""
    first, last = run.checkpoints[0], run.checkpoints[-1]
    parts = []
    for task in run.tasks:
        metric = run.headline(task)
        conditions = run.conditions(task, metric) if metric else []
        conjugate = run.base_conjugate(task)
        try:
            early = {r.id: r for r in run.folder.read_samples(first.label, task)}
            late = {r.id: r for r in run.folder.read_samples(last.label, task)}
        except ValueError as error:
            parts.append(f"<h3>{_e(task)}</h3>\n<p class=\"meta\">{_e(error)}</p>\n")
            continue
        chosen = sorted(key for key, record in late.items() if record.conjugate == conjugate
                        and (not conditions or record.condition == conditions[0]))
        if not chosen:
            continue
        shown = random.Random(seed).sample(chosen, min(OUTPUTS_SHOWN, len(chosen)))
        example = late[shown[0]]
        rows = [[_e(key), _e(late[key].condition),
                 _e("; ".join(f"{role}: {' | '.join(s)}" for role, s in late[key].answers.items())),
                 f"<pre>{_e(_excerpt(early[key].output if key in early else None))}</pre>",
                 f"<pre>{_e(_excerpt(late[key].output))}</pre>"] for key in shown]
        parts.append(f"<h3>{_e(task)}</h3>\n<p class=\"meta\">The prompt of {_e(example.id)} ({_e(example.condition)}, "
                     f"{_e(example.conjugate)}), as the model saw it:</p>\n<pre>{_e(example.prompt)}</pre>\n"
                     + _table(("item", "condition", "answers accepted", f"output at {first.where}",
                               f"output at {last.where}"), rows))
    if not parts:
        return ""
    return "<section><h2>Prompts and outputs</h2>\n" + "".join(parts) + "</section>\n"


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def settings_section(run: RunResults) -> str:
    """The run's settings from run.json: its config, its engine, its packages, its command."""
    record = run.record
    if not record.config:
        return ""
    rows = [[_e(key), f"<code>{_e(_cell(value))}</code>"] for key, value in record.config.items()
            if value not in (None, [], {}, False)]
    parts = ["<section><h2>Settings</h2>\n", _table(("setting", "value"), rows)]
    if record.engine:
        parts.append(f"<p>engine: <code>{_e(record.engine)}</code></p>\n")
    if record.packages:
        parts.append("<p class=\"meta\">" + _e(", ".join(f"{k} {v}" for k, v in record.packages.items())) + "</p>\n")
    if record.command_line:
        parts.append(f"<pre>{_e(' '.join(record.command_line))}</pre>\n")
    return "".join(parts) + "</section>\n"


# --------------------------------------------------------------------------- down-scaling runs (prune: checkpoints)


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


def downscaling_section(run: RunResults, plots: Path) -> str:
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
