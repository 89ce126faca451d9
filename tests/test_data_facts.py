"""Real facts (harness.data.facts) and the knowledge-conflict builders made from them."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from harness.data import BUILDERS, builder_options
from harness.data.fact_sentences import TEMPLATES, fact_sentence, n_templates, question
from harness.data.facts import LANGUAGES, LOCALIZED_LANGUAGES, RELATIONS, Fact, accepted_spellings, load_facts
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET
from harness.matching import contains, normalize

FACT_BUILDERS = {
    "capitals": "capital",
    "currencies": "currency",
    "continents": "continent",
    "languages": "language",
    "us_state_capitals": "state_capital",
    "world_facts": None,
}


def fact(relation: str, subject: str) -> Fact:
    (found,) = [f for f in load_facts(relation) if f.subject == subject]
    return found


@pytest.fixture(scope="module")
def world() -> list:
    return BUILDERS["world_facts"](seed=0)


# ----- facts ---------------------------------------------------------------------------------


def test_a_few_hundred_facts_in_every_relation():
    counts = Counter(f.relation for f in load_facts())
    assert set(counts) == set(RELATIONS)
    assert 400 <= sum(counts.values()) <= 800
    assert counts["state_capital"] == 50
    for relation in ("capital", "currency", "continent"):
        assert counts[relation] >= 120
    assert counts["language"] >= 60


def test_facts_are_deterministic_unique_and_filtered_by_relation():
    facts = load_facts()
    assert facts == load_facts()
    assert len({f.key for f in facts}) == len(facts)
    assert all(f.relation == "currency" for f in load_facts("currency"))
    assert [f.relation for f in facts] == sorted(
        (f.relation for f in facts), key=RELATIONS.index
    )
    with pytest.raises(ValueError, match="unknown relation"):
        load_facts("planet")


def test_known_facts_and_their_localised_names():
    france = fact("capital", "France")
    assert france.answer == "Paris" and france.names("en").subject == "France"
    germany = fact("capital", "Germany")
    assert germany.names("fr").subject == "Allemagne"
    assert germany.names("es").subject == "Alemania"
    assert germany.names("de").subject == "Deutschland"
    assert fact("currency", "France").names("fr").answers[0] == "euro"
    assert fact("currency", "Germany").answer == "Euro"
    assert fact("capital", "Japan").names("es").answers[0] == "Tokio"
    assert fact("capital", "Egypt").names("fr").answers[0] == "Le Caire"
    assert fact("capital", "Austria").names("de").answers[0] == "Wien"
    assert fact("language", "Germany").names("fr").answers[0] == "allemand"
    assert fact("continent", "Brazil").answer == "South America"
    assert fact("continent", "Brazil").names("de").answers[0] == "Südamerika"
    assert fact("state_capital", "Texas").answer == "Austin"


def test_aliases_cover_spellings_that_differ_between_sources():
    assert {"Sanaa", "Sana'a"} <= set(fact("capital", "Yemen").spellings)
    assert {"Kyiv", "Kiev"} <= set(fact("capital", "Ukraine").spellings)
    assert fact("capital", "Kazakhstan").spellings[:2] == ("Astana", "Nur-Sultan")
    assert fact("capital", "Colombia").answer == "Bogotá"
    assert "St. Paul" in fact("state_capital", "Minnesota").spellings
    # Aliases differ after scoring's normalisation: no two that score alike.
    for f in load_facts():
        forms = [normalize(s) for s in f.spellings]
        assert len(forms) == len(set(forms)), f


def test_ambiguous_and_self_answering_facts_are_left_out():
    capitals = {f.subject for f in load_facts("capital")}
    assert "Bolivia" not in capitals  # Sucre or La Paz
    assert "Burundi" not in capitals  # the sources disagree (Gitega/Bujumbura)
    assert "Singapore" not in capitals  # the answer is the subject's name
    assert "South Africa" not in {f.subject for f in load_facts("continent")}
    assert "Russia" not in {f.subject for f in load_facts("continent")}
    assert "India" not in {f.subject for f in load_facts("language")}  # several official
    for f in load_facts():
        for lang in LANGUAGES:
            assert not any(
                contains(f.names(lang).subject, s) for s in accepted_spellings(f, lang)
            ), (f.key, lang)


def test_every_fact_has_names_in_every_language():
    for f in load_facts():
        assert set(f.localized) == set(LOCALIZED_LANGUAGES)
        for lang in LANGUAGES:
            names = f.names(lang)
            assert names.subject and names.answers and all(names.answers)


# ----- sentences -----------------------------------------------------------------------------


def test_at_least_three_distinct_templates_per_relation_and_language():
    assert set(TEMPLATES) == set(RELATIONS)
    for relation in RELATIONS:
        f = load_facts(relation)[0]
        for lang in LANGUAGES:
            assert n_templates(relation, lang) >= 3
            sentences = {
                fact_sentence(f, lang, template=t) for t in range(n_templates(relation, lang))
            }
            assert len(sentences) == n_templates(relation, lang)
            for sentence in sentences:
                assert f.names(lang).answers[0] in sentence
                assert f.names(lang).subject in sentence
                assert sentence[0].isupper() and sentence.endswith(".")


def test_fact_sentence_states_a_given_value_and_wraps_the_template_index():
    france = fact("capital", "France")
    assert fact_sentence(france, "en") == "The capital of France is Paris."
    assert fact_sentence(france, "en", value="Lyon") == "The capital of France is Lyon."
    n = n_templates("capital", "fr")
    assert fact_sentence(france, "fr", template=n + 1) == fact_sentence(france, "fr", template=1)
    assert fact_sentence(fact("capital", "Germany"), "fr", template=2) == (
        "Pays : Allemagne. Capitale : Berlin."
    )


def test_english_sentences_put_the_article_where_english_needs_it():
    us = fact("capital", "United States")
    assert fact_sentence(us, "en") == "The capital of the United States is Washington."
    assert fact_sentence(us, "en", template=2).startswith("The United States has")
    assert question(fact("continent", "Netherlands"), "en") == "On which continent is the Netherlands?"
    assert question(fact("state_capital", "Texas"), "en") == (
        "What is the capital of the US state of Texas?"
    )


def test_questions_in_every_language():
    germany = fact("capital", "Germany")
    assert question(germany, "en") == "What is the capital of Germany?"
    assert question(germany, "fr") == "Quelle est la capitale du pays nommé Allemagne ?"
    assert question(germany, "es") == "¿Cuál es la capital del país llamado Alemania?"
    assert question(germany, "de") == "Was ist die Hauptstadt des Staates Deutschland?"
    for f in load_facts():
        for lang in LANGUAGES:
            assert question(f, lang).endswith("?")


# ----- builders ------------------------------------------------------------------------------


def test_builders_are_registered_with_seed_and_limit():
    for name in FACT_BUILDERS:
        assert builder_options(name) == ["seed", "limit"]


@pytest.mark.parametrize("name", sorted(FACT_BUILDERS))
def test_three_examples_per_fact(name):
    examples = BUILDERS[name](seed=0)
    facts = load_facts(FACT_BUILDERS[name])
    assert len(examples) == 3 * len(facts)
    assert Counter(e.condition for e in examples) == {
        "closed_book": len(facts), "agreeing": len(facts), "conflicting": len(facts)
    }
    assert len({e.id for e in examples}) == len(examples)


def test_ids_and_meta(world):
    for example in world:
        relation, subject = example.meta["relation"], example.meta["subject"]
        assert example.id == f"{relation}:{subject}:{example.condition}"


def test_same_seed_same_examples_other_seed_other_counterfactuals(world):
    again = BUILDERS["world_facts"](seed=0)
    assert [e.to_dict() for e in again] == [e.to_dict() for e in world]
    other = BUILDERS["world_facts"](seed=1)
    assert [e.id for e in other] == [e.id for e in world]
    changed = sum(a.meta["counterfactual"] != b.meta["counterfactual"] for a, b in zip(world, other))
    assert changed > len(world) // 2


def test_limit_caps_facts_with_a_seeded_subset():
    ten = BUILDERS["capitals"](seed=0, limit=10)
    assert len(ten) == 30
    assert len({e.meta["subject"] for e in ten}) == 10
    assert [e.to_dict() for e in ten] == [e.to_dict() for e in BUILDERS["capitals"](seed=0, limit=10)]
    assert {e.meta["subject"] for e in BUILDERS["capitals"](seed=1, limit=10)} != {
        e.meta["subject"] for e in ten
    }
    # Per-fact choices do not depend on which other facts were picked.
    full = {e.id: e.to_dict() for e in BUILDERS["capitals"](seed=0)}
    assert all(full[e.id] == e.to_dict() for e in ten)
    assert BUILDERS["capitals"](seed=0, limit=0) == []


def test_answer_roles_per_condition(world):
    for example in world:
        f = fact(example.meta["relation"], example.meta["subject"])
        if example.condition == "conflicting":
            assert set(example.answers) == {CONTEXT, PARAMETRIC}
            assert example.answers[PARAMETRIC] == f.spellings
            assert example.answers[CONTEXT][0] == example.meta["counterfactual"]
        else:
            assert set(example.answers) == {TARGET, ALTERNATIVE}
            assert example.answers[TARGET] == f.spellings
            assert example.answers[ALTERNATIVE] == (example.meta["counterfactual"],)


def test_counterfactuals_never_match_the_real_answer_in_any_language(world):
    for seed, examples in ((0, world), (1, BUILDERS["world_facts"](seed=1))):
        for example in examples:
            if example.condition != "conflicting":
                continue
            versions = [example.answers] + [loc.answers for loc in example.localized.values()]
            real = {s for answers in versions for s in answers[PARAMETRIC]}
            wrong = {s for answers in versions for s in answers[CONTEXT]}
            for r in real:
                for w in wrong:
                    assert not contains(r, w) and not contains(w, r), (seed, example.id, r, w)


def test_contexts_state_the_right_value(world):
    for example in world:
        if example.condition == "closed_book":
            assert set(example.fields) == {"question", "subject"}
            continue
        versions = [(example.fields, example.answers)] + [
            (loc.fields, loc.answers) for loc in example.localized.values()
        ]
        for fields, answers in versions:
            context = fields["context"]
            if example.condition == "conflicting":
                assert answers[CONTEXT][0] in context
                assert not any(contains(context, s) for s in answers[PARAMETRIC]), context
            else:
                assert answers[TARGET][0] in context
                assert not contains(context, answers[ALTERNATIVE][0]), context


def test_agreeing_and_conflicting_share_the_phrasing(world):
    for example in world:
        if example.condition == "closed_book":
            continue
        f = fact(example.meta["relation"], example.meta["subject"])
        template = example.meta["template"]
        stated = example.answers[CONTEXT if example.condition == "conflicting" else TARGET][0]
        assert example.fields["context"] == fact_sentence(f, "en", stated, template)
        for lang, loc in example.localized.items():
            stated = loc.answers[CONTEXT if example.condition == "conflicting" else TARGET][0]
            assert loc.fields["context"] == fact_sentence(f, lang, stated, template)


def test_localized_versions(world):
    example = next(e for e in world if e.id == "capital:Germany:conflicting")
    fr = example.localized["fr"]
    assert fr.fields["subject"] == "Allemagne"
    assert fr.fields["question"] == "Quelle est la capitale du pays nommé Allemagne ?"
    assert "Allemagne" in fr.fields["context"]
    euro = next(e for e in world if e.id == "currency:France:agreeing")
    assert euro.localized["fr"].answers[TARGET][0] == "euro"
    assert euro.localized["es"].fields["subject"] == "Francia"
    for example in world:
        assert set(example.localized) == set(LOCALIZED_LANGUAGES)
        for loc in example.localized.values():
            assert set(loc.fields) == set(example.fields)
            assert set(loc.answers) == set(example.answers)


def test_contexts_use_every_template(world):
    used: dict[tuple[str, str], set[int]] = {}
    for example in world:
        relation = example.meta["relation"]
        for lang in LANGUAGES:
            index = example.meta["template"] % n_templates(relation, lang)
            used.setdefault((relation, lang), set()).add(index)
    for (relation, lang), indices in used.items():
        assert len(indices) >= 3, (relation, lang)


def test_contexts_are_one_or_two_sentences(world):
    for example in world:
        if "context" in example.fields:
            # "Pays : X. Capitale : Y." is the longest form: two sentences.
            assert 1 <= len(re.findall(r"[.!?](?:\s|$)", example.fields["context"])) <= 2
