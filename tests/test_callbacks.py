"""harness.callbacks: evaluation inside a training loop, without changing the training.

A tiny GPT-2 (dropout 0.1, so a train/eval-mode slip or a consumed random number would show
in the losses) trained a few steps by a plain ``transformers.Trainer``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from handmade import run_json
from harness import evaluate_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer
from trainers import losses, make_trainer
from harness.sweep.trackers import metric_key
from harness.training.callbacks import ContextRelianceCallback, preserved_rng
from harness.checkpoints import discover
from harness.results import RunDirectory
from harness.errors import RunError

torch.set_num_threads(1)

TASK = str(Path(__file__).parent / "data" / "cf_world_facts.json")  # 3 knowledge conflicts
SETTINGS = dict(conjugates=["en"], bootstrap_resamples=20)
KEY = "ctx/cf_world_facts/conflicting/context_rate"


def ctx_entries(trainer: Trainer) -> dict[int, dict]:
    return {entry["step"]: entry for entry in trainer.state.log_history if KEY in entry}


@pytest.fixture(scope="module")
def baseline(tiny_gpt2_dir, tmp_path_factory) -> list[float]:
    trainer = make_trainer(tiny_gpt2_dir, tmp_path_factory.mktemp("baseline"))
    assert trainer.model.config.resid_pdrop > 0  # dropout on: evaluation must not disturb it
    trainer.train()
    return losses(trainer)


def test_live_evaluation_logs_metrics_and_leaves_training_unchanged(tmp_path, tiny_gpt2_dir, baseline):
    trainer = make_trainer(tiny_gpt2_dir, tmp_path / "train")
    callback = ContextRelianceCallback(tasks=[TASK], every_n_steps=3, output=tmp_path / "results", trainer=trainer,
                                       **SETTINGS)
    trainer.add_callback(callback)
    trainer.train()

    assert losses(trainer) == baseline  # bit for bit
    assert sorted(ctx_entries(trainer)) == [0, 3, 4]  # start, every 3 steps, the last step
    run = RunDirectory(tmp_path / "results")
    rows = run.read_summary()
    assert {(r.checkpoint, r.step) for r in rows} == {("step-0", 0), ("step-3", 3), ("step-4", 4)}
    for row in rows:
        if row.value is not None:
            assert ctx_entries(trainer)[row.step][metric_key(row)] == row.value
    assert len(run.read_samples("step-4", "cf_world_facts")) == 3
    assert run_json(run.path)["config"]["model"] == str(tiny_gpt2_dir)


def test_without_the_trainer_metrics_still_reach_the_log_history(tmp_path, tiny_gpt2_dir, baseline, caplog):
    callback = ContextRelianceCallback(tasks=[TASK], every_n_steps=2, at_start=False, output=tmp_path / "results",
                                       **SETTINGS)
    trainer = make_trainer(tiny_gpt2_dir, tmp_path / "train", callbacks=[callback])
    trainer.train()

    assert losses(trainer) == baseline
    assert sorted(ctx_entries(trainer)) == [2, 4]
    assert "no trainer= given" in caplog.text


def test_on_save_labels_results_like_the_saved_checkpoints(tmp_path, tiny_gpt2_dir):
    trainer = make_trainer(tiny_gpt2_dir, tmp_path / "train", save_steps=2)
    trainer.add_callback(ContextRelianceCallback(tasks=[TASK], on_save=True, output=tmp_path / "results",
                                                 trainer=trainer, **SETTINGS))
    trainer.train()

    labels = {row.checkpoint for row in RunDirectory(tmp_path / "results").read_summary()}
    assert labels == {"step-0", *(c.label for c in discover(tmp_path / "train"))} == {"step-0", "checkpoint-2",
                                                                                      "checkpoint-4"}
    # The checkpoint's trainer_state.json carries the metrics logged before it was saved.
    state = json.loads((tmp_path / "train" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if KEY in e] == [0, 2]


def test_a_fresh_run_refuses_a_results_folder_in_use(tmp_path, tiny_gpt2_dir):
    first = make_trainer(tiny_gpt2_dir, tmp_path / "a", max_steps=1)
    first.add_callback(ContextRelianceCallback(tasks=[TASK], every_n_steps=1, output=tmp_path / "results",
                                               trainer=first, **SETTINGS))
    first.train()
    second = make_trainer(tiny_gpt2_dir, tmp_path / "b", max_steps=1)
    second.add_callback(ContextRelianceCallback(tasks=[TASK], every_n_steps=1, output=tmp_path / "results",
                                                trainer=second, **SETTINGS))
    with pytest.raises(RunError, match="holds results of an earlier run"):
        second.train()


@pytest.mark.parametrize("arguments, problem", [
    (dict(), "exactly one of every_n_steps and on_save"),
    (dict(every_n_steps=5, on_save=True), "exactly one of every_n_steps and on_save"),
    (dict(every_n_steps=5, backend="vllm"), "use on_save=True"),
    (dict(on_save=True, format="markdown"), "format: unknown value .markdown."),
])
def test_callback_arguments_are_checked(arguments, problem):
    with pytest.raises((ValueError, RunError), match=problem):
        ContextRelianceCallback(tasks=[TASK], **arguments)


def test_evaluate_model_keeps_training_state(tmp_path, tiny_gpt2_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).train()
    model.transformer.h[0].eval()  # a mix of train and eval modules stays as it is
    flags = [m.training for m in model.modules()]
    torch.manual_seed(3)
    before = torch.get_rng_state()

    metrics = evaluate_model(model, tokenizer, [TASK], output=tmp_path / "results", step=7, **SETTINGS)

    assert KEY in metrics and 0 <= metrics[KEY] <= 1
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), before)
    assert all(p.grad is None for p in model.parameters())
    assert {r.checkpoint for r in RunDirectory(tmp_path / "results").read_summary()} == {"step-7"}


def test_preserved_rng_restores_every_generator():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with preserved_rng():
        random.random(), np.random.rand(), torch.rand(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_in_the_training_process_evaluates_each_save_in_one_engine(tmp_path, tiny_llama_dir):
    trainer = make_trainer(tiny_llama_dir, tmp_path / "train", max_steps=2, save_steps=1)
    callback = ContextRelianceCallback(tasks=[TASK], on_save=True, follow=False, backend="vllm", output=tmp_path / "results",
                                       trainer=trainer, backend_options={"dtype": "float32"}, **SETTINGS)
    engines = []
    original = callback._run

    def run(state, control, checkpoint):
        original(state, control, checkpoint)
        engines.append(callback.engine)

    callback._run = run
    trainer.add_callback(callback)
    trainer.train()

    assert sorted(ctx_entries(trainer)) == [0, 1, 2]
    assert len(set(map(id, engines))) == 1
    assert engines[0].stats["engine_starts"] == 1
