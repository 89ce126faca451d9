"""Tasks: YAML definitions validated into dataclasses, their data sources, and the registry.

A task is one YAML file (see ``tasks/*.yaml`` and the README's "Writing a task")::

    name: capitals
    family: knowledge_conflict
    version: 1
    description: Capitals of countries, closed-book / agreeing / conflicting context.
    source:
      builder: capitals            # or  file: data/my.jsonl   or  hf: {path: ..., split: ...}
      options: {seed: 0}
    prompt:
      template: "Context: {context}\\nQuestion: {question}\\nAnswer:"
      by_condition:
        closed_book: "Question: {question}\\nAnswer:"
      translations:
        fr: {template: "...", by_condition: {closed_book: "..."}}
    conditions: [closed_book, agreeing, conflicting]
    conjugates: [en, fr, es, de, leetspeak, piglatin]
    scoring:
      modes: [generate, loglikelihood]
      match: contains

Files are read with ``yaml.safe_load``; unknown keys, missing fields and wrong types are
:class:`TaskError` naming the file and the key. Prompt templates use plain ``{field}``
placeholders (no attribute access, no indexing, no format specs): nothing in a task file is
ever evaluated.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.resources
import json
import string
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jsonlines
import yaml

from harness.schema import from_mapping
from harness.scoring import MATCHES, SCORING_MODES as MODES, metric_names
from harness.conjugates import CONJUGATES, ENGLISH, TRANSFORMS, TRANSLATIONS
from harness.examples import (
    ALTERNATIVE,
    ANSWER_ROLES,
    CONTEXT,
    PARAMETRIC,
    TARGET,
    Example,
    Localized,
)

FAMILIES = {
    "knowledge_conflict": "counterfactual-context QA: does the answer follow the context or memory?",
    "fact_recall": "fact recall vs in-context: closed-book, open-book and overriding QA",
    "icl_vs_if": "conjugate prompting: in-context learning vs instruction following",
    "icl_functions": "in-context learning of parameterised functions",
}
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


class TaskError(ValueError):
    """A task or data file is unusable; the message names the file and the field."""


# --------------------------------------------------------------------------- task schema


@dataclass(frozen=True)
class HFSource:
    """A Hugging Face dataset, read through ``datasets.load_dataset``.

    ``path`` is a hub name (needs the network) or a builder such as ``json`` with local
    ``data_files`` (works offline).
    """

    path: str
    split: str = "test"
    name: str | None = None
    revision: str | None = None
    data_files: str | list[str] | None = None


@dataclass(frozen=True)
class Source:
    """Where a task's examples come from: exactly one of ``builder``, ``file``, ``hf``.

    ``format`` says how records of a file or dataset map to examples (:data:`RECORD_FORMATS`);
    ``auto`` detects it from the first record's fields.
    """

    builder: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    hf: HFSource | None = None
    format: str = "auto"


@dataclass(frozen=True)
class Templates:
    """Prompt templates in one language: a default and per-condition overrides."""

    template: str
    by_condition: dict[str, str] = field(default_factory=dict)

    def for_condition(self, condition: str) -> str:
        return self.by_condition.get(condition, self.template)

    def all(self) -> dict[str, str]:
        return {"template": self.template, **{f"by_condition.{k}": v for k, v in self.by_condition.items()}}


@dataclass(frozen=True)
class Prompt:
    """English templates plus hand-written translations (keyed by language code)."""

    template: str
    by_condition: dict[str, str] = field(default_factory=dict)
    translations: dict[str, Templates] = field(default_factory=dict)

    def templates(self, language: str = ENGLISH) -> Templates:
        if language == ENGLISH:
            return Templates(self.template, self.by_condition)
        return self.translations[language]


@dataclass(frozen=True)
class Scoring:
    """How outputs are scored (see :mod:`harness.scoring`).

    ``match``: ``contains`` (the answer occurs in the output) or ``prefix`` (the output
    starts with it). ``metrics``: restrict the reported metrics; empty means all that apply.
    """

    modes: list[str] = field(default_factory=lambda: ["generate"])
    match: str = "contains"
    case_sensitive: bool = False
    max_new_tokens: int = 24
    stop: list[str] = field(default_factory=lambda: ["\n"])
    metrics: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskConfig:
    """The validated content of one task YAML file."""

    name: str
    family: str
    version: int
    source: Source
    prompt: Prompt
    description: str = ""
    conditions: list[str] = field(default_factory=list)
    conjugates: list[str] = field(default_factory=lambda: [ENGLISH])
    scoring: Scoring = field(default_factory=Scoring)


@dataclass
class Task:
    """A task ready to run: its config, where it was defined, and (lazily) its examples."""

    config: TaskConfig
    path: Path | None = None
    _examples: list[Example] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

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
            "config": dataclasses.asdict(self.config),
            "examples": [e.to_dict() for e in self.examples],
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------- validation


def placeholders(template: str) -> list[str]:
    """The ``{field}`` names of a template; rejects anything beyond plain placeholders."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a plain {{field}}")
        names.append(name)
    return names


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill a template's plain ``{field}`` placeholders (validated by :func:`placeholders`)."""
    return template.format_map(values)


