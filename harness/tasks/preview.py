"""What ``harness validate`` shows of a task: its sizes and one example rendered exactly as the
model will see it, with the answers scoring accepts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from harness.errors import TaskError
from harness.examples import Example
from harness.tasks.prompts import apply_format, render
from harness.tasks.registry import Task


def describe(task: Task) -> str:
    """The task's name, version, hash, source, sizes, conjugates and scoring, a line each."""
    counts = Counter(e.condition for e in task.examples)
    return "\n".join([
        f"task {task.name} ({task.config.family}), version {task.config.version}, hash {task.content_hash()}",
        f"source: {task.path}",
        f"{len(task.examples)} examples: " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())),
        f"conjugates: {', '.join(task.config.conjugates)}; scoring: {', '.join(task.config.scoring.modes)}"
        f" ({task.config.scoring.match})",
    ])


@dataclass(frozen=True)
class Preview:
    """One example of a task as the model sees it (:func:`preview`)."""

    example: Example
    conjugate: str
    format: str
    prompt: str
    answers: dict[str, tuple[str, ...]]

    def __str__(self) -> str:
        rule = "-" * 60
        lines = [f"example {self.example.id!r} ({self.example.condition}, {self.conjugate}, format {self.format}):",
                 rule, self.prompt, rule]
        return "\n".join(lines + [f"{role}: {' | '.join(spellings)}" for role, spellings in self.answers.items()])


def preview(task: Task, *, conjugate: str | None = None, index: int = 0, fmt: str = "plain",
            tokenizer: Any = None) -> Preview:
    """Example ``index`` of ``task`` in ``conjugate`` (default: the first the task declares,
    so a file of French prompts shows French) and instruction format ``fmt`` (``chat`` needs
    the ``tokenizer`` whose template renders it). :class:`TaskError` naming the task for a
    conjugate it does not list, an index out of range, or a format that cannot be applied."""
    where = task.path or task.name
    conjugate = conjugate or task.config.conjugates[0]
    if conjugate not in task.config.conjugates:
        raise TaskError(f"{where}: conjugates: the task does not list {conjugate!r}"
                        f" (it lists: {', '.join(task.config.conjugates)})")
    # Examples written in a conjugate (a file of translated prompts) render under that one only.
    shown = [e for e in task.examples if e.conjugate in (None, conjugate)]
    if not 0 <= index < len(shown):
        raise TaskError(f"{where}: --index {index}: the task has {len(shown)} examples in "
                        f"{conjugate} (0 to {len(shown) - 1})")
    rendered = render(task, shown[index], conjugate)
    try:
        prompt = apply_format(rendered.prompt, fmt, tokenizer)
    except ValueError as error:
        raise TaskError(f"--format {fmt}: {error}") from None
    return Preview(shown[index], conjugate, fmt, prompt, dict(rendered.answers))
