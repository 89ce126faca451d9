"""The work of one checkpoint on one engine: the items left to score (:class:`Job`), sent to the
engine a chunk at a time (:func:`score_job`) and scored into sample lines (:func:`sample_record`).

A chunk is one engine call and one write to disk (:func:`chunk_size`), so a killed sweep loses
at most the chunk in flight. Unless the user fixes ``batch_size``, chunks are sized by time
(:class:`Chunking`): a small first one, then as many examples as the engine scores in about
:data:`CHUNK_SECONDS`, so that the progress bar moves and results reach disk every few seconds
on a slow CPU as on a fast GPU. The single-engine sweep and the Ray workers score the same way.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

from harness.backends.api import Backend, ContinuationScore
from harness.checkpoints import Checkpoint
from harness.results import SampleRecord
from harness.scoring import GENERATE, LOGLIKELIHOOD, SCORER_VERSION, score_generation, score_loglikelihood
from harness.sweep.config import RunConfig
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


#: Seconds an engine call should take when the user sets no ``batch_size``: the progress bar
#: moves, and results reach disk, about this often.
CHUNK_SECONDS = 5.0
#: Examples in the first call of a checkpoint, before its engine's speed is measured.
FIRST_CHUNK = 16


@dataclass(frozen=True)
class Chunking:
    """How many examples each engine call of a job gets: ``fixed`` when set, else :data:`FIRST_CHUNK`
    first and then what the engine scored in ``seconds`` at the rate of the last call, between
    ``FIRST_CHUNK`` and ``most``."""

    most: int
    fixed: int | None = None
    seconds: float = CHUNK_SECONDS

    def first(self) -> int:
        return self.fixed or min(FIRST_CHUNK, self.most)

    def next(self, done: int, seconds: float) -> int:
        """The size of the call after one that scored ``done`` examples in ``seconds``."""
        if self.fixed:
            return self.fixed
        return max(min(int(done / max(seconds, 1e-6) * self.seconds), self.most), self.first())


def chunk_size(config: RunConfig) -> Chunking:
    """Examples per engine call (and per write to disk): ``batch_size`` when set, else sized by
    time (:class:`Chunking`) up to ``flush_every``; each engine batches a call as it sees fit."""
    return Chunking(most=config.batch_size or config.flush_every, fixed=config.batch_size, seconds=CHUNK_SECONDS)


def score_job(backend: Backend, items: Sequence[WorkItem], prompts: Sequence[str],
              chunking: Chunking) -> Iterator[tuple[range, list[SampleRecord]]]:
    """Score ``items`` on the loaded ``backend``, a chunk at a time (``chunking``): each chunk's
    item indices and finished (not yet completed with earlier lines) sample records."""
    start, size = 0, chunking.first()
    while start < len(items):
        indices = range(start, min(start + size, len(items)))
        began = time.perf_counter()
        records = score_batch(backend, [items[i] for i in indices], [prompts[i] for i in indices])
        size = chunking.next(len(indices), time.perf_counter() - began)
        yield indices, records
        start = indices.stop
