"""Tables of inversion verdicts for a paper: CSV (every number) and a LaTeX ``tabular``.

``harness report --export csv,latex`` writes ``tables/inversion.csv`` and
``tables/inversion.tex`` beside the report (and with ``csv`` the noise table,
``tables/noise.csv``: :mod:`harness.reports.noise`); ``pdf`` and ``svg`` ask :mod:`harness.reports.plots` for
every figure in those formats too. The CSV has one row a (task, metric, condition) with
each checkpoint named; the LaTeX table is the report's verdict table, with booktabs rules
(``\\usepackage{booktabs}``) and nothing else to load.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

from harness.reports.inversion import Inversion
from harness.reports.noise import CurveNoise
from harness.reports.noise import csv_text as noise_csv
from harness.errors import ReportError, did_you_mean
from harness.io import atomic_write_text

TABLE_FORMATS = ("csv", "latex")
FIGURE_FORMATS = ("pdf", "svg")
#: What ``--export`` takes.
EXPORTS = TABLE_FORMATS + FIGURE_FORMATS
TABLES = "tables"

CSV_COLUMNS = ("run", "task", "metric", "condition", "conjugate", "n", "first", "first_at", "peak", "peak_ci_low",
               "peak_ci_high", "peak_at", "last", "last_at", "rise", "rise_lower_bound", "rise_p", "drop",
               "drop_lower_bound", "drop_p", "verdict", "reason", "test")


def check_exports(formats: Sequence[str]) -> list[str]:
    """``formats`` if each is one of :data:`EXPORTS`, else a :class:`ReportError` naming it."""
    unknown = [name for name in formats if name not in EXPORTS]
    if unknown:
        named = ", ".join(f"{name!r}{did_you_mean(name, EXPORTS)}" for name in unknown)
        raise ReportError(f"--export: unknown format {named}; expected some of: {', '.join(EXPORTS)}")
    return list(formats)


def _number(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def csv_text(run: str, inversions: Sequence[Inversion]) -> str:
    """Every number of the verdicts, a row a series (:data:`CSV_COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for inv in inversions:
        writer.writerow([
            run, inv.task, inv.metric, inv.condition, inv.conjugate, inv.n,
            _number(inv.first), inv.first_checkpoint.where, _number(inv.peak), _number(inv.peak_ci[0]),
            _number(inv.peak_ci[1]), inv.peak_checkpoint.where, _number(inv.last), inv.last_checkpoint.where,
            _number(inv.rise.value), _number(inv.rise.lower), _number(inv.rise.p_value),
            _number(inv.drop.value), _number(inv.drop.lower), _number(inv.drop.p_value),
            inv.verdict, inv.reason, inv.method,
        ])
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """``text`` safe in LaTeX body text."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(text))


def _signed(value: float) -> str:
    return "--" if math.isnan(value) else f"${value:+.3f}$"


def latex_table(inversions: Sequence[Inversion], *, caption: str | None = None) -> str:
    """The verdict table as a LaTeX ``table`` with a ``tabular`` (booktabs rules).

    Columns: task, metric (condition), first, peak [95% CI] (step), last, rise and drop with
    their one-sided lower bounds, verdict."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{llrrrrrl}", r"\toprule",
             r"task & metric & first & peak [95\% CI] & last & rise ($\geq$) & drop ($\geq$) & verdict \\",
             r"\midrule"]
    for inv in inversions:
        peak = (f"{inv.peak:.3f} [{inv.peak_ci[0]:.3f}, {inv.peak_ci[1]:.3f}] "
                f"({latex_escape(inv.peak_checkpoint.where)})")
        rise = f"{_signed(inv.rise.value)} ({_signed(inv.rise.lower)})"
        drop = f"{_signed(inv.drop.value)} ({_signed(inv.drop.lower)})"
        cells = [latex_escape(inv.task), latex_escape(f"{inv.metric} ({inv.condition})"), f"{inv.first:.3f}", peak,
                 f"{inv.last:.3f}", rise, drop, latex_escape(inv.verdict)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_tables(folder: Path, run: str, inversions: Sequence[Inversion], formats: Sequence[str], *,
                 caption: str | None = None, noise: Sequence[CurveNoise] = ()) -> list[Path]:
    """Write the verdict table in each of ``formats`` (of :data:`TABLE_FORMATS`) into
    ``folder`` as ``inversion.csv`` / ``inversion.tex``, and with CSV the noise table of ``noise``
    as ``noise.csv`` (:mod:`harness.reports.noise`); returns the files written."""
    written = []
    if "csv" in formats:
        written.append(folder / "inversion.csv")
        atomic_write_text(written[-1], csv_text(run, inversions))
        if noise:
            written.append(folder / "noise.csv")
            atomic_write_text(written[-1], noise_csv(run, noise))
    if "latex" in formats:
        written.append(folder / "inversion.tex")
        atomic_write_text(written[-1], latex_table(inversions, caption=caption))
    return written
