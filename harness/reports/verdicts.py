"""The inversion verdicts as a report page shows them: table cells with the bounds that made
each verdict, the caption that says which test made them, and how to read them."""

from __future__ import annotations

from typing import Mapping, Sequence

from harness.errors import ReportError
from harness.reports.html import escape as _e
from harness.reports.inversion import ALARMING, INVERSION_METHOD, Inversion, inversion_of
from harness.reports.runs import RunResults

HOW_TO_READ = (
    "Context reliance (context_hit_rate, the inversion paper's counterfactual accuracy) is the rate at "
    "which the output contains the answer a conflicting context states, whatever else it says. An "
    "inversion is flagged when it rises from the first checkpoint and then falls by the last: "
    f"{INVERSION_METHOD}. Rise and drop are shown as peak minus first and peak minus last with their "
    "one-sided lower bounds and p-values. Values in tables are over the examples scored at every "
    "checkpoint; bands in charts are the per-checkpoint 95% intervals of the summary (Clopper–Pearson "
    "for rates)."
)

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


def checkpoint_summary(run: RunResults) -> str:
    """How many checkpoints a run has and the steps they span, in words."""
    steps = [p.step for p in run.checkpoints if p.step is not None]
    span = f"steps {min(steps)}–{max(steps)}" if steps else "steps unknown"
    return f"{len(run.checkpoints)} checkpoint{'s' * (len(run.checkpoints) != 1)} ({span})"
