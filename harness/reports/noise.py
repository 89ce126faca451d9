"""The noise floor of a probe curve: how much a value moves from one checkpoint to the next
by chance, against how far the curve moves over the whole run.

After Signal & Noise (Heineman et al. 2025, "Signal and Noise: a framework for reducing
uncertainty in language model evaluation"). There, *noise* is the standard deviation of a
benchmark score over the final intermediate checkpoints of one training run divided by its mean
(a relative standard deviation), and *signal* the dispersion of the score between models
(max − min over the mean); SNR = signal / noise. A report here has one trajectory, not a
population of models, and its curves move on purpose (finetuning changes context reliance), so
both are adapted (:func:`noise_floor`): noise is measured about a local straight line through
each three neighbouring checkpoints, so that a trend is not counted as noise, and signal is the
range of the one curve.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
from scipy import integrate
from scipy.stats import norm

from harness.reports.html import escape as _e
from harness.reports.html import table as _table
from harness.reports.runs import RunResults
from harness.scoring.metrics import label

#: Consecutive checkpoints in one window of :func:`noise_floor`: the fewest a straight line can
#: be fitted through and still leave a residual.
WINDOW = 3

#: What the report says of a curve with fewer than :data:`WINDOW` checkpoints.
TOO_FEW = "too few checkpoints"
#: What the report says of a curve whose SNR is below :func:`noise_range`.
WITHIN_NOISE = "the curve moves no more than its noise"


@dataclass(frozen=True)
class NoiseFloor:
    """One curve's noise floor (:func:`noise_floor`). ``sd`` is in the curve's own units;
    ``noise`` and ``signal`` are relative to ``|mean|``; None where undefined."""

    n: int
    mean: float
    sd: float | None
    noise: float | None
    signal: float | None
    snr: float | None

    @property
    def within_noise(self) -> bool:
        """Whether the curve's range is no larger than noise alone would give its checkpoints on
        average (SNR below :func:`noise_range` of ``n``)."""
        return self.snr is not None and self.snr < noise_range(self.n)


def neighbour_sd(values: Sequence[float], x: Sequence[float] | None = None) -> float | None:
    """The checkpoint-to-checkpoint standard deviation of a curve (values in checkpoint order,
    at positions ``x``; default: evenly spaced), None with fewer than :data:`WINDOW` values.

    Each window of three consecutive checkpoints gets a least-squares line; its residual sum of
    squares over its one degree of freedom estimates the per-checkpoint variance without the
    curve's trend (a window's sd about its *mean* would count a steady rise as noise: a straight
    line would look noisy). The windows' variances are averaged and the root taken (averaging
    the sds instead would be biased low: one degree of freedom each). With independent noise of
    sd σ on a curve that is straight over any three neighbouring checkpoints, the average
    variance is unbiased for σ²; curvature within a window is counted as noise, so a curve that
    bends sharply between checkpoints reads noisier than it is. Neighbouring windows share
    checkpoints, so the estimate is less precise than its count of windows suggests.
    """
    y = np.asarray(values, dtype=float)
    positions = np.arange(y.size, dtype=float) if x is None else np.asarray(x, dtype=float)
    if y.size < WINDOW:
        return None
    variances = []
    for start in range(y.size - WINDOW + 1):
        window = slice(start, start + WINDOW)
        slope, intercept = np.polyfit(positions[window], y[window], 1)
        residuals = y[window] - (slope * positions[window] + intercept)
        variances.append(float(residuals @ residuals) / (WINDOW - 2))
    sd = math.sqrt(sum(variances) / len(variances))
    # Rounding leaves ~1e-17 on an exact line: below that scale, the curve has no noise.
    return 0.0 if sd <= 1e-12 * max(1.0, float(np.abs(y).max())) else sd


def noise_floor(values: Sequence[float], x: Sequence[float] | None = None) -> NoiseFloor:
    """One curve's noise, signal and signal-to-noise ratio (values in checkpoint order).

    - ``sd``: :func:`neighbour_sd`, the per-checkpoint noise in the curve's units.
    - ``noise``: ``sd / |mean|``, the relative standard deviation over neighbouring checkpoints
      (Signal & Noise's noise, with the trend taken out). None with fewer than :data:`WINDOW`
      checkpoints or a mean of 0.
    - ``signal``: ``(max − min) / |mean|``, the relative range of the curve: Signal & Noise's
      relative dispersion between models, taken along one trajectory. None at a mean of 0.
    - ``snr``: ``signal / noise`` = ``(max − min) / sd`` (the mean cancels); infinite when the
      curve moves without noise, None when it neither moves nor has noise or when noise is None.
    """
    y = np.asarray(values, dtype=float)
    mean = float(y.mean()) if y.size else math.nan
    sd = neighbour_sd(y, x)
    spread = float(y.max() - y.min()) if y.size else math.nan
    if y.size == 0 or mean == 0:
        return NoiseFloor(int(y.size), mean, sd, None, None, None)
    noise = None if sd is None else sd / abs(mean)
    signal = spread / abs(mean)
    if sd is None or (sd == 0 and spread == 0):
        snr = None
    else:
        snr = math.inf if sd == 0 else spread / sd
    return NoiseFloor(int(y.size), mean, sd, noise, signal, snr)


@lru_cache(maxsize=None)
def noise_range(n: int) -> float:
    """The expected range of ``n`` independent standard normal values (d₂ of control charts:
    1.128 for 2, 1.693 for 3, 3.078 for 10). A curve of ``n`` checkpoints made of noise alone
    has an SNR about this on average, so a lower SNR is a curve that moves no more than its
    noise."""
    if n < 2:
        return 0.0
    # E[max − min] = ∫ 1 − Φ(t)ⁿ − (1 − Φ(t))ⁿ dt over the real line.
    value, _ = integrate.quad(lambda t: 1 - norm.cdf(t) ** n - norm.sf(t) ** n, -np.inf, np.inf)
    return float(value)


@dataclass(frozen=True)
class CurveNoise:
    """The noise floor of one series of a run: a task's metric at a condition, on its base prompt."""

    task: str
    metric: str
    condition: str
    conjugate: str
    floor: NoiseFloor


def series_noise(run: RunResults, xs: Mapping[str, float], task: str, metric: str, condition: str) -> CurveNoise:
    """The noise floor of one series on the task's base prompt, at the checkpoints ``xs`` places
    (their positions: steps where known), undefined values left out."""
    conjugate = run.base_conjugate(task)
    rows = run.rows(task, metric, condition, conjugate)
    rows = rows[rows["checkpoint"].isin(list(xs)) & rows["value"].notna()]
    floor = noise_floor(rows["value"].tolist(), [xs[c] for c in rows["checkpoint"]])
    return CurveNoise(task, metric, condition, conjugate, floor)


def run_noise(run: RunResults, xs: Mapping[str, float]) -> list[CurveNoise]:
    """The noise floor of each task's headline metric at each of its conditions."""
    return [series_noise(run, xs, task, metric, condition)
            for task in run.tasks if (metric := run.headline(task)) is not None
            for condition in run.conditions(task, metric)]


HEADER = ("task", "metric (condition)", "checkpoints", "mean", "noise sd", "noise: sd / mean",
          "signal: (max − min) / mean", "SNR", "reading")


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return "∞" if math.isinf(value) else f"{value:.3f}"


def reading(floor: NoiseFloor) -> str:
    """What a row of the noise table says of its curve, in words."""
    if floor.sd is None:
        return TOO_FEW
    if floor.snr is None:
        return "mean 0: no relative noise" if floor.noise is None else "flat and noiseless"
    return WITHIN_NOISE if floor.within_noise else "moves beyond its noise"


def section(curves: Sequence[CurveNoise]) -> str:
    """The report's noise-floor section: a row a curve, and how to read it; empty without curves."""
    if not curves:
        return ""
    rows = []
    for curve in curves:
        floor = curve.floor
        words = _e(reading(floor))
        rows.append([_e(curve.task), _e(f"{label(curve.metric)} ({curve.condition})"), str(floor.n),
                     _number(floor.mean), _number(floor.sd), _number(floor.noise), _number(floor.signal),
                     _number(floor.snr), f'<span class="found">{words}</span>' if floor.within_noise else words])
    return ("<section><h2>Noise floor</h2>\n" + _table(HEADER, rows)
            + f'<p class="why">{_e(HOW_TO_READ)}</p>\n</section>\n')


HOW_TO_READ = (
    "Noise, after Signal & Noise (Heineman et al. 2025): the standard deviation of a headline curve "
    "between neighbouring checkpoints (about a straight line through each three consecutive "
    "checkpoints, so that a trend is not counted), also relative to the curve's mean; signal: the "
    "curve's range relative to its mean; SNR = signal / noise = range / noise sd. A curve of pure "
    "noise has on average an SNR equal to the expected range of that many normal draws (1.69 for 3 "
    "checkpoints, 3.08 for 10): below it, the curve moves no more than its noise. The grey hatched band "
    "on the per-task chart of a knowledge-conflict task is ± the noise sd around its headline curve."
)


#: The columns of ``tables/noise.csv``: a row a curve.
CSV_COLUMNS = ("run", "task", "metric", "condition", "conjugate", "checkpoints", "mean", "noise_sd", "noise",
               "signal", "snr", "reading")


def csv_text(run: str, curves: Sequence[CurveNoise]) -> str:
    """Every number of the noise table, a row a curve."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for curve in curves:
        floor = curve.floor
        writer.writerow([run, curve.task, curve.metric, curve.condition, curve.conjugate, floor.n,
                         *("" if v is None else f"{v:.6g}" for v in (floor.mean, floor.sd, floor.noise,
                                                                      floor.signal, floor.snr)),
                         reading(floor)])
    return buffer.getvalue()
