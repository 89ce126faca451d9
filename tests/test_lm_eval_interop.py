"""lm-evaluation-harness interop, one test per direction with fixture files: a harness task
exported as an lm-eval task (YAML + data, for ``lm_eval --include_path``), and an lm-eval
``--log_samples`` file read back into the harness's sample records and scored by it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.errors import TaskError
from harness.results.lm_eval import export_task, read_samples
from harness.scoring import aggregate
from harness.tasks import TaskRegistry

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "lm_eval"
# The fields of lm-eval's TaskConfig (lm_eval/api/task.py) an export uses: lm-eval refuses a
# task YAML with keys it does not know.
LM_EVAL_KEYS = {"task", "dataset_path", "dataset_kwargs", "test_split", "doc_to_text", "doc_to_target",
                "doc_to_choice", "target_delimiter", "output_type", "generation_kwargs", "metric_list", "metadata"}


@pytest.fixture(scope="module")
def registry() -> TaskRegistry:
    return TaskRegistry()


def test_export_writes_an_lm_eval_task_and_its_data(registry, tmp_path):
    task = registry.select([f"memotrap_history_of_science_qa={DATA / 'published' / '4-history-of-science-qa.csv'}"])[0]
    path = export_task(task, tmp_path)
    written = yaml.safe_load(path.read_text())
    data = Path(written["dataset_kwargs"]["data_files"]["test"])
    assert data == (tmp_path / "harness_memotrap_history_of_science_qa_en_ll.jsonl").resolve()
    expected = yaml.safe_load((FIXTURES / path.name).read_text())
    expected["dataset_kwargs"]["data_files"]["test"] = str(data)
    # a task read from a local copy hashes the copy's path too: the hash depends on the checkout
    expected["metadata"]["harness_task_hash"] = task.content_hash()
    assert written == expected and set(written) <= LM_EVAL_KEYS
    docs = [json.loads(line) for line in data.read_text().splitlines()]
    assert [doc["id"] for doc in docs] == ["1", "2"]
    # the choices are scored strings as the harness scores them: the asked-for ending first,
    # with the leading space after "Answer:", lm-eval adding nothing between (target_delimiter "")
    assert docs[0]["choices"] == [" B", " A"] and docs[0]["target"] == 0
    assert docs[0]["prompt"].endswith("\nAnswer:")

    generated = yaml.safe_load(export_task(task, tmp_path, mode="generate").read_text())
    assert generated["output_type"] == "generate_until" and set(generated) <= LM_EVAL_KEYS
    assert generated["generation_kwargs"]["until"] == ["\n"] and generated["generation_kwargs"]["do_sample"] is False
    with pytest.raises(TaskError, match="conjugate 'fr'"):
        export_task(task, tmp_path, conjugate="fr")
    with pytest.raises(TaskError, match="apply_chat_template"):
        export_task(task, tmp_path, fmt="chat")


def test_lm_eval_samples_read_back_as_harness_samples():
    ll = read_samples(FIXTURES / "samples_harness_memotrap_history_of_science_qa_en_ll_2026-12-03T07-00-00.000000.jsonl")
    assert [(s.id, s.condition, s.conjugate) for s in ll] == [("1", "conflicting", "en"), ("2", "conflicting", "en")]
    # item 1: log P(" B") = -1.25 > log P(" A") = -2.5, the asked-for ending wins; item 2: -3.0 < -0.75
    assert [s.scores["ll_context_wins"] for s in ll] == [True, False]
    assert ll[0].scores["ll_margin"] == pytest.approx(1.25)
    assert aggregate("ll_context_win_rate", [s.scores for s in ll]).value == 0.5   # lm-eval's acc: (1 + 0) / 2
    assert not any(key.endswith("_per_token") for s in ll for key in s.scores)   # lm-eval logs no token counts

    generated = read_samples(FIXTURES / "samples_harness_faitheval_unanswerable_en_gen_2026-12-03T07-00-00.000000.jsonl")
    assert [s.output for s in generated] == [" I cannot find it in the context.", " 1932"]
    # FaithEval counts "cannot" as abstaining (its "not"); lm-eval's exact_match against "unknown" gave 0 and 0
    assert [s.scores["correct"] for s in generated] == [True, False]


def test_a_file_that_is_not_an_export_is_refused(tmp_path):
    path = tmp_path / "samples_other_2026.jsonl"
    path.write_text(json.dumps({"doc_id": 0, "doc": {"question": "q"}, "filtered_resps": ["a"]}) + "\n")
    with pytest.raises(TaskError, match="line 1: field 'doc': not a document exported by ift-harness"):
        read_samples(path)
    with pytest.raises(TaskError, match="no such lm-eval samples file"):
        read_samples(tmp_path / "missing.jsonl")


def test_the_cli_exports(tmp_path, capsys):
    from harness.cli.main import main

    csv = DATA / "published" / "4-history-of-science-qa.csv"
    assert main(["export-lm-eval", f"memotrap_history_of_science_qa={csv}", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "harness_memotrap_history_of_science_qa_en_ll.yaml").is_file()
    assert "lm_eval --include_path" in capsys.readouterr().out
