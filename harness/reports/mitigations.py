"""Mitigations compared across seeds: how much a recipe changes a reference recipe's drop
(peak minus last) and peak, with an interval over seeds.

"Does this mitigation remove inversion?" is a claim about two recipes, and seeds of one
recipe wander: one seed of each can rank them either way. Each seed's run gives its own drop
and peak (its :class:`~harness.reports.inversion.Inversion`: the highest checkpoint over the
examples scored at every checkpoint, minus the last); the difference of the two recipes'
means over seeds comes with a t interval over seeds (:func:`harness.stats.seed_difference`):
paired by seed when both recipes ran the same seed numbers (each run's recipe.json,
:attr:`RunResults.seed <harness.reports.runs.RunResults.seed>`), Welch's when they did not.

A seed's peak is the highest of its noisy checkpoints, so it sits a little above that seed's
true peak; the interval is about the drop a seed of each recipe shows on average, a bias both
recipes share when their checkpoints are equally noisy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from harness.errors import ReportError
from harness.reports.recipes import RecipeInversion
from harness.stats import SeedDifference, seed_difference

#: How a difference between recipes is computed, in words.
MITIGATION_METHOD = (
    "each seed's drop (its peak minus its last checkpoint) and peak, averaged over a recipe's seeds; the "
    "recipe's mean minus the reference recipe's, with a 95% t interval over seeds: on the per-seed differences "
    "when both recipes ran the same seed numbers (recipe.json), else Welch's; with 3 seeds a paired interval's "
    "half-width is 2.5 times the sd of the seeds' differences"
)


@dataclass(frozen=True)
class RecipeDifference:
    """How ``recipe`` differs from ``reference`` on one series (``task``, ``metric``,
    ``condition``): ``drop`` and ``peak`` are its mean over seeds minus the reference's,
    with intervals over seeds; ``pairing`` says in words whether, and by which seeds, the runs
    were paired. A negative ``drop`` is a smaller fall than the reference's."""

    recipe: str
    reference: str
    task: str
    metric: str
    condition: str
    drop: SeedDifference
    peak: SeedDifference
    pairing: str
    method: str = MITIGATION_METHOD

    def __str__(self) -> str:
        return (f"{self.recipe} vs {self.reference}: {self.task} {self.metric} ({self.condition}): drop {self.drop}, "
                f"peak {self.peak} ({self.recipe} minus {self.reference}, 95% t interval over seeds; "
                f"{self.pairing})")


def _pairing(seeds: Sequence[int | None], reference: Sequence[int | None]) -> tuple[list[int], list[int]] | str:
    """The positions of the two recipes' runs lined up by seed number, or why they cannot be."""
    if None in seeds or None in reference:
        return "unpaired: seed numbers unknown (no recipe.json beside a run's checkpoints)"
    if len(set(seeds)) != len(seeds) or len(set(reference)) != len(reference):
        return "unpaired: a seed number repeats within a recipe"
    if set(seeds) != set(reference):
        return (f"unpaired: seeds ({', '.join(map(str, sorted(seeds)))}) against "
                f"({', '.join(map(str, sorted(reference)))})")
    shared = sorted(seeds)
    return [list(seeds).index(s) for s in shared], [list(reference).index(s) for s in shared]


def recipe_difference(recipe: RecipeInversion, reference: RecipeInversion, name: str,
                      reference_name: str) -> RecipeDifference:
    """``recipe``'s drop and peak minus ``reference``'s over their seeds (module docstring).

    Raises :class:`ReportError` when the two are not verdicts on the same series."""
    series = (recipe.task, recipe.metric, recipe.condition, recipe.conjugate)
    if series != (reference.task, reference.metric, reference.condition, reference.conjugate):
        raise ReportError(f"recipes {name} and {reference_name}: different series ({', '.join(series)} against "
                          f"{reference.task}, {reference.metric}, {reference.condition}, {reference.conjugate})")
    pairs = _pairing(recipe.seeds or [None], reference.seeds or [None])
    ours, theirs = list(recipe.per_seed), list(reference.per_seed)
    if isinstance(pairs, str):
        words, paired = pairs, False
    else:
        ours, theirs = [ours[i] for i in pairs[0]], [theirs[i] for i in pairs[1]]
        words, paired = f"paired by seed ({', '.join(str(recipe.seeds[i]) for i in pairs[0])})", True
    drop, peak = (seed_difference([value(run) for run in ours], [value(run) for run in theirs], paired=paired)
                  for value in (lambda run: run.drop.value, lambda run: run.peak))
    return RecipeDifference(recipe=name, reference=reference_name, task=recipe.task, metric=recipe.metric,
                            condition=recipe.condition, drop=drop, peak=peak, pairing=words)


def mitigation_differences(recipes: Mapping[str, Sequence[RecipeInversion | ReportError]]) -> list[RecipeDifference]:
    """Each recipe after the first against the first (the reference), on every series both
    have a verdict for (:func:`~harness.reports.recipes.recipe_verdicts`' results by recipe name)."""
    if len(recipes) < 2:
        return []
    (reference_name, reference), *others = recipes.items()
    by_series = {(r.task, r.metric, r.condition, r.conjugate): r for r in reference if isinstance(r, RecipeInversion)}
    return [recipe_difference(result, by_series[key], name, reference_name)
            for name, results in others for result in results if isinstance(result, RecipeInversion)
            and (key := (result.task, result.metric, result.condition, result.conjugate)) in by_series]
