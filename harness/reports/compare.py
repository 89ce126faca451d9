"""Several runs side by side: model families, sizes, data mixtures, mitigations overlaid task
by task against training step, epoch or tokens seen, in ``compare.html`` (which links each
run's own report). A run keeps its style in every figure of a comparison (runs are coloured
in the order of their names, not of the arguments; the seeds of a recipe share its colour).
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import ReportError
from harness.io import atomic_write_text, check_output_folder
from harness.reports import verdicts
from harness.reports.exports import FIGURE_FORMATS, TABLES, check_exports, write_tables
from harness.reports.figures import PLOTS, X_LABELS, Figures, line, metric_label, safe_name
from harness.reports.html import escape as _e
from harness.reports.html import figure as _figure
from harness.reports.html import page as _page
from harness.reports.html import table as _table
from harness.reports.html import warnings as _warnings
from harness.reports.inversion import ALARMING, Inversion
from harness.reports.mitigations import MITIGATION_METHOD, mitigation_differences
from harness.reports.plots import DASHES, MARKERS, PALETTE, Style, XAxis, style
from harness.reports.recipes import RECIPE_METHOD, RecipeInversion
from harness.reports.report import REPORT_HTML
from harness.reports.runs import X_AXES, RunResults
from harness.results import run_folders
from harness.scoring.metrics import HEADLINE_METRICS, label

log = logging.getLogger("harness")

COMPARE_HTML = "compare.html"


def runs_to_compare(run_dirs: Sequence[str | Path], labelled: Mapping[str, str | Path]) -> tuple[list[str], list[str] | None]:
    """The folders to compare and their names: ``run_dirs`` (folders or globs) and the
    ``labelled`` ones (name -> folder); a labelled folder that is also listed is one run, not
    two. Names are None when no run is labelled (each run is then named by its folder)."""
    names = {Path(run_dir).resolve(): name for name, run_dir in labelled.items()}
    listed = [folder for entry in run_dirs for folder in run_folders(entry)]  # each entry's own: repeats seen
    runs: dict[Path, str] = {}
    for run_dir in [*listed, *labelled.values()]:
        path = Path(run_dir).resolve()
        if path in runs and path not in names:
            log.warning("%s is given twice (as %s): compared once", run_dir, runs[path])
        runs.setdefault(path, str(run_dir))
    if not runs:
        raise ReportError("no runs to compare: give RUN_DIR arguments or --label NAME=RUN_DIR")
    return list(runs.values()), ([names.get(path, path.name) for path in runs] if names else None)


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


def run_styles(runs: Sequence[RunResults],
               recipes: Mapping[str, Sequence[RecipeInversion | ReportError]]) -> dict[str, Style]:
    """Each run's line style, by run name: the seeds of one recipe share its colour and differ
    in marker and dash, so a chart reads by recipe; every other run gets a colour of its own
    (in name order). A recipe's seeds are the runs whose folders its verdicts list."""
    by_folder = {str(run.folder.path.resolve()): run.name for run in runs}
    members: dict[str, list[str]] = {}
    for recipe, results in recipes.items():
        listed = next((result.folders for result in results if isinstance(result, RecipeInversion)), ())
        members[recipe] = [by_folder[folder] for folder in listed if folder in by_folder]
    styles = {}
    for index, names in enumerate(members.values()):
        for seed, name in enumerate(names):
            styles[name] = Style(PALETTE[index % len(PALETTE)], MARKERS[seed % len(MARKERS)],
                                 DASHES[seed % len(DASHES)])
    others = sorted(run.name for run in runs if run.name not in styles)
    styles.update({name: style(index) for index, name in enumerate(others, start=len(members))})
    return styles


def _recipe_section(recipes: Mapping[str, Sequence[RecipeInversion | ReportError]]) -> str:
    """The verdicts of recipes over their seeds, with the seeds' own verdicts beside them, and
    each recipe's drop and peak against the first recipe's (the reference)."""
    if not recipes:
        return ""
    reference = next(iter(recipes))
    differences = {(d.recipe, d.task, d.metric, d.condition): d for d in mitigation_differences(recipes)}
    rows, checks = [], []
    for name, results in recipes.items():
        for result in results:
            checks.append(result)
            if isinstance(result, ReportError):
                rows.append([_e(name), "", "", "", "", "", _e(result), "", "", ""])
                continue
            peak = result.checkpoints[result.peak_index].where
            difference = differences.get((name, result.task, result.metric, result.condition))
            against = ([_e(difference.drop), _e(difference.peak) + f'<br><span class="why">{_e(difference.pairing)}'
                        '</span>'] if difference else ["reference" if name == reference else "", ""])
            rows.append([_e(name), _e(result.task), _e(f"{result.metric} ({result.condition})"),
                         f"{result.curve[0]:.3f} / {result.curve[result.peak_index]:.3f} ({_e(peak)}) / "
                         f"{result.curve[-1]:.3f}", _e(result.rise), _e(result.drop),
                         f'<span class="{"found" if result.verdict in ALARMING else "none"}">{_e(result.verdict)}'
                         f'</span><br><span class="why">{_e(result.reason)}</span>', _e(result.seed_verdicts),
                         *against])
    header = ("recipe", "task", "metric", "mean first / peak / last", "rise (bound, p)", "drop (bound, p)",
              "recipe verdict", "per seed", f"drop − reference's ({reference}) [95% CI]",
              "peak − reference's [95% CI]")
    return ("<section><h2>Recipes over seeds</h2>\n" + verdicts.holm_table(header, rows, checks)
            + f'<p class="why">{_e(RECIPE_METHOD)}. Against the reference: {_e(MITIGATION_METHOD)}; '
              f"{len(differences)} such intervals, each at 95% on its own.</p>\n</section>\n")


