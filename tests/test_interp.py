"""Interpolated checkpoints (harness.checkpoints.interp): θ_base + λ (θ_tuned − θ_base) as a
sweep, its ends equal to the two models, and one clear message for each bad spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from handmade import conflict, write_run

from harness.checkpoints import interp
from harness.errors import CheckpointError, RunError
from harness.reports.figures import run_xaxis
from harness.reports.runs import RunResults
from harness.results import RunDirectory
from harness.sweep.config import RunConfig
from harness.sweep.evaluate import evaluate
from harness.testing import folder_tensors

TASKS = ["closed_book", "overriding"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Each test builds its levels into a cache of its own."""
    monkeypatch.setenv("IFT_HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def config(checkpoints: str, output: Path, **overrides) -> RunConfig:
    settings = dict(checkpoints=checkpoints, output=str(output), tasks=TASKS, conjugates=["en"], backend="hf",
                    limit=3, bootstrap_resamples=20, batch_size=8)
    settings.update(overrides)
    return RunConfig(**settings)


def samples(output: Path, label: str) -> dict:
    run = RunDirectory(output)
    return {(task, s.key): (s.output, s.loglikelihoods) for task in TASKS for s in run.read_samples(label, task)}


def test_levels_are_the_interpolated_weights_and_the_ends_are_the_models(llama_run):
    base, tuned = llama_run / "checkpoint-10", llama_run / "checkpoint-30"
    levels = interp.resolve([f"interp:{base}..{tuned}@0,0.25,1"])
    assert [(c.label, c.step) for c in levels] == [("lambda-0", 0), ("lambda-0.25", 25), ("lambda-1", 100)]
    assert levels[0].model == str(base) and levels[2].model == str(tuned)
    ours, theirs, quarter = folder_tensors(base), folder_tensors(tuned), folder_tensors(levels[1].model)
    for name, tensor in quarter.items():
        assert torch.allclose(tensor, ours[name] + 0.25 * (theirs[name] - ours[name]), atol=1e-6), name
    # lerp's ends are the models bit for bit, so λ = 0 and 1 need no copy
    assert all(torch.equal(interp.interpolate(ours, theirs, 1.0)[name], theirs[name]) for name in ours)
    assert all(torch.equal(interp.interpolate(ours, theirs, 0.0)[name], ours[name]) for name in ours)
    again = interp.resolve([f"interp:{base}..{tuned}@0.25"])  # from the cache
    assert again[0].model == levels[1].model


def test_the_ends_of_a_sweep_equal_the_two_models_evaluated_alone(llama_run, tmp_path):
    base, tuned = llama_run / "checkpoint-10", llama_run / "checkpoint-30"
    evaluate(config(f"interp:{base}..{tuned}@0,0.5,1", tmp_path / "interp"), progress=False)
    evaluate(config(str(base), tmp_path / "base"), progress=False)
    evaluate(config(str(tuned), tmp_path / "tuned"), progress=False)
    assert samples(tmp_path / "interp", "lambda-0") == samples(tmp_path / "base", "checkpoint-10")
    assert samples(tmp_path / "interp", "lambda-1") == samples(tmp_path / "tuned", "checkpoint-30")
    steps = {row.checkpoint: row.step for row in RunDirectory(tmp_path / "interp").read_summary()}
    assert steps == {"lambda-0": 0, "lambda-0.5": 50, "lambda-1": 100}


def test_an_adapter_is_merged_before_interpolating(tiny_llama_dir, lora_run, tmp_path):
    adapter = lora_run / "checkpoint-10"
    levels = interp.resolve([f"interp:{tiny_llama_dir}..{adapter}@0,1"])
    assert levels[0].model == str(tiny_llama_dir) and levels[1].model != str(adapter)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), str(adapter))
    expected = merged.merge_and_unload().state_dict()
    built = folder_tensors(levels[1].model)
    assert all(torch.equal(built[name], expected[name]) for name in built)


