"""Fact recall versus reading from context (after Jin et al. 2023), on the facts of
:mod:`harness.data.facts` (every relation), in English with fr/es/de translations.

Three builders, one condition each (the builder's name):

``closed_book``
    the question alone: can the model recall the fact? Answers ``target`` + ``alternative``.
``open_book``
    the question with a context of ``n_distractors + 1`` fact sentences in a seeded order:
    the queried fact, stated truly, among true sentences about other subjects. Answers
    ``target`` (the real answer) + ``alternative`` (a wrong answer of the same type).
``overriding``
    the same, but the queried fact's sentence states a counterfactual answer. Answers
    ``context`` (the counterfactual) + ``parametric`` (the real answer).

Distractors never share a subject with the queried fact, and neither their subjects nor
their answers share words with the queried fact's real or counterfactual answer, so each of
those appears in the context exactly where intended.
"""

from __future__ import annotations

from harness.data.facts import LANGUAGES, Fact, accepted_spellings, load_facts, shares_words
from harness.data.knowledge_conflicts import (
    COUNTERFACTUAL_CONTEXT,
    NO_CONTEXT,
    TRUE_CONTEXT,
    counterfactual,
    fact_example,
)
from harness.data.registry import builder
from harness.seeding import seeded_random, take
from harness.examples import Example


def _confusable(fact: Fact, other: Fact, distractor: Fact) -> bool:
    """Whether ``distractor`` would blur which sentence answers the question."""
    if distractor.subject == fact.subject:
        return True
    for lang in LANGUAGES:
        answers = accepted_spellings(fact, lang) + accepted_spellings(other, lang)
        written = (distractor.names(lang).subject, *accepted_spellings(distractor, lang))
        if shares_words(written, answers):
            return True
    return False


def distractors(fact: Fact, seed: int, n: int) -> list[Fact]:
    """``n`` facts to state beside ``fact`` in its context, chosen with a seeded shuffle.

    Chosen per fact (see :func:`harness.seeding.seeded_random`), so an example's context
    does not depend on which other examples are built. Distractors have distinct subjects.
    """
    if n < 0:
        raise ValueError(f"n_distractors must be >= 0, got {n}")
    other = counterfactual(fact, seed)
    pool = load_facts()
    seeded_random(seed, fact.key, "distractors").shuffle(pool)
    chosen: list[Fact] = []
    for candidate in pool:
        if len(chosen) == n:
            break
        if candidate.subject in {d.subject for d in chosen}:
            continue
        if not _confusable(fact, other, candidate):
            chosen.append(candidate)
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} distractors for {fact.key}, {n} asked")
    return chosen


def _build(
    condition: str, context: str, *, seed: int, limit: int | None, n_distractors: int
) -> list[Example]:
    return [
        fact_example(
            fact,
            condition,
            seed=seed,
            context=context,
            distractors=distractors(fact, seed, n_distractors),
        )
        for fact in take(load_facts(), seed, limit)
    ]


@builder("closed_book")
def build_closed_book(*, seed: int = 0, limit: int | None = None) -> list[Example]:
    """Closed-book QA over every fact: fields ``question``, ``subject``.

    ``limit`` caps the number of facts (a seeded subset); ``seed`` picks the alternative.
    """
    return _build("closed_book", NO_CONTEXT, seed=seed, limit=limit, n_distractors=0)


@builder("open_book")
def build_open_book(
    *, seed: int = 0, limit: int | None = None, n_distractors: int = 2
) -> list[Example]:
    """Open-book QA: the true fact among ``n_distractors`` other fact sentences.

    Fields ``question``, ``subject``, ``context``. ``limit`` caps the number of facts.
    """
    return _build("open_book", TRUE_CONTEXT, seed=seed, limit=limit, n_distractors=n_distractors)


@builder("overriding")
def build_overriding(
    *, seed: int = 0, limit: int | None = None, n_distractors: int = 2
) -> list[Example]:
    """Overriding QA: a counterfactual statement of the fact among ``n_distractors`` others.

    Fields ``question``, ``subject``, ``context``. ``limit`` caps the number of facts.
    """
    return _build(
        "overriding", COUNTERFACTUAL_CONTEXT, seed=seed, limit=limit, n_distractors=n_distractors
    )
