"""Per-example scores: what one greedy output or one set of continuation log-likelihoods
says about one example.

:func:`score_generation` (greedy output) and :func:`score_loglikelihood` (continuation
log-probs) return a flat, JSON-serialisable dict that goes into the per-sample logs and holds
everything a metric (:mod:`harness.scoring.metrics`) is computed from, so every metric can be
recomputed from the logs alone. Which scores an example gets follows from its answer roles
(:mod:`harness.examples`, grouped into families by :func:`role_families`); matching itself is
:mod:`harness.matching`.

Scoring reads only the model's output, never the prompt. In counterfactual contexts the
real-world answer is often written in the context too ("... is not Paris but Lyon"); a model
that copies the whole context therefore scores ``both`` in the exclusive split — and counts
for ``context_hit_rate``, the inversion paper's counterfactual accuracy, which asks only
whether the context's answer appears. Matches are whole-word spans: an answer found only
inside the other answer's match ("Cairo" inside "New Cairo") is not a hit.

Per-sample keys
---------------
Generation (``score_generation``):
    conflict: ``hit_context``, ``hit_parametric`` (bool), ``outcome`` (one of :data:`OUTCOMES`),
    ``stance`` (one of :data:`STANCES`: ConFiQA's faithful / stubborn split, :func:`stance`);
    target: ``correct`` (bool);
    icl: ``hit_icl``, ``hit_instruction`` (bool).
Log-likelihood (``score_loglikelihood``), always the role's canonical (first) spelling:
    conflict: ``ll_margin``, ``ll_margin_per_token`` (float: context minus parametric),
    ``ll_context_wins``, ``ll_context_wins_per_token`` (bool: margin > 0, ties lose);
    target: ``ll_target_logprob`` (float), ``ll_target_greedy`` (bool: the target is the
    greedy continuation); with an ``alternative``: ``ll_correct``, ``ll_correct_per_token``;
    icl: ``ll_icl_wins``, ``ll_icl_wins_per_token``.
"""

from __future__ import annotations

import re
import string
from typing import Any, Collection, Mapping, Sequence

from harness.backends.api import ContinuationScore
from harness.examples import ALTERNATIVE, CONTEXT, ICL, INSTRUCTION, PARAMETRIC, TARGET
from harness.matching import Span, contains, find_spans, raw_prefix, starts_with

#: The version of the scoring rules (matching included). Every sample line records the version
#: it was scored by; a resume rescores lines of another version from their stored output and
#: log-likelihoods. 2: numbers matched as numbers, a boundary after raw prefixes, the `substring`
#: match and the ConFiQA `stance` score.
SCORER_VERSION = 2

#: How an answer is scored: the greedy output (``generate``) or the continuations'
#: log-likelihoods (``loglikelihood``). Summary rows call it ``mode``.
GENERATE = "generate"
LOGLIKELIHOOD = "loglikelihood"
SCORING_MODES = (GENERATE, LOGLIKELIHOOD)

CONTAINS = "contains"
PREFIX = "prefix"
RAW_PREFIX = "raw_prefix"
SUBSTRING = "substring"
MATCHES = (CONTAINS, PREFIX, RAW_PREFIX, SUBSTRING)

#: The ``outcome`` of a knowledge-conflict generation: which of the two answers it gives.
OUTCOME_CONTEXT = "context"
OUTCOME_PARAMETRIC = "parametric"
OUTCOME_BOTH = "both"
OUTCOME_NEITHER = "neither"
OUTCOMES = (OUTCOME_CONTEXT, OUTCOME_PARAMETRIC, OUTCOME_BOTH, OUTCOME_NEITHER)

#: ConFiQA's split of a knowledge-conflict output (Bi et al. 2024, whose ``evaluation.py`` is
#: Zhou et al. 2023's): ``faithful`` gives the context's answer, not the memorised one, and no
#: negation word; ``stubborn`` gives the memorised answer, whatever else; ``other``: neither.
STANCE_FAITHFUL = "faithful"
STANCE_STUBBORN = "stubborn"
STANCE_OTHER = "other"
STANCES = (STANCE_FAITHFUL, STANCE_STUBBORN, STANCE_OTHER)
#: The words whose presence makes a context answer unfaithful in ConFiQA's ``evaluation.py``
#: ("... is not Petri Alanko"), looked up among the words of the normalised output.
NEGATION_WORDS = frozenset({"no", "not", "never", "none", "cannot", "nobody", "nothing", "nowhere",
                            "neither", "nor", "without", "hardly"})