@pytest.mark.parametrize(("spec", "words"), [
    ("interp:{base}..{tuned}@0,1.5", "outside [0, 1]"),
    ("interp:{base}..{tuned}@-0.5,1", "pass --extrapolate"),
    ("interp:{missing}..{tuned}@0,1", "the base model folder"),
    ("interp:{base}..{gpt2}@0,1", "not one architecture"),
    ("interp:{base}@0,1", "expected interp:BASE..TUNED@LEVELS"),
    ("interp:{base}..{tuned}@0,x", "not comma-separated numbers"),
])
def test_a_bad_spec_is_one_clear_message(spec, words, llama_run, tiny_gpt2_dir, tmp_path):
    text = spec.format(base=llama_run / "checkpoint-10", tuned=llama_run / "checkpoint-30", gpt2=tiny_gpt2_dir,
                       missing=tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=re.escape(words)):
        evaluate(config(text, tmp_path / "out"), progress=False)
    assert not (tmp_path / "out" / "run.json").exists()  # refused before anything is written


def test_extrapolate_allows_levels_beyond_the_models(llama_run):
    base, tuned = llama_run / "checkpoint-10", llama_run / "checkpoint-30"
    (beyond,) = interp.resolve([f"interp:{base}..{tuned}@1.5"], extrapolate=True)
    ours, theirs, built = folder_tensors(base), folder_tensors(tuned), folder_tensors(beyond.model)
    name = next(iter(built))
    assert torch.allclose(built[name], ours[name] + 1.5 * (theirs[name] - ours[name]), atol=1e-5)
    assert beyond.step == 150


def test_interp_specs_are_not_mixed_with_other_checkpoints(llama_run, tmp_path):
    base, tuned = llama_run / "checkpoint-10", llama_run / "checkpoint-30"
    with pytest.raises(RunError, match="cannot be mixed"):
        evaluate(config([f"interp:{base}..{tuned}@0,1", str(base)], tmp_path / "out"), progress=False)


@pytest.mark.slow
@pytest.mark.vllm
def test_an_interp_sweep_on_vllm_has_the_base_at_lambda_0(llama_run, tmp_path, vllm_cache_dir):
    """One vLLM engine: λ levels reloaded in place (each checked by the canary); λ = 0 gives the
    base model's outputs."""
    base, tuned = llama_run / "checkpoint-10", llama_run / "checkpoint-30"
    options = {"dtype": "float32", "shutdown_timeout": 1}
    evaluate(config(f"interp:{base}..{tuned}@0,0.5,1", tmp_path / "interp", backend="vllm", backend_options=options,
                    truncate="left"), progress=False)
    evaluate(config(str(base), tmp_path / "base", backend="vllm", backend_options=options, truncate="left"),
             progress=False)
    swept, alone = samples(tmp_path / "interp", "lambda-0"), samples(tmp_path / "base", "checkpoint-10")
    assert swept.keys() == alone.keys() and swept
    for key, (output, _) in swept.items():
        assert output == alone[key][0], key


def test_a_report_of_levels_has_lambda_on_its_x_axis(tmp_path):
    """A run of interpolated checkpoints is charted and named by λ, not by their steps (100 λ)."""
    levels = [0, 0.25, 0.5, 1]
    path = write_run(tmp_path / "run", [(interp.label(level), round(100 * level),
                                         {("capitals", "conflicting", "en"): conflict(10 + 20 * i)})
                                        for i, level in enumerate(levels)])
    run = RunResults(path)
    xs, _ = run.x_values("step")
    axis = run_xaxis(run, xs)
    assert axis.label.startswith("λ")
    assert axis.ticks == ([0.0, 25.0, 50.0, 100.0], ["0", "0.25", "0.5", "1"])
    assert interp.level_of("checkpoint-10") is None and interp.level_of("lambda-0.25") == 0.25
    assert [point.where for point in run.checkpoints] == ["λ = 0", "λ = 0.25", "λ = 0.5", "λ = 1"]
