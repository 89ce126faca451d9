"""Task YAML validation, external data formats, the registry and `harness tasks/validate`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.tasks import TaskError, TaskRegistry, builtin_task_dir, load_task_file, read_records, task_from_data_file

DATA = Path(__file__).parent / "data"

MINIMAL = """\
name: mine
family: knowledge_conflict
version: 1
source:
  file: {data}
prompt:
  template: "Context: {{context}}\\nQuestion: {{question}}\\nAnswer:"
scoring:
  modes: [generate, loglikelihood]
"""


def write_task(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def minimal(tmp_path: Path, **replace: str) -> str:
    text = MINIMAL.format(data=DATA / "cf_world_facts.json")
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def test_minimal_task_loads_and_hashes(tmp_path):
    task = load_task_file(write_task(tmp_path, minimal(tmp_path)))
    assert task.name == "mine"
    assert len(task.examples) == 3
    assert task.examples[0].answers == {"context": ("Lyon",), "parametric": ("Paris",)}
    first = task.content_hash()
    assert len(first) == 12 and first == load_task_file(task.path).content_hash()


def test_hash_changes_with_content(tmp_path):
    base = load_task_file(write_task(tmp_path, minimal(tmp_path))).content_hash()
    changed = load_task_file(write_task(tmp_path, minimal(tmp_path, **{"version: 1": "version: 2"}))).content_hash()
    assert base != changed


@pytest.mark.parametrize(
    "replace, message",
    [
        ({"version: 1": "version: 1\ncolour: red"}, "mine.yaml: colour: unknown key"),
        ({"family: knowledge_conflict\n": ""}, "mine.yaml: family: missing required field"),
        ({"modes: [generate, loglikelihood]": "modes: [generate, sample]"}, "scoring.modes: unknown mode 'sample'"),
        ({"modes: [generate, loglikelihood]": "modes: [generate]\n  matc: prefix"}, "mine.yaml: scoring.matc: unknown key"),
        ({"version: 1": "version: one"}, "mine.yaml: version: expected an integer, got 'one'"),
        ({"family: knowledge_conflict": "family: trivia"}, "family: unknown family 'trivia'"),
        ({"{question}": "{question.upper}"}, "prompt.template: placeholder {question.upper} is not a plain {field}"),
        ({"{question}": "{question!r}"}, "is not a plain {field}"),
        ({"version: 1": "version: 1\nconjugates: [en, klingon]"}, "conjugates: unknown conjugate 'klingon'"),
        ({"version: 1": "version: 1\nconjugates: [en, fr]"}, "prompt.translations.fr: missing"),
        ({"source:\n": "source:\n  builder: capitals\n"}, "source: give exactly one of builder, file, hf"),
        ({"modes: [generate, loglikelihood]": "modes: [generate]\n  metrics: [f1]"}, "scoring.metrics: unknown metric 'f1'"),
    ],
)
def test_yaml_validation_errors_name_file_and_key(tmp_path, replace, message):
    path = write_task(tmp_path, minimal(tmp_path, **replace))
    with pytest.raises(TaskError) as error:
        load_task_file(path).examples
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_placeholder_without_value_is_named(tmp_path):
    path = write_task(tmp_path, minimal(tmp_path, **{"{question}": "{query}"}))
    with pytest.raises(TaskError, match=r"placeholder \{query\} has no value in example '1'"):
        load_task_file(path).examples


def test_not_yaml(tmp_path):
    path = write_task(tmp_path, "name: [unclosed\n")
    with pytest.raises(TaskError, match="mine.yaml: .*not valid YAML"):
        load_task_file(path)


def test_builder_options_are_checked(tmp_path):
    text = minimal(tmp_path).replace(f"  file: {DATA / 'cf_world_facts.json'}", "  builder: capitals\n  options: {sed: 1}")
    with pytest.raises(TaskError, match=r"source.options.sed: builder 'capitals' has no option 'sed'"):
        load_task_file(write_task(tmp_path, text))


def test_unknown_builder(tmp_path):
    text = minimal(tmp_path).replace(f"  file: {DATA / 'cf_world_facts.json'}", "  builder: nope")
    with pytest.raises(TaskError, match="source.builder: unknown builder 'nope'"):
        load_task_file(write_task(tmp_path, text))


def test_yaml_is_never_executed(tmp_path):
    text = minimal(tmp_path) + "extra: !!python/object/apply:os.system ['echo hacked']\n"
    with pytest.raises(TaskError, match="not valid YAML"):
        load_task_file(write_task(tmp_path, text))


# ----------------------------------------------------------------------- external formats


def test_counterfactual_json_and_jsonl():
    facts = task_from_data_file(DATA / "cf_world_facts.json")
    assert [e.answers["parametric"] for e in facts.examples] == [("Paris",), ("Rome",), ("yen",)]
    assert facts.examples[1].fields["context"].startswith("Unlike Paris")
    bio = task_from_data_file(DATA / "cf_bio.jsonl")
    assert bio.examples[0].answers == {"context": ("Lisbon",), "parametric": ("Warsaw",)}


def test_nq_swap_gives_agreeing_and_conflicting_with_lists():
    task = task_from_data_file(DATA / "nq_swap.jsonl")
    assert [e.condition for e in task.examples] == ["agreeing", "conflicting"] * 2
    agreeing, conflicting = task.examples[:2]
    assert agreeing.answers["target"] == ("Leo Tolstoy", "Tolstoy")
    assert conflicting.answers == {"context": ("Anton Chekhov",), "parametric": ("Leo Tolstoy", "Tolstoy")}
    assert "Chekhov" in conflicting.fields["context"]
    assert task.examples[3].answers["parametric"] == ("Mount Everest",)


def test_memotrap_csv_with_list_as_text():
    task = task_from_data_file(DATA / "memotrap.csv")
    first = task.examples[0]
    assert first.answers == {"context": ("heavy.",), "parametric": ("fonder.",)}
    assert first.fields["prompt"].startswith('Write a quote that ends in the word "heavy"')


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = json.loads((DATA / "cf_world_facts.json").read_text())
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "facts.parquet")
    assert len(task_from_data_file(tmp_path / "facts.parquet").examples) == 3


def test_hf_source_with_local_files(tmp_path):
    text = minimal(tmp_path).replace(
        f"  file: {DATA / 'cf_world_facts.json'}",
        f"  hf: {{path: json, split: train, data_files: {DATA / 'cf_bio.jsonl'}}}",
    )
    task = load_task_file(write_task(tmp_path, text))
    assert [e.answers["context"] for e in task.examples] == [("Lisbon",), ("Madrid",)]


@pytest.mark.parametrize(
    "name, message",
    [
        ("bad.json", r"bad.json: not valid JSON: Expecting ',' delimiter"),
        ("missing_field.jsonl", r"missing_field.jsonl: record 2: missing field 'memory_answer' \(or 'parametric_answer'\)"),
        ("empty_answer.jsonl", r"empty_answer.jsonl: record 2: field 'answer': is empty"),
    ],
)
def test_malformed_files(name, message):
    with pytest.raises(TaskError, match=message):
        task_from_data_file(DATA / name)


def test_bad_jsonl_line_is_named(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(TaskError, match="broken.jsonl: line 2: not valid JSON"):
        read_records(path)


def test_unknown_record_format(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"text": "hello"}\n')
    with pytest.raises(TaskError, match="odd.jsonl: record 1: cannot tell the format"):
        task_from_data_file(path)


# ----------------------------------------------------------------------- registry and CLI


def test_builtin_tasks_are_packaged():
    names = {p.stem for p in builtin_task_dir().glob("*.yaml")}
    assert {"capitals", "world_facts", "us_state_capitals", "proverbs", "icl_vs_if", "open_book",
            "closed_book", "overriding", "icl_functions"} <= names


def test_include_path_adds_and_overrides(tmp_path):
    write_task(tmp_path, minimal(tmp_path))
    registry = TaskRegistry([tmp_path])
    assert "mine" in registry.names() and "capitals" in registry.names()
    with pytest.raises(TaskError, match="--include-path: not a folder"):
        TaskRegistry([tmp_path / "nowhere"])


def test_cli_tasks_lists_every_family(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ["capitals", "world_facts", "us_state_capitals", "proverbs", "icl_vs_if", "open_book",
                 "closed_book", "overriding", "icl_functions"]:
        assert f"\n{name} " in out
    assert "closed_book,agreeing,conflicting" in out and "en,fr,es,de,leetspeak,piglatin" in out


@pytest.mark.parametrize("name", ["cf_world_facts.json", "cf_bio.jsonl", "nq_swap.jsonl", "memotrap.csv"])
def test_cli_validate_accepts_external_formats(name, capsys):
    assert main(["validate", str(DATA / name)]) == 0
    out = capsys.readouterr().out
    assert " examples: " in out and "\nexample '" in out


def test_cli_validate_rejects_with_one_line(capsys):
    assert main(["validate", str(DATA / "missing_field.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "missing_field.jsonl: record 2: missing field 'memory_answer'" in err


def test_cli_validate_task_renders_conjugate(capsys):
    assert main(["validate", "capitals", "--conjugate", "fr", "--index", "0"]) == 0
    out = capsys.readouterr().out
    assert "Question :" in out and "hash" in out
