"""Conjugates, rendering, instruction formats and requests (checked by hand)."""

from __future__ import annotations

import dataclasses

import pytest

from harness.conjugates import leetspeak, pig_latin
from harness.examples import Example, Localized
from harness.tasks.prompts import apply_format, continuation_for, loglikelihood_request, render
from harness.tasks import Prompt, Scoring, Source, Task, TaskConfig, Templates

EXAMPLE = Example(
    id="capital:France:conflicting",
    condition="conflicting",
    fields={"context": "The capital of France is Lyon.", "question": "What is the capital of France?"},
    answers={"context": ("Lyon",), "parametric": ("Paris",)},
    localized={"fr": Localized(
        fields={"context": "La capitale de la France est Lyon.", "question": "Quelle est la capitale de la France ?"},
        answers={"context": ("Lyon",), "parametric": ("Paris",)},
    ), "de": Localized(
        fields={"context": "Die Hauptstadt von Frankreich ist Lyon.", "question": "Was ist die Hauptstadt von Frankreich?"},
        answers={"context": ("Lyon",), "parametric": ("Paris",)},
    )},
)
TASK = Task(TaskConfig(
    name="t", family="knowledge_conflict", version=1, source=Source(builder="capitals"),
    prompt=Prompt(
        template="Context: {context}\nQuestion: {question}\nAnswer: ",
        by_condition={"closed_book": "Question: {question}\nAnswer:"},
        translations={"fr": Templates("Contexte : {context}\nQuestion : {question}\nRéponse :"),
                      "de": Templates("Kontext: {context}\nFrage: {question}\nAntwort:")},
    ),
    conjugates=["en", "fr", "de", "leetspeak", "piglatin"],
))


def test_leetspeak_by_hand():
    assert leetspeak("The capital of Italy is Rome.") == "7h3 c4p174l 0f 174ly 15 R0m3."


@pytest.mark.parametrize("text, expected", [
    ("What is the capital of France?", "Atwhay isway ethay apitalcay ofway Ancefray?"),
    ("question", "estionquay"),
    ("rhythm", "ythmrhay"),
    ("yellow", "ellowyay"),
    ("Paris, 2024", "Arispay, 2024"),
    ("USA", "USAWAY"),
    ("THE CAT", "ETHAY ATCAY"),
    ("I SAW A CAT.", "IWAY AWSAY AWAY ATCAY."),  # one-letter capitals among capitals
    ("I saw a cat.", "Iway awsay away atcay."),
    ("DON'T", "ONDAY'TAY"),
])
def test_pig_latin_by_hand(text, expected):
    assert pig_latin(text) == expected


def test_render_english_strips_trailing_space_and_keeps_answers():
    rendered = render(TASK, EXAMPLE, "en")
    assert rendered.prompt == "Context: The capital of France is Lyon.\nQuestion: What is the capital of France?\nAnswer:"
    assert rendered.answers == {"context": ("Lyon",), "parametric": ("Paris",)}


def test_render_closed_book_uses_its_template():
    closed = Example("capital:France:closed_book", "closed_book", {"question": "What is the capital of France?"},
                     {"target": ("Paris",), "alternative": ("Lyon",)})
    assert render(TASK, closed).prompt == "Question: What is the capital of France?\nAnswer:"


def test_render_translation():
    rendered = render(TASK, EXAMPLE, "fr")
    assert rendered.prompt == ("Contexte : La capitale de la France est Lyon.\n"
                               "Question : Quelle est la capitale de la France ?\nRéponse :")
    assert rendered.answers["parametric"] == ("Paris",)


def test_render_transform_accepts_both_spellings():
    rendered = render(TASK, EXAMPLE, "leetspeak")
    assert rendered.prompt.startswith("C0n73x7: 7h3 c4p174l 0f Fr4nc3 15 Ly0n.")
    assert rendered.answers["context"] == ("Ly0n", "Lyon")
    assert render(TASK, EXAMPLE, "piglatin").answers["parametric"] == ("Arispay", "Paris")


