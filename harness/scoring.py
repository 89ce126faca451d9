"""Scoring: per-example scores, and the metrics aggregated from them with their CIs.

Two layers, each usable on its own (matching itself is :mod:`harness.matching`, the
statistics :mod:`harness.stats`):

1. Per-example scores. :func:`score_generation` (greedy output) and
   :func:`score_loglikelihood` (continuation log-probs) return a flat, JSON-serialisable dict
   that goes into the per-sample logs and holds everything :func:`aggregate` needs, so every
   metric can be recomputed from the logs alone.
2. Aggregates. :func:`aggregate` turns a list of those dicts into a :class:`MetricValue`
   (point estimate and confidence interval). Every metric's definition, with the name the
   papers give it, is in docs/metrics.md.

Which scores and metrics an example gets follows from its answer roles
(:mod:`harness.examples`); :func:`metric_names` lists them.

Scoring reads only the model's output, never the prompt. In counterfactual contexts the
real-world answer is often written in the context too ("... is not Paris but Lyon"); a model
that copies the whole context therefore scores ``both`` in the exclusive split — and counts
for ``context_hit_rate``, the inversion paper's counterfactual accuracy, which asks only
whether the context's answer appears. Matches are whole-word spans: an answer found only
inside the other answer's match ("Cairo" inside "New Cairo") is not a hit.

Per-sample keys
---------------
Generation (``score_generation``):
    conflict: ``hit_context``, ``hit_parametric`` (bool), ``outcome`` (one of :data:`OUTCOMES`);
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

from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np

from harness.backends.api import ContinuationScore
from harness.examples import ALTERNATIVE, CONTEXT, ICL, INSTRUCTION, PARAMETRIC, TARGET
from harness.matching import Span, contains, find_spans, raw_prefix, starts_with
from harness.stats import MetricValue, percentile_interval, rate_interval, resample_indices

#: How an answer is scored: the greedy output (``generate``) or the continuations'
#: log-likelihoods (``loglikelihood``). Summary rows call it ``mode``.
GENERATE = "generate"
LOGLIKELIHOOD = "loglikelihood"
SCORING_MODES = (GENERATE, LOGLIKELIHOOD)

CONTAINS = "contains"
PREFIX = "prefix"
RAW_PREFIX = "raw_prefix"
MATCHES = (CONTAINS, PREFIX, RAW_PREFIX)

#: The ``outcome`` of a knowledge-conflict generation: which of the two answers it gives.
OUTCOME_CONTEXT = "context"
OUTCOME_PARAMETRIC = "parametric"
OUTCOME_BOTH = "both"
OUTCOME_NEITHER = "neither"
OUTCOMES = (OUTCOME_CONTEXT, OUTCOME_PARAMETRIC, OUTCOME_BOTH, OUTCOME_NEITHER)

# ---------------------------------------------------------------------------------------------
# Per-example scores
# ---------------------------------------------------------------------------------------------

_CONFLICT = "conflict"
_TARGET_FAMILY = "target"
_ICL_FAMILY = "icl"

# Metric family -> (required roles, optional roles). An example's roles must be covered by
# the families they complete; a leftover role (``context`` without ``parametric``) is a data
# error, caught here rather than silently scored as nothing.
_FAMILIES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    _CONFLICT: (frozenset({CONTEXT, PARAMETRIC}), frozenset()),
    _TARGET_FAMILY: (frozenset({TARGET}), frozenset({ALTERNATIVE})),
    _ICL_FAMILY: (frozenset({ICL, INSTRUCTION}), frozenset()),
}


def _families(roles: Collection[str]) -> list[str]:
    roles = set(roles)
    families = [name for name, (required, _) in _FAMILIES.items() if required <= roles]
    covered = set().union(*(_FAMILIES[f][0] | _FAMILIES[f][1] for f in families))
    if not families or roles - covered:
        raise ValueError(
            f"answer roles {sorted(roles)} do not form complete role sets; expected "
            "context+parametric, target (+alternative), or icl+instruction"
        )
    return families


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
    passed to either. ``match="raw_prefix"`` is the conjugate-prompting paper's rule
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
        matcher = contains if match == CONTAINS else starts_with
        return matcher(output, answer, case_sensitive=case_sensitive)

    def hit(role: str) -> bool:
        return any(test(a) for a in answers[role])

    def spans(role: str) -> list[Span]:
        return [span for answer in answers[role]
                for span in find_spans(output, answer, case_sensitive=case_sensitive, prefix=match == PREFIX)]

    scores: dict[str, Any] = {}
    for family in _families(answers):
        if family == _CONFLICT:
            if match == RAW_PREFIX:
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
        elif family == _TARGET_FAMILY:
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
    for family in _families(answers):
        if family == _CONFLICT:
            total, per_token = margin(CONTEXT, PARAMETRIC)
            result["ll_margin"] = total
            result["ll_margin_per_token"] = per_token
            result["ll_context_wins"] = total > 0
            result["ll_context_wins_per_token"] = per_token > 0
        elif family == _TARGET_FAMILY:
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


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Metric:
    """A metric as a ratio of sums over examples: sum(numerator) / sum(denominator).

    A mean has denominator 1 per example; the memorisation ratio counts only the examples
    answered from context or memory. ``counts``: numerator and denominator count examples
    (0 or 1 each), so the metric is a binomial rate with an exact interval; otherwise it is
    a mean of continuous values with a bootstrap interval.
    """

    key: str
    numerator: Callable[[Any], float]
    denominator: Callable[[Any], float] | None = None  # None: a plain mean
    counts: bool = True


def _flag(value: Any) -> float:
    if not isinstance(value, bool):
        raise TypeError("expected a boolean")
    return float(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number")
    return float(value)


def _outcome_in(*outcomes: str) -> Callable[[Any], float]:
    def indicator(value: Any) -> float:
        if value not in OUTCOMES:
            raise TypeError(f"expected one of {OUTCOMES}")
        return float(value in outcomes)

    return indicator


_METRICS: dict[str, _Metric] = {
    "context_hit_rate": _Metric("hit_context", _flag),
    "parametric_hit_rate": _Metric("hit_parametric", _flag),
    "context_rate": _Metric("outcome", _outcome_in(OUTCOME_CONTEXT)),
    "parametric_rate": _Metric("outcome", _outcome_in(OUTCOME_PARAMETRIC)),
    "both_rate": _Metric("outcome", _outcome_in(OUTCOME_BOTH)),
    "neither_rate": _Metric("outcome", _outcome_in(OUTCOME_NEITHER)),
    "memorization_ratio": _Metric(
        "outcome", _outcome_in(OUTCOME_PARAMETRIC), _outcome_in(OUTCOME_PARAMETRIC, OUTCOME_CONTEXT)
    ),
    "accuracy": _Metric("correct", _flag),
    "icl_rate": _Metric("hit_icl", _flag),
    "instruction_rate": _Metric("hit_instruction", _flag),
    "ll_context_win_rate": _Metric("ll_context_wins", _flag),
    "ll_context_win_rate_per_token": _Metric("ll_context_wins_per_token", _flag),
    "ll_mean_logodds": _Metric("ll_margin", _number, counts=False),
    "ll_greedy_accuracy": _Metric("ll_target_greedy", _flag),
    "ll_mean_target_logprob": _Metric("ll_target_logprob", _number, counts=False),
    "ll_accuracy": _Metric("ll_correct", _flag),
    "ll_accuracy_per_token": _Metric("ll_correct_per_token", _flag),
    "ll_icl_win_rate": _Metric("ll_icl_wins", _flag),
    "ll_icl_win_rate_per_token": _Metric("ll_icl_wins_per_token", _flag),
}

METRICS: tuple[str, ...] = tuple(_METRICS)

_METRICS_BY_FAMILY: dict[tuple[str, str], tuple[str, ...]] = {
    (GENERATE, _CONFLICT): (
        "context_hit_rate", "parametric_hit_rate",
        "context_rate", "parametric_rate", "both_rate", "neither_rate", "memorization_ratio",
    ),
    (GENERATE, _TARGET_FAMILY): ("accuracy",),
    (GENERATE, _ICL_FAMILY): ("icl_rate", "instruction_rate"),
    (LOGLIKELIHOOD, _CONFLICT): (
        "ll_context_win_rate", "ll_context_win_rate_per_token", "ll_mean_logodds",
    ),
    (LOGLIKELIHOOD, _TARGET_FAMILY): ("ll_greedy_accuracy", "ll_mean_target_logprob"),
    (LOGLIKELIHOOD, _ICL_FAMILY): ("ll_icl_win_rate", "ll_icl_win_rate_per_token"),
}


def metric_names(mode: str, roles: Collection[str]) -> list[str]:
    """The metrics reported for examples with these answer roles in this scoring mode.

    ``mode`` is :data:`GENERATE` or :data:`LOGLIKELIHOOD`. Log-likelihood accuracy
    (``ll_accuracy``, ``ll_accuracy_per_token``) needs an ``alternative`` to compare the
    target with, so it is listed only when that role is present.
    """
    if mode not in SCORING_MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; expected one of {SCORING_MODES}")
    names: list[str] = []
    for family in _families(roles):
        names.extend(_METRICS_BY_FAMILY[mode, family])
        if (mode, family) == (LOGLIKELIHOOD, _TARGET_FAMILY) and ALTERNATIVE in roles:
            names.extend(("ll_accuracy", "ll_accuracy_per_token"))
    return names


def _metric(name: str) -> _Metric:
    try:
        return _METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}") from None


def _columns(name: str, samples: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-example numerators and denominators of metric ``name``."""
    metric = _metric(name)
    numerators, denominators = [], []
    for index, sample in enumerate(samples):
        if metric.key not in sample:
            raise ValueError(
                f"metric {name!r} needs key {metric.key!r}, which sample {index} lacks "
                f"(it has {sorted(sample)})"
            )
        value = sample[metric.key]
        try:
            numerators.append(metric.numerator(value))
            denominators.append(1.0 if metric.denominator is None else metric.denominator(value))
        except TypeError as error:
            raise ValueError(
                f"metric {name!r}: sample {index} has {metric.key}={value!r}; {error}"
            ) from None
    return np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)


