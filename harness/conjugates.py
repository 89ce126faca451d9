"""Conjugate prompting: the same request in another "language".

Kotha et al. (ICLR 2024) show that finetuning skews a model's inference of which task a
prompt is, and that rewriting the prompt so it looks less like the finetuning data (another
language, leetspeak, pig latin) while asking for the same capability recovers pretrained
behaviour. Here a conjugate is applied to one rendered example:

* ``en``: the identity (every task has it);
* translations ``fr``, ``es``, ``nl``, ``hu``, ``de``: the task's hand-written prompt
  templates in that language filled with the example's localised fields (entity names from
  CLDR/ISO data, or the data source's own hand-written text); the data source provides them
  (:class:`harness.examples.Localized`);
* programmatic transforms ``leetspeak`` and ``piglatin``: a function of the rendered text,
  applied to the answers too. Both commute with upper-casing (``f(s.upper()) ==
  f(s).upper()``), so a demonstration that capitalises its input still does after the
  rewrite.

Scoring accepts the English answer and its conjugate form, whichever the model produces,
unless the task's ``scoring.accept_english`` is false (then only the conjugate's spelling).
"""

from __future__ import annotations

import re
from typing import Callable

ENGLISH = "en"
TRANSLATIONS = ("fr", "es", "nl", "hu", "de")

_LEET = str.maketrans({"a": "4", "A": "4", "e": "3", "E": "3", "i": "1", "I": "1",
                       "o": "0", "O": "0", "s": "5", "S": "5", "t": "7", "T": "7"})
_WORD = re.compile(r"[A-Za-z]+")
_VOWELS = "aeiouAEIOU"


def leetspeak(text: str) -> str:
    """Replace letters with look-alike digits: ``"The capital"`` -> ``"7h3 c4p174l"``."""
    return text.translate(_LEET)


def _pig_latin_word(word: str, shouted: bool) -> str:
    if word[0] in _VOWELS:
        moved, rest = "", word
    else:
        # The leading consonant cluster moves; "qu" travels together (question -> estionquay)
        # and "y" counts as a vowel after the first letter (rhythm -> ythmrhay).
        match = re.match(r"qu|[^aeiouy]+(?:qu)?|y", word, re.IGNORECASE)
        cut = match.end() if match else 0
        moved, rest = word[:cut], word[cut:]
    if shouted:
        # A word in capitals stays in capitals: USA -> USAWAY, THE -> ETHAY, TV -> TVAY.
        return (rest + moved + ("AY" if moved else "WAY")).upper() if rest else word + "AY"
    if not rest:
        return word + "ay"
    suffix = "way" if not moved else moved.lower() + "ay"
    if word[0].isupper():
        return rest[0].upper() + rest[1:] + suffix  # Paris -> Arispay
    return rest + suffix


def pig_latin(text: str) -> str:
    """Pig latin, word by word; digits, punctuation and spacing are kept as they are.

    A word in capitals stays in capitals (``"THE"`` -> ``"ETHAY"``); a one-letter capital
    (``"A"``, ``"I"``, the ``"T"`` of ``"DON'T"``) counts as one when a neighbouring word is
    in capitals, so ``"I SAW A CAT"`` -> ``"IWAY AWSAY AWAY ATCAY"`` while ``"I saw"`` ->
    ``"Iway awsay"``: the rewrite of a capitalised text is the capitalised rewrite.
    """
    words = list(_WORD.finditer(text))

    def shouted(index: int) -> bool:
        word = words[index].group(0)
        if not word.isupper():
            return False
        if len(word) > 1:
            return True
        neighbours = words[max(index - 1, 0):index] + words[index + 1:index + 2]
        return any(len(n.group(0)) > 1 and n.group(0).isupper() for n in neighbours)

    pieces, end = [], 0
    for index, match in enumerate(words):
        pieces += [text[end:match.start()], _pig_latin_word(match.group(0), shouted(index))]
        end = match.end()
    return "".join(pieces) + text[end:]


TRANSFORMS: dict[str, Callable[[str], str]] = {"leetspeak": leetspeak, "piglatin": pig_latin}

CONJUGATES: tuple[str, ...] = (ENGLISH, *TRANSLATIONS, *TRANSFORMS)