def compare(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None, x: str = "step",
            output: str | Path | None = None, *, labelled: Mapping[str, str | Path] | None = None,
            ylim: tuple[float, float] | None = None, tokens_per_step: Mapping[str | None, float] | None = None,
            exports: Sequence[str] = (), recipes: Mapping[str, Sequence[RecipeInversion | ReportError]] | None = None
            ) -> Path:
    """Overlay several runs task by task and write ``compare.html`` with ``plots/*.png``.

    Each task gets one chart (a panel per condition of its headline metric: context
    reliance where measured) with a line per run, against ``x``: ``step``, ``epoch`` or
    ``tokens`` (input tokens seen; epoch and tokens come from each checkpoint's
    trainer_state.json, the base model at 0), or ``params``; and a table of each run's
    first, peak and last values with its verdict. ``labels`` name the runs (default: their
    folder names); ``run_dirs`` may hold globs (``results/*``); ``labelled`` adds named runs
    (name -> folder; :func:`runs_to_compare`, as ``harness compare --label`` does). A run keeps one colour in every figure, given by the
    order of the names.
    ``output`` defaults to a ``compare`` folder beside the runs; the page links each run's
    report.

    ``tokens_per_step`` places the checkpoints of runs without trainer states on ``--x
    tokens``: run name -> tokens per step, the key None for every run. ``ylim`` and
    ``exports`` as for :func:`write_report` (the tables are written per run and task).
    ``recipes`` adds a table of verdicts over seeds: recipe name -> its
    :func:`~harness.reports.recipes.recipe_verdicts` (the seeds' folders are among the runs).

    Runs whose results for a task were made with different task versions (content hashes)
    are flagged, in the HTML and as a logged warning: their numbers are not comparable.
    Returns the path of ``compare.html``; raises :class:`ReportError` for a folder that is
    not a results folder, bad labels or an x axis the runs do not record.
    """
    if x not in X_AXES:
        raise ReportError(f"--x {x}: expected one of {', '.join(X_AXES)}")
    exports = check_exports(exports)
    folders, given = runs_to_compare(run_dirs, labelled or {})
    paths = [Path(d) for d in folders]
    labels = labels if labels is not None else given
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
    styles = run_styles(runs, recipes or {})
    folder = Path(output) if output is not None else (
        Path(os.path.commonpath([p.resolve().parent for p in paths])) / "compare")
    check_output_folder(folder, ReportError, what="the comparison")
    figures = Figures(folder / PLOTS, ylim, [kind for kind in exports if kind in FIGURE_FORMATS])

    messages: list[str] = []
    positions = []
    for run in runs:
        xs, notes = run.x_values(x, per_step.get(run.name, per_step.get(None)))
        positions.append(xs)
        messages += notes
    by_index = x == "step" and not all(run.steps_known for run in runs)
    xaxis = XAxis("training step (or checkpoint index)" if by_index else X_LABELS[x])

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
            lines = [line(run, xs, task, metric, condition, run.base_conjugate(task), run.name,
                           styles[run.name]) for run, xs in sorted(having, key=lambda pair: pair[0].name)]
            panels.append(figures.rates(metric_label(metric, condition), [line for line in lines if line],
                                        label(metric)))
            for run, xs in having:
                if condition in run.conditions(task, metric):
                    check = verdicts.check(run, task, metric, condition)
                    headlines += [(run.name, check)] if isinstance(check, Inversion) else []
                    rows.append([_e(run.name), _e(condition), _e(", ".join(sorted(hashes[run.name])) or "unknown"),
                                 *verdicts.cells(check, x, xs)])
        title = task + (" (task versions differ: not comparable)" if mixed else "")
        path = figures.save(f"{safe_name(task)}.png", panels, xaxis, title=title)
        missing = [run.name for run in runs if task not in run.tasks]
        sections.append(
            f"<section><h2>{_e(title)}</h2>\n"
            + (_warnings([f"task versions differ between runs: {task} results are not comparable"]) if mixed else "")
            + (f'<p class="meta">not in: {_e(", ".join(missing))}</p>\n' if missing else "")
            + _figure(path, f"{task}: {label(metric)} per run against {X_LABELS[x]}, with 95% "
                            "intervals.")
            + _table(("run", "condition", "task version", *verdicts.HEADER), rows)
            + f'<p class="why">{_e(verdicts.caption([metric]))}</p>\n</section>\n')

    for message in messages:
        log.warning("%s", message)
    overview = [[_e(run.name), _e(run.folder.path), _report_link(run, folder), _e(verdicts.checkpoint_summary(run)),
                 _e(", ".join(run.tasks))] for run in runs]
    parts = [
        f"<h1>Comparison: {_e(', '.join(names))}</h1>\n",
        f'<p class="meta">x axis: {_e(X_LABELS[x])}; written '
        f"{_e(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))}.</p>\n",
        _warnings(messages),
        _table(("run", "folder", "report", "checkpoints", "tasks"), overview),
        f"<p>{_e(verdicts.HOW_TO_READ)}</p>\n",
        _recipe_section(recipes or {}),
        *sections,
    ]
    for name in dict.fromkeys(name for name, _ in headlines):
        write_tables(folder / TABLES / safe_name(name), name, [inv for n, inv in headlines if n == name],
                     [kind for kind in exports if kind not in FIGURE_FORMATS])
    path = folder / COMPARE_HTML
    atomic_write_text(path, _page(f"Comparison: {', '.join(names)}", parts))
    return path
