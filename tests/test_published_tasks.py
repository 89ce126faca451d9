"""The field's probes as built-in tasks (ConFiQA, FaithEval, NQ-Swap, MemoTrap): each validates
from a hand-made file in its publishers' layout (tests/data/published, tests/data), read as a
local copy (``--tasks NAME=FILE``) and through its ``hf:`` source, with ``datasets`` loading
a local folder in the hub's layout. Nothing is downloaded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.errors import TaskError
from harness.tasks import TaskRegistry
from harness.tasks.prompts import render

DATA = Path(__file__).parent / "data"
PUBLISHED = DATA / "published"

# task -> its hand-made fixture in the published layout
FIXTURES = {
    "confiqa_qa": PUBLISHED / "ConFiQA-QA.json",
    "confiqa_mr": PUBLISHED / "ConFiQA-QA.json",   # the README documents one record layout for all three
    "confiqa_mc": PUBLISHED / "ConFiQA-QA.json",
    "faitheval_counterfactual": PUBLISHED / "faitheval_counterfactual.jsonl",
    "faitheval_unanswerable": PUBLISHED / "faitheval_unanswerable.jsonl",
    "faitheval_inconsistent": PUBLISHED / "faitheval_inconsistent.jsonl",
    "nq_swap": DATA / "nq_swap.jsonl",
    "memotrap_proverb_ending": DATA / "memotrap.csv",
    "memotrap_proverb_translation": DATA / "memotrap.csv",
    "memotrap_hate_speech_ending": DATA / "memotrap.csv",
    "memotrap_history_of_science_qa": PUBLISHED / "4-history-of-science-qa.csv",
}


@pytest.fixture(scope="module")
def registry() -> TaskRegistry:
    return TaskRegistry()


def _records(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_task_reads_a_local_copy_in_the_published_layout(registry, name):
    task = registry.select([f"{name}={FIXTURES[name]}"])[0]
    assert task.name == name and task.config.source.file is not None
    assert task.examples and {e.condition for e in task.examples} <= set(task.config.conditions)
    for conjugate in task.config.conjugates:
        for example in task.examples:
            render(task, example, conjugate)   # every placeholder filled, in every conjugate


def test_confiqa_items_as_the_authors_score_them(registry):
    task = registry.select([f"confiqa_qa={FIXTURES['confiqa_qa']}"])[0]
    conflicting = [e for e in task.examples if e.condition == "conflicting"]
    assert conflicting[0].answers == {"context": ("Germany", "Federal Republic of Germany"),
                                      "parametric": ("France", "French Republic")}
    prompt = render(task, conflicting[0]).prompt
    assert prompt == "Paris, on the Seine, is the capital of Germany and its largest city.\nQ:Which country is " \
                     "Paris the capital of?\nA:"
    assert {"pc", "po", "mr"} <= set(task.config.scoring.metrics)


def test_faitheval_counterfactual_lists_the_options_and_targets_the_key(registry):
    task = registry.select([f"faitheval_counterfactual={FIXTURES['faitheval_counterfactual']}"])[0]
    first = task.examples[0]
    assert first.answers == {"target": ("marshmallows",)}
    assert "Options:\nA. rock\nB. marshmallows\nC. cheese\nD. ice\nAnswer:" in render(task, first).prompt


def test_a_local_copy_must_exist_and_be_a_data_file(registry):
    with pytest.raises(TaskError, match="no such file"):
        registry.select(["nq_swap=missing.parquet"])
    with pytest.raises(TaskError, match="a local copy is a data file"):
        registry.select(["nq_swap=notes.txt"])


def _hub_folder(tmp_path: Path, records: list[dict], split: str) -> Path:
    """A local folder in the layout `datasets` reads from the hub: data/<split>-00000-of-00001.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "hub"
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records), folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    return tmp_path


@pytest.mark.parametrize("name", ["faitheval_counterfactual", "faitheval_unanswerable", "faitheval_inconsistent",
                                  "nq_swap"])