def sample_values(metric: str, samples: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Per-example values whose mean is ``metric`` (the input of paired comparisons).

    Ratio metrics (``memorization_ratio``) are not a mean of per-example values and raise
    ``ValueError``.
    """
    if _metric(metric).denominator is not None:
        raise ValueError(
            f"metric {metric!r} is a ratio of counts, not a mean of per-example values"
        )
    return _columns(metric, samples)[0]


def aggregate(
    metric: str,
    samples: Sequence[Mapping[str, Any]],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> MetricValue:
    """Metric ``metric`` over per-sample score dicts, with its confidence interval.

    ``samples`` are the dicts of :func:`score_generation` / :func:`score_loglikelihood`
    (also as read back from the JSONL logs); ``n`` is their number. Rates are means of
    per-example booleans, with the Clopper–Pearson interval (:func:`harness.stats.rate_interval`:
    it keeps its coverage at 0 of n and at small n); ``memorization_ratio`` is
    ``parametric / (parametric + context)``, a rate among the examples answered either way.
    Means of continuous values (log-odds) get a percentile-bootstrap interval. A ratio with
    nothing to divide (no context or parametric answer) is NaN, value and interval. No
    samples give NaN value and CI.

    Raises ``ValueError`` for an unknown metric or a sample lacking the metric's key.
    """
    numerators, denominators = _columns(metric, samples)
    n = len(numerators)
    if n == 0:
        low, high = percentile_interval(np.empty(0), confidence)
        return MetricValue(float("nan"), low, high, 0)
    if _metric(metric).counts:
        successes, trials = int(numerators.sum()), int(denominators.sum())
        low, high = rate_interval(successes, trials, confidence)
        return MetricValue(successes / trials if trials else float("nan"), low, high, n)
    value = float(numerators.mean())
    low, high = percentile_interval(numerators[resample_indices(n, n_resamples, seed)].mean(axis=1), confidence)
    return MetricValue(value, low, high, n)
