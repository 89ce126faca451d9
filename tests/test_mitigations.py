"""Mitigations compared across seeds (harness.reports.mitigations, harness.stats.seed_difference),
Holm-adjusted p-values in the reports' verdict tables, and McNemar after a data-picked peak
labelled descriptive. Coverage by simulation is in test_calibration.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from handmade import context_run
from scipy.stats import t as student

from harness import cli
from harness.reports.compare import COMPARE_HTML
from harness.reports.items import transitions
from harness.reports.mitigations import mitigation_differences, recipe_difference
from harness.reports.recipes import recipe_verdicts
from harness.reports.report import REPORT_HTML, write_report
from harness.reports.runs import RunResults
from harness.stats import holm, seed_difference


# ------------------------------------------------------------------ the interval over seeds


def test_paired_seed_difference_is_a_t_interval_by_hand():
    # Differences .2, .15, .15: mean 1/6, sd sqrt(1/1200), standard error 1/60, t(2) = 4.3027.
    result = seed_difference([0.3, 0.25, 0.2], [0.1, 0.1, 0.05], paired=True)
    assert result.paired and result.df == 2 and result.value == pytest.approx(1 / 6)
    assert (result.low, result.high) == pytest.approx((1 / 6 - 4.302653 / 60, 1 / 6 + 4.302653 / 60), abs=1e-6)


def test_unpaired_seed_difference_is_welch_by_hand():
    # Variances 1/400 and 1/1200 over 3 seeds each: standard error 1/30, Welch df exactly 3.2.
    result = seed_difference([0.3, 0.25, 0.2], [0.1, 0.1, 0.05], paired=False)
    assert not result.paired and result.df == pytest.approx(3.2)
    half = student.ppf(0.975, 3.2) / 30
    assert (result.low, result.high) == pytest.approx((1 / 6 - half, 1 / 6 + half))


def test_seed_difference_needs_two_seeds_and_equal_pairs():
    one = seed_difference([0.3], [0.1], paired=True)
    assert one.value == pytest.approx(0.2) and math.isnan(one.low) and math.isnan(one.high)
    assert math.isnan(seed_difference([0.3, 0.2], [0.1], paired=False).low)
    with pytest.raises(ValueError, match="pairs"):
        seed_difference([0.3, 0.2], [0.1], paired=True)


def test_seeds_that_agree_exactly_give_a_point():
    result = seed_difference([0.3, 0.3, 0.3], [0.1, 0.1, 0.1], paired=True)
    assert (result.low, result.value, result.high) == pytest.approx((0.2, 0.2, 0.2))


# ------------------------------------------------------------------ Holm


def test_holm_by_hand():
    # Sorted .005, .01, .03, .04 times 4, 3, 2, 1 = .02, .03, .06, .04 -> running maximum .02, .03, .06, .06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.01, float("nan"), 0.04])  # a missing p-value is no test: two in the family
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]).size == 0


# ------------------------------------------------------------------ recipes against a reference


def _seeded(folder, counts, seed, *, where="results"):
    """A run of one seed with its recipe.json in the results folder, or (as harness finetune
    writes it) in the folder that holds the run's checkpoints."""
    run = context_run(folder, counts)
    target = run if where == "results" else run.parent / f"{run.name}-models"
    (target / "recipe.json").write_text(json.dumps({"recipe": "abc", "seed": seed}))
    return run


def _recipes(tmp_path, standard_seeds=(0, 1, 2), mitigated_seeds=(0, 1, 2)):
    # Of 200 examples, seed s: the standard recipe falls by (80 - 2s)/200, the mitigation by (20 - 4s)/200.
    standard = [_seeded(tmp_path / f"standard-{s}", [20, 100, 20 + 2 * s], s, where="models")
                for s in standard_seeds]
    mitigated = [_seeded(tmp_path / f"mitigated-{s}", [20, 100 - s, 80 + 3 * s], s) for s in mitigated_seeds]
    return standard, mitigated


