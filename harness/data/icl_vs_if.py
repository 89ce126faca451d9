"""In-context learning vs instruction following: the probe of conjugate prompting.

Kotha, Springer and Raghunathan, "Understanding Catastrophic Forgetting in Language Models
via Implicit Inference" (ICLR 2024), built as their code builds it
(``icl_vs_if/create_datasets.py``). Each example is one prompt:

1. an instruction header naming the in-context task: ``repeat`` ("Repeat the input.", the
   output is the input) or ``capitalize`` ("Capitalize every character.", ``str.upper``);
2. ``k`` (2) demonstrations, ``Input:``/``Output:`` pairs of natural sentences
   (:mod:`harness.data.icl_sentences`) transformed by the in-context task;
3. a query that looks like an instruction, after ``Input:``, and an empty ``Output:``. The
   instruction task is ``math``, "What is a op b?" (``a`` and ``b`` uniform on 4..20 each,
   plus, minus and times equally likely, so a difference may be negative), or ``blank``, a
   natural sentence whose first word is replaced by underscores of its length.

Answers, both transformed by the in-context task as the paper does: ``icl``, what the
demonstrations imply, is the query's first word ("What", "WHAT"; for the blank task the
underscores themselves); ``instruction``, what the query asks for, is the result or the
hidden word ("The", "THE"). The task scores them with ``match: raw_prefix`` (the raw output
starts with the answer, case included, with or without one leading space) and
``accept_english: false`` (a conjugate prompt's answer is the conjugate's spelling only).

Conditions are the task pairs, ``{icl task}_{instruction task}``: ``repeat_math``,
``capitalize_math``, ``repeat_blank``, ``capitalize_blank`` (the paper's ``repeat-math``,
``capslock-math``, ``repeat-startblank``, ``capslock-startblank``; its own files load under
these names too, :mod:`harness.tasks.records`). 100 examples each, as in the paper.

Languages: every example is written in English, French, Spanish, Dutch and Hungarian (the
paper's) and German: header, labels, question and sentences, by hand. Leetspeak and pig
latin are the programmatic conjugates of :mod:`harness.conjugates`, which rewrite the
rendered English prompt and answers alike ("Wh47", "ATWHAY"); both commute with
upper-casing, so a capitalised demonstration stays the capitalised form of its input. One
difference from the paper remains: it blanked the first word of a pig-latin sentence, so its
blank has the pig-latin word's length, while rewriting the English prompt keeps the English
word's (``"___"`` for "The", answer "Ethay"). Leetspeak keeps every length.

Layout (English, ``repeat_math``)::

    Repeat the input.

    Input: Small boats rocked gently in the harbour.
    Output: Small boats rocked gently in the harbour.

    Input: Thick fog hid the bridge this morning.
    Output: Thick fog hid the bridge this morning.

    Input: What is 12 minus 17?
    Output:
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from harness.data.icl_sentences import LANGUAGES, blank_first_word, first_word, load_sentences
from harness.data.registry import builder
from harness.seeding import seeded_random
from harness.examples import ICL, INSTRUCTION, Example, Localized

ICL_TASKS: Mapping[str, Callable[[str], str]] = {"repeat": lambda text: text, "capitalize": str.upper}
INSTRUCTION_TASKS = ("math", "blank")
CONDITIONS = tuple(f"{icl}_{instruction}" for instruction in INSTRUCTION_TASKS for icl in ICL_TASKS)
N_PER_CONDITION = 100
OPERAND_RANGE = (4, 20)
OPERATIONS: Mapping[str, Callable[[int, int], int]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@dataclass(frozen=True)
class Phrasing:
    """The hand-written words of the probe in one language.

    ``headers``: in-context task -> instruction header. The labels include their colon
    (``"Input:"``, ``"Entrée :"``). ``questions``: operator -> the arithmetic question, with
    ``{a}`` and ``{b}``; Hungarian says a product with a suffix on ``a`` ("12-szer 7",
    twelve times seven), given as ``{a_times}`` (:func:`hungarian_times`).
    """

    headers: Mapping[str, str]
    input_label: str
    output_label: str
    questions: Mapping[str, str]


PHRASINGS: Mapping[str, Phrasing] = {
    "en": Phrasing(
        {"repeat": "Repeat the input.", "capitalize": "Capitalize every character."},
        "Input:", "Output:",
        {"+": "What is {a} plus {b}?", "-": "What is {a} minus {b}?", "*": "What is {a} times {b}?"},
    ),
    "fr": Phrasing(
        # French typography puts a space before a colon and a question mark.
        {"repeat": "Répétez l'entrée.", "capitalize": "Mettez chaque caractère en majuscule."},
        "Entrée :", "Sortie :",
        {"+": "Combien font {a} plus {b} ?", "-": "Combien font {a} moins {b} ?", "*": "Combien font {a} fois {b} ?"},
    ),
    "es": Phrasing(
        {"repeat": "Repite la entrada.", "capitalize": "Escribe cada carácter en mayúscula."},
        "Entrada:", "Salida:",
        {"+": "¿Cuánto es {a} más {b}?", "-": "¿Cuánto es {a} menos {b}?", "*": "¿Cuánto es {a} por {b}?"},
    ),
    "nl": Phrasing(
        {"repeat": "Herhaal de invoer.", "capitalize": "Schrijf elk teken als hoofdletter."},
        "Invoer:", "Uitvoer:",
        {"+": "Wat is {a} plus {b}?", "-": "Wat is {a} min {b}?", "*": "Wat is {a} keer {b}?"},
    ),
    "hu": Phrasing(
        {"repeat": "Ismételd meg a bemenetet.", "capitalize": "Írj minden karaktert nagybetűvel."},
        "Bemenet:", "Kimenet:",
        {"+": "Mennyi {a} plusz {b}?", "-": "Mennyi {a} mínusz {b}?", "*": "Mennyi {a_times} {b}?"},
    ),
    "de": Phrasing(
        {"repeat": "Wiederhole die Eingabe.", "capitalize": "Schreibe jedes Zeichen als Großbuchstaben."},
        "Eingabe:", "Ausgabe:",
        {"+": "Was ist {a} plus {b}?", "-": "Was ist {a} minus {b}?", "*": "Was ist {a} mal {b}?"},
    ),
}

# The multiplicative suffix follows the vowel harmony of the number's last word: négyszer,
# ötször, hatszor, ..., tízszer, húszszor.
_HU_UNITS_TIMES = {1: "szer", 2: "szer", 3: "szor", 4: "szer", 5: "ször", 6: "szor", 7: "szer", 8: "szor", 9: "szer"}
_HU_TENS_TIMES = {10: "szer", 20: "szor"}


def hungarian_times(n: int) -> str:
    """``n`` times, in Hungarian digits and suffix: ``4`` -> ``"4-szer"``, ``15`` -> ``"15-ször"``.

    Defined for 1..20, which covers :data:`OPERAND_RANGE`.
    """
    if not 1 <= n <= 20:
        raise ValueError(f"hungarian_times covers 1..20, got {n}")
    suffix = _HU_TENS_TIMES[n] if n % 10 == 0 else _HU_UNITS_TIMES[n % 10]
    return f"{n}-{suffix}"


def arithmetic_question(language: str, a: int, op: str, b: int) -> str:
    """The math query in ``language``: ``("en", 12, "-", 17)`` -> ``"What is 12 minus 17?"``."""
    return PHRASINGS[language].questions[op].format(a=a, b=b, a_times=hungarian_times(a))


def make_prompt(language: str, icl_task: str, demonstrations: Sequence[str], query: str) -> str:
    """The whole prompt: header, the demonstrations transformed by ``icl_task``, the query.

    Blocks are separated by a blank line; the prompt ends with the output label, no space.
    """
    phrasing, apply = PHRASINGS[language], ICL_TASKS[icl_task]
    blocks = [phrasing.headers[icl_task]]
    blocks += [f"{phrasing.input_label} {s}\n{phrasing.output_label} {apply(s)}" for s in demonstrations]
    blocks.append(f"{phrasing.input_label} {query}\n{phrasing.output_label}")
    return "\n\n".join(blocks)


@dataclass(frozen=True)
class _Item:
    """What the four conditions' examples of one index share: sentences and the sum."""

    index: int
    shown: tuple[int, ...]  # the demonstrations' sentence entries
    sentence: int  # the blank task's query entry
    a: int
    op: str
    b: int


