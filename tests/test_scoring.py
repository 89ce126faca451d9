"""Tests of harness.scoring: matching, per-example scores, aggregates and bootstrap CIs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.backends.api import ContinuationScore
from harness.matching import contains, normalize, raw_prefix, starts_with
from harness.scoring import (
    GENERATE,
    LOGLIKELIHOOD,
    METRICS,
    aggregate,
    metric_names,
    sample_values,
    score_generation,
    score_loglikelihood,
)
from harness.stats import MetricValue, bootstrap_ci, paired_bootstrap_diff

CONFLICT = {"context": ("Lyon",), "parametric": ("Paris",)}


def cs(logprob: float, n_tokens: int = 1, is_greedy: bool = False) -> ContinuationScore:
    return ContinuationScore(logprob=logprob, n_tokens=n_tokens, is_greedy=is_greedy)


# --- normalize / contains / starts_with ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bogotá", "bogota"),
        ("  Paris.  ", "paris"),
        ("The Hague", "hague"),
        ("An apple, a day!", "apple day"),
        ("Guinea-Bissau", "guinea bissau"),
        ("Côte d’Ivoire", "cote d ivoire"),
        ("Straße", "strasse"),
        ("Αθήνα", "αθηνα"),  # letters of other scripts are kept, accents dropped
        ("Theatre", "theatre"),  # articles go only as whole words
        ("P4r15", "p4r15"),
        ("...", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_normalize_equates_composed_and_decomposed_accents():
    assert normalize("Bogot\u00e1") == normalize("Bogota\u0301") == "bogota"


@pytest.mark.parametrize(
    ("output", "answer", "expected"),
    [
        ("The capital is Bogota", "Bogotá", True),
        ("The capital is Bogotá", "Bogota", True),
        ("It is Paris.", "Paris", True),
        ("Hague", "The Hague", True),
        ("The Hague", "Hague", True),
        ("Nigeria", "Niger", False),
        ("Romeo", "Rome", False),
        ("the river Niger, in Mali", "Niger", True),
        ("New York City", "New York", True),
        ("York New", "New York", False),
        ("anything", "A", False),  # normalises to "": never matches
        ("", "Paris", False),
    ],
)
def test_contains(output, answer, expected):
    assert contains(output, answer) is expected


@pytest.mark.parametrize(
    ("output", "answer", "expected"),
    [
        ("   Paris is the capital", "Paris", True),  # leading whitespace ignored
        ("\n\"Paris\", of course", "Paris", True),  # leading punctuation ignored
        ("paris", "Paris", True),
        ("Parisian food", "Paris", False),  # must end at a word boundary
        ("It is Paris", "Paris", False),  # not at the start
        ("Bogota, Colombia", "Bogotá", True),
        ("Paris", "", False),
    ],
)
def test_starts_with(output, answer, expected):
    assert starts_with(output, answer) is expected


def test_starts_with_case_sensitive_tells_capitalisation_apart():
    assert starts_with(" WHAT IS 2+2?", "WHAT IS 2+2?", case_sensitive=True)
    assert not starts_with(" What is 2+2?", "WHAT IS 2+2?", case_sensitive=True)
    assert starts_with(" What is 2+2?", "WHAT IS 2+2?")  # folded by default
    # Accents are still ignored: they are spelling variants, not the transformation.
    assert starts_with("ETE CHAUD", "ÉTÉ CHAUD", case_sensitive=True)
    # Articles are kept: "THE" and "The" differ on the surface.
    assert not starts_with("The CAT", "THE CAT", case_sensitive=True)


def test_contains_case_sensitive():
    assert contains("he said WHAT", "WHAT", case_sensitive=True)
    assert not contains("he said what", "WHAT", case_sensitive=True)


# --- score_generation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "mode"),
    [
        ("Lyon", "context"),
        ("The capital is Paris.", "parametric"),
        ("Lyon, though some say Paris", "both"),
        ("Marseille", "neither"),
    ],
)
def test_conflict_modes(output, mode):
    scores = score_generation(CONFLICT, output)
    assert scores["outcome"] == mode
    assert scores["hit_context"] is (mode in ("context", "both"))
    assert scores["hit_parametric"] is (mode in ("parametric", "both"))


def test_conflict_trap_only_the_output_is_read():
    context = "Unlike what many think, the capital of France is not Paris but Lyon."
    # The context names both answers, but scoring sees only the output: a model answering
    # from the context is "context" ...
    assert score_generation(CONFLICT, "Lyon")["outcome"] == "context"
    # ... and a model that copies the whole context gets "both", not "context".
    assert score_generation(CONFLICT, context)["outcome"] == "both"


def test_conflict_any_spelling_counts():
    answers = {"context": ("Lyon", "Lyons"), "parametric": ("Paris",)}
    assert score_generation(answers, "Lyons")["outcome"] == "context"


def test_conflict_whole_words():
    answers = {"context": ("Niger",), "parametric": ("Nigeria",)}
    assert score_generation(answers, "Nigeria")["outcome"] == "parametric"


def test_conflict_prefix_match():
    scores = score_generation(CONFLICT, " Paris, not Lyon", match="prefix")
    assert scores["outcome"] == "parametric"


def test_target_accuracy():
    answers = {"target": ("Bogotá", "Santa Fe de Bogotá"), "alternative": ("Lima",)}
    assert score_generation(answers, "bogota") == {"correct": True}
    assert score_generation(answers, "Lima") == {"correct": False}


def test_icl_prefix_case_sensitive():
    answers = {"icl": ("WHAT IS THE CAPITAL OF FRANCE?",), "instruction": ("Paris",)}

    def score(output: str) -> dict:
        return score_generation(answers, output, match="prefix", case_sensitive=True)

    assert score(" WHAT IS THE CAPITAL OF FRANCE?") == {"hit_icl": True, "hit_instruction": False}
    assert score(" What is the capital of France?") == {"hit_icl": False, "hit_instruction": False}
    assert score(" Paris") == {"hit_icl": False, "hit_instruction": True}
    assert score(" paris") == {"hit_icl": False, "hit_instruction": False}


@pytest.mark.parametrize("output, answer, hit", [
    (" WHAT IS 7 TIMES 5?", "WHAT", True),  # one leading space
    ("WHAT IS 7 TIMES 5?", "WHAT", True),  # none
    ("  WHAT", "WHAT", False),  # two are not the paper's rule
    ("\nWHAT", "WHAT", False),
    (" What is 7 times 5?", "WHAT", False),  # case counts
    (" what", "What", False),
    (" Theory", "The", True),  # no word boundary: the raw string's prefix
    (" ___ cat sat.", "___", True),
    (" \\_\\_\\_ cat sat.", "___", True),  # markdown-escaped underscores
    ("\\_\\_", "___", False),  # two blanks are not three
    (" __ cat", "___", False),
    (" ____ cat", "___", True),  # a longer blank starts with the answer
    (" Röbert", "Robert", False),  # accents count
    (" ¿Cuánto es", "¿Cuánto", True),
    (" 35", " 35", True),  # the paper's files write answers with their leading space
    ("35", " 35", True),
    (" -5", "5", False),
    (" anything", "", False),
])
def test_raw_prefix_is_the_papers_rule(output, answer, hit):
    assert raw_prefix(output, answer) is hit


def test_raw_prefix_scores_icl_and_instruction():
    answers = {"icl": ("______",), "instruction": ("ROBERT",)}

    def score(output: str) -> dict:
        return score_generation(answers, output, match="raw_prefix", case_sensitive=True)

    assert score(" ______ SOLD HIS OLD CAR.") == {"hit_icl": True, "hit_instruction": False}
    assert score("\\_\\_\\_\\_\\_\\_ SOLD") == {"hit_icl": True, "hit_instruction": False}
    assert score(" ROBERT SOLD") == {"hit_icl": False, "hit_instruction": True}
    assert score(" Robert sold") == {"hit_icl": False, "hit_instruction": False}
    # Unlike "prefix", which normalises: there, " Robert sold" answers "ROBERT".
    assert score_generation(answers, " Robert sold", match="prefix")["hit_instruction"]
    with pytest.raises(ValueError, match="raw_prefix.*case-sensitive"):
        score_generation(answers, " ROBERT", match="raw_prefix")


def test_generation_scores_are_json_serialisable():
    scores = score_generation(CONFLICT, "Lyon")
    assert json.loads(json.dumps(scores)) == scores


def test_generation_rejects_bad_match_and_incomplete_roles():
    with pytest.raises(ValueError, match="unknown match"):
        score_generation(CONFLICT, "Lyon", match="regex")
    with pytest.raises(ValueError, match="role"):
        score_generation({"context": ("Lyon",)}, "Lyon")
    with pytest.raises(ValueError, match="role"):
        score_generation({"target": ("a",), "parametric": ("b",)}, "a")


# --- score_loglikelihood -----------------------------------------------------------------------


def test_loglikelihood_conflict_and_per_token():
    # Context "Saint Petersburg" (3 tokens, -6 total, -2 per token) against parametric
    # "Moscow" (1 token, -3): the sum favours the short answer, the per-token mean the long.
    answers = {"context": ("Saint Petersburg",), "parametric": ("Moscow",)}
    scores = score_loglikelihood(answers, {"context": cs(-6.0, 3), "parametric": cs(-3.0, 1)})
    assert scores == {
        "ll_margin": -3.0,
        "ll_margin_per_token": 1.0,
        "ll_context_wins": False,
        "ll_context_wins_per_token": True,
    }
    assert json.loads(json.dumps(scores)) == scores


def test_loglikelihood_tie_is_not_a_win():
    scores = score_loglikelihood(CONFLICT, {"context": cs(-2.0), "parametric": cs(-2.0)})
    assert scores["ll_context_wins"] is False and scores["ll_margin"] == 0.0


def test_loglikelihood_target():
    answers = {"target": ("Paris",), "alternative": ("Lyon", "Lyons")}
    scores = score_loglikelihood(
        answers, {"target": cs(-1.0, 1, True), "alternative": cs(-1.5, 3)}
    )
    assert scores == {
        "ll_target_logprob": -1.0,
        "ll_target_greedy": True,
        "ll_correct": True,
        "ll_correct_per_token": False,
    }
    alone = score_loglikelihood({"target": ("Paris",)}, {"target": cs(-4.0)})
    assert alone == {"ll_target_logprob": -4.0, "ll_target_greedy": False}


def test_loglikelihood_icl():
    answers = {"icl": ("WHAT IS IT?",), "instruction": ("It",)}
    scores = score_loglikelihood(answers, {"icl": cs(-8.0, 4), "instruction": cs(-5.0, 1)})
    assert scores == {"ll_icl_wins": False, "ll_icl_wins_per_token": True}


def test_loglikelihood_missing_score():
    with pytest.raises(ValueError, match="parametric"):
        score_loglikelihood(CONFLICT, {"context": cs(-1.0)})


# --- metric_names ------------------------------------------------------------------------------


def test_metric_names():
    assert metric_names(GENERATE, {"context", "parametric"}) == [
        "context_hit_rate", "parametric_hit_rate",
        "context_rate", "parametric_rate", "both_rate", "neither_rate", "memorization_ratio",
    ]
    assert metric_names(GENERATE, {"target", "alternative"}) == ["accuracy"]
    assert metric_names(GENERATE, {"icl", "instruction"}) == ["icl_rate", "instruction_rate"]
    assert metric_names(LOGLIKELIHOOD, {"context", "parametric"}) == [
        "ll_context_win_rate", "ll_context_win_rate_per_token", "ll_mean_logodds",
    ]
    assert metric_names(LOGLIKELIHOOD, {"target"}) == [
        "ll_greedy_accuracy", "ll_mean_target_logprob",
    ]
    assert metric_names(LOGLIKELIHOOD, {"target", "alternative"}) == [
        "ll_greedy_accuracy", "ll_mean_target_logprob", "ll_accuracy", "ll_accuracy_per_token",
    ]
    assert metric_names(LOGLIKELIHOOD, {"icl", "instruction"}) == [
        "ll_icl_win_rate", "ll_icl_win_rate_per_token",
    ]
    every = {name for mode in (GENERATE, LOGLIKELIHOOD)
             for roles in ({"context", "parametric"}, {"target", "alternative"},
                           {"icl", "instruction"})
             for name in metric_names(mode, roles)}
    assert every == {name for name, m in METRICS.items() if not m.opt_in}
    assert {name for name, m in METRICS.items() if m.opt_in} == {"pc", "po", "mr"}


def test_metric_names_errors():
    with pytest.raises(ValueError, match="scoring mode"):
        metric_names("greedy", {"target"})
    with pytest.raises(ValueError, match="role"):
        metric_names(GENERATE, {"alternative"})


def test_every_listed_metric_aggregates_its_own_scores():
    cases = [
        ({"context": ("Lyon",), "parametric": ("Paris",)}, "Lyon"),
        ({"target": ("Paris",), "alternative": ("Lyon",)}, "Paris"),
        ({"icl": ("PARIS",), "instruction": ("Paris",)}, "PARIS"),
    ]
    for answers, output in cases:
        gen = [score_generation(answers, output)]
        ll = [score_loglikelihood(answers, {role: cs(-1.0) for role in answers})]
        for name in metric_names(GENERATE, answers):
            assert aggregate(name, gen).n == 1
        for name in metric_names(LOGLIKELIHOOD, answers):
            assert aggregate(name, ll).n == 1


# --- aggregate ---------------------------------------------------------------------------------


def _modes(*modes: str) -> list[dict]:
    return [{"outcome": mode} for mode in modes]


def test_aggregate_hand_computed():
    samples = _modes("context", "context", "context", "parametric", "both", "neither", "neither",
                     "neither")
    assert aggregate("context_rate", samples).value == pytest.approx(3 / 8)
    assert aggregate("parametric_rate", samples).value == pytest.approx(1 / 8)
    assert aggregate("both_rate", samples).value == pytest.approx(1 / 8)
    assert aggregate("neither_rate", samples).value == pytest.approx(3 / 8)
    assert aggregate("memorization_ratio", samples).value == pytest.approx(1 / 4)
    assert aggregate("context_rate", samples).n == 8

    margins = [{"ll_margin": m} for m in (1.0, -2.0, 4.0)]
    assert aggregate("ll_mean_logodds", margins).value == pytest.approx(1.0)
    accuracy = [{"correct": c} for c in (True, True, False, True)]
    assert aggregate("accuracy", accuracy).value == pytest.approx(0.75)


def test_aggregate_recomputes_from_jsonl_logs():
    samples = [score_generation(CONFLICT, out) for out in ("Lyon", "Paris", "Lyon", "Lyon Paris")]
    logged = [json.loads(json.dumps(s)) for s in samples]
    assert aggregate("memorization_ratio", logged) == aggregate("memorization_ratio", samples)
    assert aggregate("context_rate", logged).value == pytest.approx(0.5)


def test_aggregate_ci_is_a_valid_interval():
    rng = np.random.default_rng(1)
    samples = [{"correct": bool(x)} for x in rng.random(200) < 0.3]
    result = aggregate("accuracy", samples)
    assert result.ci_low <= result.value <= result.ci_high
    assert 0 <= result.ci_low < result.ci_high <= 1
    assert result == aggregate("accuracy", samples)  # deterministic under the seed


def test_aggregate_identical_values_give_a_point_interval():
    result = aggregate("ll_mean_logodds", [{"ll_margin": 0.1}] * 37)
    assert result.ci_low == result.value == result.ci_high


def test_aggregate_empty():
    result = aggregate("context_rate", [])
    assert result.n == 0
    assert math.isnan(result.value) and math.isnan(result.ci_low) and math.isnan(result.ci_high)


def test_memorization_ratio_zero_denominator():
    result = aggregate("memorization_ratio", _modes("both", "neither", "neither"))
    assert result.n == 3
    assert math.isnan(result.value) and math.isnan(result.ci_low) and math.isnan(result.ci_high)


def test_memorization_ratio_is_a_rate_among_the_answered_with_an_exact_interval():
    # One parametric answer among many "neither": a ratio of 1 out of 1 answered example. The
    # percentile bootstrap gave [1, 1] here, as if one example settled it; Clopper-Pearson
    # for 1 of 1 is [0.025, 1].
    result = aggregate("memorization_ratio", _modes("parametric", *["neither"] * 9))
    assert result.value == 1.0 and result.n == 10
    assert (result.ci_low, result.ci_high) == pytest.approx((0.025, 1.0))


def test_aggregate_errors():
    with pytest.raises(ValueError, match="unknown metric"):
        aggregate("f1", [{"correct": True}])
    with pytest.raises(ValueError, match="sample 1 lacks"):
        aggregate("accuracy", [{"correct": True}, {"outcome": "context"}])
    with pytest.raises(ValueError, match="outcome"):
        aggregate("context_rate", [{"outcome": "ctx"}])
    with pytest.raises(ValueError, match="boolean"):
        aggregate("accuracy", [{"correct": "yes"}])


def test_sample_values():
    samples = _modes("context", "parametric", "context")
    assert sample_values("context_rate", samples).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="ratio"):
        sample_values("memorization_ratio", samples)


# --- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_ci_properties():
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 1.0, size=400)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    small_low, small_high = bootstrap_ci(values[:25])
    assert high - low < small_high - small_low  # more data, narrower interval
    wide_low, wide_high = bootstrap_ci(values, confidence=0.99)
    assert wide_low <= low and high <= wide_high


def test_bootstrap_ci_other_statistic():
    low, high = bootstrap_ci([1.0, 2.0, 3.0, 100.0], np.median)
    assert 1.0 <= low <= high <= 100.0


def test_bootstrap_ci_edge_cases():
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([0.1] * 50) == (np.mean([0.1] * 50),) * 2
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)


def test_paired_bootstrap_diff_known_shift():
    rng = np.random.default_rng(0)
    # Large example-to-example spread, small shared shift: only pairing reveals the shift.
    base = rng.normal(0.0, 5.0, size=200)
    later = base - 0.3 + rng.normal(0.0, 0.1, size=200)
    result = paired_bootstrap_diff(base, later)
    assert isinstance(result, MetricValue) and result.n == 200
    assert result.value == pytest.approx(0.3, abs=0.05)
    assert 0 < result.ci_low < result.value < result.ci_high
    assert result == paired_bootstrap_diff(base, later)


def test_paired_bootstrap_diff_on_rates():
    first = _modes(*["context"] * 30, *["parametric"] * 10)
    second = _modes(*["context"] * 5, *["parametric"] * 35)
    result = paired_bootstrap_diff(
        sample_values("context_rate", first), sample_values("context_rate", second)
    )
    assert result.value == pytest.approx(0.625)
    assert result.ci_low > 0


def test_paired_bootstrap_diff_identical_and_edge_cases():
    values = np.random.default_rng(0).random(50)
    assert paired_bootstrap_diff(values, values) == MetricValue(0.0, 0.0, 0.0, 50)
    empty = paired_bootstrap_diff([], [])
    assert empty.n == 0 and math.isnan(empty.value) and math.isnan(empty.ci_low)
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap_diff([1.0, 2.0], [1.0])
