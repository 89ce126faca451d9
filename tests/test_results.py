"""The results folder's typed records: what is written, and folders of earlier versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.errors import RunError
from harness.reports.report import write_report
from harness.reports.runs import RunResults
from harness.results import RUN_JSON, RunDirectory, SampleRecord, SummaryRow
from harness.results.record import FORMAT
from harness.stats import MetricValue


def test_sample_records_round_trip_and_leave_out_what_was_not_scored(tmp_path):
    run = RunDirectory(tmp_path)
    record = SampleRecord(id="x", condition="conflicting", conjugate="en", prompt="p",
                          answers={"context": ["Lyon"], "parametric": ["Paris"]},
                          scores={"outcome": "context"}, output="Lyon")
    run.append_samples("ckpt", "task", [record])
    (line,) = run.samples_file("ckpt", "task").read_text().splitlines()
    assert "loglikelihoods" not in json.loads(line) and "meta" not in json.loads(line)
    assert run.read_samples("ckpt", "task") == [record]
    assert record.key == ("x", "conflicting", "en")


def test_a_folder_of_an_earlier_version_reads_with_the_conflict_outcome_renamed(tmp_path):
    run = RunDirectory(tmp_path)
    path = run.samples_file("ckpt", "task")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"id": 3, "condition": "conflicting", "conjugate": "en", "prompt": "p",
                                "answers": {"context": ["a"], "parametric": ["b"]},
                                "scores": {"hit_context": True, "hit_parametric": False, "mode": "context"}}) + "\n")
    (sample,) = run.read_samples("ckpt", "task")
    assert sample.scores == {"hit_context": True, "hit_parametric": False, "outcome": "context"}
    assert sample.id == "3"


def test_summary_rows_write_undefined_values_as_null(tmp_path):
    run = RunDirectory(tmp_path)
    row = SummaryRow.of(MetricValue(float("nan"), float("nan"), float("nan"), 0), checkpoint="c", step=None,
                        task="t", task_version=1, task_hash="h", condition="c", conjugate="en",
                        mode="generate", metric="memorization_ratio")
    run.write_summary([row])
    assert json.loads(run.summary_file.read_text())["value"] is None
    assert run.read_summary() == [row]


FORMAT_1 = Path(__file__).parent / "data" / "results-a77ba75"


def test_a_folder_written_before_run_json_had_a_format_still_loads(tmp_path):
    """tests/data/results-a77ba75 was written by the harness of commit a77ba75 (run.json as a
    plain dict, no ``format``): it reads as format 1, reports, and is rewritten as the current
    format without losing anything."""
    folder = tmp_path / "run"
    shutil.copytree(FORMAT_1, folder)
    before = json.loads((folder / RUN_JSON).read_text())
    record = RunDirectory(folder).read_record()
    assert record.format == 1 and "format" not in before
    assert [entry.label for entry in record.checkpoints] == ["checkpoint-10", "checkpoint-20"]
    assert record.checkpoints[0].weights == before["checkpoints"][0]["weights"]
    assert record.task_hashes == before["task_hashes"] and record.config == before["config"]
    run = RunResults(folder)
    assert [point.step for point in run.checkpoints] == [10, 20]
    assert write_report(folder).is_file()
    RunDirectory(folder).write_record(record)
    after = json.loads((folder / RUN_JSON).read_text())
    assert after.pop("format") == FORMAT
    assert after.pop("invocations") == []  # not recorded then; a resume records the first from its config
    assert after.pop("task_add_bos") == {}  # not recorded then
    entries = after.pop("checkpoints")
    assert [{k: v for k, v in e.items() if k in b} for e, b in zip(entries, before.pop("checkpoints"))] == \
        [b for b in json.loads((FORMAT_1 / RUN_JSON).read_text())["checkpoints"]]
    assert {k for e in entries for k in e} - {k for e in json.loads((FORMAT_1 / RUN_JSON).read_text())["checkpoints"]
                                              for k in e} == {"epoch", "tokens"}
    assert after == before


def test_a_run_json_of_a_newer_harness_is_refused_with_its_file_named(tmp_path):
    (tmp_path / RUN_JSON).write_text(json.dumps({"format": FORMAT + 1, "config": {}}))
    with pytest.raises(RunError, match=f"{tmp_path / RUN_JSON}: format {FORMAT + 1} was written by a newer"):
        RunDirectory(tmp_path).read_record()
    (tmp_path / RUN_JSON).write_text("{not json")
    with pytest.raises(RunError, match="run.json: not valid JSON"):
        RunDirectory(tmp_path).read_record()
