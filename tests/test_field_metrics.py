"""The field's metrics under their authors' definitions, each pinned by hand-made outputs whose
value was worked out by hand (the comments give the arithmetic): ConFiQA's Pc, Po and MR,
FaithEval's accuracy per subset, situated faithfulness, CUB's binary context utilisation."""

from __future__ import annotations

import math

import pytest

from harness.scoring import GENERATE, aggregate, metric_names, score_generation
from harness.scoring.conditions import (
    FirstTokens,
    binary_context_utilisation,
    situated_faithfulness,
    situated_faithfulness_of_samples,
)
from harness.scoring.scores import squad_normalize, substring
from harness.tasks.published import ABSTAIN_INCONSISTENT, ABSTAIN_UNANSWERABLE

CONFIQA = {"context": ("Petri Alanko", "Petri Rainer Mikael Alanko"),
           "parametric": ("Lorne Balfe", "Lorne David Roderick Balfe")}


def _scores(answers, outputs, match="substring"):
    return [score_generation(answers, output, match=match) for output in outputs]


def test_the_authors_normalisation_and_substring_rule():
    assert squad_normalize("Don't  stop, the Band!") == "dont stop band"
    assert substring("I cannot tell.", "not")          # FaithEval counts "cannot" through "not"
    assert substring("Romeo", "Rome")                   # no word boundary, as in their scripts
    assert not substring("Paris", "")                   # an empty answer never matches
    assert not substring("Lyon", "Paris")


def test_confiqa_pc_po_mr_by_hand():
    outputs = [
        "Petri Alanko",                    # faithful
        "It was not Petri Alanko",         # context answer, but a negation word: other
        "Lorne Balfe",                     # stubborn
        "Petri Alanko and Lorne Balfe",    # stubborn (Po counts the memorised answer whatever else)
        "Hans Zimmer",                     # other
        "Petri Rainer Mikael Alanko.",     # faithful, through the alias
    ]
    samples = _scores(CONFIQA, outputs)
    assert [s["stance"] for s in samples] == ["faithful", "other", "stubborn", "stubborn", "other", "faithful"]
    assert aggregate("pc", samples).value == pytest.approx(2 / 6)
    assert aggregate("po", samples).value == pytest.approx(2 / 6)
    assert aggregate("mr", samples).value == pytest.approx(2 / (2 + 2))
    # Longpre et al.'s exclusive split counts differently: outcomes context, context, parametric,
    # both, neither, context -> parametric / (parametric + context) = 1 / (1 + 3).
    assert aggregate("memorization_ratio", samples).value == pytest.approx(1 / 4)


def test_confiqa_metrics_are_reported_only_when_a_task_asks():
    roles = {"context", "parametric"}
    assert not {"pc", "po", "mr"} & set(metric_names(GENERATE, roles))
    assert metric_names(GENERATE, roles, ["pc", "po", "mr", "context_hit_rate"]) == [
        "context_hit_rate", "pc", "po", "mr"]


def test_faitheval_accuracy_per_subset_by_hand():
    unanswerable = _scores({"target": ABSTAIN_UNANSWERABLE},
                           ["unknown", "I cannot say", "Paris", "No information."])
    assert aggregate("accuracy", unanswerable).value == pytest.approx(3 / 4)   # all but "Paris"
    inconsistent = _scores({"target": ABSTAIN_INCONSISTENT},
                           ["conflict", "The documents disagree", "There are two answers"])
    assert aggregate("accuracy", inconsistent).value == pytest.approx(2 / 3)   # "disagree" is not "disagreement"
    counterfactual = _scores({"target": ("marshmallows",)}, ["Marshmallows.", "B", "rock"])
    assert aggregate("accuracy", counterfactual).value == pytest.approx(1 / 3)


def test_situated_faithfulness_by_hand():
    value = situated_faithfulness([True, True, False, True], [False, True])
    assert value.value == pytest.approx((3 / 4 + 1 / 2) / 2)   # 0.625
    assert value.ci_low <= value.value <= value.ci_high and value.n == 6
    agreeing = _scores({"target": ("Lorne Balfe",), "alternative": ("Petri Alanko",)},
                       ["Lorne Balfe", "Petri Alanko"], match="contains")
    conflicting = _scores(CONFIQA, ["Lorne Balfe", "Petri Alanko", "Petri Alanko"], match="contains")
    # Acc_true = 1/2 (the true answer with the true context); Acc_false = 1/3 (the true answer
    # despite the false context): SF = (1/2 + 1/3) / 2.
    assert situated_faithfulness_of_samples(agreeing, conflicting).value == pytest.approx(5 / 12)
    assert math.isnan(situated_faithfulness([], [True]).value)


def test_binary_context_utilisation_by_hand():
    items = [
        FirstTokens("gold", " Paris", " Paris", " Paris"),        # 1: the context's token
        FirstTokens("gold", " Lyon", " Paris", " Paris"),         # 0
        FirstTokens("conflicting", " Rome", " Rome", " Paris"),   # 1: follows the conflicting context
        FirstTokens("irrelevant", " Paris", " Bern", " Paris"),   # 1: ignores it, answers from memory
        FirstTokens("irrelevant", " Bern", " Bern", " Paris"),    # 0: distracted by it
    ]
    bcu = binary_context_utilisation(items)
    assert (bcu["gold"].value, bcu["conflicting"].value, bcu["irrelevant"].value) == (0.5, 1.0, 0.5)
    assert bcu["mean"].value == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert bcu["gold"].ci_low < 0.5 < bcu["gold"].ci_high
    with pytest.raises(ValueError, match="unknown context type"):
        binary_context_utilisation([FirstTokens("edited", "a", "a", "b")])
