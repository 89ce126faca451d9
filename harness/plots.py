"""Paper-style line charts for the report: small multiples of lines with confidence bands.

This module knows nothing about runs or metrics: :mod:`harness.report` turns results into
:class:`Panel` objects and :func:`save_panels` draws them. Figures are made with
``matplotlib.figure.Figure`` directly, never through ``pyplot``, so writing a report changes
no global matplotlib state (the user's backend, open figures) and needs no display.

Colours are the Okabe-Ito palette, which stays distinguishable under the common forms of
colour blindness; lines also differ by marker, so a chart still reads in greyscale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

DPI = 150

# Okabe & Ito (2008). Yellow comes last: it is the hardest to see on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

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
    bar (a band needs two points).
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    style: Style = field(default_factory=lambda: style(0))


@dataclass(frozen=True)
class Panel:
    """One set of axes: a title and its lines; ``ylim`` None lets matplotlib choose."""

    title: str
    lines: Sequence[Line]
    ylabel: str
    ylim: tuple[float, float] | None = (0.0, 1.0)
    zero_line: bool = False


@dataclass(frozen=True)
class XAxis:
    """The shared x axis: its label, and tick labels when positions are not numbers
    (checkpoints plotted at their index are labelled with their names)."""

    label: str
    ticks: tuple[Sequence[float], Sequence[str]] | None = None


def _draw(ax, line: Line) -> None:
    x = np.asarray(line.x, dtype=float)
    y = np.asarray(line.y, dtype=float)
    has_band = line.low is not None and line.high is not None
    common = {"color": line.style.color, "marker": line.style.marker, "label": line.label}
    if x.size == 1:
        error = None
        if has_band:
            error = np.abs(np.array([[line.low[0]], [line.high[0]]], dtype=float) - y)
        ax.errorbar(x, y, yerr=error, linestyle="none", capsize=4, **common)
        return
    ax.plot(x, y, linestyle=line.style.linestyle, **common)
    if has_band:
        ax.fill_between(x, np.asarray(line.low, dtype=float), np.asarray(line.high, dtype=float),
                        color=line.style.color, alpha=0.15, linewidth=0)


def save_panels(path: Path, panels: Sequence[Panel], xaxis: XAxis, *, title: str | None = None,
                ncols: int = 3) -> Path:
    """Draw ``panels`` as a grid of small multiples sharing one legend, and save a PNG.

    Lines with the same label in several panels share one legend entry, so give a quantity
    the same label and style wherever it appears.
    """
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(4.3 * ncols, 3.1 * nrows + 0.7), layout="constrained")
        axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
        handles: dict[str, object] = {}
        for ax, panel in zip(axes, panels):
            for line in panel.lines:
                _draw(ax, line)
            if panel.zero_line:
                ax.axhline(0, color="0.4", linewidth=0.8, zorder=0)
            if panel.ylim is not None:
                ax.set_ylim(*panel.ylim)
            ax.set_title(panel.title)
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
            figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                          ncols=min(len(handles), 4), frameon=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        # No "Software" metadata: it would carry matplotlib's web address into the report.
        figure.savefig(path, dpi=DPI, metadata={"Software": None})
    return path
