"""Task YAML validation, external data formats, the registry and `harness tasks/validate`."""

from __future__ import annotations

import csv
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
        ({"modes: [generate, loglikelihood]": "modes: [generate]\n  matc: prefix"},
         "mine.yaml: scoring.matc: unknown key (did you mean 'match'?)"),
        ({"modes: [generate, loglikelihood]": "modes: [generate]\n  metrics: [context_hitrate]"},
         "scoring.metrics: unknown metric 'context_hitrate' (did you mean 'context_hit_rate'"),
        ({"version: 1": "version: one"}, "mine.yaml: version: expected an integer, got 'one'"),
        ({"family: knowledge_conflict": "family: trivia"}, "family: unknown family 'trivia'"),
        ({"{question}": "{question.upper}"}, "prompt.template: placeholder {question.upper} is not a plain {field}"),
        ({"{question}": "{question!r}"}, "is not a plain {field}"),
        ({"version: 1": "version: 1\nconjugates: [en, klingon]"}, "conjugates: unknown conjugate 'klingon'"),
        ({"version: 1": "version: 1\nconjugates: [en, fr]"}, "prompt.translations.fr: missing"),
        ({"source:\n": "source:\n  builder: capitals\n"}, "source: give exactly one of builder, file, hf"),
        ({"modes: [generate, loglikelihood]": "modes: [generate]\n  metrics: [f1]"}, "scoring.metrics: unknown metric 'f1'"),
        ({"modes: [generate, loglikelihood]": "modes: [generate]\n  match: raw_prefix"},
         "scoring.case_sensitive: match 'raw_prefix' compares the raw output"),
        ({"modes: [generate, loglikelihood]": "modes: [generate]\n  accept_english: maybe"},
         "scoring.accept_english: expected bool, got 'maybe'"),
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


# ------------------------------------------------------- the conjugate-prompting paper's files

PAPER = DATA / "conjugate_prompting.csv"  # written by pandas as the paper's create_datasets.py does


def test_paper_layout_loads_unchanged():
    task = task_from_data_file(PAPER)
    assert task.config.family == "icl_vs_if"
    assert task.config.conjugates == ["en", "fr", "leetspeak", "piglatin"]  # the languages present
    scoring = task.config.scoring
    assert (scoring.match, scoring.case_sensitive, scoring.accept_english, scoring.max_new_tokens) == (
        "raw_prefix", True, False, 10)
    # config capslock-math-instr-input-fr-2shot -> condition capitalize_math, conjugate fr; ids
    # number each (condition, language) so the same item pairs across languages.
    assert [(e.condition, e.conjugate, e.id) for e in task.examples] == [
        ("capitalize_math", "en", "0"), ("capitalize_math", "en", "1"), ("capitalize_math", "fr", "0"),
        ("capitalize_math", "leetspeak", "0"), ("repeat_blank", "en", "0"), ("repeat_blank", "piglatin", "0"),
    ]
    first, fr, leet = task.examples[0], task.examples[2], task.examples[3]
    assert first.answers == {"icl": ("WHAT",), "instruction": ("35",)}  # " WHAT" in the file
    assert fr.answers == {"icl": ("COMBIEN",), "instruction": ("35",)}
    assert leet.answers["icl"] == ("WH47",)
    assert task.examples[5].answers == {"icl": ("_____",), "instruction": ("Otway",)}
    assert first.fields["prompt"].startswith("Capitalize every character.\n\nInput: Thick fog")
    assert first.meta == {"record": 1, "config": "capslock-math-instr-input-en-2shot", "index": "0"}


def test_paper_layout_renders_as_written_per_language_and_plans_per_language():
    from harness.sweep.plan import plan
    from harness.tasks.prompts import render
    from harness.sweep.config import RunConfig

    task = task_from_data_file(PAPER)
    french = task.examples[2]
    rendered = render(task, french, "fr")
    assert rendered.prompt == french.fields["prompt"] and rendered.answers == french.answers
    items = plan([task], RunConfig(limit=1))
    assert sorted(item.key for item in items) == sorted([
        ("0", "capitalize_math", "en"), ("0", "capitalize_math", "fr"), ("0", "capitalize_math", "leetspeak"),
        ("0", "repeat_blank", "en"), ("0", "repeat_blank", "piglatin"),
    ])
    assert len(plan([task], RunConfig())) == 6


