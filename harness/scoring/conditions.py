"""Metrics of the field that combine an item set's context conditions into one number.

The metric table (:mod:`harness.scoring.metrics`) reports one number per condition; these two
are defined by their authors over several conditions at once, so they are functions of the
per-condition values (docs/metrics.md gives each with its source):

- :func:`situated_faithfulness` — SF = (Acc_true + Acc_false) / 2 (Huang et al., *To Trust or
  Not to Trust?*, ICLR 2025, arXiv:2410.14675): the accuracy with a correct context and the
  accuracy with a false one, where "accurate" means the true answer either way, so a model
  scores well only by following a right context and resisting a wrong one.
- :func:`binary_context_utilisation` — BCU (Hagström et al., *CUB*, arXiv:2505.16518, §3.3):
  per context type, the share of items where the model's first predicted token is the token
  the context promotes (gold and conflicting contexts) or, for irrelevant contexts, the token
  it predicts without any context (its memory token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from harness.stats import MetricValue, percentile_interval, rate_interval, resample_indices

#: CUB's context types: the two a model should use, and the one it should ignore.
GOLD = "gold"
CONFLICTING = "conflicting"
IRRELEVANT = "irrelevant"
CONTEXT_TYPES = (GOLD, CONFLICTING, IRRELEVANT)


def situated_faithfulness(correct_with_true: Sequence[bool], correct_with_false: Sequence[bool], *,
                          n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> MetricValue:
    """SF = (Acc_true + Acc_false) / 2 over per-item correctness (module docstring).

    ``correct_with_true``: whether each answer given a correct context is the true answer;
    ``correct_with_false``: the same given a false context. The interval is a percentile
    bootstrap resampling each set of items on its own (the two sets may differ in size);
    ``n`` counts both. Either set empty: NaN.
    """
    true, false = np.asarray(correct_with_true, dtype=float), np.asarray(correct_with_false, dtype=float)
    if true.size == 0 or false.size == 0:
        return MetricValue(float("nan"), float("nan"), float("nan"), int(true.size + false.size))
    value = (true.mean() + false.mean()) / 2
    resampled = (true[resample_indices(true.size, n_resamples, seed)].mean(axis=1)
                 + false[resample_indices(false.size, n_resamples, seed + 1)].mean(axis=1)) / 2
    low, high = percentile_interval(resampled, confidence)
    return MetricValue(float(value), low, high, int(true.size + false.size))


def situated_faithfulness_of_samples(agreeing: Sequence[Mapping[str, Any]], conflicting: Sequence[Mapping[str, Any]],
                                     **options: Any) -> MetricValue:
    """SF from the harness's per-sample scores of one knowledge-conflict task: Acc_true is
    ``correct`` on its ``agreeing`` items (the target is the true answer), Acc_false is
    ``hit_parametric`` on its ``conflicting`` ones (the true answer despite the false context)."""
    return situated_faithfulness([bool(s["correct"]) for s in agreeing],
                                 [bool(s["hit_parametric"]) for s in conflicting], **options)


@dataclass(frozen=True)
class FirstTokens:
    """One CUB item as BCU reads it: its context type, the model's first predicted token with
    the context, the first token of the answer the context promotes, and the model's first
    predicted token without any context (its memory token)."""

    context_type: str
    predicted: str
    context_token: str
    memory_token: str


def binary_context_utilisation(items: Sequence[FirstTokens], confidence: float = 0.95) -> dict[str, MetricValue]:
    """BCU per context type (module docstring), with Clopper–Pearson intervals, plus ``mean``:
    the unweighted mean over the types present (the average CUB tunes methods on).

    An item scores 1 when ``predicted == context_token`` for gold and conflicting contexts,
    and when ``predicted == memory_token`` for irrelevant ones; tokens compare exactly.
    """
    hits: dict[str, list[bool]] = {}
    for item in items:
        if item.context_type not in CONTEXT_TYPES:
            raise ValueError(f"unknown context type {item.context_type!r}; expected one of {CONTEXT_TYPES}")
        expected = item.memory_token if item.context_type == IRRELEVANT else item.context_token
        hits.setdefault(item.context_type, []).append(item.predicted == expected)
    result = {}
    for context_type in CONTEXT_TYPES:
        if context_type in hits:
            successes, n = sum(hits[context_type]), len(hits[context_type])
            low, high = rate_interval(successes, n, confidence)
            result[context_type] = MetricValue(successes / n, low, high, n)
    if result:
        result["mean"] = MetricValue(float(np.mean([v.value for v in result.values()])), float("nan"), float("nan"),
                                     sum(v.n for v in result.values()))
    return result
