"""Prompts that do not fit the model's window, found before a checkpoint is evaluated.

An engine given a prompt longer than its window cuts it from the left, and the prompt's start
— often the context the probe is about — is lost without a trace in the numbers. So a run
measures every pending prompt against the window first (:func:`overflows`) and refuses to
start (:func:`refusal`) unless the user asked for left truncation (``--truncate left``), in
which case the affected samples are marked ``truncated`` and counted in the summary.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from harness.backends import tokens as tk
from harness.errors import RunError
from harness.sweep.plan import WorkItem
from harness.tasks.prompts import continuation_for, loglikelihood_roles
from harness.scoring import GENERATE, LOGLIKELIHOOD

#: How many examples a refusal names per task.
SHOWN = 5


@dataclass(frozen=True)
class Overflow:
    """One work item whose prompt does not fit: ``tokens`` needed against ``window``."""

    item: WorkItem
    mode: str
    tokens: int
    window: int


def overflows(items: Sequence[WorkItem], prompts: Sequence[str], tokenizer: Any,
              generation_window: int | None, scoring_window: int | None) -> dict[int, Overflow]:
    """The items (by index) that do not fit: a generation prompt plus its new tokens longer
    than ``generation_window``, or a prompt plus a scored continuation longer than
    ``scoring_window``. A window of None fits everything."""
    found: dict[int, Overflow] = {}
    for index, (item, prompt) in enumerate(zip(items, prompts)):
        if GENERATE in item.modes and generation_window is not None:
            needed = (len(tk.encode_prompt(tokenizer, prompt, add_bos=item.task.config.prompt.add_bos))
                      + item.task.config.scoring.max_new_tokens)
            if needed > generation_window:
                found[index] = Overflow(item, GENERATE, needed, generation_window)
                continue
        if LOGLIKELIHOOD in item.modes and scoring_window is not None:
            answers = item.rendered.answers
            needed = max(len(tk.encode_pair(tokenizer, prompt, continuation_for(prompt, answers[role][0]),
                                            add_bos=item.task.config.prompt.add_bos).ids)
                         for role in loglikelihood_roles(answers))
            if needed > scoring_window:
                found[index] = Overflow(item, LOGLIKELIHOOD, needed, scoring_window)
    return found


def refusal(found: dict[int, Overflow], checkpoint_label: str) -> RunError:
    """The error that stops a run whose prompts do not fit, naming each task's file, example
    ids and lengths, and the ways on."""
    by_task: dict[str, list[Overflow]] = defaultdict(list)
    for overflow in found.values():
        by_task[str(overflow.item.task.path or overflow.item.task.name)].append(overflow)
    parts = []
    for where, items in by_task.items():
        shown = ", ".join(f"{o.item.rendered.example.id!r} ({o.item.rendered.conjugate}, {o.mode}: "
                          f"{o.tokens} tokens)" for o in items[:SHOWN])
        more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
        parts.append(f"{where}: {len(items)} prompt(s) longer than the window of {items[0].window} tokens: "
                     f"{shown}{more}")
    return RunError(f"checkpoint {checkpoint_label}: " + "; ".join(parts)
                    + ". Nothing was evaluated on it. Raise --max-model-len if the model allows it, leave the "
                    "task out, or pass --truncate left to cut prompts from the left (their samples are marked)")
