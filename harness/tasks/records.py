"""Reading a user's data files, and the record layouts they are converted from.

Files: JSON (a list of records or ``{"data": [...]}``), JSON Lines, CSV or Parquet
(:func:`read_records`). Layouts (:data:`RECORD_FORMATS`), detected from the first record's
fields (:func:`detect_format`) unless a task names one:

``counterfactual``  the context-parametric-inversion paper's CF files (CF_World_Facts,
                    CF_Capitals, CF_Bio): ``context``, ``question``, ``answer``,
                    ``memory_answer`` or ``parametric_answer``;
``nq_swap``         NQ-Swap: ``question``, ``org_context``/``org_answer``,
                    ``sub_context``/``sub_answer`` (answers may be lists);
``memotrap``        MemoTrap: ``prompt``, ``classes``, ``answer_index``;
``examples``        the harness's own layout (what ``Example.to_dict`` writes).

Errors name the file, the record number and the field.
"""

from __future__ import annotations

import csv
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jsonlines
import yaml

from harness.errors import TaskError
from harness.examples import ALTERNATIVE, CONTEXT, PARAMETRIC, TARGET, Example, Localized

DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


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
