"""Sentences stating a fact and questions asking for it, hand-written in four languages.

Several phrasings a relation and language (:data:`TEMPLATES`), so that a model cannot key on
one; a question a relation and language (:data:`QUESTIONS`).
"""

from __future__ import annotations

import re
from typing import Mapping

from harness.data.facts import Fact

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