def _paper_record(**fields):
    record = {"": "0", "prompt": "Repeat the input.\n\nInput: What is 4 plus 5?\nOutput:", "icl_ans": " What",
              "if_ans": " 9", "config": "repeat-math-instr-input-en-2shot"}
    record.update(fields)
    return {key: value for key, value in record.items() if value is not None}


def test_paper_layout_jsonl_with_the_reread_index_column(tmp_path):
    # What pandas writes for a frame read back without index_col: an "Unnamed: 0" column.
    path = tmp_path / "batch.jsonl"
    records = [_paper_record(**{"": None, "Unnamed: 0": n}) for n in range(2)]
    records.append(_paper_record(config="capslock-math-noinstr-input-hu-4shot", icl_ans=" MENNYI"))
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    task = task_from_data_file(path)
    assert [(e.condition, e.conjugate, e.id, e.meta["index"]) for e in task.examples] == [
        ("repeat_math", "en", "0", 0), ("repeat_math", "en", "1", 1),
        ("capitalize_math_noinstr_input_4shot", "hu", "0", "0"),  # another setting is named
    ]
    assert task.config.conjugates == ["en", "hu"]


@pytest.mark.parametrize("suffix, records, message", [
    (".csv", [_paper_record(icl_ans=None)], r"record 1: missing field 'icl_ans'"),  # no such column
    (".jsonl", [_paper_record(), _paper_record(if_ans=None)], r"record 2: missing field 'if_ans'"),
    (".csv", [_paper_record(), _paper_record(if_ans="")], r"record 2: field 'if_ans': is empty"),
    (".jsonl", [_paper_record(icl_ans=" ")], r"record 1: field 'icl_ans': is empty"),
    (".csv", [_paper_record(config="repeat_math_en")], r"record 1: field 'config': 'repeat_math_en' is not ICL-IF"),
    (".csv", [_paper_record(config="repeat-math-instr-input-ja-2shot")], r"record 1: field 'config': unknown language 'ja'"),
])
def test_paper_layout_bad_records_are_named(tmp_path, suffix, records, message):
    path = tmp_path / f"paper{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    with pytest.raises(TaskError, match=f"{path.name}: {message}"):
        task_from_data_file(path)


def test_paper_layout_in_a_task_file_must_list_its_languages(tmp_path):
    text = f"""\
name: paper
family: icl_vs_if
version: 1
source:
  file: {PAPER}
prompt:
  template: "{{prompt}}"
conjugates: [en, leetspeak, piglatin]
scoring:
  match: raw_prefix
  case_sensitive: true
"""
    with pytest.raises(TaskError, match="conjugates: example '0' is written in 'fr', which the task does not list"):
        load_task_file(write_task(tmp_path, text)).examples


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


@pytest.mark.parametrize("name", ["cf_world_facts.json", "cf_bio.jsonl", "nq_swap.jsonl", "memotrap.csv",
                                  "conjugate_prompting.csv"])
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


def test_cli_validate_renders_the_paper_file_and_the_probe_per_language(capsys):
    assert main(["validate", str(PAPER), "--conjugate", "fr"]) == 0
    out = capsys.readouterr().out
    assert "Combien font 7 fois 5 ?\nSortie :" in out and "icl: COMBIEN\ninstruction: 35" in out
    assert main(["validate", "icl_vs_if", "--conjugate", "nl", "--index", "2"]) == 0
    out = capsys.readouterr().out
    assert "Herhaal de invoer.\n\nInvoer: " in out and "\nUitvoer:\n" in out


def test_all_selects_every_task_that_needs_no_download():
    registry = TaskRegistry()
    selected = {task.name for task in registry.select(["all"])}
    hub = {name for name in registry.names() if registry.get(name).config.source.hf is not None}
    assert hub and not selected & hub and selected | hub == set(registry.names())
