"""The work of one checkpoint on one engine: the items left to score (:class:`Job`), sent to the
engine a chunk at a time (:func:`score_job`) and scored into sample lines (:func:`sample_record`).

A chunk is one engine call and one write to disk (:func:`chunk_size`), so a killed sweep loses
at most the chunk in flight. The single-engine sweep and the Ray workers score the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Sequence

from harness.backends.api import VLLM, Backend, ContinuationScore
from harness.checkpoints import Checkpoint
from harness.results import SampleRecord
from harness.scoring import GENERATE, LOGLIKELIHOOD, SCORER_VERSION, score_generation, score_loglikelihood
from harness.sweep.config import DEFAULT_BATCH_SIZE, RunConfig
from harness.sweep.plan import WorkItem
from harness.tasks.prompts import generation_request, loglikelihood_request, loglikelihood_roles


def sample_record(item: WorkItem, prompt: str, output: str | None, scores_by_role: dict | None) -> SampleRecord:
    """The sample line of one work item: its prompt, its output and/or log-likelihoods, scored."""
    example = item.rendered.example
    record = SampleRecord(id=example.id, condition=example.condition, conjugate=item.rendered.conjugate,
                          prompt=prompt, answers={r: list(s) for r, s in item.rendered.answers.items()},
                          meta=dict(example.meta) or None, output=output,
                          loglikelihoods=None if scores_by_role is None
                          else {r: dataclasses.asdict(s) for r, s in scores_by_role.items()})
    return _scored(record, item)


def _scored(record: SampleRecord, item: WorkItem) -> SampleRecord:
    """``record`` with its scores computed from its output and log-likelihoods by today's rules."""
    scoring = item.task.config.scoring
    scores: dict = {}
    if record.output is not None:
        scores.update(score_generation(item.rendered.answers, record.output, match=scoring.match,
                                       case_sensitive=scoring.case_sensitive))
    if record.loglikelihoods is not None:
        by_role = {role: ContinuationScore(**score) for role, score in record.loglikelihoods.items()}
        scores.update(score_loglikelihood(item.rendered.answers, by_role))
    return dataclasses.replace(record, scores=scores, scorer=SCORER_VERSION)


def rescored(record: SampleRecord, item: WorkItem | None) -> SampleRecord:
    """``record`` itself when today's scoring rules scored it (or its item is not in today's plan);
    else a copy rescored from its stored output and log-likelihoods (no engine call)."""
    if record.scorer == SCORER_VERSION or item is None:
        return record
    return _scored(record, item)


def score_batch(backend: Backend, items: Sequence[WorkItem], prompts: Sequence[str]) -> list[SampleRecord]:
    """Run one batch of work items through the backend and score them (same order)."""
    outputs: list[str | None] = [None] * len(items)
    lls: list[dict | None] = [None] * len(items)
    generate_at = [i for i, item in enumerate(items) if GENERATE in item.modes]
    if generate_at:
        generations = backend.generate([generation_request(items[i].task, prompts[i]) for i in generate_at])
        for i, generation in zip(generate_at, generations):
            outputs[i] = generation.text
    ll_at = [i for i, item in enumerate(items) if LOGLIKELIHOOD in item.modes]
    if ll_at:
        requests = [loglikelihood_request(prompts[i], items[i].rendered.answers,
                                          add_bos=items[i].task.config.prompt.add_bos) for i in ll_at]
        for i, scores in zip(ll_at, backend.loglikelihood(requests)):
            roles = loglikelihood_roles(items[i].rendered.answers)
            lls[i] = dict(zip(roles, scores))
    return [sample_record(item, p, o, s) for item, p, o, s in zip(items, prompts, outputs, lls)]


def has_mode(record: SampleRecord, mode: str) -> bool:
    """Whether ``record`` holds its sample's scores of ``mode`` (generation or log-likelihoods)."""
    return (record.output if mode == GENERATE else record.loglikelihoods) is not None


def merged(earlier: SampleRecord | None, new: SampleRecord) -> SampleRecord:
    """``new`` completed with what an earlier line of the same sample already holds (the
    modes a resume did not have to compute again)."""
    if earlier is None:
        return new
    return dataclasses.replace(
        new, output=new.output if new.output is not None else earlier.output,
        loglikelihoods=new.loglikelihoods if new.loglikelihoods is not None else earlier.loglikelihoods,
        scores={**earlier.scores, **new.scores}, truncated=new.truncated or earlier.truncated,
        scorer=new.scorer)


@dataclass(frozen=True)
class Job:
    """The work left on one checkpoint: its pending items (each with the sample line it
    completes, if any), their formatted prompts, and which of them do not fit the window."""

    checkpoint: Checkpoint
    pending: list[tuple[WorkItem, SampleRecord | None]]
    prompts: list[str]
    truncated: frozenset[int]

    @property
    def items(self) -> list[WorkItem]:
        return [item for item, _ in self.pending]


def chunk_size(config: RunConfig, engine: str) -> int:
    """Examples per engine call (and per write to disk): ``batch_size`` when set; else, for
    vLLM, ``flush_every`` (as many as the engine can use at once, while results still reach
    disk that often), for transformers 64 (it batches them further itself)."""
    if config.batch_size is not None:
        return config.batch_size
    return config.flush_every if engine == VLLM else DEFAULT_BATCH_SIZE


def score_job(backend: Backend, items: Sequence[WorkItem], prompts: Sequence[str],
              size: int) -> Iterator[tuple[range, list[SampleRecord]]]:
    """Score ``items`` on the loaded ``backend``, ``size`` at a time: each chunk's item
    indices and finished (not yet completed with earlier lines) sample records."""
    for start in range(0, len(items), size):
        indices = range(start, min(start + size, len(items)))
        yield indices, score_batch(backend, [items[i] for i in indices], [prompts[i] for i in indices])
