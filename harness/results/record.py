"""``run.json``: what a results folder is, as one typed record.

:class:`RunRecord` is the only way the harness reads or writes ``run.json``. It holds the
run's settings, every invocation that wrote into the folder (its checkpoint source, plan,
settings, command line, start and end: :mod:`harness.sweep.resume`), the engine, the tasks'
content hashes and versions, one
:class:`CheckpointEntry` per evaluated checkpoint (what it is and how it was served), the
checkpoints skipped and why, the packages, the command line and when the run started and
ended. ``format`` is the version of this layout: :data:`FORMAT` is written; folders written
before the record was typed (no ``format`` key, format 1) load unchanged, and a folder
written by a newer harness is refused with a message saying so.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from harness.errors import RunError

#: The run.json layout this harness writes. 1: before ``format`` was recorded; 2: before
#: invocations, training progress and tensor-wise full fingerprints were recorded.
FORMAT = 3


def now() -> str:
    """The time of day as run.json records it (UTC, seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class CheckpointEntry:
    """One evaluated checkpoint: its label and step, where its weights are (``model``, hub
    ``revision``, ``adapter``), the down-scaled ``variant`` it is (a summary of its
    variant.json), and its identity as evaluated (:class:`harness.checkpoints.identity.
    CheckpointIdentity`'s fields: ``weights``, ``engine``, ``engine_version``, ``dtype``,
    ``device``, ``full_weights``); ``epoch`` and ``tokens`` (input tokens seen) as the
    checkpoint's trainer state said when it was evaluated. None where not known or not recorded."""

    label: str
    step: int | None = None
    model: str = ""
    revision: str | None = None
    adapter: str | None = None
    variant: dict[str, Any] | None = None
    weights: str | None = None
    engine: str | None = None
    engine_version: str | None = None
    dtype: str | None = None
    device: str | None = None
    full_weights: str | None = None
    epoch: float | None = None
    tokens: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CheckpointEntry":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def to_dict(self) -> dict[str, Any]:
        entry = asdict(self)
        if entry["variant"] is None:  # only down-scaled variants have one
            del entry["variant"]
        return entry

    @property
    def folder(self) -> str:
        """Where the checkpoint's own files are: the adapter's folder, else the model's."""
        return self.adapter or self.model


@dataclass
class RunRecord:
    """The contents of ``run.json`` (module docstring)."""

    config: dict[str, Any] = field(default_factory=dict)
    invocations: list[dict[str, Any]] = field(default_factory=list)
    engine: str | None = None
    task_hashes: dict[str, str] = field(default_factory=dict)
    task_versions: dict[str, int | None] = field(default_factory=dict)
    #: per task, whether its prompts got the tokenizer's BOS (the task's ``prompt.add_bos``)
    task_add_bos: dict[str, bool] = field(default_factory=dict)
    checkpoints: list[CheckpointEntry] = field(default_factory=list)
    skipped_checkpoints: dict[str, str] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    command_line: list[str] = field(default_factory=list)
    started: str | None = None
    finished: str | None = None
    #: what the engine did (starts, reloads, canary checks); an engine shared by several runs counts all
    engine_stats: dict[str, Any] | None = None
    #: each Ray worker's resident memory after each checkpoint it evaluated
    workers: list[dict[str, Any]] | None = None
    #: an adaptive schedule's account: checkpoints in all, evaluated, left out, why it stopped (harness.sweep.schedule)
    schedule: dict[str, Any] | None = None
    format: int = FORMAT

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "run.json") -> "RunRecord":
        """The record of a parsed run.json; a layout newer than this harness's is a
        :class:`RunError` naming ``where``."""
        version = data.get("format", 1)
        if not isinstance(version, int) or version > FORMAT:
            raise RunError(f"{where}: format {version!r} was written by a newer ift-harness (this one reads up to "
                           f"{FORMAT}); upgrade to read it")
        known = {f.name for f in fields(cls)}
        values = {name: value for name, value in data.items() if name in known}
        values["checkpoints"] = [CheckpointEntry.from_dict(entry) for entry in data.get("checkpoints", [])]
        if version < 3:  # its full hashes were of whole files (sha256), not comparable with today's
            for entry in values["checkpoints"]:
                entry.full_weights = None
        values["format"] = version
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written (the format this harness writes; unset optional parts left out)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["format"] = FORMAT
        data["checkpoints"] = [entry.to_dict() for entry in self.checkpoints]
        return {name: value for name, value in data.items()
                if value is not None or name not in ("finished", "engine_stats", "workers", "schedule")}

    def entry(self, label: str) -> CheckpointEntry | None:
        """The entry of the checkpoint labelled ``label``, None when it was not evaluated."""
        return next((entry for entry in self.checkpoints if entry.label == label), None)

    def put(self, entry: CheckpointEntry) -> None:
        """Record ``entry``, in place of an earlier entry of its label."""
        for index, old in enumerate(self.checkpoints):
            if old.label == entry.label:
                self.checkpoints[index] = entry
                return
        self.checkpoints.append(entry)