# ---------------------------------------------------------------------------------------------
# Per-example scores
# ---------------------------------------------------------------------------------------------

#: The families of answer roles an example can have; each gets its own scores and metrics.
CONFLICT = "conflict"
TARGET_FAMILY = "target"
ICL_FAMILY = "icl"

# Metric family -> (required roles, optional roles). An example's roles must be covered by
# the families they complete; a leftover role (``context`` without ``parametric``) is a data
# error, caught here rather than silently scored as nothing.
_FAMILIES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    CONFLICT: (frozenset({CONTEXT, PARAMETRIC}), frozenset()),
    TARGET_FAMILY: (frozenset({TARGET}), frozenset({ALTERNATIVE})),
    ICL_FAMILY: (frozenset({ICL, INSTRUCTION}), frozenset()),
}


def role_families(roles: Collection[str]) -> list[str]:
    """The families an example's answer roles form, in a fixed order; ``ValueError`` when a role
    is left over (``context`` without ``parametric``)."""
    roles = set(roles)
    families = [name for name, (required, _) in _FAMILIES.items() if required <= roles]
    covered = set().union(*(_FAMILIES[f][0] | _FAMILIES[f][1] for f in families))
    if not families or roles - covered:
        raise ValueError(
            f"answer roles {sorted(roles)} do not form complete role sets; expected "
            "context+parametric, target (+alternative), or icl+instruction"
        )
    return families


