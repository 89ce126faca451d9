"""Evaluation beside a training run: a followed folder, trackers at the training step, and a
training callback that never waits for evaluation."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

import wandb_runs
from trainers import losses, make_trainer
from handmade import run_json
from harness.backends.hf import HFBackend
from harness.checkpoints import TRAINER_STATE, Checkpoint, fingerprints
from harness.checkpoints.sources import DELETED, Follower
from harness.results import RunDirectory, SummaryRow
from harness.sweep import sweep as sweep_module
from harness.sweep.config import RunConfig
from harness.sweep.evaluate import evaluate
from harness.sweep.lag import read_lag
from harness.sweep.trackers import WandbTracker
from harness.training.callbacks import ContextRelianceCallback

DATA = Path(__file__).parent / "data"
TASK = str(DATA / "cf_world_facts.json")

def copy_checkpoint(source: Path, target: Path, *, slowly: float = 0.0, state: bool = True) -> None:
    """Write a checkpoint folder as the Trainer does: weights and tokenizer, then
    ``trainer_state.json`` last; ``slowly`` stretches the weights' write over that many seconds."""
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.name == TRAINER_STATE:
            continue
        data = path.read_bytes()
        with (target / path.name).open("wb") as out:
            for start in range(0, len(data), max(1, len(data) // 5)):
                out.write(data[start: start + max(1, len(data) // 5)])
                out.flush()
                time.sleep(slowly / 5)
    if state:
        shutil.copy(source / TRAINER_STATE, target / TRAINER_STATE)


# --------------------------------------------------------------------------- the follower


def test_a_checkpoint_is_taken_only_once_complete(llama_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    follower = Follower(str(run), poll_seconds=0.1)
    assert follower.poll() == ([], []) and not follower.finished  # nothing saved yet: wait
    writer = threading.Thread(target=copy_checkpoint, args=(llama_run / "checkpoint-10", run / "checkpoint-10"),
                              kwargs={"slowly": 2.0})
    writer.start()
    seen = []
    while writer.is_alive():
        ready, _ = follower.poll()
        assert not ready or (run / "checkpoint-10" / TRAINER_STATE).is_file()  # never half written
        seen += ready
        time.sleep(0.05)
    writer.join()
    seen += follower.poll()[0]  # picked up at the first poll once complete
    assert [c.label for c in seen] == ["checkpoint-10"]
    assert follower.poll() == ([], [])  # handed out once


def test_a_checkpoint_deleted_before_it_is_complete_is_reported(llama_run, tmp_path):
    run = tmp_path / "run"
    copy_checkpoint(llama_run / "checkpoint-10", run / "checkpoint-10", state=False)  # still being written
    follower = Follower(str(run), poll_seconds=0.1)
    assert follower.poll() == ([], [])
    shutil.rmtree(run / "checkpoint-10")  # save_total_limit removed it
    ready, gone = follower.poll()
    assert ready == [] and [(c.label, why) for c, why in gone] == [("checkpoint-10", DELETED)]


def test_following_stops_at_the_until_step_the_until_file_the_final_model_or_when_idle(llama_run, tmp_path):
    run = tmp_path / "run"
    for step in (10, 20, 30):
        copy_checkpoint(llama_run / f"checkpoint-{step}", run / f"checkpoint-{step}")
    up_to_20 = Follower(str(run), until_step=20)
    assert [c.label for c in up_to_20.poll()[0]] == ["checkpoint-10", "checkpoint-20"] and up_to_20.finished
    until_file = tmp_path / "done"
    by_file = Follower(str(run), until_file=str(until_file))
    by_file.poll()
    assert not by_file.finished
    until_file.write_text("30\n")
    by_file.poll()
    assert by_file.finished
    idle = Follower(str(run), idle_timeout=0.2)
    idle.poll()
    time.sleep(0.3)
    idle.poll()
    assert idle.finished
    final = Follower(str(run), poll_seconds=0.1)
    final.poll()
    for path in (llama_run / "checkpoint-30").iterdir():  # trainer.save_model at the end of training
        if path.name != TRAINER_STATE:
            shutil.copy(path, run / path.name)
    assert final.poll()[0] == [] and not final.finished  # not yet known to be steady
    time.sleep(final.settle_seconds)
    ready, _ = final.poll()
    assert [c.label for c in ready] == ["final"] and final.finished


def test_a_checkpoint_deleted_after_it_was_handed_out_is_recorded_not_fatal(llama_run, tmp_path):
    run = tmp_path / "run"
    for step in (10, 20):
        copy_checkpoint(llama_run / f"checkpoint-{step}", run / f"checkpoint-{step}")

    def delete_the_next(checkpoint, rows):  # the trainer rotates checkpoint-20 out meanwhile
        shutil.rmtree(run / "checkpoint-20", ignore_errors=True)

    config = RunConfig(output=str(tmp_path / "out"), checkpoints=str(run), follow=True, until_step=20, poll=0.1,
                       tasks=[TASK], backend="hf", conjugates=["en"])
    evaluate(config, progress=False, observers=[delete_the_next])
    record = run_json(tmp_path / "out")
    assert record["skipped_checkpoints"] == {"checkpoint-20": DELETED}
    assert {row.checkpoint for row in RunDirectory(tmp_path / "out").read_summary()} == {"checkpoint-10"}


def _mentions(value, label: str) -> bool:
    """Whether an argument is, names a file of, or lists the checkpoint ``label``."""
    if isinstance(value, Checkpoint):
        return value.label == label
    if isinstance(value, (str, Path)):
        return label in Path(value).parts
    return isinstance(value, list) and any(_mentions(one, label) for one in value)


#: Where a sweep reads a checkpoint's files after the follower found it complete: (object, attribute).
READS = {"inspection": (sweep_module, "split_loadable"), "identity": (HFBackend, "identity"),
         "fingerprint": (fingerprints, "tensor_hashes"), "tokenizer": (sweep_module, "load_tokenizer"),
         "model": (HFBackend, "load")}


@pytest.mark.parametrize("while_reading", sorted(READS))
def test_a_checkpoint_deleted_while_it_is_read_is_recorded_as_deleted(llama_run, tmp_path, monkeypatch, while_reading):
    # The race CI met: the folder is there when the follower looks, gone when the sweep reads it.
    run = tmp_path / "run"
    for step in (10, 20):
        copy_checkpoint(llama_run / f"checkpoint-{step}", run / f"checkpoint-{step}")
    owner, name = READS[while_reading]
    read = getattr(owner, name)

    def read_after_rotation(*args, **kwargs):
        if any(_mentions(arg, "checkpoint-20") for arg in args):
            shutil.rmtree(run / "checkpoint-20", ignore_errors=True)
        return read(*args, **kwargs)

    monkeypatch.setattr(owner, name, read_after_rotation)
    config = RunConfig(output=str(tmp_path / "out"), checkpoints=str(run), follow=True, until_step=20, poll=0.1,
                       tasks=[TASK], backend="hf", conjugates=["en"], prefetch=False)  # read in turn, not ahead
    evaluate(config, progress=False)  # following: the sweep logs the lag itself
    assert run_json(tmp_path / "out")["skipped_checkpoints"] == {"checkpoint-20": DELETED}
    assert [line["label"] for line in read_lag(tmp_path / "out")] == ["checkpoint-10"]  # no lag for a skipped one


def test_a_folder_of_save_pretrained_checkpoints_is_evaluated_once_its_files_settle(llama_run, tmp_path):
    run = tmp_path / "run"
    for step in (10, 20):  # a custom loop's model.save_pretrained: no trainer_state.json
        copy_checkpoint(llama_run / f"checkpoint-{step}", run / f"checkpoint-{step}", state=False)
    config = RunConfig(output=str(tmp_path / "out"), checkpoints=str(run), follow=True, poll=0.1, idle_timeout=4,
                       tasks=[TASK], backend="hf", conjugates=["en"], limit=1)
    evaluate(config, progress=False)
    record = run_json(tmp_path / "out")
    assert [entry["label"] for entry in record["checkpoints"]] == ["checkpoint-10", "checkpoint-20"]
    assert record["skipped_checkpoints"] == {}
    assert {row.checkpoint for row in RunDirectory(tmp_path / "out").read_summary()} == {"checkpoint-10",
                                                                                       "checkpoint-20"}


def test_a_named_marker_says_when_a_checkpoint_is_complete(llama_run, tmp_path):
    run = tmp_path / "run"
    copy_checkpoint(llama_run / "checkpoint-10", run / "checkpoint-10", state=False)
    follower = Follower(str(run), poll_seconds=0.1, complete_marker="SAVED")
    follower.poll()
    time.sleep(follower.settle_seconds)
    assert follower.poll() == ([], [])  # settled, but the marker is the rule
    (run / "checkpoint-10" / "SAVED").touch()
    assert [c.label for c in follower.poll()[0]] == ["checkpoint-10"]


def test_in_a_trainer_run_a_checkpoint_waits_for_its_trainer_state(llama_run, tmp_path):
    run = tmp_path / "run"
    copy_checkpoint(llama_run / "checkpoint-10", run / "checkpoint-10")
    copy_checkpoint(llama_run / "checkpoint-20", run / "checkpoint-20", state=False)  # optimizer still saving
    follower = Follower(str(run), poll_seconds=0.1)
    assert [c.label for c in follower.poll()[0]] == ["checkpoint-10"]
    time.sleep(follower.settle_seconds)
    assert follower.poll() == ([], [])


def test_a_checkpoint_still_being_written_at_the_idle_timeout_is_recorded_as_skipped(llama_run, tmp_path):
    run = tmp_path / "run"
    copy_checkpoint(llama_run / "checkpoint-10", run / "checkpoint-10", state=False)
    (run / "checkpoint-20").mkdir()
    shutil.copy(llama_run / "checkpoint-20" / "config.json", run / "checkpoint-20")  # its weights never come
    config = RunConfig(output=str(tmp_path / "out"), checkpoints=str(run), follow=True, poll=0.1, idle_timeout=3,
                       complete_marker="SAVED", tasks=[TASK], backend="hf", conjugates=["en"], limit=1)
    (run / "checkpoint-10" / "SAVED").touch()
    evaluate(config, progress=False)
    skipped = run_json(tmp_path / "out")["skipped_checkpoints"]
    assert list(skipped) == ["checkpoint-20"]
    assert skipped["checkpoint-20"].startswith("still incomplete when no new checkpoint for 3 s: ")
    assert "weights" in skipped["checkpoint-20"]


# --------------------------------------------------------------------------- following a real training run


def follow_command(run: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "evaluate", "--checkpoints", str(run), "--follow", "--poll", "0.5",
            "--tasks", TASK, "--backend", "hf", "--conjugates", "en", "--batch-size", "1", "--output", str(output),
            "--no-report", *extra]


@pytest.mark.slow
def test_a_follower_beside_a_real_trainer_evaluates_every_save_once_in_order(tiny_gpt2_dir, tmp_path):
    alone = make_trainer(tiny_gpt2_dir, tmp_path / "alone", max_steps=6, save_steps=2)
    alone.train()
    run, output = tmp_path / "run", tmp_path / "followed"
    follower = subprocess.Popen(follow_command(run, output, "--until-step", "6"), stderr=subprocess.PIPE, text=True)
    trainer = make_trainer(tiny_gpt2_dir, run, max_steps=6, save_steps=2)
    trainer.train()
    _, stderr = follower.communicate(timeout=600)
    assert follower.returncode == 0, stderr[-3000:]
    assert losses(trainer) == losses(alone)  # bit for bit: the follower does not touch training
    record = run_json(output)
    assert [entry["label"] for entry in record["checkpoints"]] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    after = tmp_path / "after"
    evaluate(RunConfig(output=str(after), checkpoints=str(run), tasks=[TASK], backend="hf", conjugates=["en"],
                       batch_size=1), progress=False)
    followed = {(row.checkpoint, row.metric): row.value for row in RunDirectory(output).read_summary()}
    swept = {(row.checkpoint, row.metric): row.value for row in RunDirectory(after).read_summary()}
    assert followed == pytest.approx(swept, abs=1e-6)


@pytest.mark.slow
def test_a_checkpoint_the_trainer_deletes_first_is_recorded_not_fatal(tiny_gpt2_dir, tmp_path):
    run, output = tmp_path / "run", tmp_path / "followed"
    # One checkpoint kept at a time, saved every step, looked at every 3 seconds: most are gone.
    trainer = make_trainer(tiny_gpt2_dir, run, max_steps=6, save_steps=1, save_total_limit=1)
    follower = subprocess.Popen(follow_command(run, output, "--until-step", "6", "--poll", "3"),
                                stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # the follower is up and has looked at least once
    trainer.train()
    _, stderr = follower.communicate(timeout=600)
    assert follower.returncode == 0, stderr[-3000:]
    record = run_json(output)
    assert "checkpoint-6" in {entry["label"] for entry in record["checkpoints"]}
    assert all(why == DELETED for why in record["skipped_checkpoints"].values())


@pytest.mark.slow
def test_the_followed_callback_does_not_wait_for_evaluation(tiny_gpt2_dir, tmp_path):
    callback = ContextRelianceCallback(tasks=[TASK], on_save=True, follow=True, backend="hf", conjugates=["en"],
                                       batch_size=1, output=tmp_path / "results")
    trainer = make_trainer(tiny_gpt2_dir, tmp_path / "run", max_steps=4, save_steps=2, callbacks=[callback])
    trainer.train()
    alone = make_trainer(tiny_gpt2_dir, tmp_path / "alone", max_steps=4, save_steps=2)
    alone.train()
    assert losses(trainer) == losses(alone)
    steps = sorted(entry["step"] for entry in trainer.state.log_history if any(k.startswith("ctx/") for k in entry))
    assert steps == [0, 2, 4]  # the starting model (saved as checkpoint-0) and both saves
    assert callback.waited < 30 and callback.waited_at_end > 0


# --------------------------------------------------------------------------- trackers


def test_tensorboard_receives_every_value_at_its_training_step(llama_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "tb"
    evaluate(RunConfig(output=str(tmp_path / "out"), checkpoints=str(llama_run), tasks=[TASK], backend="hf",
                       conjugates=["en"], log_to=[f"tensorboard={logs}"]), progress=False)
    events = EventAccumulator(str(logs))
    events.Reload()
    scalars = events.Scalars("ctx/cf_world_facts/conflicting/context_hit_rate")
    assert [event.step for event in scalars] == [10, 20, 30]
    rows = {row.step: row.value for row in RunDirectory(tmp_path / "out").read_summary()
            if row.metric == "context_hit_rate"}
    assert [event.value for event in scalars] == pytest.approx([rows[10], rows[20], rows[30]])


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline, writing under ``tmp_path``; its process-wide service is set up anew from
    these settings (it reads the environment once) and torn down after the test."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "ift-harness-test")
    wandb.teardown()
    yield tmp_path / "wandb"
    wandb.teardown()


def test_wandb_receives_every_value_against_the_training_step(llama_run, tmp_path, offline_wandb):
    evaluate(RunConfig(output=str(tmp_path / "out"), checkpoints=str(llama_run), tasks=[TASK], backend="hf",
                       conjugates=["en"], log_to=["wandb=follow-test"]), progress=False)
    history = [entry for entry in wandb_runs.history(wandb_runs.written(offline_wandb, "follow-test"))
               if "train/global_step" in entry]
    assert [float(entry["train/global_step"]) for entry in history] == [10, 20, 30]
    assert all("ctx/cf_world_facts/conflicting/context_hit_rate" in entry for entry in history)


def _rows(step: int) -> list[SummaryRow]:
    return [SummaryRow(checkpoint=f"checkpoint-{step}", step=step, task=task, task_version=1, task_hash="h",
                       condition="conflicting", conjugate="en", mode="generate", metric="context_hit_rate",
                       value=(step * 7919 % 1000) / 1000, ci_low=None, ci_high=None, n=300)
            for task in ("capitals", "world_facts")]


def test_wandb_keeps_every_value_of_a_long_run(offline_wandb):
    """A run file past many 32 KiB blocks (a long followed run, console output captured)
    holds every checkpoint's values, in order, after the tracker closes."""
    tracker = WandbTracker("long-run")
    steps = list(range(10, 10 * 1500 + 1, 10))
    for step in steps:
        tracker.log(Checkpoint(f"checkpoint-{step}", step, "unused"), _rows(step))
    tracker.close()
    path = wandb_runs.written(offline_wandb, "long-run")
    assert path.stat().st_size > 8 * wandb_runs.BLOCK
    history = [entry for entry in wandb_runs.history(path) if "train/global_step" in entry]
    assert [int(float(entry["train/global_step"])) for entry in history] == steps
    assert [float(entry["ctx/capitals/conflicting/context_hit_rate"]) for entry in history] == \
        [(step * 7919 % 1000) / 1000 for step in steps]


def test_the_wandb_tracker_leaves_the_callers_own_run_open(offline_wandb):
    """Evaluating inside a training script that has a W&B run of its own: the tracker's run
    is a run of its own, and closing it does not finish the caller's."""
    import wandb

    training = wandb.init(id="training-run")
    try:
        tracker = WandbTracker(None)
        assert tracker.run is not training
        tracker.log(Checkpoint("checkpoint-10", 10, "unused"), _rows(10))
        tracker.close()
        training.log({"loss": 1.0})  # raises if the tracker finished it
        assert not training._is_finished
    finally:
        training.finish()


def _log_file(records: list[bytes], *, offset: int) -> bytes:
    """A run file laid out as wandb-core writes it (module docstring of wandb_runs), with
    ``offset`` bytes of zero-length full chunks first, so a chosen record ends where wanted."""
    out = bytearray(b":W&B\xe1\xbe\x00")

    def chunk(kind: int, payload: bytes) -> None:
        out.extend(struct.pack("<IHB", zlib.crc32(bytes([kind]) + payload), len(payload), kind) + payload)

    for _ in range(offset // wandb_runs.HEADER):
        chunk(wandb_runs.FULL, b"")
    for record in records:
        rest, first = record, True
        while True:
            room = wandb_runs.BLOCK - len(out) % wandb_runs.BLOCK
            if room < wandb_runs.HEADER:
                out.extend(b"\0" * room)
                continue
            piece, rest = rest[: room - wandb_runs.HEADER], rest[room - wandb_runs.HEADER:]
            kind = (wandb_runs.FULL if first else wandb_runs.LAST) if not rest else \
                (wandb_runs.FIRST if first else wandb_runs.MIDDLE)
            chunk(kind, piece)
            first = False
            if not rest:
                break
    return bytes(out)


@pytest.mark.parametrize("padding", range(wandb_runs.HEADER))
def test_the_run_file_reader_reads_past_every_kind_of_block_end(tmp_path, padding):
    """Blocks are counted from the file's first byte; a block end with 1-6 bytes of zero
    padding is not the end of the log (the reader the W&B test used once stopped there)."""
    first = b"a" * (wandb_runs.BLOCK - 2 * wandb_runs.HEADER - padding - 7 * 9)
    records = [first, *(bytes([65 + i]) * (100 + i) for i in range(20))]
    path = tmp_path / "run.wandb"
    path.write_bytes(_log_file(records, offset=7 * 9))
    found = [record for record in wandb_runs.records(path) if record]
    assert found == records
    path.write_bytes(_log_file(records, offset=7 * 9)[:-3])
    with pytest.raises(ValueError):
        wandb_runs.records(path)
