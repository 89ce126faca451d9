"""The MemoTrap-style proverbs probe and the recall / open-book / overriding builders."""

from __future__ import annotations

import re

import pytest

from harness.data import BUILDERS, builder_options
from harness.data.fact_sentences import fact_sentence
from harness.data.facts import LOCALIZED_LANGUAGES, load_facts
from harness.data.knowledge_conflicts import pick_template
from harness.data.proverbs import PROVERBS, WORDS
from harness.data.recall import distractors
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET
from harness.matching import contains

PROMPT = re.compile(r'^Write a quote that ends in the word "([^"]+)": (\S.*\S)$')


# ----- proverbs ------------------------------------------------------------------------------


def test_proverb_list():
    assert len(PROVERBS) >= 60
    assert len({(prefix, word) for prefix, word, _ in PROVERBS}) == len(PROVERBS)
    for prefix, word, kind in PROVERBS:
        assert kind in WORDS
        assert prefix == prefix.strip() and " " not in word and word.isalpha()


def test_proverb_examples_format_and_answers():
    examples = BUILDERS["proverbs"](seed=0)
    assert builder_options("proverbs") == ["seed", "limit"]
    assert len(examples) == 2 * len(PROVERBS)
    assert len({e.id for e in examples}) == len(examples)
    by_id = {e.id: e for e in examples}
    for prefix, memorised, kind in PROVERBS:
        key = f"proverb:{prefix} {memorised}"
        conflicting, agreeing = by_id[f"{key}:conflicting"], by_id[f"{key}:agreeing"]
        assert set(conflicting.fields) == {"prompt"}
        requested, shown = PROMPT.match(conflicting.fields["prompt"]).groups()
        assert shown == prefix
        assert requested != memorised and requested in WORDS[kind]
        assert not contains(prefix, requested)
        assert conflicting.answers == {CONTEXT: (requested,), PARAMETRIC: (memorised,)}
        assert agreeing.fields["prompt"] == (
            f'Write a quote that ends in the word "{memorised}": {prefix}'
        )
        assert agreeing.answers == {TARGET: (memorised,), ALTERNATIVE: (requested,)}
        assert conflicting.condition == "conflicting" and agreeing.condition == "agreeing"


def test_memotrap_wording():
    example = next(
        e for e in BUILDERS["proverbs"](seed=0)
        if e.id == "proverb:Absence makes the heart grow fonder:agreeing"
    )
    assert example.fields["prompt"] == (
        'Write a quote that ends in the word "fonder": Absence makes the heart grow'
    )


def test_proverbs_are_seeded():
    first = [e.to_dict() for e in BUILDERS["proverbs"](seed=0)]
    assert first == [e.to_dict() for e in BUILDERS["proverbs"](seed=0)]
    other = [e.to_dict() for e in BUILDERS["proverbs"](seed=1)]
    assert [e["id"] for e in other] == [e["id"] for e in first]
    assert other != first
    assert len(BUILDERS["proverbs"](seed=0, limit=5)) == 10


# ----- recall --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_book() -> list:
    return BUILDERS["open_book"](seed=0)


def test_recall_builders_sizes_and_options(open_book):
    n = len(load_facts())
    assert builder_options("closed_book") == ["seed", "limit"]
    assert builder_options("open_book") == ["seed", "limit", "n_distractors"]
    assert builder_options("overriding") == ["seed", "limit", "n_distractors"]
    closed = BUILDERS["closed_book"](seed=0)
    assert len(closed) == len(open_book) == n
    assert all(set(e.fields) == {"question", "subject"} for e in closed)
    assert all(set(e.answers) == {TARGET, ALTERNATIVE} for e in closed)
    assert {e.condition for e in closed} == {"closed_book"}
    assert {e.condition for e in open_book} == {"open_book"}
    assert len(BUILDERS["overriding"](seed=0, limit=7)) == 7


def _expected_sentences(example, lang, stated):
    """The queried fact's sentence and each distractor's, as the builder phrases them."""
    facts = {f.key: f for f in load_facts()}
    queried = facts[f"{example.meta['relation']}:{example.meta['subject']}"]
    sentences = [fact_sentence(queried, lang, stated, example.meta["template"])]
    for key in example.meta["distractors"]:
        template = pick_template(facts[key], 0, f"distractor:{queried.key}")
        sentences.append(fact_sentence(facts[key], lang, template=template))
    return sentences


def test_open_book_context_holds_the_answer_and_the_distractors(open_book):
    for example in open_book:
        assert set(example.answers) == {TARGET, ALTERNATIVE}
        assert len(example.meta["distractors"]) == 2
        versions = [(example.fields, example.answers)] + [
            (loc.fields, loc.answers) for loc in example.localized.values()
        ]
        for lang, (fields, answers) in zip(("en", *LOCALIZED_LANGUAGES), versions):
            sentences = _expected_sentences(example, lang, answers[TARGET][0])
            context = fields["context"]
            # The sentences, each once, in some order, and nothing else.
            assert all(sentence in context for sentence in sentences)
            assert len(context) == sum(map(len, sentences)) + len(sentences) - 1
            assert not contains(context, answers[ALTERNATIVE][0])


def test_distractors_are_about_other_subjects_and_answers():
    facts = load_facts()
    for fact in facts[::7]:
        chosen = distractors(fact, 0, 3)
        assert len({d.subject for d in chosen} | {fact.subject}) == 4
        for d in chosen:
            assert not contains(d.answer, fact.answer) and not contains(fact.answer, d.answer)
    assert distractors(facts[0], 0, 2) == distractors(facts[0], 0, 2)
    assert distractors(facts[0], 0, 2) != distractors(facts[0], 1, 2)


def test_n_distractors_sets_the_context_length():
    alone = BUILDERS["open_book"](seed=0, limit=5, n_distractors=0)
    for example in alone:
        assert "distractors" not in example.meta
        f = next(f for f in load_facts() if f.key == example.id.rsplit(":", 1)[0])
        assert example.fields["context"] == fact_sentence(f, "en", template=example.meta["template"])
    four = BUILDERS["open_book"](seed=0, limit=5, n_distractors=4)
    assert all(len(e.meta["distractors"]) == 4 for e in four)
    with pytest.raises(ValueError):
        BUILDERS["open_book"](seed=0, limit=1, n_distractors=-1)


def test_overriding_states_the_counterfactual_and_hides_the_real_answer():
    examples = BUILDERS["overriding"](seed=0, limit=60)
    assert examples == BUILDERS["overriding"](seed=0, limit=60)
    for example in examples:
        assert set(example.answers) == {CONTEXT, PARAMETRIC}
        assert set(example.localized) == set(LOCALIZED_LANGUAGES)
        for fields, answers in [(example.fields, example.answers)] + [
            (loc.fields, loc.answers) for loc in example.localized.values()
        ]:
            assert answers[CONTEXT][0] in fields["context"]
            assert not any(contains(fields["context"], s) for s in answers[PARAMETRIC])
            assert len(fields["context"]) > len(answers[CONTEXT][0])
