"""The natural sentences of the conjugate-prompting probe, written for the project.

Kotha et al. (ICLR 2024) build the demonstrations and the fill-in-the-blank queries of their
in-context-learning probe from random English sentences, machine-translated. Here they are
short everyday sentences written by hand in English, French, Spanish, Dutch, Hungarian and
German, the entries translations of each other (an item uses one entry in every language,
so its versions are the same item). They ship as ``tasks/data/icl_sentences.json``::

    {"sentences": [{"en": "The old man fed the pigeons in the park.", "fr": "...", ...}, ...]}

Every sentence is declarative (only the probe's query may look like an instruction), ends
with a full stop, has no digits, and starts with a word of letters only, two or more: the
blank task hides that word behind as many underscores, and a blank of one character, or one
that hides punctuation too (``L'homme``, ``Yesterday,``), would be ambiguous.
:func:`load_sentences` checks all of it.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import Mapping

LANGUAGES = ("en", "fr", "es", "nl", "hu", "de")

#: What a blank is made of: one underscore per character of the hidden word.
BLANK_CHARACTER = "_"


def sentences_path() -> Path:
    """The shipped sentences file, ``tasks/data/icl_sentences.json`` (found in a wheel too)."""
    return Path(str(importlib.resources.files("harness.builtin_tasks"))) / "data" / "icl_sentences.json"


def first_word(text: str) -> str:
    """The text up to its first space, as the paper splits it (``"¿Cuánto es"`` -> ``"¿Cuánto"``)."""
    return text.split(" ")[0]


def blank_first_word(sentence: str) -> tuple[str, str]:
    """The sentence with its first word replaced by underscores of its length, and the word.

    ``"The cat sat."`` -> ``("___ cat sat.", "The")``.
    """
    word = first_word(sentence)
    return BLANK_CHARACTER * len(word) + sentence[len(word):], word


def _problem(sentence: str) -> str | None:
    word = first_word(sentence)
    if not (word.isalpha() and len(word) >= 2):
        return f"its first word {word!r} is not two or more letters"
    if not sentence.endswith(".") or any(mark in sentence for mark in "?!¿¡"):
        return "it is not a statement ending with a full stop"
    if any(char.isdigit() for char in sentence):
        return "it has a digit"
    return None


@functools.lru_cache(maxsize=None)
def load_sentences() -> tuple[Mapping[str, str], ...]:
    """The sentence entries, each ``{language: sentence}`` for every one of :data:`LANGUAGES`.

    Raises ``ValueError`` naming the file, the entry and the language for a missing
    translation or a sentence that breaks the rules of the module docstring.
    """
    path = sentences_path()
    entries = json.loads(path.read_text(encoding="utf-8"))["sentences"]
    for number, entry in enumerate(entries, 1):
        if set(entry) != set(LANGUAGES):
            raise ValueError(f"{path}: entry {number}: languages {sorted(entry)}, expected {list(LANGUAGES)}")
        for language in LANGUAGES:
            problem = _problem(entry[language])
            if problem:
                raise ValueError(f"{path}: entry {number}: {language}: {entry[language]!r}: {problem}")
    return tuple(entries)
