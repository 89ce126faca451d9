"""Knowledge-conflict examples made from the real facts: closed-book, agreeing, conflicting.

Builders (options ``seed``, ``limit``): ``capitals``, ``currencies``, ``continents``,
``languages``, ``us_state_capitals`` and ``world_facts`` (all relations mixed, like the
CF_World_Facts set of Goyal et al.). Each fact gives three examples, conditions
``closed_book`` (question only), ``agreeing`` (a context stating the real fact) and
``conflicting`` (a context stating a counterfactual answer of the same type).
"""

from __future__ import annotations

import functools
from typing import Sequence

from harness.data.fact_sentences import TEMPLATES, fact_sentence, question
from harness.data.facts import LANGUAGES, LOCALIZED_LANGUAGES, Fact, accepted_spellings, load_facts, shares_words
from harness.data.registry import builder
from harness.seeding import seeded_random, take
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET, Example, Localized
from harness.matching import contains

def _clashes(fact: Fact, other: Fact) -> bool:
    """Whether stating ``other``'s answer for ``fact`` would not make a clean conflict.

    It clashes if, in any language, it :func:`shares_words` with the real answer or with
    ``fact.avoid`` ("Euro"/"Euro"), or the subject's name contains it ("Africa" for South
    Africa), since scoring could then not tell the two answers apart.
    """
    for lang in LANGUAGES:
        wrong = accepted_spellings(other, lang)
        if shares_words(accepted_spellings(fact, lang) + fact.avoid, wrong):
            return True
        if any(contains(fact.names(lang).subject, spelling) for spelling in wrong):
            return True
    return False


@functools.lru_cache(maxsize=None)
def _answer_pool(relation: str) -> tuple[Fact, ...]:
    # One fact per distinct answer, so that an answer many subjects share (the euro) is no
    # likelier a counterfactual than any other.
    unique = {fact.answer: fact for fact in reversed(load_facts(relation))}
    return tuple(unique[answer] for answer in sorted(unique))


def counterfactual(fact: Fact, seed: int) -> Fact:
    """A fact of the same relation whose answer is a plausible wrong answer for ``fact``.

    Chosen with :func:`seeded_random` from the distinct answers of the relation, skipping
    any that :func:`_clashes` with the real answer (every spelling, every language).
    """
    pool = list(_answer_pool(fact.relation))
    seeded_random(seed, fact.key, "counterfactual").shuffle(pool)
    for other in pool:
        if not _clashes(fact, other):
            return other
    raise ValueError(f"no counterfactual answer for {fact.key}")


def pick_template(fact: Fact, seed: int, purpose: str = "template") -> int:
    """A seeded template index for ``fact``; use it for every language (it is taken modulo)."""
    most = max(len(by_lang) for by_lang in TEMPLATES[fact.relation].values())
    return seeded_random(seed, fact.key, purpose).randrange(most)


# ---------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------

# What the context states about the queried fact.
NO_CONTEXT, TRUE_CONTEXT, COUNTERFACTUAL_CONTEXT = "none", "true", "counterfactual"


def fact_example(
    fact: Fact,
    condition: str,
    *,
    seed: int,
    context: str,
    distractors: Sequence[Fact] = (),
) -> Example:
    """One example asking for ``fact``, in English with fr/es/de translations.

    Args:
        fact: the queried fact.
        condition: the example's condition (also the last part of its id).
        seed: seeds the counterfactual and the phrasings (see :func:`seeded_random`).
        context: :data:`NO_CONTEXT` (closed book: no ``context`` field), :data:`TRUE_CONTEXT`
            (the context states the real answer) or :data:`COUNTERFACTUAL_CONTEXT` (it states
            :func:`counterfactual`'s answer instead).
        distractors: other facts whose (true) sentences join the queried one in the context,
            in a seeded order.

    Answers: ``target`` (real spellings) + ``alternative`` (the counterfactual's canonical
    spelling) without a conflict; ``context`` (counterfactual) + ``parametric`` (real) with
    one. Localised answers hold the spellings :meth:`Fact.names` gives in that language.
    """
    other = counterfactual(fact, seed)
    stated = other if context == COUNTERFACTUAL_CONTEXT else fact
    template = pick_template(fact, seed)
    sentence_order = list(range(len(distractors) + 1))
    seeded_random(seed, fact.key, "order").shuffle(sentence_order)

    def fields(lang: str) -> dict[str, str]:
        out = {"question": question(fact, lang), "subject": fact.names(lang).subject}
        if context != NO_CONTEXT:
            sentences = [fact_sentence(fact, lang, stated.names(lang).answers[0], template)]
            sentences += [
                fact_sentence(d, lang, template=pick_template(d, seed, f"distractor:{fact.key}"))
                for d in distractors
            ]
            out["context"] = " ".join(sentences[i] for i in sentence_order)
        return out

    def answers(lang: str) -> dict[str, tuple[str, ...]]:
        real, wrong = fact.names(lang).answers, other.names(lang).answers
        if context == COUNTERFACTUAL_CONTEXT:
            return {CONTEXT: wrong, PARAMETRIC: real}
        return {TARGET: real, ALTERNATIVE: wrong[:1]}

    return Example(
        id=f"{fact.key}:{condition}",
        condition=condition,
        fields=fields("en"),
        answers=answers("en"),
        localized={lang: Localized(fields(lang), answers(lang)) for lang in LOCALIZED_LANGUAGES},
        meta={
            "relation": fact.relation,
            "subject": fact.subject,
            "counterfactual": other.answer,
            "template": template,
            **({"distractors": [d.key for d in distractors]} if distractors else {}),
        },
    )


CONDITIONS = {
    "closed_book": NO_CONTEXT,
    "agreeing": TRUE_CONTEXT,
    "conflicting": COUNTERFACTUAL_CONTEXT,
}


def knowledge_conflicts(facts: Sequence[Fact], *, seed: int, limit: int | None) -> list[Example]:
    """The three conditions of :data:`CONDITIONS` for each of ``limit`` facts (seeded pick)."""
    return [
        fact_example(fact, condition, seed=seed, context=context)
        for fact in take(facts, seed, limit)
        for condition, context in CONDITIONS.items()
    ]


def _register(name: str, relation: str | None) -> None:
    what = f"the {relation} facts" if relation else "the facts of every relation"

    def build(*, seed: int = 0, limit: int | None = None) -> list[Example]:
        return knowledge_conflicts(load_facts(relation), seed=seed, limit=limit)

    build.__name__ = build.__qualname__ = f"build_{name}"
    build.__doc__ = (
        f"Knowledge-conflict examples for {what}: closed_book, agreeing and conflicting per "
        "fact. ``limit`` caps the number of facts (a seeded subset); ``seed`` also picks the "
        "counterfactuals and phrasings."
    )
    builder(name)(build)


for _name, _relation in (
    ("capitals", "capital"),
    ("currencies", "currency"),
    ("continents", "continent"),
    ("languages", "language"),
    ("us_state_capitals", "state_capital"),
    ("world_facts", None),
):
    _register(_name, _relation)
