"""The synthetic ICL builders: ``icl_vs_if`` (conjugate prompting) and ``icl_functions``."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from harness.data import BUILDERS
from harness.data.fact_sentences import fact_sentence, n_templates
from harness.data.facts import load_facts
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
from harness.data.icl_vs_if import BLANK, CONDITIONS, PHRASINGS
from harness.examples import ALTERNATIVE, ICL, INSTRUCTION, TARGET
from harness.matching import starts_with
from harness.scoring import score_generation

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
# icl_vs_if
# ---------------------------------------------------------------------------------------------

_EN_ARITHMETIC = re.compile(r"^(?:What is|Calculate) (\d+) (plus|minus|times) (\d+)[?.]$")
_OPERATIONS = {
    "plus": lambda a, b: a + b,
    "minus": lambda a, b: a - b,
    "times": lambda a, b: a * b,
}


def test_icl_vs_if_size_and_balance(icl_vs_if):
    assert len(icl_vs_if) == 200
    assert Counter(e.condition for e in icl_vs_if) == {c: 50 for c in CONDITIONS}
    assert len({e.id for e in icl_vs_if}) == len(icl_vs_if)


def test_icl_vs_if_is_deterministic_per_seed(icl_vs_if):
    assert _dicts(BUILDERS["icl_vs_if"](seed=0)) == _dicts(icl_vs_if)
    assert _dicts(BUILDERS["icl_vs_if"](seed=1)) != _dicts(icl_vs_if)


def test_icl_vs_if_limit_keeps_conditions_balanced(icl_vs_if):
    limited = BUILDERS["icl_vs_if"](limit=8)
    assert Counter(e.condition for e in limited) == {c: 2 for c in CONDITIONS}
    assert _dicts(limited) == _dicts(icl_vs_if[:8])


def test_icl_vs_if_prompt_layout(icl_vs_if):
    for example in icl_vs_if:
        prompt, query = example.fields["prompt"], example.meta["query"]
        assert prompt.endswith("Output:")
        *demonstrations, last = prompt.split("\n\n")
        assert len(demonstrations) == 2
        assert example.meta["about"] not in example.meta["demonstrations"]
        assert last == f"Input: {query}\nOutput:"
        for block in demonstrations:
            shown, output = re.fullmatch(r"Input: (.*)\nOutput: (.*)", block).groups()
            assert shown != query
            expected = shown.upper() if example.meta["transform"] == "capitalize" else shown
            assert output == expected


def test_icl_vs_if_arithmetic_answers_by_hand(icl_vs_if):
    arithmetic = [e for e in icl_vs_if if e.meta["kind"] == "arithmetic"]
    assert arithmetic
    for example in arithmetic:
        query = example.meta["query"]
        a, operation, b = _EN_ARITHMETIC.fullmatch(query).groups()
        assert example.answers[INSTRUCTION] == (str(_OPERATIONS[operation](int(a), int(b))),)
        first = query.split()[0]
        expected = first.upper() if example.meta["transform"] == "capitalize" else first
        assert example.answers[ICL] == (expected,)


def test_icl_vs_if_one_example_by_hand(icl_vs_if):
    example = next(e for e in icl_vs_if if e.condition == "capitalize_arithmetic")
    assert example.answers[ICL] in {("WHAT",), ("CALCULATE",)}
    assert example.fields["prompt"].endswith(f"Input: {example.meta['query']}\nOutput:")
    # Scoring with the task's settings tells the two behaviours apart.
    transformed = " " + example.meta["query"].upper()
    scores = score_generation(example.answers, transformed, match="prefix", case_sensitive=True)
    assert scores == {"hit_icl": True, "hit_instruction": False}
    answered = " " + example.answers[INSTRUCTION][0]
    scores = score_generation(example.answers, answered, match="prefix", case_sensitive=True)
    assert scores == {"hit_icl": False, "hit_instruction": True}
    repeated = " " + example.meta["query"]  # the untransformed query is not the ICL answer
    assert not score_generation(example.answers, repeated, match="prefix", case_sensitive=True)[
        "hit_icl"
    ]


def test_icl_vs_if_fill_blank_hides_the_fact_answer(icl_vs_if):
    facts = {fact.key: fact for fact in load_facts()}
    fill_blank = [e for e in icl_vs_if if e.meta["kind"] == "fill_blank"]
    assert fill_blank
    for example in fill_blank:
        fact = facts[example.meta["about"]]
        query = example.meta["query"]
        assert query.startswith("Fill in the blank: ") and query.count(BLANK) == 1
        assert example.answers[INSTRUCTION] == fact.spellings
        filled = query.removeprefix("Fill in the blank: ").replace(BLANK, fact.answer)
        templates = range(n_templates(fact.relation, "en"))
        assert filled in {fact_sentence(fact, "en", template=t) for t in templates}


def test_icl_vs_if_localized_prompts(icl_vs_if):
    for example in icl_vs_if:
        assert set(example.localized) == {"fr", "es", "de"}
        for lang, localized in example.localized.items():
            prompt = localized.fields["prompt"]
            assert "Input:" not in prompt and "Output:" not in prompt
            assert prompt.endswith(PHRASINGS[lang].output_label)
            query = prompt.split("\n")[-2].removeprefix(PHRASINGS[lang].input_label + " ")
            first = query.split()[0]
            expected = first.upper() if example.meta["transform"] == "capitalize" else first
            assert localized.answers[ICL] == (expected,)
            if example.meta["kind"] == "arithmetic":
                assert localized.answers[INSTRUCTION] == example.answers[INSTRUCTION]
            else:
                assert query.count(BLANK) == 1


def test_icl_vs_if_answers_never_coincide(icl_vs_if):
    for example in icl_vs_if:
        versions = [example.answers] + [loc.answers for loc in example.localized.values()]
        for answers in versions:
            for icl in answers[ICL]:
                for instruction in answers[INSTRUCTION]:
                    assert not starts_with(icl, instruction, case_sensitive=True)
                    assert not starts_with(instruction, icl, case_sensitive=True)


def test_icl_vs_if_k_sets_the_number_of_demonstrations():
    for example in BUILDERS["icl_vs_if"](k=4, limit=4):
        assert example.fields["prompt"].count("Input:") == 5
        assert example.localized["de"].fields["prompt"].count("Eingabe:") == 5


@pytest.mark.parametrize("options", [{"k": 0}, {"limit": -1}])
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
