"""Scoring: per-example scores (:mod:`harness.scoring.scores`) and the metrics aggregated from
them with their confidence intervals (:mod:`harness.scoring.metrics`, one table of metrics)."""

from harness.scoring.metrics import METRICS, Metric, aggregate, metric, metric_names, sample_values
from harness.scoring.scores import (
    CONTAINS,
    GENERATE,
    LOGLIKELIHOOD,
    MATCHES,
    OUTCOMES,
    PREFIX,
    RAW_PREFIX,
    SCORING_MODES,
    SCORER_VERSION,
    score_generation,
    score_loglikelihood,
)

__all__ = ["CONTAINS", "GENERATE", "LOGLIKELIHOOD", "MATCHES", "METRICS", "Metric", "OUTCOMES", "PREFIX",
           "RAW_PREFIX", "SCORING_MODES", "aggregate", "metric", "metric_names", "sample_values",
           "score_generation", "score_loglikelihood", "SCORER_VERSION"]
