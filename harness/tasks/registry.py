"""Tasks ready to run, and the registry that finds them.

A :class:`Task` is a validated config (:mod:`harness.tasks.config`), where it was defined,
and its examples, built or read on first use (:func:`load_examples`) and checked against its
prompt (:func:`check_examples`). :class:`TaskRegistry` finds every task YAML file in the
built-in folder and in the user's ``--include-path`` folders; a data file is a task too
(:func:`task_from_data_file`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from harness.conjugates import CONJUGATES, ENGLISH, TRANSFORMS, TRANSLATIONS
from harness.errors import TaskError, did_you_mean
from harness.examples import Example
from harness.tasks.config import HASHED_WHEN_SET, Prompt, Scoring, Source, TaskConfig, parse_task
from harness.tasks.records import DATA_SUFFIXES, RECORD_FORMATS, detect_format, examples_from_records, read_records
from harness.tasks.templates import placeholders


@dataclass
class Task:
    """A task ready to run: its config, where it was defined, and (lazily) its examples."""

    config: TaskConfig
    path: Path | None = None
    _examples: list[Example] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    def renamed(self, name: str) -> "Task":
        """This task under another name (its examples kept); the name is part of its hash."""
        return Task(dataclasses.replace(self.config, name=name), self.path, self._examples)

    def reading(self, path: Path) -> "Task":
        """This task with its examples read from a local file in its source's layout instead
        of its source (a copy of a hub dataset: JSON, JSONL, CSV or Parquet): same prompt,
        conditions and scoring."""
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise TaskError(f"--tasks {self.name}={path}: a local copy is a data file ({', '.join(DATA_SUFFIXES)})")
        if not path.is_file():
            raise TaskError(f"--tasks {self.name}={path}: no such file")
        source = Source(file=str(path.resolve()), format=self.config.source.format)
        return Task(dataclasses.replace(self.config, source=source), self.path)

    @property
    def source(self) -> str:
        """Where the examples come from, in words: ``builder:NAME``, ``file:PATH``, ``hf:...``."""
        source = self.config.source
        if source.builder is not None:
            return f"builder:{source.builder}"
        return f"file:{source.file}" if source.file is not None else str(source.hf)

    @property
    def examples(self) -> list[Example]:
        """The task's examples, filtered to its conditions; built or read on first use."""
        if self._examples is None:
            examples = load_examples(self.config.source, self.path)
            if self.config.conditions:
                examples = [e for e in examples if e.condition in self.config.conditions]
            check_examples(self, examples)
            self._examples = examples
        return self._examples

    @property
    def conditions(self) -> list[str]:
        """Declared conditions, or those present in the data when none are declared."""
        return self.config.conditions or sorted({e.condition for e in self.examples})

    def content_hash(self) -> str:
        """A hash of what the task is: its config and every example (12 hex digits).

        Results record it so runs made on different task content are never mixed.
        """
        payload = {
            "config": _hashed(self.config),
            "examples": [e.to_dict() for e in self.examples],
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]



def _hashed(value: Any) -> Any:
    """``dataclasses.asdict``, less the options marked ``HASHED_WHEN_SET`` left at their default."""
    if dataclasses.is_dataclass(value):
        return {f.name: _hashed(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get(HASHED_WHEN_SET) and getattr(value, f.name) == f.default)}
    if isinstance(value, (list, tuple)):
        return [_hashed(item) for item in value]
    if isinstance(value, dict):
        return {key: _hashed(item) for key, item in value.items()}
    return value


def prompt_source(task: Task, example: Example, conjugate: str) -> tuple[str, str, Mapping[str, str]]:
    """The language of the template ``example`` is rendered with under ``conjugate``, that
    template, and the field values that fill it.

    A translation conjugate fills the task's template in that language with the example's
    localised fields. An example already written in a conjugate (``Example.conjugate``, only
    ever rendered under that one) fills the task's template of that language when there is
    one, else the English template, with its own fields. Otherwise: the English template and
    fields (the programmatic conjugates rewrite the result).
    """
    prompt = task.config.prompt
    if example.conjugate is not None:
        language = conjugate if conjugate in prompt.translations else ENGLISH
        values: Mapping[str, str] = example.fields
    elif conjugate in TRANSLATIONS:
        language = conjugate
        values = {**example.fields, **example.localized[conjugate].fields}
    else:
        language, values = ENGLISH, example.fields
    return language, prompt.templates(language).for_condition(example.condition), values