def parse_task(data: Any, file: str) -> TaskConfig:
    """Validate a task's YAML content (already parsed) into a :class:`TaskConfig`."""
    config = from_mapping(TaskConfig, data, file, TaskError)
    if config.family not in FAMILIES:
        raise TaskError(f"{file}: family: unknown family {config.family!r} (expected one of: {', '.join(FAMILIES)})")
    if not config.name.replace("-", "_").isidentifier():
        raise TaskError(f"{file}: name: {config.name!r} must be letters, digits, '_' or '-'")
    source = config.source
    given = [k for k in ("builder", "file", "hf") if getattr(source, k) is not None]
    if len(given) != 1:
        raise TaskError(f"{file}: source: give exactly one of builder, file, hf (got {given or 'none'})")
    if source.builder is not None:
        from harness.data import BUILDERS, builder_options

        if source.builder not in BUILDERS:
            raise TaskError(f"{file}: source.builder: unknown builder {source.builder!r} (known: {', '.join(sorted(BUILDERS))})")
        allowed = builder_options(source.builder)
        for key in source.options:
            if key not in allowed:
                raise TaskError(f"{file}: source.options.{key}: builder {source.builder!r} has no option {key!r} (options: {', '.join(allowed)})")
    elif source.options:
        raise TaskError(f"{file}: source.options: options go with a builder only")
    if source.format != "auto" and source.format not in RECORD_FORMATS:
        raise TaskError(f"{file}: source.format: unknown format {source.format!r} (expected auto or one of: {', '.join(RECORD_FORMATS)})")
    for mode in config.scoring.modes:
        if mode not in MODES:
            raise TaskError(f"{file}: scoring.modes: unknown mode {mode!r} (expected: {', '.join(MODES)})")
    if config.scoring.match not in MATCHES:
        raise TaskError(f"{file}: scoring.match: unknown match {config.scoring.match!r} (expected: {', '.join(MATCHES)})")
    if config.scoring.max_new_tokens < 1:
        raise TaskError(f"{file}: scoring.max_new_tokens: must be at least 1")
    _check_metrics(config, file)
    for conjugate in config.conjugates:
        if conjugate not in CONJUGATES:
            raise TaskError(f"{file}: conjugates: unknown conjugate {conjugate!r} (expected: {', '.join(CONJUGATES)})")
        if conjugate in TRANSLATIONS and conjugate not in config.prompt.translations:
            raise TaskError(f"{file}: prompt.translations.{conjugate}: missing: conjugate {conjugate!r} needs a hand-written template")
    for language, templates in [(ENGLISH, config.prompt.templates())] + list(config.prompt.translations.items()):
        if language not in TRANSLATIONS and language != ENGLISH:
            raise TaskError(f"{file}: prompt.translations.{language}: unknown language (expected: {', '.join(TRANSLATIONS)})")
        where = "prompt" if language == ENGLISH else f"prompt.translations.{language}"
        for key, template in templates.all().items():
            try:
                placeholders(template)
            except ValueError as error:
                raise TaskError(f"{file}: {where}.{key}: {error}") from None
    return config


