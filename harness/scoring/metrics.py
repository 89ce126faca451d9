"""The metric table: every metric declared once, and its aggregation with a confidence interval.

A :class:`Metric` says how it is computed from the per-sample scores of
:mod:`harness.scoring.scores` (a ratio of sums over examples), which examples it applies to
(scoring mode and answer-role family), and what the analysis and the reports need to know
about it: its :data:`role` (context reliance, accuracy, ...), label, chance level, whether it
stands for a task (``headline`` rank), where the report tables and charts show it, and how an
item's state reads for the transitions of :mod:`harness.reports.items`. Adding a metric is one
entry in :data:`METRICS` (plus the per-sample score it reads, if new). docs/metrics.md gives
each definition with the name the papers use.

:func:`aggregate` turns per-sample score dicts into a :class:`~harness.stats.MetricValue`:
rates get the Clopper–Pearson interval, means of continuous values a percentile bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np

from harness.examples import ALTERNATIVE
from harness.scoring.scores import (
    CONFLICT,
    GENERATE,
    ICL_FAMILY,
    LOGLIKELIHOOD,
    OUTCOME_BOTH,
    OUTCOME_CONTEXT,
    OUTCOME_NEITHER,
    OUTCOME_PARAMETRIC,
    OUTCOMES,
    SCORING_MODES,
    STANCE_FAITHFUL,
    STANCE_STUBBORN,
    STANCES,
    TARGET_FAMILY,
    role_families,
)
from harness.stats import MetricValue, percentile_interval, rate_interval, resample_indices

#: What a metric measures, as the analysis reads it. A rise and then a significant fall of a
#: context-reliance metric is context-parametric inversion; a significant fall of an accuracy
#: is forgetting.
CONTEXT_RELIANCE = "context reliance"
PARAMETRIC = "parametric answers"
ACCURACY = "accuracy"
IN_CONTEXT = "in-context vs instruction"
MARGIN = "log-likelihood margin"
ROLES = (CONTEXT_RELIANCE, PARAMETRIC, ACCURACY, IN_CONTEXT, MARGIN)


def _flag(value: Any) -> float:
    if not isinstance(value, bool):
        raise TypeError("expected a boolean")
    return float(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number")
    return float(value)


def _one_of(known: tuple[str, ...], *chosen: str) -> Callable[[Any], float]:
    def indicator(value: Any) -> float:
        if value not in known:
            raise TypeError(f"expected one of {known}")
        return float(value in chosen)

    return indicator


def _outcome_in(*outcomes: str) -> Callable[[Any], float]:
    return _one_of(OUTCOMES, *outcomes)


def _stance_in(*stances: str) -> Callable[[Any], float]:
    return _one_of(STANCES, *stances)


def _outcome_state(scores: Mapping[str, Any]) -> str:
    return str(scores["outcome"])


def _icl_state(scores: Mapping[str, Any]) -> str:
    icl, instruction = bool(scores["hit_icl"]), bool(scores["hit_instruction"])
    return ("both" if instruction else "ICL") if icl else ("instruction" if instruction else "neither")


@dataclass(frozen=True)
class Metric:
    """One metric (module docstring).

    Computation: ``sum(numerator) / sum(denominator)`` over examples of the per-sample score
    ``key`` (denominator None: a plain mean). ``counts``: numerator and denominator count
    examples (0 or 1 each), so the metric is a binomial rate with an exact interval;
    otherwise a mean of continuous values with a bootstrap interval. It is reported for
    examples scored in ``mode`` whose answer roles form ``family``, and that also have the
    roles in ``needs``.

    Meaning: ``role`` (one of :data:`ROLES`), ``label`` (words for charts and tables),
    ``chance`` (the score of a model without the ability: 0.5 for a two-way log-likelihood
    comparison), ``headline`` (rank among the metrics that can stand for a task: the first
    one present wins), ``tabled`` (rank in a report's verdict table; None: not tabled),
    ``overview`` (rank in the report's overview of conflicting contexts).

    Transitions: ``states`` an item can be in, the first one "yes" when the metric is a
    yes/no per item; ``state`` reads an item's state from its scores (None: yes/no from the
    numerator). A metric without states (a mean of log-odds) has no transitions.

    ``opt_in``: reported only for tasks that list it in ``scoring.metrics`` (a metric whose
    per-sample score older results lack, so that summarising them never needs it).
    """

    name: str
    mode: str
    family: str
    key: str
    numerator: Callable[[Any], float]
    denominator: Callable[[Any], float] | None = None
    counts: bool = True
    needs: frozenset[str] = frozenset()
    role: str = ACCURACY
    label: str = ""
    chance: float = 0.0
    headline: int | None = None
    tabled: int | None = None
    overview: int | None = None
    states: tuple[str, ...] = ()
    state: Callable[[Mapping[str, Any]], str] | None = None
    opt_in: bool = False

    @property
    def is_mean(self) -> bool:
        """Whether the metric is a mean of per-example values (paired comparisons need it)."""
        return self.denominator is None

    def item_state(self, scores: Mapping[str, Any]) -> str:
        """The state of one item (:attr:`states`) from its per-sample scores."""
        if not self.states:
            raise ValueError(f"{self.name}: not a yes/no per item, so it has no transitions (use a rate)")
        if self.state is not None:
            return self.state(scores)
        yes, no = self.states
        return yes if self.numerator(scores[self.key]) == 1.0 else no


_OUTCOME_STATES = {"states": OUTCOMES, "state": _outcome_state}
_STANCE_STATES = {"states": STANCES, "state": lambda scores: str(scores["stance"]), "opt_in": True}
_ICL_STATES = {"states": ("ICL", "instruction", "both", "neither"), "state": _icl_state}
_TWO_WAY = 0.5

_TABLE: tuple[Metric, ...] = (
    # generation, knowledge conflicts
    Metric("context_hit_rate", GENERATE, CONFLICT, "hit_context", _flag, role=CONTEXT_RELIANCE,
           label="context reliance", headline=0, tabled=0, overview=0, **_OUTCOME_STATES),
    Metric("parametric_hit_rate", GENERATE, CONFLICT, "hit_parametric", _flag, role=PARAMETRIC,
           label="parametric answers", tabled=1, overview=1, **_OUTCOME_STATES),
    Metric("context_rate", GENERATE, CONFLICT, "outcome", _outcome_in(OUTCOME_CONTEXT), role=CONTEXT_RELIANCE,
           label="context answer only", headline=1, tabled=2, **_OUTCOME_STATES),
    Metric("parametric_rate", GENERATE, CONFLICT, "outcome", _outcome_in(OUTCOME_PARAMETRIC), role=PARAMETRIC,
           label="parametric answer only", tabled=3, **_OUTCOME_STATES),
    Metric("both_rate", GENERATE, CONFLICT, "outcome", _outcome_in(OUTCOME_BOTH), role=PARAMETRIC,
           label="both answers", **_OUTCOME_STATES),
    Metric("neither_rate", GENERATE, CONFLICT, "outcome", _outcome_in(OUTCOME_NEITHER), role=PARAMETRIC,
           label="neither answer", **_OUTCOME_STATES),
    Metric("memorization_ratio", GENERATE, CONFLICT, "outcome", _outcome_in(OUTCOME_PARAMETRIC),
           _outcome_in(OUTCOME_PARAMETRIC, OUTCOME_CONTEXT), role=PARAMETRIC, label="memorisation ratio"),
    # generation, knowledge conflicts, as ConFiQA (and Zhou et al. 2023) count them: opt-in
    Metric("pc", GENERATE, CONFLICT, "stance", _stance_in(STANCE_FAITHFUL), role=CONTEXT_RELIANCE,
           label="Pc: context-faithful (ConFiQA)", **_STANCE_STATES),
    Metric("po", GENERATE, CONFLICT, "stance", _stance_in(STANCE_STUBBORN), role=PARAMETRIC,
           label="Po: stubborn (ConFiQA)", **_STANCE_STATES),
    Metric("mr", GENERATE, CONFLICT, "stance", _stance_in(STANCE_STUBBORN),
           _stance_in(STANCE_STUBBORN, STANCE_FAITHFUL), role=PARAMETRIC, label="MR = Po / (Po + Pc) (ConFiQA)",
           opt_in=True),
    # generation, targets and in-context vs instruction
    Metric("accuracy", GENERATE, TARGET_FAMILY, "correct", _flag, label="accuracy", headline=3, tabled=5,
           states=("correct", "wrong")),
    Metric("icl_rate", GENERATE, ICL_FAMILY, "hit_icl", _flag, role=IN_CONTEXT, label="ICL answers", headline=2,
           tabled=7, **_ICL_STATES),
    Metric("instruction_rate", GENERATE, ICL_FAMILY, "hit_instruction", _flag, role=IN_CONTEXT,
           label="instruction answers", tabled=8, **_ICL_STATES),
    # log-likelihood, knowledge conflicts
    Metric("ll_context_win_rate", LOGLIKELIHOOD, CONFLICT, "ll_context_wins", _flag, role=CONTEXT_RELIANCE,
           label="log-likelihood: context wins", chance=_TWO_WAY, headline=4, tabled=4, overview=2,
           states=("context likelier", "parametric likelier")),
    Metric("ll_context_win_rate_per_token", LOGLIKELIHOOD, CONFLICT, "ll_context_wins_per_token", _flag,
           role=CONTEXT_RELIANCE, label="log-likelihood per token: context wins", chance=_TWO_WAY,
           states=("context likelier", "parametric likelier")),
    Metric("ll_mean_logodds", LOGLIKELIHOOD, CONFLICT, "ll_margin", _number, counts=False, role=MARGIN,
           label="mean log-odds, context vs parametric"),
    # log-likelihood, targets
    Metric("ll_greedy_accuracy", LOGLIKELIHOOD, TARGET_FAMILY, "ll_target_greedy", _flag,
           label="log-likelihood: target is greedy", states=("greedy", "not greedy")),
    Metric("ll_mean_target_logprob", LOGLIKELIHOOD, TARGET_FAMILY, "ll_target_logprob", _number, counts=False,
           role=MARGIN, label="mean target log-probability"),
    Metric("ll_accuracy", LOGLIKELIHOOD, TARGET_FAMILY, "ll_correct", _flag, needs=frozenset({ALTERNATIVE}),
           label="log-likelihood accuracy", chance=_TWO_WAY, headline=6, tabled=6,
           states=("target likelier", "alternative likelier")),
    Metric("ll_accuracy_per_token", LOGLIKELIHOOD, TARGET_FAMILY, "ll_correct_per_token", _flag,
           needs=frozenset({ALTERNATIVE}), label="log-likelihood accuracy per token", chance=_TWO_WAY,
           states=("target likelier", "alternative likelier")),
    # log-likelihood, in-context vs instruction
    Metric("ll_icl_win_rate", LOGLIKELIHOOD, ICL_FAMILY, "ll_icl_wins", _flag, role=IN_CONTEXT,
           label="log-likelihood: ICL wins", chance=_TWO_WAY, headline=5, tabled=9,
           states=("ICL likelier", "instruction likelier")),
    Metric("ll_icl_win_rate_per_token", LOGLIKELIHOOD, ICL_FAMILY, "ll_icl_wins_per_token", _flag, role=IN_CONTEXT,
           label="log-likelihood per token: ICL wins", chance=_TWO_WAY,
           states=("ICL likelier", "instruction likelier")),
)

#: Every metric by name, in the order summary rows list them.
METRICS: dict[str, Metric] = {metric.name: metric for metric in _TABLE}


def _ranked(rank: Callable[[Metric], int | None]) -> tuple[str, ...]:
    return tuple(m.name for m in sorted((m for m in _TABLE if rank(m) is not None), key=rank))  # type: ignore[arg-type,return-value]


#: The metrics that can stand for a task, best first: the first one a task has is its headline.
HEADLINE_METRICS = _ranked(lambda m: m.headline)
#: The metrics of a report's verdict table (rates, so that peak and drop mean the same for all).
TABLED_METRICS = _ranked(lambda m: m.tabled)
#: The report's overview of conflicting contexts: a panel each.
OVERVIEW_METRICS = _ranked(lambda m: m.overview)


def metric(name: str) -> Metric:
    """The metric called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}") from None


