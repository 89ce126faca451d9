"""The synthetic ICL builders: ``icl_vs_if`` (conjugate prompting) and ``icl_functions``."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from harness.conjugates import leetspeak, pig_latin
from harness.data import BUILDERS
from harness.data.icl_sentences import load_sentences
from harness.data.icl_functions import (
    FUNCTIONS,
    LABELS,
    NEGATIVE,
    POSITIVE,
    linear_classifier,
    make_prompt,
    mlp_classifier,
    tree_classifier,
)
from harness.data.icl_vs_if import CONDITIONS, arithmetic_question, hungarian_times
from harness.data.icl_vs_if import make_prompt as probe_prompt
from harness.examples import ALTERNATIVE, ICL, INSTRUCTION, TARGET
from harness.matching import raw_prefix
from harness.tasks.prompts import render
from harness.scoring import score_generation
from harness.tasks import TaskRegistry

# Builders are deterministic: build each configuration once per module.


@pytest.fixture(scope="module")
def icl_vs_if():
    return BUILDERS["icl_vs_if"]()


@pytest.fixture(scope="module")
def icl_functions():
    return BUILDERS["icl_functions"]()


def _dicts(examples):
    return [example.to_dict() for example in examples]


# ---------------------------------------------------------------------------------------------
# icl_vs_if (the paper's construction: Kotha et al. 2024, icl_vs_if/create_datasets.py)
# ---------------------------------------------------------------------------------------------

# The paper's words, written out here again so that a change in the builder shows.
_HEADERS = {
    "en": ("Repeat the input.", "Capitalize every character."),
    "fr": ("Répétez l'entrée.", "Mettez chaque caractère en majuscule."),
    "es": ("Repite la entrada.", "Escribe cada carácter en mayúscula."),
    "nl": ("Herhaal de invoer.", "Schrijf elk teken als hoofdletter."),
    "hu": ("Ismételd meg a bemenetet.", "Írj minden karaktert nagybetűvel."),
    "de": ("Wiederhole die Eingabe.", "Schreibe jedes Zeichen als Großbuchstaben."),
}
_LABELS = {"en": ("Input:", "Output:"), "fr": ("Entrée :", "Sortie :"), "es": ("Entrada:", "Salida:"),
           "nl": ("Invoer:", "Uitvoer:"), "hu": ("Bemenet:", "Kimenet:"), "de": ("Eingabe:", "Ausgabe:")}
_QUESTION_WORD = {"en": "What", "fr": "Combien", "es": "¿Cuánto", "nl": "Wat", "hu": "Mennyi", "de": "Was"}
_EN_MATH = re.compile(r"What is (\d+) (plus|minus|times) (\d+)\?")
_OPERATIONS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}


def _transform(example, text):
    return text.upper() if example.meta["icl_task"] == "capitalize" else text


def _raw(answers, output):
    return score_generation(answers, output, match="raw_prefix", case_sensitive=True)


def _blocks(prompt):
    header, *demonstrations, last = prompt.split("\n\n")
    return header, demonstrations, last


def test_icl_vs_if_size_and_balance(icl_vs_if):
    assert CONDITIONS == ("repeat_math", "capitalize_math", "repeat_blank", "capitalize_blank")
    assert len(icl_vs_if) == 400
    assert Counter(e.condition for e in icl_vs_if) == {c: 100 for c in CONDITIONS}
    assert len({e.id for e in icl_vs_if}) == len(icl_vs_if)


def test_icl_vs_if_is_deterministic_per_seed(icl_vs_if):
    assert _dicts(BUILDERS["icl_vs_if"](seed=0)) == _dicts(icl_vs_if)
    assert _dicts(BUILDERS["icl_vs_if"](seed=1)) != _dicts(icl_vs_if)


def test_icl_vs_if_limit_keeps_conditions_balanced(icl_vs_if):
    limited = BUILDERS["icl_vs_if"](limit=8)
    assert Counter(e.condition for e in limited) == {c: 2 for c in CONDITIONS}
    assert _dicts(limited) == _dicts(icl_vs_if[:8])


def test_make_prompt_by_hand():
    prompt = probe_prompt("en", "capitalize", ["The cat sat.", "Dogs bark."], "What is 4 times 9?")
    assert prompt == (
        "Capitalize every character.\n\n"
        "Input: The cat sat.\nOutput: THE CAT SAT.\n\n"
        "Input: Dogs bark.\nOutput: DOGS BARK.\n\n"
        "Input: What is 4 times 9?\nOutput:"
    )
    assert probe_prompt("fr", "repeat", ["Le chat dort."], "___ chat dort.") == (
        "Répétez l'entrée.\n\nEntrée : Le chat dort.\nSortie : Le chat dort.\n\nEntrée : ___ chat dort.\nSortie :"
    )


@pytest.mark.parametrize("language, a, op, b, question", [
    ("en", 12, "-", 17, "What is 12 minus 17?"),
    ("fr", 7, "*", 5, "Combien font 7 fois 5 ?"),
    ("es", 4, "+", 9, "¿Cuánto es 4 más 9?"),
    ("nl", 20, "-", 4, "Wat is 20 min 4?"),
    ("nl", 6, "*", 6, "Wat is 6 keer 6?"),
    ("hu", 12, "+", 3, "Mennyi 12 plusz 3?"),
    ("hu", 5, "*", 7, "Mennyi 5-ször 7?"),
    ("hu", 6, "*", 4, "Mennyi 6-szor 4?"),
    ("de", 9, "*", 8, "Was ist 9 mal 8?"),
])
def test_arithmetic_questions_by_hand(language, a, op, b, question):
    assert arithmetic_question(language, a, op, b) == question


def test_hungarian_times_follows_vowel_harmony():
    # négyszer, ötször, hatszor, hétszer, nyolcszor, kilencszer, tízszer, tizenegyszer, ...
    by_hand = {4: "szer", 5: "ször", 6: "szor", 7: "szer", 8: "szor", 9: "szer", 10: "szer", 11: "szer",
               12: "szer", 13: "szor", 14: "szer", 15: "ször", 16: "szor", 17: "szer", 18: "szor",
               19: "szer", 20: "szor"}
    assert {n: hungarian_times(n) for n in by_hand} == {n: f"{n}-{s}" for n, s in by_hand.items()}
    with pytest.raises(ValueError):
        hungarian_times(21)


def test_icl_vs_if_prompt_layout(icl_vs_if):
    english = {entry["en"] for entry in load_sentences()}
    for example in icl_vs_if:
        header, demonstrations, last = _blocks(example.fields["prompt"])
        assert header == _HEADERS["en"][example.meta["icl_task"] == "capitalize"]
        assert len(demonstrations) == 2
        for block in demonstrations:
            shown, output = re.fullmatch(r"Input: (.*)\nOutput: (.*)", block).groups()
            assert shown in english and output == _transform(example, shown)
        assert last == f"Input: {example.meta['query']}\nOutput:"


def test_icl_vs_if_math_answers_by_hand(icl_vs_if):
    math = [e for e in icl_vs_if if e.meta["instruction_task"] == "math"]
    operators = Counter()
    for example in math:
        a, operation, b = _EN_MATH.fullmatch(example.meta["query"]).groups()
        assert 4 <= int(a) <= 20 and 4 <= int(b) <= 20
        operators[operation] += 1
        result = _OPERATIONS[operation](int(a), int(b))
        assert example.answers == {ICL: (_transform(example, "What"),), INSTRUCTION: (str(result),)}
    # 200 draws of three equally likely operators, negative differences included.
    assert set(operators) == set(_OPERATIONS) and min(operators.values()) > 40
    assert any(e.answers[INSTRUCTION][0].startswith("-") for e in math)


def test_icl_vs_if_blank_answers_by_hand(icl_vs_if):
    sentences = load_sentences()
    blank = [e for e in icl_vs_if if e.meta["instruction_task"] == "blank"]
    for example in blank:
        sentence = sentences[example.meta["sentence"]]["en"]
        word, rest = sentence.split(" ", 1)
        assert example.meta["query"] == "_" * len(word) + " " + rest
        assert example.answers == {ICL: ("_" * len(word),), INSTRUCTION: (_transform(example, word),)}
        assert example.meta["sentence"] not in example.meta["demonstrations"]
    queries = [e.meta["sentence"] for e in blank if e.condition == "repeat_blank"]
    assert len(set(queries)) == 100


def test_icl_vs_if_conditions_share_their_items(icl_vs_if):
    by_index = {}
    for example in icl_vs_if:
        by_index.setdefault(example.id.split(":")[1], []).append(example)
    for examples in by_index.values():
        assert [e.condition for e in examples] == list(CONDITIONS)
        assert len({tuple(e.meta["demonstrations"]) for e in examples}) == 1
        assert examples[0].meta["query"] == examples[1].meta["query"]
        assert examples[2].meta["query"] == examples[3].meta["query"]


def test_icl_vs_if_translations(icl_vs_if):
    sentences = load_sentences()
    for example in icl_vs_if:
        assert set(example.localized) == {"fr", "es", "nl", "hu", "de"}
        capitalize = example.meta["icl_task"] == "capitalize"
        for lang, localized in example.localized.items():
            header, demonstrations, last = _blocks(localized.fields["prompt"])
            assert header == _HEADERS[lang][capitalize]
            given, shown = _LABELS[lang]
            assert [block.split("\n")[0] for block in demonstrations] == [
                f"{given} {sentences[s][lang]}" for s in example.meta["demonstrations"]]
            assert last.startswith(f"{given} ") and last.endswith(f"\n{shown}")
            if example.meta["instruction_task"] == "math":
                assert last.split(" ")[len(given.split(" "))] == _QUESTION_WORD[lang]
                assert localized.answers == {ICL: (_transform(example, _QUESTION_WORD[lang]),),
                                             INSTRUCTION: example.answers[INSTRUCTION]}
            else:
                word = sentences[example.meta["sentence"]][lang].split(" ")[0]
                assert localized.answers == {ICL: ("_" * len(word),), INSTRUCTION: (_transform(example, word),)}


def test_icl_vs_if_hand_made_outputs_score_as_the_paper(icl_vs_if):
    sentences = load_sentences()
    for condition in CONDITIONS:
        example = next(e for e in icl_vs_if if e.condition == condition)
        query = example.meta["query"]
        # Following the demonstrations: the query, transformed; a chat model's markdown too.
        assert _raw(example.answers, " " + _transform(example, query)) == {"hit_icl": True, "hit_instruction": False}
        assert _raw(example.answers, _transform(example, query).replace("_", "\\_"))["hit_icl"]
        if example.meta["instruction_task"] == "math":
            answer = example.answers[INSTRUCTION][0]
            assert _raw(example.answers, f" {answer}") == {"hit_icl": False, "hit_instruction": True}
            followed = " " + sentences[0]["en"]  # neither: another sentence
        else:
            filled = sentences[example.meta["sentence"]]["en"]
            assert _raw(example.answers, " " + _transform(example, filled)) == {"hit_icl": False, "hit_instruction": True}
            followed = " " + filled.lower()  # neither: the word in the wrong case
        assert _raw(example.answers, followed) == {"hit_icl": False, "hit_instruction": False}
    capitalized = next(e for e in icl_vs_if if e.condition == "capitalize_math")
    assert not _raw(capitalized.answers, " " + capitalized.meta["query"])["hit_icl"]  # not capitalised


def test_icl_vs_if_answers_never_prefix_each_other(icl_vs_if):
    for example in icl_vs_if:
        for answers in [example.answers] + [loc.answers for loc in example.localized.values()]:
            for transform in (str, leetspeak, pig_latin):
                icl, instruction = transform(answers[ICL][0]), transform(answers[INSTRUCTION][0])
                assert not raw_prefix(icl, instruction) and not raw_prefix(instruction, icl)


def test_icl_vs_if_programmatic_conjugates_keep_the_in_context_task():
    task = TaskRegistry().tasks["icl_vs_if"]
    example = next(e for e in task.examples if e.condition == "capitalize_math")
    for conjugate, rewrite in (("leetspeak", leetspeak), ("piglatin", pig_latin)):
        rendered = render(task, example, conjugate)
        for block in _blocks(rendered.prompt)[1]:
            shown, output = (line.split(": ", 1)[1] for line in block.split("\n"))
            assert output == shown.upper()
        # Only the conjugate's spelling counts (scoring.accept_english: false).
        assert rendered.answers == {ICL: (rewrite("WHAT"),), INSTRUCTION: example.answers[INSTRUCTION]}
    assert render(task, example, "piglatin").answers[ICL] == ("ATWHAY",)
    assert render(task, example, "nl").answers[ICL] == ("WAT",)


def test_icl_sentences_follow_their_rules():
    entries = load_sentences()
    assert len(entries) >= 100
    for language in ("en", "fr", "es", "nl", "hu", "de"):
        texts = [entry[language] for entry in entries]
        assert len(set(texts)) == len(texts)
        for text in texts:
            word = text.split(" ")[0]
            assert word.isalpha() and len(word) >= 2 and text.endswith("."), (language, text)
    for text in (entry["en"] for entry in entries):
        # The programmatic conjugates rewrite a capitalised sentence into the capitalised rewrite.
        assert pig_latin(text.upper()) == pig_latin(text).upper()
        assert leetspeak(text.upper()) == leetspeak(text).upper()


def test_icl_vs_if_k_sets_the_number_of_demonstrations():
    for example in BUILDERS["icl_vs_if"](k=4, limit=4):
        assert example.fields["prompt"].count("Input:") == 5
        assert example.localized["hu"].fields["prompt"].count("Bemenet:") == 5


@pytest.mark.parametrize("options", [{"k": 0}, {"limit": -1}, {"k": 500}])
def test_icl_vs_if_rejects_bad_options(options):
    with pytest.raises(ValueError):
        BUILDERS["icl_vs_if"](**options)


# ---------------------------------------------------------------------------------------------
# icl_functions
# ---------------------------------------------------------------------------------------------

_NUMBER = r"-?\d+\.\d\d"
_CONSTRUCTORS = {"linear": linear_classifier, "mlp": mlp_classifier, "tree": tree_classifier}


def _parse(prompt: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Exemplar points, their labels and the query point of an icl_functions prompt."""
    *lines, last = prompt.split("\n")
    line = re.compile(rf"x = ({_NUMBER}(?:, {_NUMBER})*) -> label:(?: (\w+))?")
    exemplars = [line.fullmatch(text).groups() for text in lines]
    query = line.fullmatch(last).groups()
    assert query[1] is None
    points = np.array([[float(v) for v in p.split(", ")] for p, _ in exemplars])
    labels = [label for _, label in exemplars]
    return points, labels, np.array([float(v) for v in query[0].split(", ")])


