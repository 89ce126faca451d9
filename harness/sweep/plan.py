"""The plan of a run: every (task, example, conjugate) scored on each checkpoint.

A :class:`WorkItem` is one example rendered for one conjugate with the scoring modes it gets;
:func:`plan` lists them for a run's tasks and settings, the same for every checkpoint.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from harness.seeding import seeded_random
from harness.examples import Example
from harness.tasks.prompts import RenderedExample, render
from harness.tasks import Task

log = logging.getLogger("harness")

if TYPE_CHECKING:  # pragma: no cover
    from harness.sweep.config import RunConfig


@dataclass(frozen=True)
class WorkItem:
    """One example rendered for one conjugate, waiting to be scored on a checkpoint."""

    task: Task
    rendered: RenderedExample
    modes: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        """The key of its sample line (:attr:`harness.results.SampleRecord.key`)."""
        example = self.rendered.example
        return (str(example.id), str(example.condition), str(self.rendered.conjugate))


def task_modes(task: Task, config: RunConfig) -> tuple[str, ...]:
    """The scoring modes the task declares that the run keeps."""
    return tuple(m for m in task.config.scoring.modes if config.modes is None or m in config.modes)


def task_conjugates(task: Task, config: RunConfig) -> list[str]:
    """The conjugates the task declares that the run keeps."""
    if config.conjugates is None:
        return list(task.config.conjugates)
    return [c for c in config.conjugates if c in task.config.conjugates]


def limited(examples: Sequence[Example], limit: int | float | None, *, seed: int = 0, task: str = "") -> list[Example]:
    """A seeded sample of each condition's examples, kept in their order: ``limit`` of them (an
    int), or that share of them (a float below 1, at least one). The sample is drawn with
    :func:`harness.seeding.seeded_random` keyed by the seed, the task and the condition,
    so two tasks built from the same facts do not share their first N by accident."""
    if limit is None:
        return list(examples)
    by_condition: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        by_condition[example.condition].append(index)
    chosen: set[int] = set()
    for condition, indices in by_condition.items():
        count = limit if isinstance(limit, int) else max(1, round(limit * len(indices)))
        if count >= len(indices):
            chosen.update(indices)
        else:
            chosen.update(seeded_random(seed, "limit", task, condition).sample(indices, count))
    return [example for index, example in enumerate(examples) if index in chosen]


def plan(tasks: Sequence[Task], config: RunConfig) -> list[WorkItem]:
    """Every (task, example, conjugate) the run scores on each checkpoint.

    An example written in a conjugate (``Example.conjugate``) is scored under that one only;
    ``config.limit`` caps each condition of each conjugate, so a file of translated items
    keeps its first ``limit`` items of every language.
    """
    items = []
    for task in tasks:
        modes = task_modes(task, config)
        if not modes:
            continue
        conjugates = task_conjugates(task, config)
        if not conjugates:
            log.warning("%s: left out, it has none of the conjugates asked for (%s; it has %s)", task.name,
                        ", ".join(config.conjugates or []), ", ".join(task.config.conjugates))
        for conjugate in conjugates:
            written_in = [e for e in task.examples if e.conjugate in (None, conjugate)]
            for example in limited(written_in, config.limit, seed=config.seed, task=task.name):
                items.append(WorkItem(task, render(task, example, conjugate), modes))
    return items