def _check_metrics(config: TaskConfig, file: str) -> None:
    known = {m for mode in config.scoring.modes for m in metric_names(mode, ANSWER_ROLES)}
    for metric in config.scoring.metrics:
        if metric not in known:
            raise TaskError(f"{file}: scoring.metrics: unknown metric {metric!r} for modes {config.scoring.modes} (known: {', '.join(sorted(known))})")


def check_examples(task: Task, examples: Sequence[Example]) -> None:
    """Check a task's examples against its prompt: every placeholder filled, translations present."""
    file = str(task.path or task.name)
    if not examples:
        raise TaskError(f"{file}: source: no examples (conditions: {task.config.conditions or 'all'})")
    seen_ids: set[tuple[str, str]] = set()
    for example in examples:
        key = (example.id, example.condition)
        if key in seen_ids:
            raise TaskError(f"{file}: example {example.id!r}: duplicate id")
        seen_ids.add(key)
    for conjugate in task.config.conjugates:
        language = conjugate if conjugate in TRANSLATIONS else ENGLISH
        templates = task.config.prompt.templates(language)
        for example in examples:
            if language != ENGLISH and language not in example.localized:
                raise TaskError(f"{file}: conjugates: example {example.id!r} has no {language!r} version (its data source does not localise)")
            values = example.fields if language == ENGLISH else {**example.fields, **example.localized[language].fields}
            template = templates.for_condition(example.condition)
            for name in placeholders(template):
                if name not in values:
                    where = "prompt" if language == ENGLISH else f"prompt.translations.{language}"
                    raise TaskError(f"{file}: {where}: placeholder {{{name}}} has no value in example {example.id!r} (fields: {', '.join(sorted(values))})")


