"""Property tests: whatever a user writes into a task file or a data file, the outcome is a
valid task or a TaskError that names the file — never another exception."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import TaskError
from harness.tasks import builtin_task_dir, load_task_file, task_from_data_file

DATA = Path(__file__).parent / "data"
# Small built-in-style tasks: a data-file task, a builder task with translations.
SEEDS = {
    "file": {
        "name": "mine", "family": "knowledge_conflict", "version": 1,
        "source": {"file": str(DATA / "cf_world_facts.json")},
        "prompt": {"template": "Context: {context}\nQuestion: {question}\nAnswer:"},
        "conjugates": ["en", "leetspeak"],
        "scoring": {"modes": ["generate", "loglikelihood"], "match": "contains", "max_new_tokens": 8},
    },
    "builder": yaml.safe_load((builtin_task_dir() / "capitals.yaml").read_text(encoding="utf-8")),
}
SEEDS["builder"]["source"]["options"] = {"seed": 0, "limit": 2}

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.text(max_size=12)
    | st.sampled_from(["{context}", "{question}", "{nope}", "{a.b}", "{0}", "en", "fr", "xx", "generate",
                       "prefix", "builder", "capitals", "data/none.json"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested dicts and lists."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


@st.composite
def mutated_tasks(draw) -> Any:
    task = copy.deepcopy(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(task)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = task
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
    return task


def _check(path: Path, load) -> None:
    try:
        task = load(path)
        task.examples  # built or read, and checked against the prompt
        task.content_hash()
    except TaskError as error:
        assert str(path) in str(error), error


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_tasks())
def test_a_mutated_task_file_is_a_task_or_a_task_error_naming_the_file(task):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mine.yaml"
        path.write_text(yaml.safe_dump(task, allow_unicode=True), encoding="utf-8")
        _check(path, load_task_file)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80), st.integers(0, 400))
def test_arbitrary_text_spliced_into_a_task_file_is_a_task_or_a_task_error(text, at):
    original = yaml.safe_dump(SEEDS["file"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mine.yaml"
        path.write_text(original[:at] + text + original[at:], encoding="utf-8")
        _check(path, load_task_file)


FIELDS = ["context", "question", "answer", "memory_answer", "parametric_answer", "org_context", "org_answer",
          "sub_context", "sub_answer", "prompt", "classes", "answer_index", "fields", "answers", "id", "condition"]
RECORDS = st.lists(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8) | VALUES, min_size=0, max_size=4)


@settings(max_examples=150, deadline=None)
@given(RECORDS, st.sampled_from([".json", ".jsonl"]))
def test_arbitrary_data_records_are_a_task_or_a_task_error_naming_the_file(records, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"records{suffix}"
        if suffix == ".json":
            path.write_text(json.dumps(records), encoding="utf-8")
        else:
            path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
        _check(path, task_from_data_file)
