"""The inversion verdicts as a report page shows them: table cells with the bounds that made
each verdict, the caption that says which test made them, and how to read them; and the
count of a table's tests with their Holm-adjusted p-values (:func:`holm_table`)."""

from __future__ import annotations

from typing import Mapping, Sequence

from harness.console import aligned
from harness.errors import ReportError
from harness.reports.html import escape as _e
from harness.reports.html import table as _table
from harness.reports.inversion import ALARMING, INVERSION_METHOD, SINGLE, Inversion, inversion_of
from harness.reports.recipes import RecipeInversion
from harness.reports.runs import RunResults
from harness.stats import holm

HOW_TO_READ = (
    "Context reliance (context_hit_rate, the inversion paper's counterfactual accuracy) is the rate at "
    "which the output contains the answer a conflicting context states, whatever else it says. An "
    "inversion is flagged when it rises from the first checkpoint and then falls by the last: "
    f"{INVERSION_METHOD}. Rise and drop are shown as peak minus first and peak minus last with their "
    "one-sided lower bounds and p-values. Values in tables are over the examples scored at every "
    "checkpoint; bands in charts are the per-checkpoint 95% intervals of the summary (Clopper–Pearson "
    "for rates)."
)

#: What a run of one checkpoint says instead of a verdict: there is no change to test.
NO_CHANGE_TO_TEST = "one checkpoint: no change to test"

HEADER = ("first", "peak [95% CI]", "last", "rise: peak − first (lower bound, p)",
          "drop: peak − last (lower bound, p)", "verdict")


def check(run: RunResults, task: str, metric: str, condition: str) -> Inversion | ReportError:
    """One series' inversion check, or the error that says why it cannot be made."""
    try:
        return inversion_of(run, task, metric, condition, run.base_conjugate(task))
    except ReportError as error:
        return error


def cells(inversion: Inversion | ReportError, x: str = "step", xs: Mapping[str, float] | None = None) -> list[str]:
    """The table cells of one series' inversion check (the error, if it could not be made);
    the peak is placed by its step, and where ``xs`` places it on an ``x`` axis other than
    steps (epoch, tokens), there too. Falls are drawn in warning colours; nothing is drawn
    as good news."""
    if isinstance(inversion, ReportError):
        return ["", "", "", "", "", _e(inversion)]
    if inversion.verdict == SINGLE:  # one value with its interval; no rise, drop or p-value to show
        return ["", f"{inversion.peak:.3f} [{inversion.peak_ci[0]:.3f}, {inversion.peak_ci[1]:.3f}] at "
                    f"{_e(inversion.peak_checkpoint.where)}", "", "", "",
                f'{_e(NO_CHANGE_TO_TEST)} <span class="why">(n={inversion.n})</span>']
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


def caption(metrics: Sequence[str]) -> str:
    """Which metric and which test made a table's verdicts."""
    return (f"Verdicts on {', '.join(dict.fromkeys(metrics))} over the examples scored at every checkpoint: "
            f"{INVERSION_METHOD}. 'inversion' is said only of context reliance (a rise, then a fall); a "
            "significant fall of an accuracy is 'fall (forgetting)'.")


#: The column of Holm-adjusted p-values (:func:`holm_table`).
HOLM_HEADER = "Holm p: rise / drop"


def holm_table(header: Sequence[str], rows: Sequence[Sequence[str]],
               checks: Sequence[Inversion | RecipeInversion | ReportError]) -> str:
    """A verdict table (``rows``, one a check of ``checks``) with a column of each row's rise
    and drop p-values adjusted by Holm's method for every test in the table, and a sentence
    saying how many tests it holds. Each verdict is a test at the 5% level on its own; a table
    of k of them calls some change by chance far more often, and the adjusted p-values keep the
    chance of any false rise or fall in the whole table at 5%."""
    tested = [check for check in checks if not isinstance(check, ReportError) and check.verdict != SINGLE]
    adjusted = iter(holm([change.p_value for check in tested for change in (check.rise, check.drop)]))
    cells = {id(check): f"{next(adjusted):.3f} / {next(adjusted):.3f}" for check in tested}
    count = 2 * len(tested)
    note = (f"This table holds {count} tests (a rise and a fall test for each of its {len(tested)} verdicts), each at "
            f"the 5% level on its own; the last column adjusts their p-values for all {count} (Holm): where an "
            "adjusted p is at most .05, the chance of any false rise or fall in the table is at most 5%.")
    body = [[*row, cells.get(id(check), "")] for row, check in zip(rows, checks)]
    return _table((*header, HOLM_HEADER), body) + f'<p class="why">{_e(note)}</p>\n'


def checkpoint_summary(run: RunResults) -> str:
    """How many checkpoints a run has and the steps they span, in words."""
    steps = [p.step for p in run.checkpoints if p.step is not None]
    span = f"steps {min(steps)}–{max(steps)}" if steps else "steps unknown"
    return f"{len(run.checkpoints)} checkpoint{'s' * (len(run.checkpoints) != 1)} ({span})"


def console_table(run: RunResults) -> str:
    """Each task's headline metric per condition as text columns, as ``harness evaluate``
    prints it at the end: first, peak [95% CI] (where), last and the verdict over the
    checkpoints; for a run of one checkpoint, its value [95% CI] and n. Each task's base
    prompt (English) only: with conjugates, a ``prompt`` column says so and a line names the
    others and where they are."""
    checks = [(task, metric, condition, check(run, task, metric, condition))
              for task in run.tasks if (metric := run.headline(task)) is not None
              for condition in run.conditions(task, metric)]
    others = sorted({c for task in run.tasks for c in run.conjugates(task)[1:]})
    prompt = ("prompt",) if others else ()
    single = len(run.checkpoints) == 1
    rows = [("task", "condition", *prompt, "metric", "value [95% CI]", "n") if single else
            ("task", "condition", *prompt, "metric", "first", "peak [95% CI] (at)", "last", "verdict")]
    for task, metric, condition, result in checks:
        start = (task, condition, *((run.base_conjugate(task),) if others else ()), metric)
        if isinstance(result, ReportError):
            rows.append((*start, *[""] * (len(rows[0]) - len(start) - 1), str(result)))
            continue
        interval = f"{result.peak:.3f} [{result.peak_ci[0]:.3f}, {result.peak_ci[1]:.3f}]"
        rows.append((*start, interval, str(result.n)) if single else
                    (*start, f"{result.first:.3f}", f"{interval} ({result.peak_checkpoint.where})",
                     f"{result.last:.3f}", result.verdict))
    notes = [f"({NO_CHANGE_TO_TEST}; evaluate more checkpoints for verdicts)" if single else
             "(verdicts: one-sided max-t tests at the 5% level, paired over the examples scored at every checkpoint)"]
    if others:
        notes.append(f"(each task's base prompt; the other prompts ({', '.join(others)}) are in summary.jsonl and "
                     "report.html)")
    return "\n".join([aligned(rows), *notes])