def _query(item: _Item, instruction_task: str, language: str) -> tuple[str, str, str]:
    """The query text, its first word and the instruction answer, before any transformation."""
    if instruction_task == "math":
        text = arithmetic_question(language, item.a, item.op, item.b)
        return text, first_word(text), str(OPERATIONS[item.op](item.a, item.b))
    text, hidden = blank_first_word(load_sentences()[item.sentence][language])
    return text, first_word(text), hidden


def _example(item: _Item, icl_task: str, instruction_task: str) -> Example:
    apply = ICL_TASKS[icl_task]
    sentences = load_sentences()

    def version(language: str) -> tuple[str, dict[str, tuple[str, ...]]]:
        text, first, answer = _query(item, instruction_task, language)
        prompt = make_prompt(language, icl_task, [sentences[s][language] for s in item.shown], text)
        return prompt, {ICL: (apply(first),), INSTRUCTION: (apply(answer),)}

    condition = f"{icl_task}_{instruction_task}"
    versions = {language: version(language) for language in LANGUAGES}
    if instruction_task == "math":
        about = {"arithmetic": f"{item.a} {item.op} {item.b} = {OPERATIONS[item.op](item.a, item.b)}"}
    else:
        about = {"sentence": item.sentence}
    return Example(
        id=f"{condition}:{item.index}",
        condition=condition,
        fields={"prompt": versions["en"][0]},
        answers=versions["en"][1],
        localized={lang: Localized({"prompt": prompt}, answers)
                   for lang, (prompt, answers) in versions.items() if lang != "en"},
        meta={
            "icl_task": icl_task,
            "instruction_task": instruction_task,
            "query": _query(item, instruction_task, "en")[0],
            "demonstrations": list(item.shown),
            **about,
        },
    )


