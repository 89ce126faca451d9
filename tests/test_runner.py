"""The sweep end to end on tiny checkpoints: results layout, resume, broken checkpoints,
agreement of the two engines through the whole pipeline, and the CLI."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from handmade import run_json
from harness.reports.runs import load_results
from harness.backends import HFBackend
from harness.errors import RunError
from harness.results import RunDirectory
from harness.sweep.config import RunConfig
from harness.sweep.evaluate import evaluate

DATA = Path(__file__).parent / "data"
TASKS = ["capitals", "icl_vs_if", str(DATA / "cf_world_facts.json")]


def config_for(run: Path, output: Path, **overrides) -> RunConfig:
    # The tiny models' window (256 tokens of an ASCII-only tokenizer) is shorter than some
    # French prompts: cut them, as a user of a small model would have to.
    settings = dict(output=str(output), tasks=TASKS, checkpoints=str(run), backend="hf", limit=2,
                    conjugates=["en", "fr", "leetspeak"], bootstrap_resamples=200, batch_size=8, truncate="left")
    settings.update(overrides)
    return RunConfig(**settings)


def sample_lines(output: Path) -> list[dict]:
    run = RunDirectory(output)
    return [line for checkpoint, task, _ in run.sample_files() for line in run.read_samples(checkpoint, task)]


def test_sweep_writes_the_layout(llama_run, tmp_path):
    output = tmp_path / "results"
    evaluate(config_for(llama_run, output), progress=False)
    run = RunDirectory(output)
    record = run_json(run.path)
    assert [c["label"] for c in record["checkpoints"]] == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    assert set(record["task_hashes"]) == {"capitals", "icl_vs_if", "cf_world_facts"}
    assert record["packages"]["torch"] and record["finished"]
    rows = run.read_summary()
    assert {(r.checkpoint, r.task) for r in rows} == {
        (c, t) for c in ("checkpoint-10", "checkpoint-20", "checkpoint-30")
        for t in ("capitals", "icl_vs_if", "cf_world_facts")}
    conflict = [r for r in rows if r.task == "capitals" and r.condition == "conflicting"
                and r.conjugate == "fr" and r.metric == "context_rate"]
    assert len(conflict) == 3 and all(r.n == 2 and r.ci_low <= r.value <= r.ci_high for r in conflict)
    assert [r.step for r in conflict] == [10, 20, 30]
    # capitals: 3 conditions x 2 examples x 3 conjugates; icl_vs_if: 4 conditions x 2 x 3;
    # the file: 2 of its 3 conflicting records (limit) x (en, leetspeak)
    per_file = Counter((p.parent.name, p.stem) for _, _, p in run.sample_files() for _ in p.read_text().splitlines())
    assert per_file[("checkpoint-20", "capitals")] == 18
    assert per_file[("checkpoint-20", "icl_vs_if")] == 24
    assert per_file[("checkpoint-20", "cf_world_facts")] == 4
    sample = run.read_samples("checkpoint-10", "capitals")[0]
    assert {"prompt", "output", "loglikelihoods", "scores", "answers"} <= set(sample.to_dict())
    frame = load_results(output)
    assert len(frame) == len(rows) and {"value", "ci_low", "ci_high", "step"} <= set(frame.columns)


def test_rerun_resumes_without_recomputing(llama_run, tmp_path):
    output = tmp_path / "results"
    evaluate(config_for(llama_run, output), progress=False)
    before = {p: p.read_text() for _, _, p in RunDirectory(output).sample_files()}

    class NoEngine(HFBackend):  # the same engine as the first run, which must not load anything
        def load(self, checkpoint):
            raise AssertionError("a finished sweep must not load any checkpoint again")

    evaluate(config_for(llama_run, output), backend=NoEngine(), progress=False)
    after = {p: p.read_text() for _, _, p in RunDirectory(output).sample_files()}
    assert before == after


def test_resume_refuses_another_format(llama_run, tmp_path):
    output = tmp_path / "results"
    evaluate(config_for(llama_run, output, tasks=["capitals"], limit=1, conjugates=["en"]), progress=False)
    with pytest.raises(RunError, match="used --format plain"):
        evaluate(config_for(llama_run, output, tasks=["capitals"], limit=1, conjugates=["en"], format="alpaca"),
                 progress=False)


def test_broken_checkpoint_is_reported_and_skipped(llama_run, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(llama_run, run)
    for weights in (run / "checkpoint-20").glob("*.safetensors"):
        weights.unlink()
    output = tmp_path / "results"
    evaluate(config_for(run, output, tasks=["capitals"], conjugates=["en"]), progress=False)
    record = run_json(output)
    assert "checkpoint-20" in record["skipped_checkpoints"]
    assert "no weights file" in record["skipped_checkpoints"]["checkpoint-20"]
    assert {r.checkpoint for r in RunDirectory(output).read_summary()} == {"checkpoint-10", "checkpoint-30"}
    assert "skipping checkpoint checkpoint-20" in caplog.text


def test_unloadable_checkpoint_does_not_end_the_sweep(llama_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(llama_run, run)
    # A well-formed file (discovery finds nothing wrong with its layout) that does not load.
    header = json.dumps({"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (run / "checkpoint-20" / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    output = tmp_path / "results"
    evaluate(config_for(run, output, tasks=["capitals"], conjugates=["en"]), progress=False)
    record = run_json(output)
    assert record["skipped_checkpoints"]["checkpoint-20"].startswith("load failed")
    assert {r.checkpoint for r in RunDirectory(output).read_summary()} == {"checkpoint-10", "checkpoint-30"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


@pytest.mark.slow
def test_cli_kill_mid_sweep_then_resume(llama_run, tmp_path):
    """Kill `harness evaluate` once the first checkpoint is written; the rerun completes it
    without duplicating a single sample line."""
    output = tmp_path / "results"
    args = _cli("evaluate", "--checkpoints", str(llama_run), "--tasks", "capitals,icl_vs_if", "--backend", "hf",
                "--limit", "3", "--conjugates", "en,fr", "--batch-size", "4", "--output", str(output), "--no-report",
                "--truncate", "left")
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = output / "samples" / "checkpoint-10" / "icl_vs_if.jsonl"
    deadline = time.time() + 180
    while not first.is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert first.is_file(), "the sweep wrote nothing before it was killed"
    assert not (output / "samples" / "checkpoint-30").exists(), "the sweep finished before it was killed"
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = sample_lines(output)
    keys = Counter(line.key for line in lines)
    per_checkpoint = Counter(p.parent.name for _, _, p in RunDirectory(output).sample_files()
                             for _ in p.read_text().splitlines())
    # capitals 3 conditions x 3 x 2 conjugates + icl_vs_if 4 conditions x 3 x 2 conjugates
    assert per_checkpoint == {"checkpoint-10": 42, "checkpoint-20": 42, "checkpoint-30": 42}
    assert max(keys.values()) == 3  # each (example, conjugate) once per checkpoint


@pytest.mark.slow
def test_cli_end_to_end(llama_run, tmp_path):
    output = tmp_path / "results"
    config = tmp_path / "run.yaml"
    config.write_text(f"checkpoints: {llama_run}\ntasks: [proverbs, closed_book]\nbackend: hf\nlimit: 2\n"
                      f"conjugates: [en]\nformat: alpaca\n")
    done = subprocess.run(_cli("evaluate", "--config", str(config), "--output", str(output), "--no-report"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"results: {output}" in done.stdout
    assert run_json(output)["config"]["format"] == "alpaca"
    assert "### Response:" in RunDirectory(output).read_samples("checkpoint-10", "proverbs")[0].prompt
    bad = subprocess.run(_cli("evaluate", "--checkpoints", str(tmp_path / "nowhere"), "--output", str(output)),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nowhere" in bad.stderr


def test_run_configs_parse():
    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        if path.name.startswith("finetune-"):
            continue
        config = RunConfig.from_yaml(path)
        config.validate()


def test_run_config_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tasks: [capitals]\nlimt: 3\n")
    with pytest.raises(RunError, match="bad.yaml: limt: unknown key"):
        RunConfig.from_yaml(path)


@pytest.mark.parametrize("line, message", [
    ("backend: vlm", "backend: unknown value 'vlm' (did you mean 'vllm'?); expected one of: auto, vllm, hf"),
    ("fingerprint: sampeld", "fingerprint: unknown value 'sampeld' (did you mean 'sampled'?)"),
    ("schedule: adaptiv", "schedule: unknown value 'adaptiv' (did you mean 'adaptive'?)"),
    ("truncate: right", "truncate: unknown value 'right'; expected one of: left (or leave it unset)"),
    ("format: chatt", "format: unknown value 'chatt' (did you mean 'chat'?)"),
])
def test_a_run_configs_values_are_checked_against_the_flags_choices(tmp_path, line, message):
    """What argparse refuses on the command line is refused from a YAML file too, when the
    config is read (a misspelt backend used to reach make_backend as a bare ValueError)."""
    path = tmp_path / "run.yaml"
    path.write_text(f"tasks: [capitals]\n{line}\n")
    with pytest.raises(RunError) as error:
        RunConfig.from_yaml(path)
    assert message in str(error.value) and "run.yaml" in str(error.value)


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.parametrize("run_fixture", ["llama_run", "tied_llama_run"])
def test_engines_agree_through_the_sweep(run_fixture, request, tmp_path):
    """The same sweep with vLLM (one engine, weights reloaded in place) and with transformers,
    with no dtype given to either: both run the float32 checkpoints in float32 (vLLM's own
    ``auto`` would run them in bfloat16), so outputs are identical, log-likelihoods and every
    summary value agree within 1e-3 on every checkpoint, and run.json says so."""
    run = request.getfixturevalue(run_fixture)
    settings = dict(tasks=["capitals", str(DATA / "cf_world_facts.json")], conjugates=["en"], limit=3)
    evaluate(config_for(run, tmp_path / "hf", **settings), progress=False)
    evaluate(config_for(run, tmp_path / "vllm", backend="vllm", **settings,
                        backend_options={"max_model_len": 256}), progress=False)
    for folder, engine in (("hf", "hf"), ("vllm", "vllm")):
        entries = run_json(tmp_path / folder)["checkpoints"]
        assert {(e["engine"], e["dtype"]) for e in entries} == {(engine, "float32")}
    summaries = [{(r.checkpoint, r.task, r.condition, r.mode, r.metric): r for r in RunDirectory(tmp_path / f).read_summary()}
                 for f in ("hf", "vllm")]
    assert summaries[0].keys() == summaries[1].keys()
    for key, row in summaries[0].items():
        other = summaries[1][key]
        for field in ("value", "ci_low", "ci_high"):
            a, b = getattr(row, field), getattr(other, field)
            assert (a is None and b is None) or a == pytest.approx(b, abs=1e-3), (key, field)
    for label in ("checkpoint-10", "checkpoint-20", "checkpoint-30"):
        for task in ("capitals", "cf_world_facts"):
            hf = RunDirectory(tmp_path / "hf").read_samples(label, task)
            vl = RunDirectory(tmp_path / "vllm").read_samples(label, task)
            assert len(hf) == len(vl) > 0
            for a, b in zip(hf, vl):
                assert a.output == b.output, (label, a.id)
                for role, score in a.loglikelihoods.items():
                    assert b.loglikelihoods[role]["logprob"] == pytest.approx(score["logprob"], abs=1e-3)


def test_adapters_vllm_has_no_lora_for_are_skipped_before_an_engine_starts_and_auto_uses_transformers(
        tmp_path, tiny_gpt2_dir, caplog):
    """vLLM started an engine for a LoRA adapter over GPT-2, then refused it ('does not support
    LoRA yet'), once per checkpoint. Found from the base's config, without loading anything:
    --backend vllm skips them saying which engine may run them; auto picks transformers."""
    pytest.importorskip("vllm")
    from harness.testing import build_lora_run

    run = build_lora_run(tmp_path / "lora-gpt2", tiny_gpt2_dir, r=4, target_modules=("c_attn",))
    settings = dict(tasks=[str(DATA / "cf_world_facts.json")], checkpoints=str(run), conjugates=["en"],
                    bootstrap_resamples=50)
    with pytest.raises(RunError, match="no checkpoint could be evaluated") as refused:
        evaluate(RunConfig(output=str(tmp_path / "vllm"), backend="vllm", **settings), progress=False)
    assert "has no LoRA for GPT2LMHeadModel, the adapter's base model (--backend hf may run it)" in str(refused.value)
    engine = json.loads((tmp_path / "vllm" / "run.json").read_text()).get("engine_stats") or {}
    assert not engine.get("starts")
    with caplog.at_level(logging.WARNING, logger="harness"):
        folder = evaluate(RunConfig(output=str(tmp_path / "auto"), backend="auto", **settings), progress=False)
    assert "backend auto: using transformers instead: vLLM" in caplog.text
    assert {entry.engine for entry in folder.read_record().checkpoints} == {"hf"}