def squad_normalize(text: str) -> str:
    """The SQuAD answer normalisation that ConFiQA's and FaithEval's scripts use: lower case,
    ASCII punctuation deleted (not replaced by a space: "don't" -> "dont"), the words *a*,
    *an*, *the* removed, whitespace collapsed."""
    text = "".join(char for char in text.lower() if char not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def substring(output: str, answer: str) -> bool:
    """Whether the SQuAD-normalised ``answer`` is a substring of the normalised ``output``: the
    rule of ConFiQA (``recall_score``) and FaithEval (``phrase in normalize_answer(pred)``). No
    word boundary: "not" is found in "cannot" and "Rome" in "Romeo", as their scripts find
    them. An answer that normalises to ``""`` never matches."""
    needle = squad_normalize(answer)
    return bool(needle) and needle in squad_normalize(output)


def stance(output: str, on_context: bool, on_parametric: bool) -> str:
    """ConFiQA's stance of one output (:data:`STANCES`): ``stubborn`` when the memorised answer
    is in it; else ``faithful`` when the context's answer is and no word of the output, after
    :func:`squad_normalize` (as ``recall_score`` looks), is a negation word ("Not X" included)."""
    if on_parametric:
        return STANCE_STUBBORN
    if on_context and not NEGATION_WORDS.intersection(squad_normalize(output).split()):
        return STANCE_FAITHFUL
    return STANCE_OTHER


def _inside(span: Span, others: Sequence[Span]) -> bool:
    """Whether ``span`` lies inside, and is shorter than, one of ``others``."""
    return any(o[0] <= span[0] and span[1] <= o[1] and o != span for o in others)


def score_generation(
    answers: Mapping[str, Sequence[str]],
    output: str,
    *,
    match: str = CONTAINS,
    case_sensitive: bool = False,
) -> dict[str, Any]:
    """Per-example scores of one generated ``output`` (see the module docstring for keys).

    A role is hit when any of its spellings matches: ``match="contains"`` uses
    :func:`contains`, ``match="prefix"`` uses :func:`starts_with`; ``case_sensitive`` is
    passed to either. ``match="substring"`` is ConFiQA's and FaithEval's rule
    (:func:`substring`). ``match="raw_prefix"`` is the conjugate-prompting paper's rule
    (:func:`raw_prefix`, the ``icl_vs_if`` tasks), case-sensitive by definition: it needs
    ``case_sensitive=True``. Only the output is read: answers that the prompt itself
    contains do not count.
    """
    if match not in MATCHES:
        raise ValueError(f"unknown match {match!r}; expected one of {MATCHES}")
    if match == RAW_PREFIX and not case_sensitive:
        raise ValueError("match 'raw_prefix' compares the raw output and is case-sensitive; "
                         "pass case_sensitive=True")

    def test(answer: str) -> bool:
        if match == RAW_PREFIX:
            return raw_prefix(output, answer)
        if match == SUBSTRING:
            return substring(output, answer)
        matcher = contains if match == CONTAINS else starts_with
        return matcher(output, answer, case_sensitive=case_sensitive)

    def hit(role: str) -> bool:
        return any(test(a) for a in answers[role])

    def spans(role: str) -> list[Span]:
        return [span for answer in answers[role]
                for span in find_spans(output, answer, case_sensitive=case_sensitive, prefix=match == PREFIX)]

    scores: dict[str, Any] = {}
    for family in role_families(answers):
        if family == CONFLICT:
            if match in (RAW_PREFIX, SUBSTRING):
                on_context, on_parametric = hit(CONTEXT), hit(PARAMETRIC)
            else:
                # A match inside the other answer's match is that answer, not this one:
                # "Cairo" in an output "New Cairo" is not a second, parametric answer.
                context, parametric = spans(CONTEXT), spans(PARAMETRIC)
                on_context = any(not _inside(span, parametric) for span in context)
                on_parametric = any(not _inside(span, context) for span in parametric)
            scores["hit_context"] = on_context
            scores["hit_parametric"] = on_parametric
            scores["outcome"] = {
                (True, False): OUTCOME_CONTEXT,
                (False, True): OUTCOME_PARAMETRIC,
                (True, True): OUTCOME_BOTH,
                (False, False): OUTCOME_NEITHER,
            }[on_context, on_parametric]
            scores["stance"] = stance(output, on_context, on_parametric)
        elif family == TARGET_FAMILY:
            scores["correct"] = hit(TARGET)
        else:
            scores["hit_icl"] = hit(ICL)
            scores["hit_instruction"] = hit(INSTRUCTION)
    return scores


def score_loglikelihood(
    answers: Mapping[str, Sequence[str]],
    scores: Mapping[str, ContinuationScore],
) -> dict[str, Any]:
    """Per-example scores from the log-likelihoods of each role's canonical spelling.

    ``scores`` maps a role to the :class:`ContinuationScore` of its first spelling. Margins
    are summed log-probabilities (log-odds of one answer over the other); the ``_per_token``
    variants divide each side by its own token count first, which removes the bias towards
    short answers. A tie is not a win.
    """
    missing = [role for role in answers if role not in scores]
    if missing:
        raise ValueError(f"no log-likelihood score for answer roles {missing}")

    def margin(first: str, second: str) -> tuple[float, float]:
        a, b = scores[first], scores[second]
        return (
            float(a.logprob - b.logprob),
            float(a.logprob_per_token - b.logprob_per_token),
        )

    result: dict[str, Any] = {}
    for family in role_families(answers):
        if family == CONFLICT:
            total, per_token = margin(CONTEXT, PARAMETRIC)
            result["ll_margin"] = total
            result["ll_margin_per_token"] = per_token
            result["ll_context_wins"] = total > 0
            result["ll_context_wins_per_token"] = per_token > 0
        elif family == TARGET_FAMILY:
            result["ll_target_logprob"] = float(scores[TARGET].logprob)
            result["ll_target_greedy"] = bool(scores[TARGET].is_greedy)
            if ALTERNATIVE in answers:
                total, per_token = margin(TARGET, ALTERNATIVE)
                result["ll_correct"] = total > 0
                result["ll_correct_per_token"] = per_token > 0
        else:
            total, per_token = margin(ICL, INSTRUCTION)
            result["ll_icl_wins"] = total > 0
            result["ll_icl_wins_per_token"] = per_token > 0
    return result
