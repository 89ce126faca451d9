"""The typed lines of a results folder: a scored sample (:class:`SampleRecord`, a line of
``samples/<checkpoint>/<task>.jsonl``) and a summary value (:class:`SummaryRow`, a line of
``summary.jsonl``). Both also read folders written by earlier versions (a sample's conflict
``outcome`` was once called ``mode``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from harness.scoring import OUTCOMES

#: What makes a sample unique within its (checkpoint, task) file: example id, condition, conjugate.
SampleKey = tuple[str, str, str]


@dataclass
class SampleRecord:
    """One example scored on one checkpoint in one conjugate: a line of a samples file.

    ``answers`` are the spellings scoring accepted, per role; ``scores`` the per-example
    scores of :mod:`harness.scoring` (everything the summary is computed from); ``output`` is
    the greedy generation and ``loglikelihoods`` each role's continuation score, when the
    task was scored that way. ``truncated`` is set when the prompt was cut from the left to
    fit the model's window (``--truncate left``). ``scorer`` is the version of the scoring rules
    the scores were computed by (:data:`harness.scoring.SCORER_VERSION`; None: before versions).
    """

    id: str
    condition: str
    conjugate: str
    prompt: str
    answers: dict[str, list[str]]
    scores: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    loglikelihoods: dict[str, dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None
    truncated: bool | None = None
    scorer: int | None = None

    @property
    def key(self) -> SampleKey:
        return (str(self.id), str(self.condition), str(self.conjugate))

    def to_dict(self) -> dict[str, Any]:
        """The JSON line (fields that are None are left out)."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SampleRecord":
        known = {f.name for f in fields(cls)}
        values = {name: data[name] for name in known if name in data}
        scores = dict(values.get("scores") or {})
        if "outcome" not in scores and scores.get("mode") in OUTCOMES:  # folders of earlier versions
            scores["outcome"] = scores.pop("mode")
        values["scores"] = scores
        values["id"] = str(values["id"])
        return cls(**values)


@dataclass(frozen=True)
class SummaryRow:
    """One metric of one (checkpoint, task, condition, conjugate, mode): a line of summary.jsonl.

    ``mode`` is the scoring mode (``generate`` or ``loglikelihood``); ``value``, ``ci_low``
    and ``ci_high`` are None where the metric is undefined (a ratio with nothing to divide);
    ``n_truncated`` of the ``n`` samples had their prompt cut to fit the window.
    """

    checkpoint: str
    step: int | None
    task: str
    task_version: int | None
    task_hash: str | None
    condition: str
    conjugate: str
    mode: str
    metric: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    n_truncated: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SummaryRow":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    @classmethod
    def of(cls, value: Any, **where: Any) -> "SummaryRow":
        """A row for a :class:`harness.stats.MetricValue`; NaN becomes None (strict JSON)."""
        numbers = {name: None if isinstance(number, float) and math.isnan(number) else number
                   for name, number in asdict(value).items()}
        return cls(**where, **numbers)
