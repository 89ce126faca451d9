"""Conjugate prompting: the same request in another "language".

Kotha et al. (ICLR 2024) show that finetuning skews a model's inference of which task a
prompt is, and that rewriting the prompt so it looks less like the finetuning data (another
language, leetspeak, pig latin) while asking for the same capability recovers pretrained
behaviour. Here a conjugate is applied to one rendered example:

* ``en``: the identity (every task has it);
* translations ``fr``, ``es``, ``de``: the task's hand-written prompt templates in that
  language filled with the example's localised fields (entity names from CLDR/ISO data);
  the data source provides them (:class:`harness.examples.Localized`);
* programmatic transforms ``leetspeak`` and ``piglatin``: a function of the rendered text,
  applied to the answers too.

Scoring accepts the English answer and its conjugate form, whichever the model produces.
"""

from __future__ import annotations

import re
from typing import Callable

ENGLISH = "en"
TRANSLATIONS = ("fr", "es", "de")

_LEET = str.maketrans({"a": "4", "A": "4", "e": "3", "E": "3", "i": "1", "I": "1",
                       "o": "0", "O": "0", "s": "5", "S": "5", "t": "7", "T": "7"})
_WORD = re.compile(r"[A-Za-z]+")
_VOWELS = "aeiouAEIOU"


def leetspeak(text: str) -> str:
    """Replace letters with look-alike digits: ``"The capital"`` -> ``"7h3 c4p174l"``."""
    return text.translate(_LEET)


def _pig_latin_word(word: str) -> str:
    if word[0] in _VOWELS:
        moved, rest = "", word
    else:
        # The leading consonant cluster moves; "qu" travels together (question -> estionquay)
        # and "y" counts as a vowel after the first letter (rhythm -> ythmrhay).
        match = re.match(r"qu|[^aeiouy]+(?:qu)?|y", word, re.IGNORECASE)
        cut = match.end() if match else 0
        moved, rest = word[:cut], word[cut:]
    if not rest:
        return word + "ay"
    suffix = "way" if not moved else moved.lower() + "ay"
    if word[0].isupper():
        # Keep the word's capitalisation where readers expect it: Paris -> Arispay, USA -> USAway.
        if word.isupper() and len(word) > 1:
            return (rest + moved + ("WAY" if not moved else "AY")).upper()
        return rest[0].upper() + rest[1:] + suffix
    return rest + suffix


def pig_latin(text: str) -> str:
    """Pig latin, word by word; digits, punctuation and spacing are kept as they are."""
    return _WORD.sub(lambda m: _pig_latin_word(m.group(0)), text)


TRANSFORMS: dict[str, Callable[[str], str]] = {"leetspeak": leetspeak, "piglatin": pig_latin}

CONJUGATES: tuple[str, ...] = (ENGLISH, *TRANSLATIONS, *TRANSFORMS)
