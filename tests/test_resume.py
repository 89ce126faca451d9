"""A results folder you can trust: what a resume compares, what it refuses, and what it redoes.

Each test reproduces one way a results folder could silently hold the wrong numbers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handmade import run_json
from harness import evaluate_model
from harness.backends import HFBackend
from harness.errors import RunError
from harness.checkpoints.fingerprints import weights_fingerprint
from harness.results import RunDirectory
from harness.sweep.config import RunConfig
from harness.sweep.evaluate import evaluate
from harness.sweep.sweep import Sweep

DATA = Path(__file__).parent / "data"


def config(output: Path, **overrides) -> RunConfig:
    settings = dict(output=str(output), tasks=[str(DATA / "cf_world_facts.json")], backend="hf", conjugates=["en"],
                    bootstrap_resamples=50, batch_size=8)
    settings.update(overrides)
    return RunConfig(**settings)


@pytest.fixture
def two_finals(llama_run, tmp_path) -> tuple[Path, Path]:
    """Two different models in folders of the same name: ``A/final`` and ``B/final``."""
    a, b = tmp_path / "A" / "final", tmp_path / "B" / "final"
    shutil.copytree(llama_run / "checkpoint-10", a)
    shutil.copytree(llama_run / "checkpoint-20", b)
    return a, b


class CountingEngine(HFBackend):
    """The transformers engine, counting the requests it serves."""

    def __init__(self, **options):
        super().__init__(**options)
        self.calls = {"load": 0, "generate": 0, "loglikelihood": 0}

    def load(self, checkpoint):
        self.calls["load"] += 1
        super().load(checkpoint)

    def generate(self, requests):
        self.calls["generate"] += len(requests)
        return super().generate(requests)

    def loglikelihood(self, requests):
        self.calls["loglikelihood"] += len(requests)
        return super().loglikelihood(requests)


# ----- 1. resume is keyed by what was evaluated, not by the label ---------------------------


def test_another_model_under_the_same_label_is_refused(two_finals, tmp_path):
    a, b = two_finals
    output = tmp_path / "results"
    evaluate(config(output, model=str(a)), progress=False)
    engine = CountingEngine()
    with pytest.raises(RunError) as refused:
        evaluate(config(output, model=str(b), append=True), backend=engine, progress=False)
    message = str(refused.value)
    assert "'final'" in message and "weights" in message and "--overwrite final" in message and "--output" in message
    assert engine.calls["load"] == 0  # nothing was evaluated, nothing was mixed in
    assert run_json(output)["checkpoints"][0]["model"] == str(a)


def test_overwrite_evaluates_the_new_model_and_never_mixes_the_two(two_finals, tmp_path):
    a, b = two_finals
    output, alone = tmp_path / "results", tmp_path / "b-alone"
    evaluate(config(output, model=str(a)), progress=False)
    evaluate(config(output, model=str(b), overwrite=["final"], append=True), progress=False)
    evaluate(config(alone, model=str(b)), progress=False)
    run = RunDirectory(output)
    (entry,) = run_json(run.path)["checkpoints"]
    assert entry["model"] == str(b) and entry["full_weights"] == weights_fingerprint(b)
    lines = run.samples_file("final", "cf_world_facts").read_text().splitlines()
    assert len(lines) == 3  # A's lines are gone, B's written once
    assert run.read_samples("final", "cf_world_facts") == RunDirectory(alone).read_samples("final", "cf_world_facts")


def test_a_checkpoint_skipped_before_any_sample_is_evaluated_when_it_loads_again(llama_run, tmp_path):
    """A checkpoint whose weights did not load left its identity in run.json but no samples:
    once mended (or tried with another engine), the same command evaluates it; nothing of
    it was ever written, so nothing can be mixed."""
    run = tmp_path / "run"
    shutil.copytree(llama_run, run, symlinks=True)
    weights = run / "checkpoint-20" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    output = tmp_path / "results"
    evaluate(config(output, checkpoints=str(run)), progress=False)
    assert "checkpoint-20" in run_json(output)["skipped_checkpoints"]
    weights.write_bytes(good)
    evaluate(config(output, checkpoints=str(run)), progress=False)
    assert run_json(output)["skipped_checkpoints"] == {}
    assert RunDirectory(output).read_samples("checkpoint-20", "cf_world_facts")


def test_a_moved_folder_with_the_same_weights_resumes(two_finals, tmp_path):
    a, _ = two_finals
    output = tmp_path / "results"
    evaluate(config(output, model=str(a)), progress=False)
    moved = tmp_path / "moved" / "final"
    shutil.move(a, moved)
    engine = CountingEngine()
    evaluate(config(output, model=str(moved), append=True), backend=engine, progress=False)
    assert engine.calls["load"] == 0


def test_another_dtype_is_refused(two_finals, tmp_path):
    a, _ = two_finals
    output = tmp_path / "results"
    evaluate(config(output, model=str(a)), progress=False)
    assert run_json(output)["checkpoints"][0]["dtype"] == "float32"  # the checkpoint's own
    with pytest.raises(RunError, match="dtype float32 -> bfloat16"):
        evaluate(config(output, model=str(a), backend_options={"dtype": "bfloat16"}), progress=False)


def test_auto_is_resolved_before_anything_is_written_and_a_fallback_warns(two_finals, tmp_path, monkeypatch, caplog):
    import harness.backends as backends

    monkeypatch.setattr(backends, "vllm_import_error", lambda: "ImportError: no vllm here")
    output = tmp_path / "results"
    with caplog.at_level(logging.WARNING, logger="harness"):
        evaluate(config(output, model=str(two_finals[0]), backend="auto"), progress=False)
    assert "using transformers" in caplog.text
    record = run_json(output)
    assert record["engine"] == "hf" and record["checkpoints"][0]["engine"] == "hf"


def test_weights_fingerprints_tell_checkpoints_apart(llama_run, tmp_path):
    first, second = llama_run / "checkpoint-10", llama_run / "checkpoint-20"
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    for kind in ("full", "sampled"):
        assert weights_fingerprint(first, kind=kind) == weights_fingerprint(copy, kind=kind)
        assert weights_fingerprint(first, kind=kind) != weights_fingerprint(second, kind=kind)
        assert weights_fingerprint(first, kind=kind).startswith(f"{kind}:")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last tensor
    weights.write_bytes(bytes(data))
    assert weights_fingerprint(copy) != weights_fingerprint(first)


# ----- 2. unique task names -------------------------------------------------------------------


def test_a_data_file_cannot_take_a_builtin_tasks_name(tmp_path, llama_run):
    data = tmp_path / "world_facts.json"
    shutil.copy(DATA / "cf_world_facts.json", data)
    output = tmp_path / "results"
    with pytest.raises(RunError, match=r"two tasks are named 'world_facts' \(\S*tasks/world_facts.yaml and \S*/world_facts.json\)"):
        evaluate(config(output, model=str(llama_run / "checkpoint-10"), tasks=["world_facts", str(data)]),
                 progress=False)
    assert not (output / "samples").exists()  # refused before anything was written
    evaluate(config(output, model=str(llama_run / "checkpoint-10"), limit=1,
                    tasks=["world_facts", f"cf_world_facts={data}"]), progress=False)
    record = run_json(output)
    assert set(record["task_hashes"]) == {"world_facts", "cf_world_facts"}
    assert {row.task for row in RunDirectory(output).read_summary()} == {"world_facts", "cf_world_facts"}


# ----- 3. torn lines ------------------------------------------------------------------------


def _sample_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_reading_never_rewrites_a_samples_file(llama_run, tmp_path, caplog):
    output = tmp_path / "results"
    evaluate(config(output, model=str(llama_run / "checkpoint-10")), progress=False)
    run = RunDirectory(output)
    path = run.samples_file("checkpoint-10", "cf_world_facts")
    torn = path.read_bytes()[:-40]  # the last line cut short, as by a kill mid-write
    path.write_bytes(torn)
    with caplog.at_level(logging.WARNING, logger="harness"):
        assert len(run.read_samples("checkpoint-10", "cf_world_facts")) == 2
    assert path.read_bytes() == torn
    assert f"{path}: line 3" in caplog.text


def test_an_append_after_a_torn_line_starts_on_a_fresh_line(llama_run, tmp_path):
    output = tmp_path / "results"
    evaluate(config(output, model=str(llama_run / "checkpoint-10")), progress=False)
    run = RunDirectory(output)
    path = run.samples_file("checkpoint-10", "cf_world_facts")
    samples = run.read_samples("checkpoint-10", "cf_world_facts")
    path.write_bytes(path.read_bytes()[:-40])
    run.append_samples("checkpoint-10", "cf_world_facts", samples[-1:])
    assert run.read_samples("checkpoint-10", "cf_world_facts") == samples


def test_a_torn_sample_is_computed_again_on_resume(llama_run, tmp_path, caplog):
    output = tmp_path / "results"
    evaluate(config(output, model=str(llama_run / "checkpoint-10")), progress=False)
    run = RunDirectory(output)
    path = run.samples_file("checkpoint-10", "cf_world_facts")
    whole = run.read_samples("checkpoint-10", "cf_world_facts")
    path.write_bytes(path.read_bytes()[:-40])
    engine = CountingEngine()
    with caplog.at_level(logging.INFO, logger="harness"):
        evaluate(config(output, model=str(llama_run / "checkpoint-10")), backend=engine, progress=False)
    assert engine.calls["generate"] == 1  # the torn sample, and only it
    assert "checkpoint-10 (step 10): 1 examples in" in caplog.text and "resumed: 2 were scored before" in caplog.text
    again = run.read_samples("checkpoint-10", "cf_world_facts")
    assert again[:2] == whole[:2] and again[2].key == whole[2].key
    # Alone rather than in a batch of three: the same prompt, scores equal up to padding's rounding.
    assert again[2].prompt == whole[2].prompt
    assert again[2].scores["ll_margin"] == pytest.approx(whole[2].scores["ll_margin"], abs=1e-4)


# ----- 4. writes, plans that change, live models ------------------------------------------------


def test_run_json_lists_each_checkpoint_as_soon_as_it_is_started(llama_run, tmp_path):
    class Crashing(HFBackend):
        def load(self, checkpoint):
            if checkpoint.label == "checkpoint-20":
                raise KeyboardInterrupt  # the process dies here
            super().load(checkpoint)

    output = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        evaluate(config(output, checkpoints=str(llama_run)), backend=Crashing(), progress=False)
    record = run_json(output)
    entries = record["checkpoints"]  # each is recorded when its turn comes, before it is loaded
    assert [(e["label"], e["step"]) for e in entries] == [("checkpoint-10", 10), ("checkpoint-20", 20)]
    assert "finished" not in record


def test_a_resume_that_adds_a_mode_does_only_the_extra_work(llama_run, tmp_path):
    output = tmp_path / "results"
    model = str(llama_run / "checkpoint-10")
    evaluate(config(output, model=model, modes=["generate"]), progress=False)
    engine = CountingEngine()
    evaluate(config(output, model=model, append=True), backend=engine, progress=False)
    assert engine.calls["generate"] == 0 and engine.calls["loglikelihood"] == 3
    run = RunDirectory(output)
    samples = run.read_samples("checkpoint-10", "cf_world_facts")
    assert all(s.output is not None and s.loglikelihoods is not None for s in samples)
    assert "outcome" in samples[0].scores and "ll_margin" in samples[0].scores
    assert {row.mode for row in run.read_summary()} == {"generate", "loglikelihood"}
    assert {row.n for row in run.read_summary()} == {3}


def test_a_resume_with_another_limit_does_only_the_extra_work_and_summarises_its_own_plan(llama_run, tmp_path):
    output = tmp_path / "results"
    model = str(llama_run / "checkpoint-10")
    evaluate(config(output, model=model, limit=1), progress=False)
    engine = CountingEngine()
    evaluate(config(output, model=model, limit=3, append=True), backend=engine, progress=False)
    assert engine.calls["generate"] == 2
    assert {row.n for row in RunDirectory(output).read_summary()} == {3}
    evaluate(config(output, model=model, limit=2, append=True), backend=CountingEngine(), progress=False)
    run = RunDirectory(output)
    assert {row.n for row in run.read_summary()} == {2}  # the smaller plan's samples only
    assert len(run.read_samples("checkpoint-10", "cf_world_facts")) == 3  # the others stay on disk


def test_evaluate_model_refuses_another_live_model_under_a_stored_label(llama_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = tmp_path / "live"
    tokenizer = AutoTokenizer.from_pretrained(llama_run / "checkpoint-10")
    first = AutoModelForCausalLM.from_pretrained(llama_run / "checkpoint-10")
    second = AutoModelForCausalLM.from_pretrained(llama_run / "checkpoint-20")
    second.name_or_path = first.name_or_path  # one training run's model, its weights changed
    settings = dict(output=output, step=5, conjugates=["en"], bootstrap_resamples=50)
    stored = evaluate_model(first, tokenizer, [str(DATA / "cf_world_facts.json")], **settings)
    assert evaluate_model(first, tokenizer, [str(DATA / "cf_world_facts.json")], **settings) == stored
    with pytest.raises(RunError, match="'step-5'.*weights"):
        evaluate_model(second, tokenizer, [str(DATA / "cf_world_facts.json")], **settings)


# ----- 6. prompts longer than the window ------------------------------------------------------


def test_prompts_longer_than_the_window_are_refused_before_anything_is_evaluated(llama_run, tmp_path):
    output = tmp_path / "results"
    engine = CountingEngine(max_model_len=24)
    with pytest.raises(RunError) as refused:
        evaluate(config(output, model=str(llama_run / "checkpoint-10")), backend=engine, progress=False)
    message = str(refused.value)
    assert "cf_world_facts.json: 3 prompt(s) longer than the window of 24 tokens" in message
    assert "'1' (en, generate:" in message and "--truncate left" in message
    assert engine.calls["load"] == 0


def test_truncate_left_marks_and_counts_the_cut_samples(llama_run, tmp_path):
    output = tmp_path / "results"
    evaluate(config(output, model=str(llama_run / "checkpoint-10"), truncate="left"),
             backend=HFBackend(max_model_len=60), progress=False)
    run = RunDirectory(output)
    samples = run.read_samples("checkpoint-10", "cf_world_facts")
    cut = {s.id for s in samples if s.truncated}
    assert cut == {"1", "2"}  # prompt + 24 new tokens: 78 and 73 tokens; the third, 54, fits in 60
    for row in run.read_summary():
        assert row.n_truncated == len(cut)


# ----- one writer -----------------------------------------------------------------------------


def test_a_second_writer_fails_at_once_naming_the_holder_and_a_killed_holder_frees_the_folder(tmp_path):
    output = tmp_path / "results"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom harness.results import RunDirectory\n"
         f"with RunDirectory({str(output)!r}).lock():\n    print('locked', flush=True)\n    time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        with pytest.raises(RunError, match=f"another harness process is writing this results folder \\(pid {holder.pid}"):
            Sweep(config(output))
        assert time.perf_counter() - start < 5
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    sweep = Sweep(config(output))  # the operating system released the killed holder's lock
    sweep.close()
    assert json.loads((output / "run.json").read_text())["config"]["output"] == str(output)
