"""Per-item analysis: the samples table and the transitions between two checkpoints, on
results folders written by hand (:mod:`handmade`)."""

from __future__ import annotations

import math

import pytest
from handmade import N, conflict, context_run, correct, write_run

from harness.errors import ReportError, RunError
from harness.reports.items import item_state, load_samples, states, transitions


def test_load_samples_has_a_row_per_sample_with_where_it_was_scored(tmp_path):
    run = context_run(tmp_path / "run", [20, 120, 40])
    frame = load_samples(run)
    assert len(frame) == 3 * N
    assert {"run", "checkpoint", "step", "task", "condition", "conjugate", "id", "prompt", "output",
            "hit_context", "hit_parametric", "outcome", "truncated"} <= set(frame.columns)
    assert sorted(frame["step"].unique()) == [10, 20, 30]
    at_20 = frame[frame["step"] == 20]
    assert set(at_20["checkpoint"]) == {"checkpoint-20"} and set(at_20["task"]) == {"capitals"}
    assert at_20["hit_context"].sum() == 120
    assert set(frame["run"]) == {"run"}


def test_load_samples_flattens_loglikelihood_scores(tmp_path):
    run = write_run(tmp_path / "run", [("checkpoint-1", 1, {("capitals", "conflicting", "en"): conflict(5, 10,
                                                                                                      ll_wins=3)})])
    frame = load_samples(run)
    assert frame["ll_context_wins"].sum() == 3 and frame["ll_margin"].tolist()[:3] == [1.0, 1.0, 1.0]


def test_load_samples_of_several_runs_and_a_glob(tmp_path):
    context_run(tmp_path / "a", [20, 120])
    context_run(tmp_path / "b", [50])
    (tmp_path / "notes.txt").write_text("not a run")
    by_glob = load_samples(str(tmp_path / "*"))
    assert by_glob.groupby("run").size().to_dict() == {"a": 2 * N, "b": N}
    by_list = load_samples([tmp_path / "b", tmp_path / "a"])
    assert len(by_list) == 3 * N
    with pytest.raises(RunError, match="matches no results folder"):
        load_samples(str(tmp_path / "nothing-*"))
    with pytest.raises(ReportError, match="no samples"):
        load_samples(tmp_path)


def test_transitions_from_peak_to_last(tmp_path):
    # Items ex0..ex119 answer from context at step 20; only ex0..ex39 still do at step 30.
    run = context_run(tmp_path / "run", [20, 120, 40])
    result = transitions(run, "capitals")
    assert (result.before.step, result.after.step) == (20, 30)
    assert result.metric == "context_hit_rate" and result.condition == "conflicting" and result.n == N
    assert result.states == ("context", "parametric", "both", "neither")
    assert result.counts[0] == (40, 80, 0, 0)  # context -> context, context -> parametric
    assert result.counts[1] == (0, 80, 0, 0)
    assert (result.lost, result.gained) == (80, 0)
    assert result.p_value == pytest.approx(2 * 0.5 ** 80)
    assert len(result.flips) == 10
    assert all(flip.before_state == "context" and flip.after_state == "parametric" for flip in result.flips)
    assert all(20 <= int(flip.id[2:]) < 120 for flip in result.flips)  # the items that did move
    text = str(result)
    assert "lost 80, gained 0" in text and "step 20 \\ step 30" in text and "McNemar" in text


def test_transitions_between_named_checkpoints(tmp_path):
    run = context_run(tmp_path / "run", [20, 120, 40])
    rising = transitions(run, "capitals", "first", "checkpoint-20")
    assert (rising.lost, rising.gained) == (0, 100)
    assert all(flip.before_state == "parametric" for flip in rising.flips)
    by_step = transitions(run, "capitals", 10, 30)
    assert (by_step.lost, by_step.gained) == (0, 20)
    with pytest.raises(ReportError, match="no checkpoint 'checkpoint-99'.*first, peak, last, checkpoint-10"):
        transitions(run, "capitals", "checkpoint-99", "last")
    with pytest.raises(ReportError, match="no results for task 'cities'"):
        transitions(run, "cities")
    with pytest.raises(ReportError, match=r"no checkpoint 'lastt' \(did you mean 'last'"):
        transitions(run, "capitals", "first", "lastt")
    with pytest.raises(ReportError, match=r"no results for task 'capitls' \(did you mean 'capitals'"):
        transitions(run, "capitls")


def test_transitions_of_an_accuracy_are_yes_no(tmp_path):
    run = write_run(tmp_path / "run", [(f"checkpoint-{s}", s, {("recall", "closed_book", "en"): correct(c)})
                                       for s, c in ((1, 150), (2, 120))])
    result = transitions(run, "recall", "first", "last")
    assert result.states == ("correct", "wrong")
    assert result.counts == ((120, 30), (0, 50))
    assert math.isclose(result.p_value, 2 * 0.5 ** 30)


def test_states_and_item_state():
    assert item_state("context_hit_rate", {"outcome": "both", "hit_context": True}) == "both"
    assert item_state("icl_rate", {"hit_icl": False, "hit_instruction": True}) == "instruction"
    assert item_state("ll_context_win_rate", {"ll_context_wins": False}) == "parametric likelier"
    with pytest.raises(ReportError, match="not a yes/no per item"):
        states("ll_mean_logodds")


def test_a_task_without_the_conjugates_asked_for_is_left_out_with_a_warning(caplog):
    from harness.sweep.config import RunConfig
    from harness.sweep.plan import plan
    from harness.tasks.registry import TaskRegistry

    tasks = TaskRegistry().select(["capitals", "proverbs"])
    assert "fr" in tasks[0].config.conjugates and "fr" not in tasks[1].config.conjugates
    with caplog.at_level("WARNING", logger="harness"):
        items = plan(tasks, RunConfig(conjugates=["fr"], limit=2))
    assert {item.task.name for item in items} == {"capitals"}
    assert "proverbs: left out, it has none of the conjugates asked for (fr; it has en" in caplog.text
