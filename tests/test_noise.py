"""The noise floor (harness.reports.noise): hand-computed curves, a simulation that it recovers a
known noise sd, and the report's noise table, noise band and log-odds margin panel."""

from __future__ import annotations

import math

import numpy as np
import pytest
from handmade import conflict, correct, write_run

from harness.reports import figures
from harness.reports.noise import TOO_FEW, WITHIN_NOISE, neighbour_sd, noise_floor, noise_range
from harness.reports.report import MARGIN_LABEL, write_report


def test_a_straight_line_has_no_noise():
    floor = noise_floor([0.1, 0.2, 0.3, 0.4, 0.5])
    assert floor.sd == 0 and floor.noise == 0
    assert floor.signal == pytest.approx(0.4 / 0.3)
    assert floor.snr == math.inf and not floor.within_noise


def test_a_line_at_uneven_steps_has_no_noise():
    assert neighbour_sd([1.0, 2.0, 5.0], x=[10, 20, 50]) == 0


def test_a_zigzag_by_hand():
    # Every window is (a, b, a) or (b, a, b): a line's residuals are ±(b − a)/3 · (1, −2, 1)/2,
    # RSS = (a − 2b + a)² / 6 = 4·0.2² / 6 over one degree of freedom.
    floor = noise_floor([0.1, 0.3, 0.1, 0.3, 0.1])
    sd = math.sqrt(4 * 0.2 ** 2 / 6)
    assert floor.sd == pytest.approx(sd)
    assert floor.mean == pytest.approx(0.18)
    assert floor.noise == pytest.approx(sd / 0.18)
    assert floor.signal == pytest.approx(0.2 / 0.18)
    assert floor.snr == pytest.approx(0.2 / sd)
    assert floor.within_noise  # 1.22 < 2.33, the expected range of 5 normal draws


def test_a_constant_curve():
    floor = noise_floor([0.4, 0.4, 0.4, 0.4])
    assert (floor.sd, floor.noise, floor.signal, floor.snr) == (0, 0, 0, None)
    assert not floor.within_noise


def test_too_few_checkpoints_and_a_zero_mean():
    floor = noise_floor([0.1, 0.5])
    assert floor.sd is None and floor.noise is None and floor.snr is None
    assert floor.signal == pytest.approx(0.4 / 0.3)
    zero = noise_floor([-1.0, 1.0, -1.0, 1.0])
    assert zero.sd is not None and zero.noise is None and zero.signal is None and zero.snr is None


def test_noise_range_is_the_expected_range_of_normal_draws():
    assert noise_range(2) == pytest.approx(2 / math.sqrt(math.pi), abs=1e-6)
    assert noise_range(3) == pytest.approx(3 / math.sqrt(math.pi), abs=1e-6)
    assert noise_range(10) == pytest.approx(3.078, abs=1e-3)


def test_it_recovers_a_known_noise_sd_on_a_smooth_curve():
    """A smooth rise-and-fall over 40 checkpoints plus Gaussian noise of sd 0.02: the estimate,
    averaged over 200 curves, is within 3% of 0.02 (the curvature counts a little)."""
    rng = np.random.default_rng(0)
    steps = np.linspace(0, 1, 40)
    curve = 0.3 + 0.3 * np.sin(np.pi * steps)
    estimates = [neighbour_sd(curve + rng.normal(0, 0.02, steps.size), steps) for _ in range(200)]
    assert np.sqrt(np.mean(np.square(estimates))) == pytest.approx(0.02, rel=0.03)
    assert np.median(estimates) == pytest.approx(0.02, rel=0.1)


# --------------------------------------------------------------------------- the report

COUNTS = [20, 60, 20, 60, 20]  # context answers of 200: 0.1, 0.3, 0.1, 0.3, 0.1


def _by_task_panels(monkeypatch) -> dict:
    """Records the panels of each figure the report draws, by file name."""
    drawn = {}
    real = figures.save_panels

    def record(path, panels, xaxis, **options):
        drawn[path.name] = list(panels)
        return real(path, panels, xaxis, **options)

    monkeypatch.setattr(figures, "save_panels", record)
    return drawn


def _run(path, *, loglikelihood: bool, counts=COUNTS):
    return write_run(path, [(f"checkpoint-{10 * (i + 1)}", 10 * (i + 1), {
        ("capitals", "conflicting", "en"): conflict(count, ll_wins=count + 20 if loglikelihood else None),
        ("capitals", "closed_book", "en"): correct(150),
    }) for i, count in enumerate(counts)])


def test_the_report_holds_the_noise_table_and_the_margin_panel(tmp_path, monkeypatch):
    drawn = _by_task_panels(monkeypatch)
    run = _run(tmp_path / "run", loglikelihood=True)
    text = write_report(run, exports=["csv"]).read_text(encoding="utf-8")
    section = text[text.index("<h2>Noise floor</h2>"):]
    section = section[:section.index("</section>")]
    sd = math.sqrt(4 * 0.2 ** 2 / 6)
    row = section[section.index("<td>capitals</td>"):]
    row = row[:row.index("</tr>")]
    for number in (0.18, sd, sd / 0.18, 0.2 / 0.18, 0.2 / sd):
        assert f"<td>{number:.3f}</td>" in row
    assert WITHIN_NOISE in row and "<td>5</td>" in row
    assert "Heineman" in section
    assert "log P(context answer) − log P(memorised answer)" in text
    rates, margin = drawn["context_reliance_by_task.png"]
    assert [line.label for line in margin.lines] == [MARGIN_LABEL] and margin.zero_line
    assert margin.lines[0].y == pytest.approx([-0.6, -0.2, -0.6, -0.2, -0.6])  # (count + 20) wins of 200, ±1
    assert margin.lines[0].low is not None
    (band,) = rates.bands
    assert np.array(band.high) - np.array(band.low) == pytest.approx(2 * sd)
    table = (run / "tables" / "noise.csv").read_text(encoding="utf-8").splitlines()
    assert table[1].startswith("run,capitals,context_hit_rate,conflicting,en,5,0.18,")


def test_no_margin_panel_without_loglikelihood_rows(tmp_path, monkeypatch):
    drawn = _by_task_panels(monkeypatch)
    run = _run(tmp_path / "run", loglikelihood=False)
    text = write_report(run).read_text(encoding="utf-8")
    assert [panel.title for panel in drawn["context_reliance_by_task.png"]] == ["capitals"]
    assert "log P(context answer) − log P(memorised answer)" not in text
    assert "<h2>Noise floor</h2>" in text


def test_two_checkpoints_are_too_few(tmp_path):
    run = _run(tmp_path / "run", loglikelihood=True, counts=[20, 60])
    text = write_report(run).read_text(encoding="utf-8")
    section = text[text.index("<h2>Noise floor</h2>"):]
    assert TOO_FEW in section[:section.index("</section>")]