# --------------------------------------------------------------------------- data files


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read a JSON, JSONL, CSV or Parquet file into a list of records (dicts).

    JSON may be a list of records or ``{"data": [...]}`` (a common export layout).
    """
    suffix = path.suffix.lower()
    if not path.is_file():
        raise TaskError(f"{path}: no such file")
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise TaskError(f"{path}: not valid JSON: {error}") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise TaskError(f"{path}: expected a JSON list of records (or {{\"data\": [...]}})")
        records = data
    elif suffix == ".jsonl":
        records = []
        with jsonlines.open(path) as reader:
            try:
                for record in reader.iter(skip_empty=True):
                    records.append(record)
            except jsonlines.InvalidLineError as error:
                raise TaskError(f"{path}: line {error.lineno}: not valid JSON") from None
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
    elif suffix == ".parquet":
        import pyarrow.parquet

        try:
            records = pyarrow.parquet.read_table(path).to_pylist()
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise TaskError(f"{path}: not a readable Parquet file: {error}") from None
    else:
        raise TaskError(f"{path}: unsupported file type {suffix!r} (expected one of: {', '.join(DATA_SUFFIXES)})")
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise TaskError(f"{path}: record {number}: expected an object with fields, got {type(record).__name__}")
    return records


def _answer_list(value: Any, where: str) -> tuple[str, ...]:
    """An answer field as a tuple of spellings; lists (NQ-Swap) and strings accepted."""
    if isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]"):
        # CSV exports store lists as text ("['fonder.', 'fur.']"); YAML's flow syntax reads
        # them without evaluating anything.
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    if isinstance(value, (list, tuple)):
        spellings = tuple(str(v).strip() for v in value if str(v).strip())
    elif value is None:
        spellings = ()
    else:
        spellings = (str(value).strip(),) if str(value).strip() else ()
    if not spellings:
        raise TaskError(f"{where}: is empty")
    return spellings


def _require(record: Mapping[str, Any], names: Iterable[str], where: str) -> None:
    for name in names:
        if name not in record or record[name] is None:
            raise TaskError(f"{where}: missing field {name!r}")


def _record_id(record: Mapping[str, Any], number: int) -> str:
    return str(record.get("id", number))


def _from_counterfactual(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """Context-parametric-inversion files (CF_World_Facts, CF_Capitals, CF_Bio)."""
    _require(record, ("context", "question", "answer"), where)
    memory_key = "memory_answer" if "memory_answer" in record else "parametric_answer"
    if memory_key not in record:
        raise TaskError(f"{where}: missing field 'memory_answer' (or 'parametric_answer')")
    return [Example(
        id=_record_id(record, number),
        condition="conflicting",
        fields={"context": str(record["context"]), "question": str(record["question"])},
        answers={
            CONTEXT: _answer_list(record["answer"], f"{where}: field 'answer'"),
            PARAMETRIC: _answer_list(record[memory_key], f"{where}: field {memory_key!r}"),
        },
    )]


def _from_nq_swap(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """NQ-Swap: each record gives an agreeing (original) and a conflicting (substituted) item."""
    _require(record, ("question", "org_context", "org_answer", "sub_context", "sub_answer"), where)
    original = _answer_list(record["org_answer"], f"{where}: field 'org_answer'")
    substitute = _answer_list(record["sub_answer"], f"{where}: field 'sub_answer'")
    record_id = _record_id(record, number)
    question = str(record["question"])
    return [
        Example(id=record_id, condition="agreeing",
                fields={"context": str(record["org_context"]), "question": question},
                answers={TARGET: original, ALTERNATIVE: substitute}),
        Example(id=record_id, condition="conflicting",
                fields={"context": str(record["sub_context"]), "question": question},
                answers={CONTEXT: substitute, PARAMETRIC: original}),
    ]


def _from_memotrap(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """MemoTrap: ``classes`` are the two endings, ``answer_index`` the one the prompt asks for."""
    _require(record, ("prompt", "classes", "answer_index"), where)
    classes = _answer_list(record["classes"], f"{where}: field 'classes'")
    try:
        index = int(record["answer_index"])
    except (TypeError, ValueError):
        raise TaskError(f"{where}: field 'answer_index': not an integer: {record['answer_index']!r}") from None
    if len(classes) != 2 or index not in (0, 1):
        raise TaskError(f"{where}: field 'classes': expected two endings and answer_index 0 or 1")
    return [Example(
        id=_record_id(record, number),
        condition="conflicting",
        fields={"prompt": str(record["prompt"])},
        answers={CONTEXT: (classes[index],), PARAMETRIC: (classes[1 - index],)},
    )]


def _from_examples(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """The harness's own example layout (what ``Example.to_dict`` writes)."""
    _require(record, ("fields", "answers"), where)
    answers = {role: _answer_list(spellings, f"{where}: field 'answers.{role}'")
               for role, spellings in dict(record["answers"]).items()}
    localized = {
        lang: Localized(fields=dict(loc.get("fields", {})),
                        answers={r: _answer_list(s, f"{where}: field 'localized.{lang}.answers.{r}'")
                                 for r, s in dict(loc.get("answers", {})).items()})
        for lang, loc in dict(record.get("localized", {})).items()
    }
    return [Example(id=_record_id(record, number), condition=str(record.get("condition", "default")),
                    fields={k: str(v) for k, v in dict(record["fields"]).items()},
                    answers=answers, localized=localized, meta=dict(record.get("meta", {})))]


@dataclass(frozen=True)
class RecordFormat:
    """How records of an external file map to examples, and the prompt they read best with."""

    required: tuple[str, ...]
    convert: typing.Callable[[Mapping[str, Any], int, str], list[Example]]
    default_prompt: str


_QA_PROMPT = "Context: {context}\nQuestion: {question}\nAnswer:"
RECORD_FORMATS: dict[str, RecordFormat] = {
    "counterfactual": RecordFormat(("context", "question", "answer"), _from_counterfactual, _QA_PROMPT),
    "nq_swap": RecordFormat(("org_context", "sub_context"), _from_nq_swap, _QA_PROMPT),
    "memotrap": RecordFormat(("prompt", "classes", "answer_index"), _from_memotrap, "{prompt}"),
    "examples": RecordFormat(("fields", "answers"), _from_examples, "{prompt}"),
}


