"""What a results folder is about, and whether another invocation may write into it.

A folder holds one run: the checkpoints of one source (a run folder, a list of checkpoints, a
model and its base) evaluated on one plan (tasks, limit, seed, modes, conjugates, format). Its
``run.json`` records every invocation that wrote into it (:class:`Invocation`). Running the same
command again resumes. Another source or plan would merge two curves into one summary, which an
inversion test would then read as one trajectory, so it is refused unless the user asks for it
(``--append``). The prompt format and the tasks' content can never change within a folder: the
samples would not be comparable.

Checkpoint labels are kept stable across invocations: a checkpoint whose folder was evaluated
before under another label (labels depend on which checkpoints are listed together) keeps that
label (:func:`stable_label`), so the same weights never appear twice.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from harness.checkpoints import Checkpoint
from harness.errors import RunError
from harness.results import RunDirectory, RunRecord

#: The settings that make a folder's plan: samples of another plan are other examples.
PLAN_SETTINGS = ("tasks", "limit", "seed", "modes", "conjugates", "format")
#: The settings that say where the checkpoints come from.
SOURCE_SETTINGS = ("checkpoints", "model", "base_model")


def source_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """Where a run's checkpoints come from (its ``config``'s source settings), local paths made
    absolute so that the same folder named two ways is one source."""
    return {name: _absolute(config.get(name)) for name in SOURCE_SETTINGS}


def plan_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a run evaluates on each checkpoint (its ``config``'s plan settings)."""
    return {name: config.get(name) for name in PLAN_SETTINGS}


def check_resume(run: RunDirectory, previous: RunRecord, record: RunRecord, *, append: bool) -> None:
    """Refuse to write ``record``'s invocation into a folder that ``previous`` describes when the
    results would not belong together (module docstring); :class:`RunError` naming the folder,
    the setting and both values."""
    for name, digest in record.task_hashes.items():
        old = previous.task_hashes.get(name)
        if old is not None and old != digest:
            raise RunError(f"{run.path}: task {name!r} changed since this run started (hash {old} -> {digest});"
                           " use a new --output")
    earlier_formats = {entry["plan"].get("format") for entry in _invocations(previous)}
    earlier_formats.discard(None)
    if earlier_formats and record.config["format"] not in earlier_formats:
        raise RunError(f"{run.path}: this run used --format {sorted(earlier_formats)[0]}; resuming with "
                       f"{record.config['format']} would mix prompts. Use a new --output")
    if append:
        return
    earlier = [(i["source"], i["plan"]) for i in _invocations(previous)]
    source, plan = source_of(record.config), plan_of(record.config)
    if (source, plan) in earlier:
        return
    first_source, first_plan = earlier[0]
    what = "checkpoint source" if source != first_source else "plan"
    first, now = (first_source, source) if source != first_source else (first_plan, plan)
    differs = [f"{name}: {_show(first[name])} -> {_show(now[name])}" for name in now if now[name] != first[name]]
    raise RunError(
        f"{run.path}: this folder holds another {what} ({'; '.join(differs)}); its results would be "
        f"mixed into one curve. Write to a new --output, or pass --append to add them to this folder on purpose")


def invocation(record: RunRecord) -> dict[str, Any]:
    """The run.json entry of the invocation ``record`` describes: its source and plan (paths
    resolved now, while they exist), settings, command line and start."""
    return {"source": source_of(record.config), "plan": plan_of(record.config), "config": record.config,
            "command_line": record.command_line, "started": record.started}


def stable_label(record: RunRecord, checkpoint: Checkpoint) -> Checkpoint:
    """``checkpoint`` under the label its folder (at its step) was evaluated under before, if
    any (module docstring); unchanged otherwise."""
    # The step too: a live model in training keeps one name while its weights move on.
    where = (checkpoint.step, _location(checkpoint.model, checkpoint.revision, checkpoint.adapter))
    for entry in record.checkpoints:
        if entry.label != checkpoint.label and (entry.step, _location(entry.model, entry.revision, entry.adapter)) == where:
            return dataclasses.replace(checkpoint, label=entry.label)
    return checkpoint


def _invocations(record: RunRecord) -> list[dict[str, Any]]:
    """The folder's invocations; a folder written before they were recorded has one: its config."""
    return record.invocations or [invocation(record)]


def _location(model: str, revision: str | None, adapter: str | None) -> tuple:
    return (_absolute(model), revision, _absolute(adapter))


def _absolute(value: Any) -> Any:
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    if isinstance(value, str) and os.path.exists(value):
        return str(Path(value).resolve())
    return value


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