def with_role(role: str) -> frozenset[str]:
    """The names of the metrics that play ``role`` (:data:`ROLES`)."""
    return frozenset(m.name for m in _TABLE if m.role == role)


def label(name: str) -> str:
    """A metric's words for charts and tables (its name when it is not in the table)."""
    return METRICS[name].label if name in METRICS else name


def metric_names(mode: str, roles: Collection[str], chosen: Collection[str] = ()) -> list[str]:
    """The metrics reported for examples with these answer roles in this scoring mode.

    ``mode`` is :data:`GENERATE` or :data:`LOGLIKELIHOOD`. A metric that needs a role the
    examples lack (log-likelihood accuracy needs an ``alternative`` to compare the target
    with) is left out. ``chosen`` (a task's ``scoring.metrics``): only these; empty: every
    metric that applies but the opt-in ones (:attr:`Metric.opt_in`).
    """
    return [name for name in applicable(mode, roles)
            if ((name in chosen) if chosen else not METRICS[name].opt_in)]


def applicable(mode: str, roles: Collection[str]) -> list[str]:
    """Every metric that can be computed for examples with these roles in ``mode``, opt-in
    ones included (what a task may list in ``scoring.metrics``)."""
    if mode not in SCORING_MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; expected one of {SCORING_MODES}")
    present = set(roles)
    return [m.name for family in role_families(roles) for m in _TABLE
            if m.mode == mode and m.family == family and m.needs <= present]