def detect_format(record: Mapping[str, Any], where: str) -> str:
    """Guess a record's format from its fields."""
    for name, record_format in RECORD_FORMATS.items():
        if all(key in record for key in record_format.required):
            return name
    raise TaskError(
        f"{where}: cannot tell the format from its fields ({', '.join(record) or 'none'}); expected "
        + "; ".join(f"{name}: {', '.join(f.required)}" for name, f in RECORD_FORMATS.items())
    )


def examples_from_records(records: Sequence[Mapping[str, Any]], record_format: str, file: str) -> list[Example]:
    """Convert records to examples; errors name the file, the record number and the field."""
    if not records:
        raise TaskError(f"{file}: no records")
    if record_format == "auto":
        record_format = detect_format(records[0], f"{file}: record 1")
    convert = RECORD_FORMATS[record_format].convert
    examples: list[Example] = []
    for number, record in enumerate(records, 1):
        examples.extend(convert(record, number, f"{file}: record {number}"))
    return examples


def load_examples(source: Source, task_path: Path | None) -> list[Example]:
    """Build or read the examples a source describes."""
    where = str(task_path) if task_path else "task"
    if source.builder is not None:
        from harness.data import BUILDERS

        return BUILDERS[source.builder](**source.options)
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
        raise TaskError(f"{where}: source.hf: cannot load dataset {hf.path!r} split {hf.split!r}: {error}") from None
    return examples_from_records(list(dataset), source.format, f"{hf.path}[{hf.split}]")


# --------------------------------------------------------------------------- registry


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

    A user's task with the same name as a built-in one replaces it (later paths win).
    """

    def __init__(self, include_paths: Sequence[str | Path] = ()):
        self.tasks: dict[str, Task] = {}
        for folder in [builtin_task_dir(), *map(Path, include_paths)]:
            if not folder.is_dir():
                raise TaskError(f"{folder}: --include-path: not a folder")
            for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
                task = load_task_file(path)
                self.tasks[task.name] = task

    def names(self) -> list[str]:
        return sorted(self.tasks)

    def get(self, name_or_path: str) -> Task:
        """A task by registered name, or a task YAML file / data file by path."""
        if name_or_path in self.tasks:
            return self.tasks[name_or_path]
        path = Path(name_or_path)
        if path.suffix.lower() in (".yaml", ".yml"):
            if not path.is_file():
                raise TaskError(f"{path}: no such task file")
            return load_task_file(path)
        if path.suffix.lower() in DATA_SUFFIXES:
            return task_from_data_file(path)
        raise TaskError(f"{name_or_path}: unknown task (known: {', '.join(self.names())})")

    def select(self, names: Sequence[str]) -> list[Task]:
        """Tasks for a ``--tasks`` list (names or paths; ``all`` means every registered task)."""
        if list(names) == ["all"]:
            return [self.tasks[n] for n in self.names()]
        return [self.get(name) for name in names]


def task_from_data_file(path: Path, record_format: str = "auto") -> Task:
    """Wrap a user's data file as a knowledge-conflict task with its format's default prompt."""
    records = read_records(path)
    if not records:
        raise TaskError(f"{path}: no records")
    if record_format == "auto":
        record_format = detect_format(records[0], f"{path}: record 1")
    config = TaskConfig(
        name=path.stem.replace(".", "_"),
        family="knowledge_conflict",
        version=1,
        description=f"{record_format} records from {path.name}",
        source=Source(file=str(path.resolve()), format=record_format),
        prompt=Prompt(template=RECORD_FORMATS[record_format].default_prompt),
        conjugates=[ENGLISH, *TRANSFORMS],
        scoring=Scoring(modes=["generate", "loglikelihood"]),
    )
    task = Task(config, path)
    task._examples = examples_from_records(records, record_format, str(path))
    check_examples(task, task._examples)
    return task
