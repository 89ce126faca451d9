"""Adaptive checkpoint schedules (harness.sweep.schedule): the coarse round, the stopping rule,
what it saves on simulated runs, and an adaptive folder that a full sweep resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import RunError
from harness.results import RunDirectory
from harness.sweep.config import RunConfig
from harness.sweep.evaluate import evaluate
from harness.sweep.schedule import (
    AdaptiveSchedule,
    Series,
    coarse,
    flat_caveat,
    open_gaps,
    replay,
    run_schedule,
    verdict_and_peak,
)
from harness.testing import simulated_curve

DATA = Path(__file__).parent / "data"


def adaptive(run: list[dict[str, float]], budget: int | None = None) -> AdaptiveSchedule:
    schedule = AdaptiveSchedule(len(run), budget)
    done: list[int] = []
    run_schedule(schedule, done.extend, lambda: [{i: run[i] for i in done}])
    return schedule


def test_the_coarse_round_holds_both_ends_and_about_one_in_ten():
    assert coarse(100) == [0, 10, 20, 30, 40, 50, 59, 69, 79, 89, 99]
    assert coarse(11) == [0, 5, 10]
    assert coarse(2) == [0, 1]
    assert coarse(100, budget=4) == [0, 33, 66, 99]


def test_a_gap_that_could_hold_the_peak_is_open_and_one_far_below_it_is_not():
    ids = [f"e{i}" for i in range(100)]

    def at(rate: float) -> dict[str, float]:
        return {key: float(i < rate * 100) for i, key in enumerate(ids)}

    # 0.4 -> 0.9 (index 10) -> 0.9 (20) -> 0.4 (32): the peak may lie in 5..20; 30..32 is far below it
    values = {0: at(0.4), 5: at(0.65), 10: at(0.9), 20: at(0.9), 30: at(0.6), 32: at(0.4)}
    gaps = open_gaps(values, 33)
    assert (10, 20) in gaps.open and (5, 10) in gaps.open
    assert (30, 32) not in gaps.open
    # The peak's neighbours evaluated, the curve gentle, the gaps far below the peak: nothing to refine.
    rates = {0: 0.4, 2: 0.5, 4: 0.6, 6: 0.7, 8: 0.8, 9: 0.9, 10: 0.8, 11: 0.7, 13: 0.5, 17: 0.4}
    settled = open_gaps({index: at(rate) for index, rate in rates.items()}, 18)
    assert settled.open == {} and settled.peak == 9


def test_with_an_end_missing_no_verdict_is_made():
    values = {0: {"a": 1.0}, 5: {"a": 0.0}}
    assert open_gaps(values, 10).open  # the last checkpoint (9) is not in


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_a_simulated_inversion_of_100_checkpoints_a_third_is_enough(seed):
    run = simulated_curve(100, 200, seed=seed)  # 0.4 -> 0.9 at 30% of the run -> 0.6
    schedule = adaptive(run)
    assert len(schedule.tried) <= 30
    assert schedule.stopped == "no gap could change the peak or the verdict"
    assert verdict_and_peak(run, sorted(schedule.tried)) == verdict_and_peak(run, list(range(100)))
    assert schedule.flat == [] and flat_caveat(schedule, ["conflicts"]) is None  # the change was seen


def test_a_peak_between_the_coarse_checkpoints_is_missed_and_the_schedule_says_it_may_be(tmp_path):
    """The README's demo case: context reliance rises and falls between the first round's
    checkpoints (0, 5, 10 of 11), which all read 0. The rule cannot see it and stops; what it
    must do is say that its stop rests on a curve it saw flat."""
    ids = [f"e{i}" for i in range(300)]
    rates = [0, 0.02, 0.05, 0.05, 0.01, 0, 0, 0, 0, 0, 0]
    run = [{key: float(i < rate * 300) for i, key in enumerate(ids)} for rate in rates]
    schedule = adaptive(run)
    assert sorted(schedule.tried) == [0, 5, 10] and schedule.stopped == "no gap could change the peak or the verdict"
    assert verdict_and_peak(run, [0, 5, 10]) != verdict_and_peak(run, list(range(11)))  # missed, as in the README
    caveat = flat_caveat(schedule, ["conflicts (en)"])
    assert caveat and caveat.startswith("conflicts (en) changed by no more than the noise between the 3 checkpoints")
    assert "up to 4 checkpoints left out" in caveat and "--schedule all" in caveat
    write_sweep(tmp_path / "sweep", run)
    replayed = replay(tmp_path / "sweep")
    # A replay names the series as the run does (run.json's schedule.series, the console).
    named = Series("conflicts", "en").name
    assert named == "conflicts context_hit_rate (conflicting, en)"
    assert replayed.same_peak == [False] and replayed.caveat.startswith(f"{named} changed by no more")


def test_the_budget_stops_the_schedule_and_says_so():
    run = simulated_curve(100, 200, seed=0)
    schedule = adaptive(run, budget=15)
    assert len(schedule.tried) == 15
    assert "budget of 15" in schedule.stopped


def test_max_checkpoints_goes_with_the_adaptive_schedule_only():
    with pytest.raises(RunError, match="max_checkpoints: goes with the adaptive schedule"):
        RunConfig(max_checkpoints=5)
    with pytest.raises(RunError, match="max_checkpoints: at least 3"):
        RunConfig(schedule="adaptive", max_checkpoints=2)
    with pytest.raises(RunError, match="does not go with --follow or --workers"):
        RunConfig(schedule="adaptive", checkpoints="runs/x", follow=True)


def config(output: Path, checkpoints: Path, **overrides) -> RunConfig:
    settings = dict(output=str(output), checkpoints=str(checkpoints), tasks=[str(DATA / "cf_world_facts.json")],
                    backend="hf", conjugates=["en"], modes=["generate"], bootstrap_resamples=50, batch_size=8,
                    limit=4)
    settings.update(overrides)
    return RunConfig(**settings)


def test_a_full_sweep_resumes_into_an_adaptive_folder(make_checkpoint_run, tmp_path):
    run = make_checkpoint_run("adaptive-run", steps=tuple(range(10, 130, 10)))  # 12 checkpoints
    output = tmp_path / "out"
    evaluate(config(output, run, schedule="adaptive", max_checkpoints=4), progress=False)
    record = json.loads((output / "run.json").read_text())
    schedule = record["schedule"]
    assert schedule["checkpoints"] == 12 and 3 <= schedule["evaluated"] <= 4
    assert "checkpoint-10" not in schedule["left_out"] and "checkpoint-120" not in schedule["left_out"]
    evaluated = {row.checkpoint for row in RunDirectory(output).read_summary()}
    assert len(evaluated) == schedule["evaluated"] and not evaluated & set(schedule["left_out"])
    assert len(evaluated) + len(schedule["left_out"]) == 12

    from harness.reports.report import write_report

    assert f"adaptive schedule: {len(evaluated)} of 12 checkpoints evaluated" in write_report(output).read_text()

    before = {path: path.read_bytes() for path in (output / "samples").rglob("*.jsonl")}
    evaluate(config(output, run), progress=False)  # the full sweep: only the rest is evaluated
    assert len({row.checkpoint for row in RunDirectory(output).read_summary()}) == 12
    assert "schedule" not in json.loads((output / "run.json").read_text())
    assert all(path.read_bytes() == text for path, text in before.items())  # the adaptive samples kept as they were


def write_sweep(folder: Path, run: list[dict[str, float]], *, steps: list[int] | None = None) -> list[str]:
    """A finished full sweep of one task in the results layout, from per-example hits at each
    checkpoint (``run[i]``); run.json lists the checkpoints in shuffled order. Its labels."""
    from harness.results.record import CheckpointEntry, RunRecord
    from harness.results.rows import SampleRecord

    directory = RunDirectory(folder)
    steps = steps or [10 * (i + 1) for i in range(len(run))]
    labels = [f"checkpoint-{step}" for step in steps]
    for label, values in zip(labels, run):
        directory.append_samples(label, "conflicts", [
            SampleRecord(key, "conflicting", conjugate, "prompt", {"context": ["a"], "parametric": ["b"]},
                         scores={"hit_context": bool(hit if conjugate == "en" else 1 - hit)}, output="a")
            for key, hit in values.items() for conjugate in ("en", "fr")])
    entries = [CheckpointEntry(label, step) for label, step in zip(labels, steps)]
    directory.write_record(RunRecord(task_hashes={"conflicts": "h"}, checkpoints=entries[1::2] + entries[::2]))
    return labels


def test_a_replay_on_a_finished_sweep_evaluates_what_the_schedule_would(tmp_path):
    run = simulated_curve(40, 150, seed=3)
    labels = write_sweep(tmp_path / "sweep", run)
    result = replay(tmp_path / "sweep")
    assert result.labels == labels  # step order, not run.json's order
    assert [s.conjugate for s in result.series] == ["en"]  # English, not the inverted French copy
    assert result.evaluated == sorted(adaptive(run).tried)
    assert result.stopped == "no gap could change the peak or the verdict"
    assert result.same_verdict == [True] and result.same_peak == [True] and result.caveat is None
    assert len(replay(tmp_path / "sweep", max_checkpoints=5).evaluated) == 5


def test_a_replay_at_a_coarser_saving_interval_is_the_thinned_runs_replay(tmp_path):
    run = simulated_curve(40, 150, seed=3)
    labels = write_sweep(tmp_path / "sweep", run)
    kept = list(range(0, 40, 4)) + [39]  # every 4th from the first, and the last
    thinned = replay(tmp_path / "sweep", every=4)
    assert thinned.labels == [labels[i] for i in kept]
    assert thinned.evaluated == sorted(adaptive([run[i] for i in kept]).tried)
    assert replay(tmp_path / "sweep", every=13).labels == [labels[i] for i in (0, 13, 26, 39)]  # the last is on it
    with pytest.raises(RunError, match="every: must be at least 1"):
        replay(tmp_path / "sweep", every=0)


def test_a_replay_needs_a_full_sweep_with_a_series_to_follow(tmp_path):
    from harness.results.record import RunRecord

    write_sweep(tmp_path / "sweep", simulated_curve(12, 50))
    directory = RunDirectory(tmp_path / "sweep")
    record = directory.read_record()
    record.schedule = {"kind": "adaptive", "left_out": ["checkpoint-30"]}
    directory.write_record(record)
    with pytest.raises(RunError, match="left out 1 checkpoints; replay needs a full sweep"):
        replay(tmp_path / "sweep")
    with pytest.raises(RunError, match="no evaluated checkpoints"):
        replay(tmp_path / "empty")
    RunDirectory(tmp_path / "other").write_record(RunRecord(checkpoints=record.checkpoints))
    with pytest.raises(RunError, match=r"no task \(none listed in run.json\) has conflicting examples"):
        replay(tmp_path / "other")
    RunDirectory(tmp_path / "one").write_record(RunRecord(checkpoints=record.checkpoints[:1]))
    with pytest.raises(RunError, match="one evaluated checkpoint"):
        replay(tmp_path / "one")
    labels = write_sweep(tmp_path / "gap", simulated_curve(12, 50))
    RunDirectory(tmp_path / "gap").samples_file(labels[5], "conflicts").unlink()
    with pytest.raises(RunError, match=f"conflicts \\(en\\) has no conflicting example scored by generation at "
                                       f"every checkpoint \\(none at {labels[5]}\\)"):
        replay(tmp_path / "gap")


def test_the_report_repeats_the_schedules_caveat(tmp_path):
    from handmade import context_run

    from harness.reports.report import _run_warnings
    from harness.reports.runs import RunResults

    folder = RunDirectory(context_run(tmp_path / "run", [20, 120, 40]))
    record = folder.read_record()
    record.schedule = {"kind": "adaptive", "checkpoints": 4, "evaluated": 3, "left_out": ["checkpoint-x"],
                       "stopped": "no gap could change the peak or the verdict", "caveat": "conflicts (en) looked flat"}
    folder.write_record(record)
    assert "adaptive schedule: conflicts (en) looked flat" in _run_warnings(RunResults(folder.path))