def check_examples(task: Task, examples: Sequence[Example]) -> None:
    """Check a task's examples against its prompt: every placeholder filled, translations
    present, examples written in a conjugate only in conjugates the task lists."""
    file = str(task.path or task.name)
    if not examples:
        raise TaskError(f"{file}: source: no examples (conditions: {task.config.conditions or 'all'})")
    seen_ids: set[tuple[str, str, str | None]] = set()
    for example in examples:
        # Examples written in different conjugates are scored apart, so they may share an id
        # (the paper's files number each language's items alike, which pairs them).
        key = (example.id, example.condition, example.conjugate)
        if key in seen_ids:
            raise TaskError(f"{file}: example {example.id!r}: duplicate id")
        seen_ids.add(key)
        if example.conjugate is not None and example.conjugate not in task.config.conjugates:
            raise TaskError(f"{file}: conjugates: example {example.id!r} is written in {example.conjugate!r}, which the task does not list (it lists: {', '.join(task.config.conjugates)})")
    for conjugate in task.config.conjugates:
        if not any(example.conjugate in (None, conjugate) for example in examples):
            raise TaskError(f"{file}: conjugates: no example renders under {conjugate!r} (every example is written in another conjugate)")
        for example in examples:
            if example.conjugate not in (None, conjugate):
                continue
            if example.conjugate is None and conjugate in TRANSLATIONS and conjugate not in example.localized:
                raise TaskError(f"{file}: conjugates: example {example.id!r} has no {conjugate!r} version (its data source does not localise)")
            language, template, values = prompt_source(task, example, conjugate)
            for name in placeholders(template):
                if name not in values:
                    where = "prompt" if language == ENGLISH else f"prompt.translations.{language}"
                    raise TaskError(f"{file}: {where}: placeholder {{{name}}} has no value in example {example.id!r} (fields: {', '.join(sorted(values))})")



def load_examples(source: Source, task_path: Path | None) -> list[Example]:
    """Build or read the examples a source describes."""
    where = str(task_path) if task_path else "task"
    if source.builder is not None:
        from harness.data import BUILDERS

        try:
            return BUILDERS[source.builder](**source.options)
        except ValueError as error:  # an option a builder refuses (a negative limit, ...)
            raise TaskError(f"{where}: source.options: {error}") from None
    if source.file is not None:
        path = Path(source.file)
        if not path.is_absolute() and task_path is not None:
            path = task_path.parent / path
        if not path.is_file():
            raise TaskError(f"{where}: source.file: no such file {path}")
        return examples_from_records(read_records(path), source.format, str(path))
    assert source.hf is not None
    import datasets

    hf = source.hf
    try:
        dataset = datasets.load_dataset(hf.path, hf.name, split=hf.split, revision=hf.revision,
                                        data_files=hf.data_files)
    except Exception as error:  # datasets raises many types (network, missing split, ...)
        copy = f"; a local copy in its published layout: --tasks {task_path.stem}=FILE" if task_path else ""
        raise TaskError(f"{where}: source.hf: cannot load dataset {hf.path!r} split {hf.split!r}: {error}{copy}") from None
    return examples_from_records(list(dataset), source.format, f"{hf.path}[{hf.split}]")



def builtin_task_dir() -> Path:
    """The folder of built-in task YAML files (``tasks/`` in the repository, packaged as
    ``harness.builtin_tasks`` in a wheel or an editable install)."""
    return Path(str(importlib.resources.files("harness.builtin_tasks")))


