"""Checkpoints kept until evaluated (harness.checkpoints.holds, harness.training.keep) and the
follower's lag (harness.sweep.lag)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.checkpoints import TRAINER_STATE, Checkpoint
from harness.checkpoints.holds import EVALUATED, is_evaluated, mark_evaluated
from harness.results import SummaryRow
from harness.sweep.lag import FollowLag, read_lag
from harness.training.keep import CheckpointKeeper

TASK = str(Path(__file__).parent / "data" / "cf_world_facts.json")


def saves(run: Path, steps, evaluated=()) -> None:
    for step in steps:
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / TRAINER_STATE).write_text("{}")
        if step in evaluated:
            (folder / EVALUATED).touch()


def left(run: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*"))


def keeper(limit: int, max_held: int) -> CheckpointKeeper:
    kept = CheckpointKeeper(max_held)
    args = SimpleNamespace(save_total_limit=limit)
    kept.take_over(args)
    assert args.save_total_limit is None  # the Trainer no longer rotates
    kept.give_back(args)
    assert args.save_total_limit == limit
    return kept


def test_evaluated_checkpoints_rotate_and_unevaluated_ones_are_held(tmp_path):
    saves(tmp_path, [1, 2, 3, 4, 5], evaluated={1, 2})
    keeper(limit=2, max_held=3).rotate(tmp_path)
    assert left(tmp_path) == [3, 4, 5]  # 1 and 2 evaluated: gone; 3 and 4 held, 5 the newest
    for step in (3, 4):
        mark_evaluated(Checkpoint(f"checkpoint-{step}", step, str(tmp_path / f"checkpoint-{step}")))
    keeper(limit=2, max_held=3).rotate(tmp_path)
    assert left(tmp_path) == [4, 5]  # what save_total_limit=2 keeps once all are evaluated


def test_past_the_bound_the_oldest_unevaluated_go_with_a_warning(tmp_path, caplog):
    saves(tmp_path, [1, 2, 3, 4, 5, 6])
    kept = keeper(limit=2, max_held=1)
    with caplog.at_level(logging.WARNING, logger="harness"):
        kept.rotate(tmp_path, best=str(tmp_path / "checkpoint-1"))
    assert left(tmp_path) == [1, 5, 6]  # the best kept, 2 + 1 held, the oldest unevaluated deleted
    assert [Path(p).name for p in kept.deleted_unevaluated] == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert "deleted before the follower evaluated it" in caplog.text and "max_held=1" in caplog.text


def test_without_a_limit_nothing_is_deleted(tmp_path):
    saves(tmp_path, [1, 2, 3], evaluated={1, 2, 3})
    keeper(limit=None, max_held=0).rotate(tmp_path)
    assert left(tmp_path) == [1, 2, 3]


def test_the_follower_marks_each_checkpoint_and_logs_its_lag(tmp_path):
    saves(tmp_path / "run", [10, 20, 30])
    lag = FollowLag(str(tmp_path / "run"), tmp_path / "out")
    row = SummaryRow(checkpoint="checkpoint-10", step=10, task="t", task_version=1, task_hash="h",
                     condition="conflicting", conjugate="en", mode="generate", metric="context_hit_rate", value=0.5,
                     ci_low=None, ci_high=None, n=3)
    lag(Checkpoint("checkpoint-10", 10, str(tmp_path / "run" / "checkpoint-10")), [row])
    assert is_evaluated(tmp_path / "run" / "checkpoint-10") and not is_evaluated(tmp_path / "run" / "checkpoint-20")
    (line,) = read_lag(tmp_path / "out")
    assert line["step"] == 10 and line["training_step"] == 30 and line["lag_steps"] == 20
    assert 0 <= line["lag_seconds"] < 60


def test_a_skipped_checkpoint_is_let_go_without_a_lag_line(tmp_path):
    saves(tmp_path / "run", [10, 20])
    lag = FollowLag(str(tmp_path / "run"), tmp_path / "out")
    lag(Checkpoint("checkpoint-10", 10, str(tmp_path / "run" / "checkpoint-10")), [])
    assert is_evaluated(tmp_path / "run" / "checkpoint-10")  # the follower gave up on it: the trainer may delete it
    assert read_lag(tmp_path / "out") == []


@pytest.mark.slow
def test_a_followed_trainer_with_save_total_limit_2_has_all_6_saves_evaluated(tiny_gpt2_dir, tmp_path):
    from trainers import make_trainer

    from harness.training.callbacks import ContextRelianceCallback

    results = tmp_path / "results"
    callback = ContextRelianceCallback(tasks=[TASK], on_save=True, follow=True, backend="hf", conjugates=["en"],
                                       batch_size=1, output=results, at_start=False, max_held=5)
    trainer = make_trainer(tiny_gpt2_dir, tmp_path / "run", max_steps=6, save_steps=1, save_total_limit=2,
                           callbacks=[callback])
    trainer.train()
    record = json.loads((results / "run.json").read_text())
    assert sorted(e["label"] for e in record["checkpoints"]) == [f"checkpoint-{s}" for s in range(1, 7)]
    assert record["skipped_checkpoints"] == {}
    assert left(tmp_path / "run") == [5, 6]  # rotated down to the limit once all were evaluated
    assert trainer.args.save_total_limit == 2 and callback.keeper.deleted_unevaluated == []
    lag = [entry for entry in trainer.state.log_history if "follow/lag_steps" in entry]
    assert sorted(entry["step"] for entry in lag) == [1, 2, 3, 4, 5, 6]