def _columns(name: str, samples: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-example numerators and denominators of metric ``name``."""
    chosen = metric(name)
    numerators, denominators = [], []
    for index, sample in enumerate(samples):
        if chosen.key not in sample:
            raise ValueError(
                f"metric {name!r} needs key {chosen.key!r}, which sample {index} lacks "
                f"(it has {sorted(sample)})"
            )
        value = sample[chosen.key]
        try:
            numerators.append(chosen.numerator(value))
            denominators.append(1.0 if chosen.denominator is None else chosen.denominator(value))
        except TypeError as error:
            raise ValueError(
                f"metric {name!r}: sample {index} has {chosen.key}={value!r}; {error}"
            ) from None
    return np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)


def sample_values(name: str, samples: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Per-example values whose mean is metric ``name`` (the input of paired comparisons).

    Ratio metrics (``memorization_ratio``) are not a mean of per-example values and raise
    ``ValueError``.
    """
    if not metric(name).is_mean:
        raise ValueError(
            f"metric {name!r} is a ratio of counts, not a mean of per-example values"
        )
    return _columns(name, samples)[0]


def aggregate(
    name: str,
    samples: Sequence[Mapping[str, Any]],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> MetricValue:
    """Metric ``name`` over per-sample score dicts, with its confidence interval.

    ``samples`` are the dicts of :func:`~harness.scoring.scores.score_generation` /
    :func:`~harness.scoring.scores.score_loglikelihood` (also as read back from the JSONL
    logs); ``n`` is their number. Rates are means of per-example booleans, with the
    Clopper–Pearson interval (:func:`harness.stats.rate_interval`: it keeps its coverage at 0
    of n and at small n); ``memorization_ratio`` is ``parametric / (parametric + context)``, a
    rate among the examples answered either way. Means of continuous values (log-odds) get a
    percentile-bootstrap interval. A ratio with nothing to divide (no context or parametric
    answer) is NaN, value and interval. No samples give NaN value and CI.

    Raises ``ValueError`` for an unknown metric or a sample lacking the metric's key.
    """
    numerators, denominators = _columns(name, samples)
    n = len(numerators)
    if n == 0:
        low, high = percentile_interval(np.empty(0), confidence)
        return MetricValue(float("nan"), low, high, 0)
    if metric(name).counts:
        successes, trials = int(numerators.sum()), int(denominators.sum())
        low, high = rate_interval(successes, trials, confidence)
        return MetricValue(successes / trials if trials else float("nan"), low, high, n)
    value = float(numerators.mean())
    low, high = percentile_interval(numerators[resample_indices(n, n_resamples, seed)].mean(axis=1), confidence)
    return MetricValue(value, low, high, n)
