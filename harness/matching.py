"""Answer matching: one canonical form for answers and outputs, compared as whole words.

:func:`normalize` puts a text in canonical form; :func:`contains` and :func:`starts_with`
compare an answer with a model output as whole words. :func:`raw_prefix` is the one
surface-form test: the conjugate-prompting paper's rule, on the output as generated. Scoring (:mod:`harness.scoring`)
decides which answers to look for; this module only says whether one is there.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

_ARTICLES = frozenset({"a", "an", "the"})

#: A number as written: a sign only where it cannot be a hyphen or a range's dash, thousands
#: separated by commas in groups of three, a decimal part; not part of a word ("5th", "B52").
_NUMBER = re.compile(r"(?<![\w.,])([-\u2212\u2013+]?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w]|[.,]\d)")


def _number_word(match: re.Match) -> str:
    """One word for a number's value: "1,000" and "1000.0" give the same one, "2.5" and "5"
    or "-5" and "5" different ones (so a number never matches part of another)."""
    sign, digits, fraction = match.groups()
    try:
        value = Decimal(digits.replace(",", "") + (fraction or ""))
    except InvalidOperation:  # pragma: no cover - the pattern admits only digits
        return match.group(0)
    text = format(value.normalize(), "f").replace(".", "point")
    negative = sign not in ("", "+") and value != 0
    return f" {'minus' if negative else ''}{text} "


def _canonical(text: str, *, fold_case: bool) -> str:
    text = _NUMBER.sub(_number_word, text)
    if fold_case:
        # casefold, not lower: it also equates "ß" and "ss", which a bare lower() does not.
        text = text.casefold()
    # NFKD splits "á" into "a" + a combining accent (dropped below) and maps compatibility
    # forms (ligatures, full-width letters) to plain letters.
    text = unicodedata.normalize("NFKD", text)
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Mn":
            continue
        # Letters, digits and spacing marks (vowel signs of Indic scripts) of every script are
        # word characters; everything else, punctuation included, separates words.
        kept.append(char if category[0] in "LNM" else " ")
    words = "".join(kept).split()
    if fold_case:
        words = [word for word in words if word not in _ARTICLES]
    return " ".join(words)


def normalize(text: str) -> str:
    """The canonical form in which answers and outputs are compared.

    Steps, in order: case folding (``str.casefold``, a stronger lowercase); Unicode NFKD with
    the combining accents dropped (``"Bogotá"`` -> ``"bogota"``); every character that is not
    a letter or digit (of any script) becomes a space (``"Paris."`` -> ``"paris"``,
    ``"Guinea-Bissau"`` -> ``"guinea bissau"``); the English articles *a*, *an*, *the* are
    removed as whole words (``"The Hague"`` -> ``"hague"``); whitespace is collapsed to
    single spaces and stripped. Numbers are compared as numbers: each becomes one word for its
    value before anything else (``"1,000"`` and ``"1000"`` match; ``"5"`` is not found in
    ``"2.5 million"``, ``"500"`` not in ``"2,500"``, ``"-5"`` is not ``"5"``).

    The result is a sequence of words separated by single spaces, which is what makes the
    whole-word tests of :func:`contains` and :func:`starts_with` simple. Scripts written
    without spaces between words (Chinese, Japanese, Thai) stay one long "word"; none of the
    harness's languages is one. An answer that is only an article or punctuation (``"A"``)
    normalises to ``""`` and never matches.
    """
    return _canonical(text, fold_case=True)


def _contains_words(haystack: str, needle: str) -> bool:
    # Both are canonical (words joined by single spaces), so padding with spaces turns a
    # substring test into a whole-word test: " rome " is not inside " romeo ".
    return bool(needle) and f" {needle} " in f" {haystack} "


def _starts_with_words(text: str, prefix: str) -> bool:
    return bool(prefix) and f"{text} ".startswith(f"{prefix} ")


Span = tuple[int, int]


def find_spans(output: str, answer: str, *, case_sensitive: bool = False, prefix: bool = False) -> list[Span]:
    """Where ``answer`` occurs in ``output`` as whole words: ``(first, end)`` word positions
    in the canonical output (``end`` exclusive); with ``prefix`` only a match at the start.

    What :func:`contains` and :func:`starts_with` test, with positions, so that a caller can
    tell a match that lies inside another answer's match ("Cairo" inside "New Cairo").
    """
    fold = not case_sensitive
    words, needle = _canonical(output, fold_case=fold).split(), _canonical(answer, fold_case=fold).split()
    if not needle:
        return []
    starts = range(1) if prefix else range(len(words) - len(needle) + 1)
    return [(i, i + len(needle)) for i in starts if words[i: i + len(needle)] == needle]


def contains(output: str, answer: str, *, case_sensitive: bool = False) -> bool:
    """Whether ``answer`` occurs in ``output`` as whole words, after :func:`normalize`.

    ``"Rome"`` is not found in ``"Romeo"`` nor ``"Niger"`` in ``"Nigeria"``, but ``"Guinea"``
    is found in ``"Papua New Guinea"``. An answer that normalises to ``""`` never matches.
    ``case_sensitive`` compares as :func:`starts_with` does with it.
    """
    fold = not case_sensitive
    return _contains_words(_canonical(output, fold_case=fold), _canonical(answer, fold_case=fold))


def starts_with(output: str, answer: str, *, case_sensitive: bool = False) -> bool:
    """Whether ``output`` begins with ``answer``, ending at a word boundary.

    Leading whitespace and punctuation of the output are ignored (``' "Paris", ...'`` starts
    with ``"Paris"``), and the answer must end where a word ends (``"Par"`` does not start
    ``"Paris"``). By default both sides go through :func:`normalize`.

    ``case_sensitive=True`` is a surface-form check, made for the ICL probe of conjugate
    prompting where the demonstrated transformation is capitalisation (``"WHAT IS ..."``
    versus the untransformed ``"What is ..."``): case is kept and, for the same reason,
    articles are kept (``"THE"`` and ``"The"`` differ). Accents are still dropped and
    punctuation still separates words: those are spelling and encoding variants (NFC versus
    NFD text, ``"ÉTÉ"`` versus ``"ETE"``), not the transformation being probed.
    """
    fold = not case_sensitive
    return _starts_with_words(
        _canonical(output, fold_case=fold), _canonical(answer, fold_case=fold)
    )


def raw_prefix(output: str, answer: str) -> bool:
    """Whether the raw ``output`` starts with ``answer``, with or without one leading space.

    The rule of Kotha et al. (2024) for their in-context-learning probe: no normalisation at
    all, so case, accents and punctuation count (``"WHAT"`` is not ``"What"``) and there is
    no word boundary (``"The"`` starts ``"There"``), except after a number's last digit (``"12"``
    does not start ``"120"``: the arithmetic queries' answers are numbers). The other exception is the markdown escape
    ``\\_``, read as ``_``: chat models write a blank ``"___"`` as ``"\\_\\_\\_"``. An
    answer given with its leading space (the paper's files write ``" What"``) is the same
    answer; an empty one never matches.
    """
    answer = answer.removeprefix(" ")
    if not answer:
        return False
    text = output.replace("\\_", "_")
    for start in ("", " "):
        if text.startswith(start + answer):
            rest = text[len(start + answer):]
            # numbers end where their digits end: 12 does not start "120" (letters keep the paper's rule)
            if not (answer[-1].isdigit() and rest[:1].isdigit()):
                return True
    return False