@builder("icl_vs_if")
def build(*, seed: int = 0, limit: int | None = None, k: int = 2) -> list[Example]:
    """The probe's examples: 100 per condition, 400 in all (``limit`` caps the total).

    Example ``i`` of the four conditions shares its ``k`` demonstration sentences, and of
    ``repeat_*`` and ``capitalize_*`` its query too, so a difference between them is the task
    pair's alone. Each blank query is a different sentence, never one of its own
    demonstrations. Examples are interleaved across conditions, so a ``limit`` keeps them
    balanced; each index draws from its own seeded generators, so an example does not depend
    on which others are built.
    """
    sentences = load_sentences()
    if k < 1 or k >= len(sentences) or (limit is not None and limit < 0):
        raise ValueError(f"icl_vs_if needs 1 <= k < {len(sentences)} and limit >= 0, got k={k}, limit={limit}")
    if len(sentences) < N_PER_CONDITION:
        raise ValueError(f"only {len(sentences)} sentences; the blank task needs {N_PER_CONDITION} different ones")
    queries = list(range(len(sentences)))
    seeded_random(seed, "icl_vs_if", "queries").shuffle(queries)
    examples = []
    for index in range(N_PER_CONDITION):
        others = [s for s in range(len(sentences)) if s != queries[index]]
        shown = seeded_random(seed, "icl_vs_if", "demonstrations", index).sample(others, k)
        draw = seeded_random(seed, "icl_vs_if", "math", index)
        a, b = draw.randint(*OPERAND_RANGE), draw.randint(*OPERAND_RANGE)
        item = _Item(index, tuple(shown), queries[index], a, draw.choice(tuple(OPERATIONS)), b)
        examples += [_example(item, icl_task, instruction_task)
                     for instruction_task in INSTRUCTION_TASKS for icl_task in ICL_TASKS]
    return examples[:limit] if limit is not None else examples
