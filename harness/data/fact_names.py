"""Names of one fact: its distinct spellings, and the names a place went by until recently.

Spellings the world used until recently (Kiev, Swaziland, Burma, ...) are the project's own
(:data:`FORMER_NAMES`) and are added to every fact they name, whatever a data package's
current data says: a model trained on older text answers with them.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Sequence

from harness.data.facts import Fact, Names
from harness.matching import normalize

#: Names of one place, current and former: a fact whose answer is one of them accepts all.
#: Renamings of the last decades that text before them (and so a model trained on it) uses,
#: and spellings a package has dropped. The first name of a group is not preferred: which
#: spelling a context states stays the data's choice.
FORMER_NAMES: tuple[tuple[str, ...], ...] = (
    ("Kyiv", "Kiev"),
    ("Astana", "Nur-Sultan"),
    ("Chișinău", "Kishinev"),
    ("Beijing", "Peking"),
    ("Dhaka", "Dacca"),
    ("Ulaanbaatar", "Ulan Bator"),
    ("Ashgabat", "Ashkhabad"),
    ("Kathmandu", "Katmandu"),
    ("Sanaa", "Sana'a"),
    ("Nay Pyi Taw", "Naypyidaw"),
    ("Eswatini", "Swaziland"),
    ("Myanmar", "Burma"),
    ("Côte d'Ivoire", "Ivory Coast"),
    ("Czechia", "Czech Republic"),
    ("North Macedonia", "Macedonia"),
    ("Türkiye", "Turkey"),
    ("Cabo Verde", "Cape Verde"),
    ("Timor-Leste", "East Timor"),
)


def distinct_spellings(*names: str | None) -> tuple[str, ...]:
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


def _former_names(spellings: Sequence[str]) -> tuple[str, ...]:
    forms = {normalize(s) for s in spellings}
    extra = [name for group in FORMER_NAMES if forms & {normalize(n) for n in group} for name in group]
    return distinct_spellings(*spellings, *extra)


def with_former_names(fact: Fact) -> Fact:
    """``fact`` with every name of :data:`FORMER_NAMES` that its answer goes by, in every
    language (English spellings are accepted everywhere)."""
    localized = MappingProxyType({
        lang: Names(names.subject, _former_names(names.answers)) for lang, names in fact.localized.items()
    })
    answer, *aliases = _former_names(fact.spellings)
    return replace(fact, answer=answer, aliases=tuple(aliases), localized=localized)
