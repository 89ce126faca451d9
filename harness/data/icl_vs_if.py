"""In-context learning vs instruction following: the probe of conjugate prompting.

Kotha, Springer and Raghunathan (ICLR 2024) show that instruction finetuning makes a model
read an instruction-looking input as an instruction even when the demonstrations in the
prompt define another task. Each example here is a k-shot prompt whose demonstrations apply
one transformation to their input:

``repeat``
    the output is the input, verbatim;
``capitalize``
    the output is the input in upper case;

while the query looks like an instruction:

``arithmetic``
    a question such as "What is 12 plus 7?" (instruction answer ``19``);
``fill_blank``
    "Fill in the blank: ___ is the capital city of France." (instruction answer ``Paris``),
    made from the capital facts of :mod:`harness.data.facts`.

A model that follows the demonstrations starts its output with the transformed query; one
that follows the instruction answers it. Answers: ``icl`` is the query's first word,
transformed ("What" / "WHAT"), ``instruction`` the result or the hidden word. Scoring
(elsewhere) tests whether the output starts with an answer, case-sensitively, so the first
word is enough to tell the two behaviours apart. Layout (the demonstrations use other
queries of the same kind)::

    Input: What is 3 plus 4?
    Output: What is 3 plus 4?

    Input: What is 10 times 2?
    Output: What is 10 times 2?

    Input: What is 12 plus 7?
    Output:

Every example is written in English, French, Spanish and German (the labels, the question
words and the sentences alike), for translation conjugates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from harness.data.fact_sentences import fact_sentence
from harness.data.facts import LOCALIZED_LANGUAGES, Fact, load_facts
from harness.data.knowledge_conflicts import pick_template
from harness.data.registry import builder
from harness.data.seeding import seeded_random
from harness.examples import ICL, INSTRUCTION, Example, Localized
from harness.matching import contains, starts_with

TRANSFORMS: Mapping[str, Callable[[str], str]] = {
    "repeat": lambda text: text,
    "capitalize": str.upper,
}
KINDS = ("arithmetic", "fill_blank")
CONDITIONS = tuple(f"{transform}_{kind}" for kind in KINDS for transform in TRANSFORMS)
N_PER_CONDITION = 50

# The blank of fill-in-the-blank sentences.
BLANK = "___"

# Capital cities are proper nouns in every language, so the hidden word has the same case
# wherever the template puts it (a currency or language name would be lowercase mid-sentence
# in French but capitalised at its start).
_FILL_BLANK_RELATIONS = ("capital", "state_capital")


@dataclass(frozen=True)
class _Phrasing:
    """The hand-written words of the probe in one language.

    The labels include their colon (``"Input:"``, ``"Entrée :"``). ``arithmetic`` holds
    question templates with ``{a}``, ``{op}``, ``{b}``, translations of each other index by
    index (an example uses one index in every language); ``operators`` names ``+``, ``-`` and
    ``*``; ``fill_blank`` wraps a sentence with a blank.
    """

    input_label: str
    output_label: str
    arithmetic: tuple[str, ...]
    operators: Mapping[str, str]
    fill_blank: str


PHRASINGS: Mapping[str, _Phrasing] = {
    "en": _Phrasing(
        "Input:",
        "Output:",
        ("What is {a} {op} {b}?", "Calculate {a} {op} {b}."),
        {"+": "plus", "-": "minus", "*": "times"},
        "Fill in the blank: {sentence}",
    ),
    "fr": _Phrasing(
        # French typography puts a space before a colon, as the fact templates do.
        "Entrée :",
        "Sortie :",
        ("Combien font {a} {op} {b} ?", "Calculez {a} {op} {b}."),
        {"+": "plus", "-": "moins", "*": "fois"},
        "Complétez la phrase : {sentence}",
    ),
    "es": _Phrasing(
        "Entrada:",
        "Salida:",
        ("¿Cuánto es {a} {op} {b}?", "Calcula {a} {op} {b}."),
        {"+": "más", "-": "menos", "*": "por"},
        "Completa el espacio en blanco: {sentence}",
    ),
    "de": _Phrasing(
        "Eingabe:",
        "Ausgabe:",
        ("Was ist {a} {op} {b}?", "Berechne {a} {op} {b}."),
        {"+": "plus", "-": "minus", "*": "mal"},
        "Ergänze die Lücke: {sentence}",
    ),
}


@dataclass(frozen=True)
class Query:
    """One instruction-looking input in every language of :data:`PHRASINGS`.

    Attributes:
        texts: language -> the query text.
        answers: language -> the spellings of the answer the instruction asks for.
        about: what the query is about, for the per-sample logs (the sum, or the fact's key).
    """

    texts: Mapping[str, str]
    answers: Mapping[str, tuple[str, ...]]
    about: str


def icl_answer(query_text: str, transform: str) -> str:
    """The answer the demonstrations imply: the query's first word, transformed."""
    return TRANSFORMS[transform](query_text.split()[0])


def _arithmetic_pool() -> list[Query]:
    """Every arithmetic query: small operands, positive results, every phrasing."""
    # Operand ranges keep the sums familiar; a > b keeps differences positive, and the
    # products stay within the times tables.
    operations = [("+", a, b, a + b) for a in range(2, 21) for b in range(2, 21)]
    operations += [("-", a, b, a - b) for a in range(3, 21) for b in range(2, a)]
    operations += [("*", a, b, a * b) for a in range(2, 13) for b in range(2, 13)]
    return [
        Query(
            texts={
                lang: p.arithmetic[t].format(a=a, op=p.operators[op], b=b)
                for lang, p in PHRASINGS.items()
            },
            answers={lang: (str(result),) for lang in PHRASINGS},
            about=f"{a} {op} {b} = {result}",
        )
        for t in range(len(PHRASINGS["en"].arithmetic))
        for op, a, b, result in operations
    ]


def _blankable(fact: Fact) -> bool:
    """Whether ``fact`` makes a clean one-word blank in every language.

    Its answer must be a single word, and not part of the subject's name (the blank of
    "___ is the capital city of Djibouti" can be copied from the sentence itself).
    """
    for lang in PHRASINGS:
        names = fact.names(lang)
        hidden = names.answers[0]
        if len(hidden.split()) != 1 or contains(names.subject, hidden):
            return False
    return True


def _fill_blank_pool(seed: int) -> list[Query]:
    """One query per blankable capital fact, the phrasing picked per fact with ``seed``."""
    facts = [
        fact
        for relation in _FILL_BLANK_RELATIONS
        for fact in load_facts(relation)
        if _blankable(fact)
    ]
    queries = []
    for fact in facts:
        template = pick_template(fact, seed, "icl_vs_if")
        queries.append(
            Query(
                texts={
                    lang: p.fill_blank.format(
                        sentence=fact_sentence(fact, lang, value=BLANK, template=template)
                    )
                    for lang, p in PHRASINGS.items()
                },
                answers={lang: fact.names(lang).answers for lang in PHRASINGS},
                about=fact.key,
            )
        )
    return queries


def _answers_apart(query: Query) -> bool:
    """Whether no transformed first word and no instruction answer could score as each other.

    Scoring tests whether the output starts with an answer, and a translated prompt accepts
    the English spellings too, so every language is checked against every other; the test
    is the case-insensitive one, stricter than the task's case-sensitive scoring.
    """
    icl = {icl_answer(text, t) for text in query.texts.values() for t in TRANSFORMS}
    instruction = {answer for answers in query.answers.values() for answer in answers}
    return not any(
        starts_with(first, answer) or starts_with(answer, first)
        for first in icl
        for answer in instruction
    )


def _pool(kind: str, seed: int) -> list[Query]:
    """The candidate queries of ``kind`` in a seeded order (the first ones are queried)."""
    pool = _arithmetic_pool() if kind == "arithmetic" else _fill_blank_pool(seed)
    pool = [query for query in pool if _answers_apart(query)]
    seeded_random(seed, "icl_vs_if", kind).shuffle(pool)
    return pool


def _prompt(lang: str, demonstrations: Sequence[Query], query: Query, transform: str) -> str:
    """The k-shot prompt in ``lang``; it ends with the output label and no trailing space."""
    phrasing = PHRASINGS[lang]
    apply = TRANSFORMS[transform]
    blocks = [
        f"{phrasing.input_label} {d.texts[lang]}\n{phrasing.output_label} {apply(d.texts[lang])}"
        for d in demonstrations
    ]
    blocks.append(f"{phrasing.input_label} {query.texts[lang]}\n{phrasing.output_label}")
    return "\n\n".join(blocks)


def _example(
    index: int, kind: str, transform: str, query: Query, demonstrations: Sequence[Query]
) -> Example:
    def answers(lang: str) -> dict[str, tuple[str, ...]]:
        return {ICL: (icl_answer(query.texts[lang], transform),), INSTRUCTION: query.answers[lang]}

    condition = f"{transform}_{kind}"
    return Example(
        id=f"{condition}:{index}",
        condition=condition,
        fields={"prompt": _prompt("en", demonstrations, query, transform)},
        answers=answers("en"),
        localized={
            lang: Localized(
                {"prompt": _prompt(lang, demonstrations, query, transform)}, answers(lang)
            )
            for lang in LOCALIZED_LANGUAGES
        },
        meta={
            "transform": transform,
            "kind": kind,
            "query": query.texts["en"],
            "about": query.about,
            "demonstrations": [d.about for d in demonstrations],
        },
    )


@builder("icl_vs_if")
def build(*, seed: int = 0, limit: int | None = None, k: int = 2) -> list[Example]:
    """ICL-vs-instruction examples: 50 per condition, 200 in all (``limit`` caps the total).

    Conditions are ``{transform}_{kind}`` for the transforms ``repeat``, ``capitalize`` and
    the kinds ``arithmetic``, ``fill_blank``. The two transforms are paired: example ``i``
    of ``repeat_arithmetic`` and of ``capitalize_arithmetic`` share their query and
    demonstration inputs, so a difference between them is the transformation's alone.
    Examples are interleaved across conditions, so a ``limit`` keeps them balanced; each
    example's demonstrations are drawn with their own seeded generator, so an example does
    not depend on which others are built.
    """
    if k < 1 or (limit is not None and limit < 0):
        raise ValueError(f"icl_vs_if needs k >= 1 and limit >= 0, got k={k}, limit={limit}")
    pools = {kind: _pool(kind, seed) for kind in KINDS}
    for kind, pool in pools.items():
        if len(pool) < max(N_PER_CONDITION, k + 1):
            raise ValueError(f"only {len(pool)} {kind} queries; too few for this probe")
    examples = []
    for index in range(N_PER_CONDITION):
        for kind, pool in pools.items():
            query = pool[index]
            # Not the query itself, nor its other phrasing ("Calculate 4 times 3." for
            # "What is 4 times 3?"), which would make a demonstration of the query.
            others = [other for other in pool if other.about != query.about]
            demonstrations = seeded_random(seed, "icl_vs_if", kind, str(index)).sample(others, k)
            examples += [
                _example(index, kind, transform, query, demonstrations) for transform in TRANSFORMS
            ]
    return examples[:limit] if limit is not None else examples