def load_task_file(path: Path) -> Task:
    """Read and validate one task YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TaskError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        place = f"line {mark.line + 1}: " if mark else ""
        raise TaskError(f"{path}: {place}not valid YAML: {getattr(error, 'problem', error)}") from None
    return Task(parse_task(data, str(path)), path)


class TaskRegistry:
    """Every task found in the built-in folder and the user's ``--include-path`` folders.

    A user's task with the same name as a built-in one replaces it (later paths win). A task
    file that does not validate is kept aside in ``broken`` (file stem -> its error): listing
    the tasks reports it and goes on; selecting it raises its error.
    """

    def __init__(self, include_paths: Sequence[str | Path] = ()):
        self.tasks: dict[str, Task] = {}
        self.broken: dict[str, TaskError] = {}
        for folder in [builtin_task_dir(), *map(Path, include_paths)]:
            if not folder.is_dir():
                raise TaskError(f"{folder}: --include-path: not a folder")
            for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
                try:
                    task = load_task_file(path)
                except TaskError as error:
                    self.broken[path.stem] = error
                    continue
                self.tasks[task.name] = task

    def names(self) -> list[str]:
        return sorted(self.tasks)

    def get(self, name_or_path: str) -> Task:
        """A task by registered name, or a task YAML file / data file by path."""
        if name_or_path in self.tasks:
            return self.tasks[name_or_path]
        if name_or_path in self.broken:
            raise self.broken[name_or_path]
        path = Path(name_or_path)
        if path.suffix.lower() in (".yaml", ".yml"):
            if not path.is_file():
                raise TaskError(f"{path}: no such task file")
            return load_task_file(path)
        if path.suffix.lower() in DATA_SUFFIXES:
            return task_from_data_file(path)
        raise TaskError(f"{name_or_path}: unknown task{did_you_mean(name_or_path, self.names())}; "
                        f"known: {', '.join(self.names())}")

    def select(self, names: Sequence[str]) -> list[Task]:
        """Tasks for a ``--tasks`` list: names or paths, ``NAME=PATH`` to give a file's task
        another name (``cf_world_facts=world_facts.json``) or, when NAME is a task whose source
        is a hub dataset, to read a local copy of it (``nq_swap=nq_swap_dev.parquet``), ``all``
        for every registered task whose examples are on this machine (hub tasks are named one by
        one: ``all`` never starts a download)."""
        if list(names) == ["all"]:
            return [self.tasks[n] for n in self.names() if self.tasks[n].config.source.hf is None]
        return [self._select_one(name) for name in names]

    def _select_one(self, spec: str) -> Task:
        name, renamed, target = spec.partition("=")
        if not renamed:
            return self.get(spec)
        if not name.replace("-", "_").isidentifier() or not target:
            raise TaskError(f"--tasks: {spec!r}: expected NAME=PATH, NAME letters, digits, '_' or '-'")
        if name in self.tasks and self.tasks[name].config.source.hf is not None:
            return self.tasks[name].reading(Path(target))
        return self.get(target).renamed(name)


def task_from_data_file(path: Path, record_format: str = "auto") -> Task:
    """Wrap a user's data file as a task of its layout's family, prompt and scoring.

    Its conjugates: those its examples are written in (the conjugate-prompting paper's
    files: the languages present), English for examples written in none; a file written in
    none gets English and the programmatic rewrites.
    """
    records = read_records(path)
    if not records:
        raise TaskError(f"{path}: no records")
    if record_format == "auto":
        record_format = detect_format(records[0], f"{path}: record 1")
    layout = RECORD_FORMATS[record_format]
    examples = examples_from_records(records, record_format, str(path))
    written = {example.conjugate for example in examples}
    if written == {None}:
        conjugates = [ENGLISH, *TRANSFORMS]
    else:
        conjugates = [c for c in CONJUGATES if c in written or (c == ENGLISH and None in written)]
    config = TaskConfig(
        name=path.stem.replace(".", "_"),
        family=layout.family,
        version=1,
        description=f"{record_format} records from {path.name}",
        source=Source(file=str(path.resolve()), format=record_format),
        prompt=Prompt(template=layout.default_prompt, add_bos=layout.add_bos),
        conjugates=conjugates,
        scoring=Scoring(modes=["generate", "loglikelihood"], **layout.scoring),
    )
    task = Task(config, path)
    task._examples = examples
    check_examples(task, task._examples)
    return task