def test_the_hf_source_loads_a_hub_layout_folder_through_datasets(registry, datasets_cache, name):
    task = registry.tasks[name]
    hf = task.config.source.hf
    records = _records(FIXTURES[name])
    if name == "nq_swap":   # one column type on the hub: every answer a list of spellings
        records = [{k: [v] if k.endswith("_answer") and isinstance(v, str) else v for k, v in r.items()}
                   for r in records]
    folder = _hub_folder(datasets_cache, records, hf.split)
    local = dataclasses.replace(hf, path=str(folder), revision=None)
    copy = dataclasses.replace(task, config=dataclasses.replace(
        task.config, source=dataclasses.replace(task.config.source, hf=local)), _examples=None)
    from_file = registry.select([f"{name}={FIXTURES[name]}"])[0]
    assert [e.to_dict() for e in copy.examples] == [e.to_dict() for e in from_file.examples]


@pytest.mark.parametrize("name", ["confiqa_qa", "memotrap_history_of_science_qa"])
def test_the_hf_source_reads_the_authors_file_through_datasets(registry, datasets_cache, name):
    task = registry.tasks[name]
    local = dataclasses.replace(task.config.source.hf, data_files=str(FIXTURES[name]))
    copy = dataclasses.replace(task, config=dataclasses.replace(
        task.config, source=dataclasses.replace(task.config.source, hf=local)), _examples=None)
    from_file = registry.select([f"{name}={FIXTURES[name]}"])[0]
    assert [e.to_dict() for e in copy.examples] == [e.to_dict() for e in from_file.examples]


def test_harness_tasks_lists_them_with_source_and_size_without_downloading(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert set(FIXTURES) <= set(lines)
    assert "hf:Salesforce/FaithEval-unanswerable-v1.0[test]" in lines["faitheval_unanswerable"]
    assert "hf:json:byronBBL/Context-DPO/ConFiQA/ConFiQA-MC.json" in lines["confiqa_mc"]
    assert "860 records" in lines["memotrap_proverb_ending"]
    assert "builder:capitals" in lines["capitals"]


def test_a_source_that_cannot_load_says_how_to_give_a_local_copy(registry, datasets_cache):
    task = registry.tasks["faitheval_unanswerable"]
    missing = dataclasses.replace(task.config.source.hf, path=str(datasets_cache / "no-such-dataset"))
    copy = dataclasses.replace(task, config=dataclasses.replace(
        task.config, source=dataclasses.replace(task.config.source, hf=missing)), _examples=None)
    with pytest.raises(TaskError, match="source.hf: cannot load dataset .*--tasks faitheval_unanswerable=FILE"):
        copy.examples


def test_validate_shows_a_local_copy(capsys):
    assert main(["validate", f"faitheval_counterfactual={FIXTURES['faitheval_counterfactual']}"]) == 0
    out = capsys.readouterr().out
    assert "Options:\nA. rock\nB. marshmallows" in out and "target: marshmallows" in out


def test_a_bare_confiqa_or_faitheval_file_is_detected_and_scored_as_its_authors_do():
    from harness.tasks import task_from_data_file

    confiqa = task_from_data_file(FIXTURES["confiqa_qa"])
    assert confiqa.config.source.format == "confiqa" and confiqa.config.scoring.match == "substring"
    assert {e.condition for e in confiqa.examples} == {"conflicting", "agreeing"}
    faitheval = task_from_data_file(FIXTURES["faitheval_counterfactual"])
    assert faitheval.config.source.format == "faitheval_counterfactual"
    assert "Options:\nA. rock" in render(faitheval, faitheval.examples[0]).prompt
    # the abstention subsets share plain QA fields: a task names them, detection never guesses
    with pytest.raises(TaskError, match="cannot tell the format"):
        task_from_data_file(FIXTURES["faitheval_unanswerable"])