def test_formats():
    assert apply_format("Q?", "plain") == "Q?"
    assert apply_format("Q?", "tulu") == "<|user|>\nQ?\n<|assistant|>\n"
    alpaca = apply_format("Q?", "alpaca")
    assert alpaca.endswith("### Instruction:\nQ?\n\n### Response:\n")
    with pytest.raises(ValueError, match="no chat template"):
        apply_format("Q?", "chat", tokenizer=None)


def test_leading_space_rule():
    assert continuation_for("Answer:", "Paris") == " Paris"
    assert continuation_for("### Response:\n", "Paris") == "Paris"
    request = loglikelihood_request("Answer:", {"context": ("Lyon",), "parametric": ("Paris",)})
    assert request.continuations == (" Lyon", " Paris")
    request = loglikelihood_request("x", {"target": ("7", "seven"), "alternative": ("8",)})
    assert request.continuations == (" 7", " 8")


ICL = Example(
    id="0", condition="capitalize_math",
    fields={"prompt": "Capitalize every character.\n\nInput: The cat sat.\nOutput: THE CAT SAT.\n\nInput: What is 4 times 9?\nOutput:"},
    answers={"icl": ("WHAT",), "instruction": ("36",)},
    localized={"fr": Localized(
        fields={"prompt": "Mettez chaque caractère en majuscule.\n\nEntrée : Combien font 4 fois 9 ?\nSortie :"},
        answers={"icl": ("COMBIEN",), "instruction": ("36",)},
    )},
)


def _icl_task(accept_english: bool) -> Task:
    return Task(TaskConfig(
        name="icl", family="icl_vs_if", version=1, source=Source(builder="icl_vs_if"),
        prompt=Prompt(template="{prompt}", translations={"fr": Templates("{prompt}")}),
        conjugates=["en", "fr", "leetspeak", "piglatin"],
        scoring=Scoring(match="raw_prefix", case_sensitive=True, accept_english=accept_english),
    ))


def test_render_accept_english_false_keeps_only_the_conjugates_spelling():
    strict, lenient = _icl_task(False), _icl_task(True)
    assert render(lenient, ICL, "fr").answers["icl"] == ("COMBIEN", "WHAT")
    assert render(strict, ICL, "fr").answers == {"icl": ("COMBIEN",), "instruction": ("36",)}
    assert render(lenient, ICL, "leetspeak").answers["icl"] == ("WH47", "WHAT")
    assert render(strict, ICL, "leetspeak").answers == {"icl": ("WH47",), "instruction": ("36",)}
    piglatin = render(strict, ICL, "piglatin")
    assert piglatin.prompt.endswith("Inputway: Atwhay isway 4 imestay 9?\nOutputway:")
    assert "Outputway: ETHAY ATCAY ATSAY." in piglatin.prompt  # still the capitalised input
    assert piglatin.answers["icl"] == ("ATWHAY",)
    assert render(strict, ICL, "en").answers == ICL.answers


def test_render_an_example_written_in_a_conjugate_as_written_and_only_there():
    written = dataclasses.replace(ICL, localized={}, conjugate="piglatin",
                                  fields={"prompt": "Inputway: Atwhay isway 4 imestay 9?\nOutputway: "},
                                  answers={"icl": ("ATWHAY",), "instruction": ("36",)})
    for task in (_icl_task(True), _icl_task(False)):
        rendered = render(task, written, "piglatin")
        # Not rewritten again (that would give "Inputwayway: Atwhayway"), no English added.
        assert rendered.prompt == "Inputway: Atwhay isway 4 imestay 9?\nOutputway:"
        assert rendered.answers == {"icl": ("ATWHAY",), "instruction": ("36",)}
        with pytest.raises(ValueError, match="written in 'piglatin'"):
            render(task, written, "en")
    french = dataclasses.replace(written, conjugate="fr", fields={"prompt": "Entrée : Combien font 4 fois 9 ?\nSortie :"})
    assert render(_icl_task(True), french, "fr").prompt == "Entrée : Combien font 4 fois 9 ?\nSortie :"
