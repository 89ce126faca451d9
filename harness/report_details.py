"""The report's item-level sections: transitions between the peak and the last checkpoint,
sample prompts and outputs, and the run's settings.

The charts say how the rates moved; these sections let a reader check what moved: which
items went from the context's answer to the remembered one, what the model was shown, what
it wrote, and with which settings the run was made. :mod:`harness.report` places them.
"""

from __future__ import annotations

import json
import random
from typing import Any

from harness.analysis import RunResults
from harness.errors import ReportError
from harness.html import escape as _e
from harness.html import table as _table
from harness.items import Transitions, states, transition_rows, transitions

#: How many outputs each task shows in the samples section.
OUTPUTS_SHOWN = 3
_CUT = 400  # characters of an output or prompt excerpt in a table cell


def _excerpt(text: str | None, limit: int = _CUT) -> str:
    if text is None:
        return ""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def _has_transitions(run: RunResults, task: str) -> bool:
    metric = run.headline(task)
    try:
        states(metric or "")
    except ReportError:
        return False
    return len(run.checkpoints) > 1


def transitions_html(result: Transitions) -> str:
    """One task's transition matrix, its McNemar test and the items that flipped."""
    header = (f"{result.before.where} \\ {result.after.where}", *result.states)
    matrix = _table(header, [[_e(cell) for cell in row] for row in transition_rows(result)])
    verdict = (f"<p>{result.lost} of the {result.n} items lost their {_e(result.metric)} between "
               f"{_e(result.before.where)} and {_e(result.after.where)} and {result.gained} gained it: "
               f"p = {result.p_value:.3g} ({_e(result.method)}).</p>\n")
    flips = ""
    if result.flips:
        rows = [[_e(flip.id), f"<pre>{_e(_excerpt(flip.prompt))}</pre>", _e(f"{flip.before_state} → {flip.after_state}"),
                 f"<pre>{_e(_excerpt(flip.before))}</pre>", f"<pre>{_e(_excerpt(flip.after))}</pre>"]
                for flip in result.flips]
        flips = (f"<p>{len(result.flips)} of the {result.lost + result.gained} items that changed (those that "
                 "lost it first, drawn with a fixed seed):</p>\n"
                 + _table(("item", "prompt (its end)", "state", f"output at {result.before.where}",
                           f"output at {result.after.where}"), rows))
    return (f"<h3>{_e(result.task)} <span class=\"meta\">({_e(result.metric)}, {_e(result.condition)}, "
            f"{_e(result.conjugate)})</span></h3>\n" + matrix + verdict + flips)


def transitions_section(run: RunResults) -> str:
    """Per task with a yes/no headline metric: the transitions from its peak to the last checkpoint."""
    parts = []
    for task in run.tasks:
        if not _has_transitions(run, task):
            continue
        try:
            result = transitions(run, task)
        except ReportError as error:
            parts.append(f"<h3>{_e(task)}</h3>\n<p class=\"meta\">{_e(error)}</p>\n")
            continue
        if result.before.label == result.after.label:
            parts.append(f"<h3>{_e(task)}</h3>\n<p class=\"meta\">The peak of {_e(result.metric)} is the last "
                         "checkpoint: no fall to break down.</p>\n")
            continue
        parts.append(transitions_html(result))
    if not parts:
        return ""
    return ("<section><h2>Items that changed between the peak and the last checkpoint</h2>\n"
            "<p>Each item's state at the peak of the task's headline metric (rows) and at the last checkpoint "
            "(columns), over the items scored at both. A fall of context reliance whose items moved to "
            "<em>parametric</em> is the model answering from memory instead; a move to <em>neither</em> is it "
            "no longer giving either answer.</p>\n" + "".join(parts) + "</section>\n")


def samples_section(run: RunResults, *, seed: int = 0) -> str:
    """Per task: one prompt exactly as the model saw it, and a few outputs at the first and
    last checkpoints."""
    first, last = run.checkpoints[0], run.checkpoints[-1]
    parts = []
    for task in run.tasks:
        metric = run.headline(task)
        conditions = run.conditions(task, metric) if metric else []
        conjugate = run.base_conjugate(task)
        try:
            early = {r.id: r for r in run.folder.read_samples(first.label, task)}
            late = {r.id: r for r in run.folder.read_samples(last.label, task)}
        except ValueError as error:
            parts.append(f"<h3>{_e(task)}</h3>\n<p class=\"meta\">{_e(error)}</p>\n")
            continue
        chosen = sorted(key for key, record in late.items() if record.conjugate == conjugate
                        and (not conditions or record.condition == conditions[0]))
        if not chosen:
            continue
        shown = random.Random(seed).sample(chosen, min(OUTPUTS_SHOWN, len(chosen)))
        example = late[shown[0]]
        rows = [[_e(key), _e(late[key].condition),
                 _e("; ".join(f"{role}: {' | '.join(s)}" for role, s in late[key].answers.items())),
                 f"<pre>{_e(_excerpt(early[key].output if key in early else None))}</pre>",
                 f"<pre>{_e(_excerpt(late[key].output))}</pre>"] for key in shown]
        parts.append(f"<h3>{_e(task)}</h3>\n<p class=\"meta\">The prompt of {_e(example.id)} ({_e(example.condition)}, "
                     f"{_e(example.conjugate)}), as the model saw it:</p>\n<pre>{_e(example.prompt)}</pre>\n"
                     + _table(("item", "condition", "answers accepted", f"output at {first.where}",
                               f"output at {last.where}"), rows))
    if not parts:
        return ""
    return "<section><h2>Prompts and outputs</h2>\n" + "".join(parts) + "</section>\n"


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def settings_section(run: RunResults) -> str:
    """The run's settings from run.json: its config, its engine, its packages, its command."""
    record = run.record
    if not record:
        return ""
    config = record.get("config", {})
    rows = [[_e(key), f"<code>{_e(_cell(value))}</code>"] for key, value in config.items()
            if value not in (None, [], {}, False)]
    parts = ["<section><h2>Settings</h2>\n", _table(("setting", "value"), rows)]
    if record.get("engine"):
        parts.append(f"<p>engine: <code>{_e(_cell(record['engine']))}</code></p>\n")
    if record.get("packages"):
        parts.append("<p class=\"meta\">" + _e(", ".join(f"{k} {v}" for k, v in record["packages"].items())) + "</p>\n")
    if record.get("command_line"):
        parts.append(f"<pre>{_e(' '.join(record['command_line']))}</pre>\n")
    return "".join(parts) + "</section>\n"