def test_a_mitigation_that_shrinks_the_drop_is_compared_by_seed(tmp_path):
    standard, mitigated = _recipes(tmp_path)
    verdicts = {name: recipe_verdicts([RunResults(folder) for folder in folders])
                for name, folders in (("standard", standard), ("mitigated", mitigated))}
    (difference,) = mitigation_differences(verdicts)
    assert difference.recipe == "mitigated" and difference.reference == "standard"
    assert difference.drop.paired and difference.pairing == "paired by seed (0, 1, 2)"
    by_hand = np.array([(20 - 4 * s) / 200 - (80 - 2 * s) / 200 for s in range(3)])  # -.30, -.31, -.32
    assert difference.drop.value == pytest.approx(by_hand.mean())
    half = student.ppf(0.975, 2) * by_hand.std(ddof=1) / math.sqrt(3)
    assert (difference.drop.low, difference.drop.high) == pytest.approx((by_hand.mean() - half, by_hand.mean() + half))
    assert difference.peak.value == pytest.approx(np.mean([-s / 200 for s in range(3)]))
    assert "drop" in str(difference) and "paired by seed" in str(difference)


def test_recipes_that_do_not_share_seeds_are_compared_unpaired(tmp_path):
    standard, mitigated = _recipes(tmp_path, mitigated_seeds=(3, 4, 5))
    reference, other = (recipe_verdicts([RunResults(folder) for folder in folders])[0]
                        for folders in (standard, mitigated))
    difference = recipe_difference(other, reference, "mitigated", "standard")
    assert not difference.drop.paired and "unpaired" in difference.pairing and "3, 4, 5" in difference.pairing


def test_seeds_without_a_recipe_file_are_unpaired(tmp_path):
    standard = [context_run(tmp_path / f"a-{s}", [20, 100, 20 + s]) for s in range(3)]
    mitigated = [context_run(tmp_path / f"b-{s}", [20, 100, 80 + s]) for s in range(3)]
    reference, other = (recipe_verdicts([RunResults(folder) for folder in folders])[0]
                        for folders in (standard, mitigated))
    difference = recipe_difference(other, reference, "b", "a")
    assert not difference.drop.paired and "seed numbers unknown" in difference.pairing


def test_cli_compare_prints_each_recipe_against_the_first(tmp_path, capsys):
    standard, mitigated = _recipes(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["compare", "--recipe", "standard=" + ",".join(map(str, standard)),
                     "--recipe", "mitigated=" + ",".join(map(str, mitigated)), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mitigated vs standard" in printed and "paired by seed (0, 1, 2)" in printed
    page = (out / COMPARE_HTML).read_text(encoding="utf-8")
    assert "drop − reference" in page and "paired by seed (0, 1, 2)" in page
    # The recipe table says how many tests it holds and gives Holm-adjusted p-values.
    assert "4 tests" in page and "Holm" in page


# ------------------------------------------------------------------ reports: Holm, McNemar after a picked peak


def test_the_report_counts_its_tests_and_adjusts_them(tmp_path):
    run = context_run(tmp_path / "run", [20, 120, 20])
    page = (write_report(run).parent / REPORT_HTML).read_text(encoding="utf-8")
    assert "Holm" in page and "2 tests" in page


def test_mcnemar_after_a_data_picked_peak_is_descriptive(tmp_path):
    run = context_run(tmp_path / "run", [20, 120, 20])
    picked = transitions(run, "capitals")
    assert picked.descriptive and "descriptive" in picked.method and "descriptive" in str(picked)
    chosen = transitions(run, "capitals", before="first", after="last")
    assert not chosen.descriptive and "descriptive" not in chosen.method


def test_a_recipe_file_without_an_integer_seed_is_named(tmp_path):
    runs = [context_run(tmp_path / f"run-{s}", [20, 100, 20]) for s in range(2)]
    (runs[0] / "recipe.json").write_text(json.dumps({"recipe": "abc", "seed": "zero"}))
    (error,) = recipe_verdicts([RunResults(folder) for folder in runs])
    assert "recipe.json" in str(error) and "'seed' must be an integer" in str(error)
