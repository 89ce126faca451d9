"""Scoring: answer matching, per-example scores, aggregate metrics with bootstrap CIs.

Three layers, each usable on its own:

1. Matching. :func:`normalize` puts an answer and a model output in one canonical form;
   :func:`contains` and :func:`starts_with` compare them as whole words.
2. Per-example scores. :func:`score_generation` (greedy output) and
   :func:`score_loglikelihood` (continuation log-probs) return a flat, JSON-serialisable dict
   that goes into the per-sample logs and holds everything :func:`aggregate` needs, so every
   metric can be recomputed from the logs alone.
3. Aggregates. :func:`aggregate` turns a list of those dicts into a :class:`MetricValue`
   (point estimate and percentile-bootstrap confidence interval); :func:`paired_bootstrap_diff`
   compares the same examples scored at two checkpoints.

Which scores and metrics an example gets follows from its answer roles
(:mod:`harness.examples`); :func:`metric_names` lists them.

Scoring reads only the model's output, never the prompt. In counterfactual contexts the
real-world answer is often written in the context too ("... is not Paris but Lyon"); a model
that copies the whole context therefore scores ``both``, not ``context``.

Per-sample keys
---------------
Generation (``score_generation``):
    conflict: ``hit_context``, ``hit_parametric`` (bool), ``mode`` (one of :data:`MODES`);
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

import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np

from harness.examples import ALTERNATIVE, CONTEXT, ICL, INSTRUCTION, PARAMETRIC, TARGET
from harness.requests import ContinuationScore

GENERATE = "generate"
LOGLIKELIHOOD = "loglikelihood"
SCORING_MODES = (GENERATE, LOGLIKELIHOOD)

CONTAINS = "contains"
PREFIX = "prefix"
MATCHES = (CONTAINS, PREFIX)

# Values of the per-sample ``mode`` of a knowledge-conflict generation.
MODE_CONTEXT = "context"
MODE_PARAMETRIC = "parametric"
MODE_BOTH = "both"
MODE_NEITHER = "neither"
MODES = (MODE_CONTEXT, MODE_PARAMETRIC, MODE_BOTH, MODE_NEITHER)

# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------

_ARTICLES = frozenset({"a", "an", "the"})


def _canonical(text: str, *, fold_case: bool) -> str:
    if fold_case:
        # casefold, not lower: it also equates "ß" and "ss", which a bare lower() does not.
        text = text.casefold()
    # NFKD splits "á" into "a" + a combining accent (dropped below) and maps compatibility
    # forms (ligatures, full-width letters) to plain letters.
    text = unicodedata.normalize("NFKD", text)
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Mn":
            continue
        # Letters, digits and spacing marks (vowel signs of Indic scripts) of every script are
        # word characters; everything else, punctuation included, separates words.
        kept.append(char if category[0] in "LNM" else " ")
    words = "".join(kept).split()
    if fold_case:
        words = [word for word in words if word not in _ARTICLES]
    return " ".join(words)


def normalize(text: str) -> str:
    """The canonical form in which answers and outputs are compared.

    Steps, in order: case folding (``str.casefold``, a stronger lowercase); Unicode NFKD with
    the combining accents dropped (``"Bogotá"`` -> ``"bogota"``); every character that is not
    a letter or digit (of any script) becomes a space (``"Paris."`` -> ``"paris"``,
    ``"Guinea-Bissau"`` -> ``"guinea bissau"``); the English articles *a*, *an*, *the* are
    removed as whole words (``"The Hague"`` -> ``"hague"``); whitespace is collapsed to
    single spaces and stripped.

    The result is a sequence of words separated by single spaces, which is what makes the
    whole-word tests of :func:`contains` and :func:`starts_with` simple. Scripts written
    without spaces between words (Chinese, Japanese, Thai) stay one long "word"; none of the
    harness's languages is one. An answer that is only an article or punctuation (``"A"``)
    normalises to ``""`` and never matches.
    """
    return _canonical(text, fold_case=True)


def _contains_words(haystack: str, needle: str) -> bool:
    # Both are canonical (words joined by single spaces), so padding with spaces turns a
    # substring test into a whole-word test: " rome " is not inside " romeo ".
    return bool(needle) and f" {needle} " in f" {haystack} "


def _starts_with_words(text: str, prefix: str) -> bool:
    return bool(prefix) and f"{text} ".startswith(f"{prefix} ")


def contains(output: str, answer: str, *, case_sensitive: bool = False) -> bool:
    """Whether ``answer`` occurs in ``output`` as whole words, after :func:`normalize`.

    ``"Rome"`` is not found in ``"Romeo"`` nor ``"Niger"`` in ``"Nigeria"``, but ``"Guinea"``
    is found in ``"Papua New Guinea"``. An answer that normalises to ``""`` never matches.
    ``case_sensitive`` compares as :func:`starts_with` does with it.
    """
    fold = not case_sensitive
    return _contains_words(_canonical(output, fold_case=fold), _canonical(answer, fold_case=fold))


def starts_with(output: str, answer: str, *, case_sensitive: bool = False) -> bool:
    """Whether ``output`` begins with ``answer``, ending at a word boundary.

    Leading whitespace and punctuation of the output are ignored (``' "Paris", ...'`` starts
    with ``"Paris"``), and the answer must end where a word ends (``"Par"`` does not start
    ``"Paris"``). By default both sides go through :func:`normalize`.

    ``case_sensitive=True`` is a surface-form check, made for the ICL probe of conjugate
    prompting where the demonstrated transformation is capitalisation (``"WHAT IS ..."``
    versus the untransformed ``"What is ..."``): case is kept and, for the same reason,
    articles are kept (``"THE"`` and ``"The"`` differ). Accents are still dropped and
    punctuation still separates words: those are spelling and encoding variants (NFC versus
    NFD text, ``"ÉTÉ"`` versus ``"ETE"``), not the transformation being probed.
    """
    fold = not case_sensitive
    return _starts_with_words(
        _canonical(output, fold_case=fold), _canonical(answer, fold_case=fold)
    )


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
    passed to either (the ICL task uses ``"prefix"`` with ``case_sensitive=True``). Only the
    output is read: answers that the prompt itself contains do not count.
    """
    if match not in MATCHES:
        raise ValueError(f"unknown match {match!r}; expected one of {MATCHES}")
    test = contains if match == CONTAINS else starts_with

    def hit(role: str) -> bool:
        return any(test(output, a, case_sensitive=case_sensitive) for a in answers[role])

    scores: dict[str, Any] = {}
    for family in _families(answers):
        if family == _CONFLICT:
            on_context, on_parametric = hit(CONTEXT), hit(PARAMETRIC)
            scores["hit_context"] = on_context
            scores["hit_parametric"] = on_parametric
            scores["mode"] = {
                (True, False): MODE_CONTEXT,
                (False, True): MODE_PARAMETRIC,
                (True, True): MODE_BOTH,
                (False, False): MODE_NEITHER,
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
    answered from context or memory. Bootstrapping the ratio of sums on each resample keeps
    it a ratio of counts, as the point estimate is.
    """

    key: str
    numerator: Callable[[Any], float]
    denominator: Callable[[Any], float] | None = None  # None: a plain mean


def _flag(value: Any) -> float:
    if not isinstance(value, bool):
        raise TypeError("expected a boolean")
    return float(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number")
    return float(value)


def _mode_in(*modes: str) -> Callable[[Any], float]:
    def indicator(value: Any) -> float:
        if value not in MODES:
            raise TypeError(f"expected one of {MODES}")
        return float(value in modes)

    return indicator


_METRICS: dict[str, _Metric] = {
    "context_rate": _Metric("mode", _mode_in(MODE_CONTEXT)),
    "parametric_rate": _Metric("mode", _mode_in(MODE_PARAMETRIC)),
    "both_rate": _Metric("mode", _mode_in(MODE_BOTH)),
    "neither_rate": _Metric("mode", _mode_in(MODE_NEITHER)),
    "memorization_ratio": _Metric(
        "mode", _mode_in(MODE_PARAMETRIC), _mode_in(MODE_PARAMETRIC, MODE_CONTEXT)
    ),
    "accuracy": _Metric("correct", _flag),
    "icl_rate": _Metric("hit_icl", _flag),
    "instruction_rate": _Metric("hit_instruction", _flag),
    "ll_context_win_rate": _Metric("ll_context_wins", _flag),
    "ll_context_win_rate_per_token": _Metric("ll_context_wins_per_token", _flag),
    "ll_mean_logodds": _Metric("ll_margin", _number),
    "ll_greedy_accuracy": _Metric("ll_target_greedy", _flag),
    "ll_mean_target_logprob": _Metric("ll_target_logprob", _number),
    "ll_accuracy": _Metric("ll_correct", _flag),
    "ll_accuracy_per_token": _Metric("ll_correct_per_token", _flag),
    "ll_icl_win_rate": _Metric("ll_icl_wins", _flag),
    "ll_icl_win_rate_per_token": _Metric("ll_icl_wins_per_token", _flag),
}

METRICS: tuple[str, ...] = tuple(_METRICS)

_METRICS_BY_FAMILY: dict[tuple[str, str], tuple[str, ...]] = {
    (GENERATE, _CONFLICT): (
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


@dataclass(frozen=True)
class MetricValue:
    """An aggregate metric: point estimate, bootstrap confidence interval, number of examples.

    ``value``, ``ci_low`` and ``ci_high`` are NaN where the metric is undefined (no examples;
    a memorisation ratio with no context or parametric answers).
    """

    value: float
    ci_low: float
    ci_high: float
    n: int


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    # One (n_resamples, n) index matrix: every resample is drawn at once, so the statistic
    # is computed for all of them in one vectorised reduction.
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _percentile_interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if statistics.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[..., Any] = np.mean,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``statistic(values)``.

    ``statistic`` must accept ``axis=`` as numpy reductions do (``np.mean``, ``np.median``):
    it is applied once to the ``(n_resamples, n)`` matrix of resamples. The result is
    deterministic for a given ``seed``. With no values the interval is ``(nan, nan)``;
    with all values equal it is that value at both ends.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return _percentile_interval(np.empty(0), confidence)
    indices = _resample_indices(data.size, n_resamples, seed)
    return _percentile_interval(np.asarray(statistic(data[indices], axis=1)), confidence)


def _ratio_of_sums(
    numerators: np.ndarray, denominators: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    """The ratio of sums for each row of ``indices``; NaN where the denominator sums to 0."""
    top = numerators[indices].sum(axis=1)
    bottom = denominators[indices].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / bottom, np.nan)


def aggregate(
    metric: str,
    samples: Sequence[Mapping[str, Any]],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> MetricValue:
    """Metric ``metric`` over per-sample score dicts, with a percentile-bootstrap CI.

    ``samples`` are the dicts of :func:`score_generation` / :func:`score_loglikelihood`
    (also as read back from the JSONL logs); ``n`` is their number. Rates are means of
    per-example booleans; ``memorization_ratio`` is ``parametric / (parametric + context)``
    as a ratio of counts, recomputed as such on every resample. A resample with no context
    or parametric answer leaves that ratio undefined: the CI is taken over the resamples
    where it is defined, and is NaN when the point estimate is (every resample then has a
    zero denominator too). No samples give NaN value and CI.

    Raises ``ValueError`` for an unknown metric or a sample lacking the metric's key.
    """
    numerators, denominators = _columns(metric, samples)
    n = len(numerators)
    if n == 0:
        low, high = _percentile_interval(np.empty(0), confidence)
        return MetricValue(float("nan"), low, high, 0)
    # The point estimate goes through the same vectorised reduction as the resamples, so
    # identical values give an interval exactly equal to the value.
    value = float(_ratio_of_sums(numerators, denominators, np.arange(n)[np.newaxis, :])[0])
    ratios = _ratio_of_sums(
        numerators, denominators, _resample_indices(n, n_resamples, seed)
    )
    defined = np.empty(0) if np.isnan(value) else ratios[~np.isnan(ratios)]
    low, high = _percentile_interval(defined, confidence)
    return MetricValue(value, low, high, n)


def paired_bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    *,
    statistic: Callable[..., Any] = np.mean,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> MetricValue:
    """``statistic(a) - statistic(b)`` with a paired percentile-bootstrap CI.

    ``a[i]`` and ``b[i]`` must be the same example (e.g. scored at two checkpoints; see
    :func:`sample_values`); each resample draws examples and keeps both of their values, so
    the example-to-example variation shared by ``a`` and ``b`` cancels and the interval is
    much narrower than one from independent resamples. ``statistic`` must accept ``axis=``.
    Identical inputs give ``0`` with CI ``[0, 0]``; empty inputs give NaN.
    """
    first = np.asarray(a, dtype=float)
    second = np.asarray(b, dtype=float)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(
            f"paired samples must be 1-d and of equal length, got {first.shape} and {second.shape}"
        )
    n = first.size
    if n == 0:
        low, high = _percentile_interval(np.empty(0), confidence)
        return MetricValue(float("nan"), low, high, 0)
    value = float(statistic(first) - statistic(second))
    indices = _resample_indices(n, n_resamples, seed)
    differences = np.asarray(statistic(first[indices], axis=1)) - np.asarray(
        statistic(second[indices], axis=1)
    )
    low, high = _percentile_interval(differences, confidence)
    return MetricValue(value, low, high, n)