def test_icl_functions_size_and_query_balance(icl_functions):
    assert len(icl_functions) == 150
    assert len({e.id for e in icl_functions}) == 150
    counts = Counter((e.condition, e.answers[TARGET][0]) for e in icl_functions)
    # A constant guess scores exactly 50% in every function class.
    assert counts == {(f, label): 25 for f in FUNCTIONS for label in LABELS}


def test_icl_functions_is_deterministic_per_seed(icl_functions):
    assert _dicts(BUILDERS["icl_functions"](seed=0)) == _dicts(icl_functions)
    assert _dicts(BUILDERS["icl_functions"](seed=1)) != _dicts(icl_functions)


def test_icl_functions_prompts_and_answers(icl_functions):
    for example in icl_functions:
        assert example.id.startswith(f"{example.condition}:")
        assert example.meta["function"] == example.condition
        assert not example.localized
        target, alternative = example.answers[TARGET], example.answers[ALTERNATIVE]
        assert {target[0], alternative[0]} == set(LABELS)
        prompt = example.fields["prompt"]
        assert prompt.endswith("-> label:") and "-0.00" not in prompt
        points, labels, _ = _parse(prompt)
        assert points.shape == (32, 4)
        # Both labels in the exemplars, neither overwhelming.
        assert min(Counter(labels)[label] for label in LABELS) >= 4


