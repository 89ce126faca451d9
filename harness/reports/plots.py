"""Paper-style line charts for the report: small multiples of lines with confidence bands.

This module knows nothing about runs or metrics: :mod:`harness.reports.report` turns results into
:class:`Panel` objects and :func:`save_panels` draws them. Figures are made with
``matplotlib.figure.Figure`` directly, never through ``pyplot``, so writing a report changes
no global matplotlib state (the user's backend, open figures) and needs no display.

Colours are the Okabe-Ito palette, which stays distinguishable under the common forms of
colour blindness; lines also differ by marker, so a chart still reads in greyscale.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.io import atomic_write_bytes

DPI = 150
# Size of one panel, inches: two or three side by side fill a report page.
PANEL_SIZE = (4.3, 3.1)

# Okabe & Ito (2008). Yellow comes last: it is the hardest to see on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Line dashes that tell apart lines of one colour (a recipe's seeds).
DASHES = ("-", "--", ":", "-.")

_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.8,
    "lines.markersize": 4,
}


# Metadata keys whose default names matplotlib and its web address, per format.
_NO_SOFTWARE = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None}, "svg": {"Creator": None}}


@dataclass(frozen=True)
class Style:
    """How one line is drawn."""

    color: str
    marker: str = "o"
    linestyle: str = "-"


def style(index: int, linestyle: str = "-") -> Style:
    """The ``index``-th distinct style: colours first, then markers change as well."""
    return Style(PALETTE[index % len(PALETTE)], MARKERS[(index + index // len(PALETTE)) % len(MARKERS)],
                 linestyle)


@dataclass(frozen=True)
class Line:
    """One series: ``y`` at ``x`` with an optional confidence band ``[low, high]``.

    NaN values leave a gap. A series with a single point is drawn as a point with an error
    bar (a band needs two points), or as a bar (see :func:`save_panels`).
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    style: Style = field(default_factory=lambda: style(0))


@dataclass(frozen=True)
class Band:
    """A shaded range drawn in grey behind a panel's lines, e.g. a curve ± its noise."""

    label: str
    x: Sequence[float]
    low: Sequence[float]
    high: Sequence[float]


@dataclass(frozen=True)
class Panel:
    """One set of axes: a title, its lines and the y axis's label (name the quantity).

    ``ylim`` fixes the y axis; None fits it to the data and their bands with 0 included (a
    0–0.14 effect is not flattened against a 0–1 axis), never above ``ymax`` (1 for rates).
    ``zero_line`` draws a dashed reference line at 0; ``bands`` are drawn behind the lines.
    """

    title: str
    lines: Sequence[Line]
    ylabel: str
    ylim: tuple[float, float] | None = None
    zero_line: bool = False
    ymax: float | None = None
    bands: Sequence[Band] = ()


@dataclass(frozen=True)
class XAxis:
    """The shared x axis: its label, and tick labels when positions are not numbers
    (checkpoints plotted at their index are labelled with their names)."""

    label: str
    ticks: tuple[Sequence[float], Sequence[str]] | None = None


def _has_band(line: Line) -> bool:
    return line.low is not None and line.high is not None


def _error_bar(line: Line) -> np.ndarray | None:
    """The band of a one-point line as matplotlib's ``yerr`` (distances below and above)."""
    if not _has_band(line):
        return None
    return np.abs(np.array([[line.low[0]], [line.high[0]]], dtype=float) - float(line.y[0]))


def _draw_bands(ax, bands: Sequence[Band]) -> None:
    # Hatched as well as grey: it must not read as one more line's confidence band.
    for band in bands:
        ax.fill_between(np.asarray(band.x, dtype=float), np.asarray(band.low, dtype=float),
                        np.asarray(band.high, dtype=float), facecolor="0.6", alpha=0.25, hatch="//",
                        edgecolor="0.45", linewidth=0, zorder=0, label=band.label)


