"""Progress that moves and work that is kept: a checkpoint's examples go to the engine in
chunks of a few seconds each, every chunk is written before the next is sent, and an
interruption says how many samples it kept."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from harness.backends import HFBackend
from harness.results import RunDirectory
from harness.sweep import jobs, sweep as sweep_module
from harness.sweep.config import RunConfig
from harness.sweep.evaluate import evaluate
from harness.sweep.jobs import FIRST_CHUNK, Chunking


def config(output, **overrides) -> RunConfig:
    settings = dict(output=str(output), tasks=["capitals"], conjugates=["en"], modes=["generate"], backend="hf",
                    bootstrap_resamples=20)
    return RunConfig(**{**settings, **overrides})


def test_chunks_are_sized_by_time():
    chunking = Chunking(most=1024)
    assert chunking.first() == FIRST_CHUNK
    assert chunking.next(16, 1.0) == 80  # 16/s for CHUNK_SECONDS = 5
    assert chunking.next(16, 0.001) == 1024  # never above flush_every
    assert chunking.next(16, 600.0) == FIRST_CHUNK  # a very slow engine: still a chunk worth writing
    assert Chunking(most=8).first() == 8
    fixed = Chunking(most=32, fixed=32)  # --batch-size: what the user said, every time
    assert (fixed.first(), fixed.next(32, 0.001), fixed.next(32, 60.0)) == (32, 32, 32)


class SlowEngine(HFBackend):
    """The transformers engine, ``seconds`` slower per generation: a call with the whole
    checkpoint's requests would take minutes. On its first call it arms a SIGINT (the user's
    Ctrl-C) ``interrupt_after`` seconds later."""

    def __init__(self, seconds: float, interrupt_after: float | None = None, **options):
        super().__init__(**options)
        self.seconds, self.interrupt_after, self.calls = seconds, interrupt_after, []

    def _generate_ids(self, prompts, requests):
        if not self.calls and self.interrupt_after is not None:
            threading.Timer(self.interrupt_after, os.kill, (os.getpid(), signal.SIGINT)).start()
        self.calls.append(len(prompts))
        time.sleep(self.seconds * len(prompts))
        return super()._generate_ids(prompts, requests)


def written(output) -> int:
    run = RunDirectory(output)
    return sum(len(run.read_samples(label, task)) for label, task, _ in run.sample_files())


@pytest.mark.slow
def test_an_interrupted_checkpoint_keeps_its_finished_chunks(tiny_llama_dir, tmp_path, caplog):
    output = tmp_path / "run"
    settings = config(output, model=str(tiny_llama_dir))
    engine = SlowEngine(0.4, interrupt_after=8.0)
    # Python's own Ctrl-C handler, installed again at the C level: once in a whole-suite run
    # (2026-12-04) the SIGINT raised nothing, cause not established (no code of this project
    # sets a handler; a native library loaded by an earlier test could replace it unseen).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with caplog.at_level(logging.INFO, logger="harness"), pytest.raises(KeyboardInterrupt):
            evaluate(settings, backend=engine, progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    total = sum(len(item.modes) for item in sweep_module.plan(sweep_module.TaskRegistry().select(["capitals"]),
                                                               settings))
    assert total * 0.4 > 120  # one call of it all would have taken minutes
    kept = written(output)
    assert kept >= FIRST_CHUNK and len(engine.calls) >= 2  # chunks were written while the engine worked
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("interrupted: ")]
    assert said and f"interrupted: {kept} samples written to {output / 'samples'}" in said[0]


def test_the_bar_moves_during_one_checkpoint_and_chunks_change_no_number(tiny_llama_dir, tmp_path, monkeypatch):
    updates = []

    class Bar:
        def __init__(self, total, desc, enabled=True):
            self.total = total

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            updates.append(n)

    monkeypatch.setattr(sweep_module, "show_progress", Bar)
    monkeypatch.setattr(jobs, "CHUNK_SECONDS", 0.05)
    engine = SlowEngine(0.002)
    chunked = evaluate(config(tmp_path / "chunked", model=str(tiny_llama_dir), limit=40), backend=engine,
                       progress=True)
    assert len(updates) >= 3 and sum(updates) == written(chunked.path)  # one checkpoint, several steps
    whole = evaluate(config(tmp_path / "whole", model=str(tiny_llama_dir), limit=40, batch_size=10_000),
                     backend=HFBackend(), progress=False)
    assert [(r.condition, r.value) for r in chunked.read_summary()] == \
        [(r.condition, r.value) for r in whole.read_summary()]
