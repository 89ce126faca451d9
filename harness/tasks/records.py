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
``icl_vs_if``       the conjugate-prompting paper's files (Kotha et al. 2024): ``prompt``,
                    ``icl_ans``, ``if_ans``, optional ``config``, and the unnamed index
                    column pandas writes (:func:`_from_icl_vs_if`);
``examples``        the harness's own layout (what ``Example.to_dict`` writes);
``confiqa``, ``faitheval_*``  the field's benchmarks as published (:mod:`harness.tasks.published`;
                    the FaithEval abstention subsets share their fields, so a task names them).

A record that has most of one layout's fields but not all is read in that layout, so the
error names the missing field. Errors name the file, the record number and the field.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import typing
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.conjugates import CONJUGATES
from harness.errors import TaskError, did_you_mean
from harness.io import read_jsonl
from harness.examples import ALTERNATIVE, CONTEXT, ICL, INSTRUCTION, PARAMETRIC, TARGET, Example, Localized
import harness.tasks.published as published
from harness.tasks.fields import answer_list, record_id, require

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
        try:
            records = read_jsonl(path, strict=True)
        except ValueError as error:
            raise TaskError(str(error)) from None
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
        raise TaskError(f"{path}: unsupported file type {suffix!r}{did_you_mean(suffix, DATA_SUFFIXES)}; "
                        f"expected one of: {', '.join(DATA_SUFFIXES)}")
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise TaskError(f"{path}: record {number}: expected an object with fields, got {type(record).__name__}")
    return records