def _draw(ax, lines: Sequence[Line]) -> None:
    if len(lines) > 1 and all(len(line.x) == 1 and line.x[0] == lines[0].x[0] for line in lines):
        # One checkpoint: points at one x would hide each other, so bars stand side by side.
        width = 0.8 / len(lines)
        for slot, line in enumerate(lines):
            ax.bar(line.x[0] + (slot - (len(lines) - 1) / 2) * width, line.y[0], width=width,
                   yerr=_error_bar(line), capsize=3, color=line.style.color, edgecolor="white",
                   label=line.label)
        return
    for line in lines:
        common = {"color": line.style.color, "marker": line.style.marker, "label": line.label}
        if len(line.x) == 1:
            ax.errorbar(line.x, line.y, yerr=_error_bar(line), linestyle="none", capsize=4, **common)
            continue
        ax.plot(line.x, line.y, linestyle=line.style.linestyle, **common)
        if _has_band(line):
            ax.fill_between(np.asarray(line.x, dtype=float), np.asarray(line.low, dtype=float),
                            np.asarray(line.high, dtype=float), color=line.style.color, alpha=0.15, linewidth=0)


def _fit_y(ax, panel: Panel) -> None:
    """The y axis of ``panel``: its ``ylim``, or matplotlib's fit stretched to include 0."""
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
        return
    values = np.array([v for line in panel.lines for series in (line.y, line.low or (), line.high or ())
                       for v in series], dtype=float)
    values = values[np.isfinite(values)]
    low, high = ax.get_ylim()
    if values.size and values.min() >= 0:
        low = 0.0
    high = max(high, 0.0)
    if panel.ymax is not None:
        high = min(high, panel.ymax * 1.02)
    if high <= low:  # every value 0: still an axis to read
        high = low + (panel.ymax or 1.0) * 0.1
    ax.set_ylim(min(low, 0.0), high)


def save_panels(path: Path, panels: Sequence[Panel | None], xaxis: XAxis, *, title: str | None = None,
                ncols: int = 3, formats: Sequence[str] = ()) -> Path:
    """Draw ``panels`` as a grid of small multiples sharing one legend, and save a PNG at
    ``path`` (and the same figure beside it in each of ``formats``: ``pdf``, ``svg``).

    A panel whose lines are all one point at the same x (a run of one checkpoint) is drawn
    as side-by-side bars with their error bars. Lines with the same label in several panels
    share one legend entry, so give a quantity the same label and style wherever it appears.
    A None in ``panels`` leaves its place in the grid empty (to keep pairs of panels in rows).
    """
    # matplotlib is imported here, not at the top: it takes over a second to import, and the
    # command line imports this module on every start.
    import matplotlib
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows + 0.7), layout="constrained")
        axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
        handles: dict[str, object] = {}
        for ax, panel in zip(axes, panels):
            if panel is None:
                ax.set_visible(False)
                continue
            _draw_bands(ax, panel.bands)
            _draw(ax, panel.lines)
            if panel.zero_line:
                ax.axhline(0, color="0.4", linewidth=0.8, linestyle="--", zorder=0)
            _fit_y(ax, panel)
            # Long titles wrap rather than run into the neighbouring panel's.
            ax.set_title(textwrap.fill(panel.title, 45))
            ax.set_xlabel(xaxis.label)
            ax.set_ylabel(panel.ylabel)
            if xaxis.ticks is not None:
                positions, labels = xaxis.ticks
                ax.set_xticks(list(positions), list(labels), rotation=30, ha="right")
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        if title:
            figure.suptitle(title, fontsize=12)
        if handles:
            # As many legend columns as fit the figure's width (about 0.07 inch a character at
            # the legend's font size, plus the line sample).
            entry_width = 0.07 * max(len(label) for label in handles) + 0.8
            columns = max(1, min(len(handles), int(PANEL_SIZE[0] * ncols // entry_width)))
            figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=columns,
                          frameon=False)
        # Drawn in memory, then written atomically: a reader never sees half a file. No
        # "Software"/"Creator"/"Producer" metadata: it would carry matplotlib's web address.
        for kind in ("png", *formats):
            image = io.BytesIO()
            figure.savefig(image, format=kind, dpi=DPI, metadata=_NO_SOFTWARE[kind])
            atomic_write_bytes(path if kind == "png" else path.with_suffix(f".{kind}"), image.getvalue())
    return path
