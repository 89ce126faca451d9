"""The results folder's typed records: what is written, and folders of earlier versions."""

from __future__ import annotations

import json

from harness.results import RunDirectory, SampleRecord, SummaryRow
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
