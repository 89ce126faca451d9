"""Each paper's definition, pinned with hand-made outputs, so that a later change cannot drift
from the papers silently (docs/metrics.md lists the definitions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.reports.runs import RunResults
from harness.results import RunDirectory, RunRecord, SampleRecord, SummaryRow
from harness.scoring import aggregate, score_generation
from harness.tasks import task_from_data_file

DATA = Path(__file__).parent / "data"


def test_counterfactual_accuracy_counts_every_output_with_the_context_answer():
    # The inversion paper: the context's answer appears in the greedy output, whatever else does.
    answers = {"context": ("Herat",), "parametric": ("Kabul",)}
    outputs = ["Herat", "Herat, not Kabul", "Kabul", "Kandahar"]
    scores = [score_generation(answers, output) for output in outputs]
    assert [s["hit_context"] for s in scores] == [True, True, False, False]
    assert [s["outcome"] for s in scores] == ["context", "both", "parametric", "neither"]
    hit, only, both = (aggregate(m, scores).value for m in ("context_hit_rate", "context_rate", "both_rate"))
    assert hit == pytest.approx(0.5) and hit == pytest.approx(only + both)
    assert aggregate("parametric_hit_rate", scores).value == pytest.approx(0.5)


@pytest.mark.parametrize(("context", "parametric", "output", "outcome"), [
    ("New Cairo", "Cairo", "New Cairo", "context"),  # "Cairo" lies inside the context's own match
    ("New Cairo", "Cairo", "Cairo", "parametric"),
    ("New Cairo", "Cairo", "New Cairo, not Cairo", "both"),
    ("Cairo", "New Cairo", "New Cairo", "parametric"),  # and the other way round
    ("Cairo", "New Cairo", "It is Cairo.", "context"),
])
def test_nested_answers_are_told_apart_by_their_spans(context, parametric, output, outcome):
    scores = score_generation({"context": (context,), "parametric": (parametric,)}, output)
    assert scores["outcome"] == outcome
    assert scores["hit_context"] is (outcome in ("context", "both"))
    assert scores["hit_parametric"] is (outcome in ("parametric", "both"))


def test_on_a_cf_file_the_headline_is_counterfactual_accuracy_and_equals_context_plus_both(tmp_path):
    task = task_from_data_file(DATA / "cf_world_facts.json")
    # A model that copies the whole context names both answers where the context names both
    # ("Unlike Paris, ... the capital of Italy is Milan"); another answers from memory.
    outputs = {"1": "Lyon", "2": "Unlike Paris, the capital of Italy is Milan.", "3": "yen"}
    run = RunDirectory(tmp_path / "run")
    samples = []
    for example in task.examples:
        scores = score_generation(example.answers, outputs[example.id])
        samples.append(SampleRecord(id=example.id, condition=example.condition, conjugate="en", prompt="p",
                                    answers={r: list(s) for r, s in example.answers.items()}, scores=scores,
                                    output=outputs[example.id]))
    run.append_samples("final", task.name, samples)
    rows = [SummaryRow.of(aggregate(metric, [s.scores for s in samples]), checkpoint="final", step=None,
                          task=task.name, task_version=1, task_hash="h", condition="conflicting", conjugate="en",
                          mode="generate", metric=metric)
            for metric in ("context_hit_rate", "context_rate", "both_rate")]
    run.write_summary(rows)
    run.write_record(RunRecord(task_hashes={task.name: "h"}))
    results = RunResults(run.path)
    assert results.headline(task.name) == "context_hit_rate"
    value = {row.metric: row.value for row in rows}
    assert value["context_hit_rate"] == pytest.approx(2 / 3)
    assert value["context_hit_rate"] == pytest.approx(value["context_rate"] + value["both_rate"])
