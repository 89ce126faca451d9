"""Verdicts about recipes over their seeds (harness.reports.recipes), and verdicts that no
test can give (too few examples change)."""

from __future__ import annotations

import pytest
from handmade import conflict, context_run, write_run

from harness import cli
from harness.errors import ReportError
from harness.reports.compare import COMPARE_HTML, run_styles
from harness.reports.inversion import Inversion
from harness.reports.recipes import RecipeInversion, detect_inversion, recipe_verdicts
from harness.reports.runs import RunResults


def test_three_seeds_that_all_invert_are_a_recipe_that_inverts(tmp_path):
    seeds = [context_run(tmp_path / f"seed-{s}", [20, 120 + 5 * s, 20 + s]) for s in range(3)]
    recipe = detect_inversion(seeds, "capitals")
    assert isinstance(recipe, RecipeInversion) and recipe.found and recipe.verdict == "inversion"
    assert recipe.seed_verdicts == "inversion in 3 of 3 seeds"
    assert recipe.checkpoints[recipe.peak_index].step == 20 and recipe.drop.significant
    assert recipe.curve[1] == pytest.approx((0.6 + 0.625 + 0.65) / 3)
    assert "over 3 seeds: inversion" in str(recipe) and "seed-2: inversion" in str(recipe)


def test_one_seed_that_falls_does_not_make_the_recipe_fall(tmp_path):
    # Seed 0 falls back; seeds 1 and 2 keep rising: the recipe's mean curve does not fall
    # significantly over seeds, whatever seed 0 alone says.
    seeds = [context_run(tmp_path / f"seed-{s}", counts)
             for s, counts in enumerate([[20, 120, 40], [20, 110, 160], [20, 100, 150]])]
    recipe = detect_inversion(seeds, "capitals")
    assert recipe.per_seed[0].verdict == "inversion"
    assert recipe.verdict != "inversion" and not recipe.drop.significant
    assert recipe.seed_verdicts.startswith("rise in 2 of 3 seeds") and "inversion in 1" in recipe.seed_verdicts


def test_one_folder_is_a_verdict_about_one_trajectory(tmp_path):
    run = context_run(tmp_path / "run", [20, 120, 20])
    assert isinstance(detect_inversion(run, "capitals"), Inversion)
    assert isinstance(detect_inversion([run], "capitals"), Inversion)


def test_the_task_may_be_left_out_when_one_task_measures_context_reliance(tmp_path):
    """The README's `harness.detect_inversion([...])` (and `transitions(run)`) as written:
    the task is the one with context reliance on conflicting contexts; with two, name one."""
    from harness.reports.items import transitions

    seeds = [context_run(tmp_path / f"seed-{s}", [20, 120 + 5 * s, 20 + s]) for s in range(3)]
    assert detect_inversion(seeds).task == "capitals" and detect_inversion(seeds[0]).task == "capitals"
    assert transitions(seeds[0]).task == "capitals"
    both = write_run(tmp_path / "two-tasks", [(f"checkpoint-{step}", step, {
        ("capitals", "conflicting", "en"): conflict(count), ("currencies", "conflicting", "en"): conflict(count)})
        for step, count in ((10, 20), (20, 120))])
    with pytest.raises(ReportError, match=r"several tasks have context_hit_rate on conflicting examples "
                                          r"\(capitals, currencies\); name one"):
        detect_inversion(both)
    with pytest.raises(ReportError, match="no task has accuracy"):
        detect_inversion(seeds, metric="accuracy")


def test_seeds_must_share_checkpoints(tmp_path):
    a = context_run(tmp_path / "a", [20, 120, 20], steps=[10, 20, 30])
    b = context_run(tmp_path / "b", [20, 120, 20], steps=[5, 15, 25])
    with pytest.raises(ReportError, match="checkpointed alike"):
        detect_inversion([a, b], "capitals")


def test_three_examples_are_no_verdict(tmp_path):
    # The case: 3 examples go 0 -> 1 -> 0. It used to be "inversion" with p = 0.000.
    run = write_run(tmp_path / "run", [(f"checkpoint-{s}", s, {("capitals", "conflicting", "en"): conflict(k, 3)})
                                       for s, k in ((10, 0), (20, 3), (30, 0))])
    verdict = detect_inversion(run, "capitals")
    assert verdict.verdict == "no verdict" and not verdict.found
    assert "only 3 examples" in verdict.reason and "1/2^3" in verdict.reason
    assert "unresolvable" in str(verdict.drop)


def test_cli_compare_prints_the_recipe_and_its_seeds(tmp_path, capsys):
    seeds = [context_run(tmp_path / f"seed-{s}", [20, 120, 20 + s]) for s in range(3)]
    other = context_run(tmp_path / "other", [20, 40, 60])
    out = tmp_path / "out"
    assert cli.main(["compare", str(other), "--recipe", "standard=" + ",".join(map(str, seeds)),
                     "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recipe standard (3 seeds):" in printed and "over 3 seeds: inversion" in printed
    assert "per seed: inversion in 3 of 3 seeds" in printed
    page = (out / COMPARE_HTML).read_text(encoding="utf-8")
    assert "Recipes over seeds" in page and "inversion in 3 of 3 seeds" in page and "seed-1" in page


def test_a_recipes_seeds_share_a_colour_in_the_comparison(tmp_path):
    # Two recipes of two seeds whose folders are all called seed-N (as harness demo writes
    # them): the verdicts list them by folder, the chart by label.
    folders = {(recipe, s): context_run(tmp_path / recipe / f"seed-{s}", [20, 120, 20 + s])
               for recipe in ("standard", "augmented") for s in range(2)}
    other = context_run(tmp_path / "other", [20, 40, 60])
    runs = {f"{recipe}/seed-{s}": RunResults(path, f"{recipe}/seed-{s}") for (recipe, s), path in folders.items()}
    runs["other"] = RunResults(other, "other")
    recipes = {recipe: recipe_verdicts([RunResults(folders[recipe, s]) for s in range(2)])
               for recipe in ("standard", "augmented")}
    styles = run_styles(list(runs.values()), recipes)
    assert styles["standard/seed-0"].color == styles["standard/seed-1"].color
    assert styles["augmented/seed-0"].color == styles["augmented/seed-1"].color
    assert len({styles[name].color for name in ("standard/seed-0", "augmented/seed-0", "other")}) == 3
    assert styles["standard/seed-0"].marker != styles["standard/seed-1"].marker
    assert styles["standard/seed-0"].linestyle != styles["standard/seed-1"].linestyle
    # Without recipes every run has a colour of its own.
    assert len({style.color for style in run_styles(list(runs.values()), {}).values()}) == len(runs)