def test_icl_functions_labels_follow_the_recorded_function(icl_functions):
    for example in icl_functions:
        function = _CONSTRUCTORS[example.condition](**example.meta["params"])
        points, labels, query = _parse(example.fields["prompt"])
        assert function.labels(points) == labels
        assert function.labels(query[None, :]) == [example.answers[TARGET][0]]


def test_icl_functions_options():
    examples = BUILDERS["icl_functions"](n_per_function=2, dim=2, n_exemplars=8, seed=3)
    assert [e.id for e in examples] == [
        "linear:0", "mlp:0", "tree:0", "linear:1", "mlp:1", "tree:1"
    ]
    for example in examples:
        points, _, query = _parse(example.fields["prompt"])
        assert points.shape == (8, 2) and query.shape == (2,)
    limited = BUILDERS["icl_functions"](limit=4)
    assert [e.id for e in limited] == ["linear:0", "mlp:0", "tree:0", "linear:1"]


def test_hand_built_linear_classifier():
    # w = (1, -2, 0, 0.5), b = 0.5
    function = linear_classifier([1.0, -2.0, 0.0, 0.5], 0.5)
    exemplars = np.array([[1.0, 1.0, 3.0, 0.0], [0.5, 0.0, -1.0, 0.0], [0.0, 0.5, 0.0, 1.0]])
    # 1 - 2 + 0.5 = -0.5 -> NEGATIVE; 0.5 + 0.5 = 1 -> POSITIVE; -1 + 0.5 + 0.5 = 0 -> NEGATIVE
    query = np.array([-1.25, -0.5, 2.0, -0.1])  # -1.25 + 1 - 0.05 + 0.5 = 0.2 -> POSITIVE
    prompt, label = make_prompt(function, exemplars, query)
    assert prompt == (
        f"x = 1.00, 1.00, 3.00, 0.00 -> label: {NEGATIVE}\n"
        f"x = 0.50, 0.00, -1.00, 0.00 -> label: {POSITIVE}\n"
        f"x = 0.00, 0.50, 0.00, 1.00 -> label: {NEGATIVE}\n"
        "x = -1.25, -0.50, 2.00, -0.10 -> label:"
    )
    assert label == POSITIVE


def test_hand_built_mlp_and_tree():
    points = np.array([[1.0, 0.5, 0.0, 0.0], [0.2, 0.9, 0.0, 0.0], [-1.0, -2.0, 0.0, 0.0]])
    # relu(x0) - relu(x1) > 0.1: 0.5 > 0.1, -0.7, 0 -> POSITIVE, NEGATIVE, NEGATIVE
    mlp = mlp_classifier([[1, 0, 0, 0], [0, 1, 0, 0]], [0, 0], [1, -1], 0.1)
    assert mlp.labels(points) == [POSITIVE, NEGATIVE, NEGATIVE]
    # Root splits on x0 at 0; the left child on x1 at -1, the right child on x1 at 0.6.
    tree = tree_classifier([0, 1, 1], [0.0, -1.0, 0.6], [POSITIVE, NEGATIVE, NEGATIVE, POSITIVE])
    # x0 > 0 and x1 = 0.5 <= 0.6 -> leaf 2; x1 = 0.9 > 0.6 -> leaf 3; x0 <= 0, x1 <= -1 -> leaf 0
    assert tree.labels(points) == [NEGATIVE, POSITIVE, POSITIVE]