def _from_counterfactual(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """Context-parametric-inversion files (CF_World_Facts, CF_Capitals, CF_Bio)."""
    require(record, ("context", "question", "answer"), where)
    memory_key = "memory_answer" if "memory_answer" in record else "parametric_answer"
    if memory_key not in record:
        raise TaskError(f"{where}: missing field 'memory_answer' (or 'parametric_answer')")
    return [Example(
        id=record_id(record, number),
        condition="conflicting",
        fields={"context": str(record["context"]), "question": str(record["question"])},
        answers={
            CONTEXT: answer_list(record["answer"], f"{where}: field 'answer'"),
            PARAMETRIC: answer_list(record[memory_key], f"{where}: field {memory_key!r}"),
        },
    )]


def _from_nq_swap(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """NQ-Swap: each record gives an agreeing (original) and a conflicting (substituted) item."""
    require(record, ("question", "org_context", "org_answer", "sub_context", "sub_answer"), where)
    original = answer_list(record["org_answer"], f"{where}: field 'org_answer'")
    substitute = answer_list(record["sub_answer"], f"{where}: field 'sub_answer'")
    item = record_id(record, number)
    question = str(record["question"])
    return [
        Example(id=item, condition="agreeing",
                fields={"context": str(record["org_context"]), "question": question},
                answers={TARGET: original, ALTERNATIVE: substitute}),
        Example(id=item, condition="conflicting",
                fields={"context": str(record["sub_context"]), "question": question},
                answers={CONTEXT: substitute, PARAMETRIC: original}),
    ]


def _from_memotrap(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """MemoTrap: ``classes`` are the two endings, ``answer_index`` the one the prompt asks for."""
    require(record, ("prompt", "classes", "answer_index"), where)
    classes = answer_list(record["classes"], f"{where}: field 'classes'")
    try:
        index = int(record["answer_index"])
    except (TypeError, ValueError):
        raise TaskError(f"{where}: field 'answer_index': not an integer: {record['answer_index']!r}") from None
    if len(classes) != 2 or index not in (0, 1):
        raise TaskError(f"{where}: field 'classes': expected two endings and answer_index 0 or 1")
    return [Example(
        id=record_id(record, number),
        condition="conflicting",
        fields={"prompt": str(record["prompt"])},
        answers={CONTEXT: (classes[index],), PARAMETRIC: (classes[1 - index],)},
    )]


# The paper's names for its in-context tasks, instruction tasks and languages -> the
# harness's (the built-in icl_vs_if task's conditions and conjugates).
_PAPER_TASKS = {"capslock": "capitalize", "repeat": "repeat", "math": "math", "startblank": "blank"}
_PAPER_LANGUAGES = {"ls": "leetspeak", "pl": "piglatin"}
# The setting of every result in the paper: the instruction header, Input:/Output: labels,
# two demonstrations. Its conditions are the bare task pair; other settings are named.
_PAPER_SETTING = "instr-input-2shot"
_PAPER_CONFIG = re.compile(r"(?P<icl>[^-]+)-(?P<instruction>[^-]+)-(?P<setting>(?:[^-]+-)*)(?P<language>[^-]+)-(?P<shots>\d+shot)")


def _paper_answer(record: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    """One answer of the paper's files: written with a leading space (``" What"``), dropped
    here (the ``raw_prefix`` match accepts it with or without); anything else kept as is."""
    answer = str(record[name]).removeprefix(" ")
    if not answer.strip():
        raise TaskError(f"{where}: field {name!r}: is empty")
    return (answer,)


def _paper_config(config: str, where: str) -> tuple[str, str]:
    """``capslock-math-instr-input-fr-2shot`` -> condition ``capitalize_math``, conjugate ``fr``."""
    match = _PAPER_CONFIG.fullmatch(config)
    if match is None:
        raise TaskError(f"{where}: field 'config': {config!r} is not ICL-IF-[SETTING-]LANGUAGE-Kshot "
                        "(e.g. capslock-math-instr-input-fr-2shot)")
    language = _PAPER_LANGUAGES.get(match["language"], match["language"])
    if language not in CONJUGATES:
        raise TaskError(f"{where}: field 'config': unknown language {match['language']!r} in {config!r} "
                        f"(expected one of: {', '.join(CONJUGATES)}, or the paper's {', '.join(_PAPER_LANGUAGES)})")
    pair = "_".join(_PAPER_TASKS.get(match[part], match[part]) for part in ("icl", "instruction"))
    setting = match["setting"] + match["shots"]
    condition = pair if setting == _PAPER_SETTING else f"{pair}_{setting.replace('-', '_')}"
    return condition, language


def _from_icl_vs_if(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """The conjugate-prompting paper's files, unchanged (its ``create_datasets.py`` output).

    ``prompt`` is the whole prompt (instruction header, demonstrations, query), in the
    language of ``config``; ``icl_ans`` is the answer the demonstrations imply, ``if_ans``
    the one the instruction-looking query asks for. ``config`` names the in-context task,
    the instruction task, the setting and the language: the condition is the task pair in
    the harness's words (``capitalize_math``, ``repeat_blank``; the paper's ``capslock`` and
    ``startblank``), with the setting appended when it is not the paper's
    ``instr-input-2shot``; the language is the example's conjugate (``ls`` is
    ``leetspeak``, ``pl`` ``piglatin``). Without ``config`` a record is an English-written
    item of condition ``default``. The pandas index column is kept in ``meta``; ids number
    the items of each (condition, conjugate) in file order (:func:`_number_by_config`).
    """
    require(record, ("prompt", "icl_ans", "if_ans"), where)
    condition, conjugate = "default", None
    meta: dict[str, Any] = {"record": number}
    if record.get("config") not in (None, ""):
        config = str(record["config"])
        condition, conjugate = _paper_config(config, where)
        meta["config"] = config
    for index_column in ("", "Unnamed: 0"):
        if index_column in record:
            meta["index"] = record[index_column]
    return [Example(
        id=str(number),
        condition=condition,
        fields={"prompt": str(record["prompt"])},
        answers={ICL: _paper_answer(record, "icl_ans", where), INSTRUCTION: _paper_answer(record, "if_ans", where)},
        meta=meta,
        conjugate=conjugate,
    )]


def _number_by_config(examples: list[Example]) -> list[Example]:
    """Ids ``0, 1, ...`` within each (condition, conjugate), in file order.

    The paper draws item ``i`` of every language and of both in-context tasks from the same
    random state (the same sentences, the same sum), so equal numbers pair the same item
    across conjugates, which is what paired conjugate comparisons line up.
    """
    counts: Counter[tuple[str, str | None]] = Counter()
    numbered = []
    for example in examples:
        group = (example.condition, example.conjugate)
        numbered.append(dataclasses.replace(example, id=str(counts[group])))
        counts[group] += 1
    return numbered


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TaskError(f"{where}: expected an object with fields, got {type(value).__name__}")
    return value


def _from_examples(record: Mapping[str, Any], number: int, where: str) -> list[Example]:
    """The harness's own example layout (what ``Example.to_dict`` writes)."""
    require(record, ("fields", "answers"), where)
    answers = {role: answer_list(spellings, f"{where}: field 'answers.{role}'")
               for role, spellings in _mapping(record["answers"], f"{where}: field 'answers'").items()}
    localized = {}
    for lang, loc in _mapping(record.get("localized", {}), f"{where}: field 'localized'").items():
        at = f"{where}: field 'localized.{lang}"
        loc = _mapping(loc, f"{at}'")
        localized[lang] = Localized(
            fields=dict(_mapping(loc.get("fields", {}), f"{at}.fields'")),
            answers={r: answer_list(s, f"{at}.answers.{r}'")
                     for r, s in _mapping(loc.get("answers", {}), f"{at}.answers'").items()})
    conjugate = record.get("conjugate")
    if conjugate is not None and conjugate not in CONJUGATES:
        raise TaskError(f"{where}: field 'conjugate': unknown conjugate {conjugate!r}{did_you_mean(conjugate, CONJUGATES)}; "
                        f"expected one of: {', '.join(CONJUGATES)}")
    fields = _mapping(record["fields"], f"{where}: field 'fields'")
    return [Example(id=record_id(record, number), condition=str(record.get("condition", "default")),
                    fields={k: str(v) for k, v in fields.items()}, answers=answers, localized=localized,
                    meta=dict(_mapping(record.get("meta", {}), f"{where}: field 'meta'")), conjugate=conjugate)]


@dataclass(frozen=True)
class RecordFormat:
    """How records of an external file map to examples, and how a file of them is a task.

    ``required``: the fields that identify the layout; ``convert``: one record to examples;
    ``default_prompt``: the template a file of them reads best with; ``family`` and
    ``scoring`` (keyword arguments of :class:`harness.tasks.Scoring`): the task a data file
    of the layout becomes; ``finish``: a pass over all of a file's examples, for what one
    record cannot tell (the paper's item numbers). ``detect``: whether :func:`detect_format`
    may pick it (false for layouts whose fields another layout shares). ``add_bos``: whether
    its prompts get the tokenizer's BOS (:class:`harness.tasks.Prompt`).
    """

    required: tuple[str, ...]
    convert: typing.Callable[[Mapping[str, Any], int, str], list[Example]]
    default_prompt: str
    family: str = "knowledge_conflict"
    scoring: Mapping[str, Any] = field(default_factory=dict)
    finish: typing.Callable[[list[Example]], list[Example]] | None = None
    detect: bool = True
    add_bos: bool = True


_QA_PROMPT = "Context: {context}\nQuestion: {question}\nAnswer:"
# The paper's scoring (greedy, 10 new tokens, the raw output's prefix, case included) and
# only the conjugate's own spelling: a French prompt's in-context answer is "Combien".
# Its generator tokenised the prompts with add_special_tokens=False: no BOS (add_bos=False below).
_PAPER_SCORING = {"match": "raw_prefix", "case_sensitive": True, "accept_english": False, "max_new_tokens": 10}
# The field's benchmarks are scored by their authors' rule (ConFiQA's evaluation.py, FaithEval's
# README): an answer is a substring of the normalised output. Their authors' prompts are in
# the built-in tasks (tasks/confiqa_*.yaml, tasks/faitheval_*.yaml); a bare data file of these
# layouts reads with the plain question-answering prompt.
_SUBSTRING = {"match": "substring"}
_OPTIONS_PROMPT = "Context: {context}\nQuestion: {question}\nOptions:\n{options}\nAnswer:"


RECORD_FORMATS: dict[str, RecordFormat] = {
    "faitheval_counterfactual": RecordFormat(("context", "question", "choices", "answerKey"),
                                             published.from_faitheval_counterfactual, _OPTIONS_PROMPT,
                                             scoring=_SUBSTRING),
    "counterfactual": RecordFormat(("context", "question", "answer"), _from_counterfactual, _QA_PROMPT),
    "nq_swap": RecordFormat(("org_context", "sub_context"), _from_nq_swap, _QA_PROMPT),
    "memotrap": RecordFormat(("prompt", "classes", "answer_index"), _from_memotrap, "{prompt}"),
    "icl_vs_if": RecordFormat(("prompt", "icl_ans", "if_ans"), _from_icl_vs_if, "{prompt}", family="icl_vs_if",
                              scoring=_PAPER_SCORING, finish=_number_by_config, add_bos=False),
    "examples": RecordFormat(("fields", "answers"), _from_examples, "{prompt}"),
    "confiqa": RecordFormat(("cf_context", "cf_answer", "orig_answer"), published.from_confiqa, _QA_PROMPT,
                            scoring=_SUBSTRING),
    "faitheval_unanswerable": RecordFormat(("context", "question"), published.from_faitheval_unanswerable,
                                           _QA_PROMPT, scoring=_SUBSTRING, detect=False),
    "faitheval_inconsistent": RecordFormat(("context", "question"), published.from_faitheval_inconsistent,
                                           _QA_PROMPT, scoring=_SUBSTRING, detect=False),
}


def detect_format(record: Mapping[str, Any], where: str) -> str:
    """Guess a record's format from its fields.

    A layout whose every required field is present wins; failing that, the one layout with
    the most of them, at least two (``prompt`` and ``if_ans`` without ``icl_ans``), so its
    converter names the field that is missing.
    """
    detectable = {name: f for name, f in RECORD_FORMATS.items() if f.detect}
    for name, record_format in detectable.items():
        if all(key in record for key in record_format.required):
            return name
    present = {name: sum(key in record for key in f.required) for name, f in detectable.items()}
    most = max(present.values())
    nearest = [name for name, count in present.items() if count == most]
    if most >= 2 and len(nearest) == 1:
        return nearest[0]
    raise TaskError(
        f"{where}: cannot tell the format from its fields ({', '.join(record) or 'none'}); expected "
        + "; ".join(f"{name}: {', '.join(f.required)}" for name, f in detectable.items())
    )


def examples_from_records(records: Sequence[Mapping[str, Any]], record_format: str, file: str) -> list[Example]:
    """Convert records to examples; errors name the file, the record number and the field."""
    if not records:
        raise TaskError(f"{file}: no records")
    if record_format == "auto":
        record_format = detect_format(records[0], f"{file}: record 1")
    layout = RECORD_FORMATS[record_format]
    examples: list[Example] = []
    for number, record in enumerate(records, 1):
        examples.extend(layout.convert(record, number, f"{file}: record {number}"))
    return layout.finish(examples) if layout.finish else examples
