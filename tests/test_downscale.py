"""Down-scaled variants as checkpoints (``prune:`` specs): what pruning does to the weights,
the variant cache, bad specs, the sweep over variants, the down-scaling chart and its
statistics, and ``compare --x params``."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from handmade import run_json
from harness.downscaling import variants as downscale
from harness.reports.runs import RunResults, parameter_count
from harness.errors import CheckpointError, RunError
from harness.reports.compare import COMPARE_HTML, compare
from harness.reports.figures import PLOTS
from harness.reports.report import REPORT_HTML, write_report
from harness.results import RunDirectory, RunRecord, SampleRecord, SummaryRow
from harness.sweep.config import RunConfig
from harness.sweep.evaluate import evaluate, resolve_checkpoints
from harness.reports.scaling import Retention, crossing, downscaling_curve, non_increasing
from harness.scoring import GENERATE, aggregate, metric_names
from harness.testing import POSITIONS, build_tiny_model, folder_tensors

CALIBRATION = "calibration=task:icl_vs_if&samples=4&seq_len=64"
TASKS = ["closed_book", "overriding"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Each test builds its variants into a cache of its own."""
    monkeypatch.setenv("IFT_HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def record(checkpoint) -> dict:
    return json.loads(Path(checkpoint.variant["record"]).read_text())


# --------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("model", ["tiny_llama_dir", "tiny_tied_llama_dir", "tiny_gpt2_dir"])
@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_pruning_hits_the_sparsity_per_layer_and_leaves_the_rest_bit_identical(model, method, request):
    folder = request.getfixturevalue(model)
    options = f"?method={method}&{CALIBRATION}" if method == "wanda" else ""
    checkpoints = downscale.resolve([f"prune:{folder}@0,0.3,0.7{options}"])
    assert [(c.label, c.step) for c in checkpoints] == [("sparsity-0", 0), ("sparsity-30", 30), ("sparsity-70", 70)]
    assert checkpoints[0].model == str(folder)  # the dense level is the model itself
    dense = folder_tensors(folder)
    for checkpoint, asked in zip(checkpoints[1:], (0.3, 0.7)):
        pruned = folder_tensors(checkpoint.model)
        assert pruned.keys() == dense.keys()  # a tied head stays tied: no lm_head.weight appears
        layers = record(checkpoint)["layers"]
        assert len(layers) == (14 if "llama" in model else 8)  # 7 (4) linear layers a block, 2 blocks
        for name, tensor in pruned.items():
            layer = name.removesuffix(".weight")
            if layer in layers:
                achieved = float((tensor == 0).float().mean())
                assert abs(achieved - asked) <= 0.01, (name, achieved)
                assert achieved == pytest.approx(layers[layer])  # recorded as measured
            else:  # embeddings, norms, biases, the output head
                assert torch.equal(tensor, dense[name]), name
        assert not any("embed" in n or "wte" in n or "wpe" in n or "norm" in n or "ln_" in n or "lm_head" in n
                       for n in layers)
        assert checkpoint.variant["sparsity"] == asked
        assert abs(checkpoint.variant["achieved"] - asked) <= 0.01


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_two_four_keeps_two_of_every_four_inputs(tiny_gpt2_dir, tiny_llama_dir, method):
    options = f"&method={method}&{CALIBRATION}" if method == "wanda" else ""
    for folder in (tiny_llama_dir, tiny_gpt2_dir):
        _, half = downscale.resolve([f"prune:{folder}@0,0.5?structure=2:4{options}"])
        for name in record(half)["layers"]:
            tensor = folder_tensors(half.model)[f"{name}.weight"]
            rows = tensor.t() if ".h." in name else tensor  # GPT-2's Conv1D stores (in, out)
            groups = (rows.reshape(rows.shape[0], -1, 4) != 0).sum(dim=-1)
            assert int(groups.max()) <= 2, name
        assert half.variant["structure"] == "2:4"


def test_targets_narrow_what_is_pruned(tiny_llama_dir):
    _, variant = downscale.resolve([f"prune:{tiny_llama_dir}@0,0.5?targets=mlp"])
    layers = record(variant)["layers"]
    assert layers and all(".mlp." in name for name in layers)
    assert torch.equal(folder_tensors(variant.model)["model.layers.0.self_attn.q_proj.weight"],
                       folder_tensors(tiny_llama_dir)["model.layers.0.self_attn.q_proj.weight"])


# --------------------------------------------------------------------------- the cache


def keys(spec: str) -> list[str]:
    return [c.variant["key"] for c in downscale.resolve([spec])]


def test_the_cache_reuses_a_variant_and_rebuilds_it_when_an_input_changes(tiny_llama_dir, tmp_path, monkeypatch):
    spec = f"prune:{tiny_llama_dir}@0,0.5?method=wanda&{CALIBRATION}"
    first = downscale.resolve([spec])
    built = {c.variant["key"]: Path(c.variant["record"]).stat().st_mtime_ns for c in first}

    def no_build(*args, **kwargs):
        raise AssertionError("a cached variant was built again")

    with monkeypatch.context() as patched:
        patched.setattr(downscale, "_build", no_build)
        again = downscale.resolve([spec])
    assert [c.model for c in again] == [c.model for c in first]
    assert {c.variant["key"]: Path(c.variant["record"]).stat().st_mtime_ns for c in again} == built

    half = keys(spec)[1]
    changed = {
        "sparsity": keys(spec.replace("@0,0.5", "@0,0.6"))[1],
        "method": keys(f"prune:{tiny_llama_dir}@0,0.5")[1],
        "structure": keys(f"{spec}&structure=2:4")[1],
        "targets": keys(f"{spec}&targets=mlp")[1],
        "calibration task": keys(spec.replace("icl_vs_if", "closed_book"))[1],
        "calibration size": keys(spec.replace("samples=4", "samples=3"))[1],
    }
    other = tmp_path / "other-model"
    shutil.copytree(tiny_llama_dir, other)
    tensors = load_file(other / "model.safetensors")
    tensors["model.layers.0.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"] * 1.5
    save_file(tensors, other / "model.safetensors", metadata={"format": "pt"})
    changed["model weights"] = keys(spec.replace(str(tiny_llama_dir), str(other)))[1]
    assert half not in changed.values(), changed
    assert len(set(changed.values())) == len(changed), changed


def test_an_interrupted_build_is_not_taken_for_a_variant(tiny_llama_dir, monkeypatch):
    spec = f"prune:{tiny_llama_dir}@0,0.5"
    _, variant = downscale.resolve([spec])
    (Path(variant.model) / "model.safetensors").unlink()  # as if the folder were damaged
    _, again = downscale.resolve([spec])
    assert (Path(again.model) / "model.safetensors").is_file() and again.variant["key"] == variant.variant["key"]
    # A build killed half-way leaves its staging folder; the next build of that variant clears it.
    shutil.rmtree(again.model)
    stale = Path(f"{again.model}.partial-999999999")
    stale.mkdir()
    downscale.resolve([spec])
    assert not stale.exists() and (Path(again.model) / "variant.json").is_file()


# --------------------------------------------------------------------------- bad specs


@pytest.mark.parametrize(("spec", "words"), [
    ("prune:{model}@0,1.0", ["levels", "outside [0, 1)"]),
    ("prune:{model}@-0.1,0.5", ["levels", "outside [0, 1)"]),
    ("prune:{model}@0,0.125", ["levels", "whole percent"]),
    ("prune:{model}@0,0.5?method=obd", ["method", "unknown method 'obd'"]),
    ("prune:{model}@0,0.5?colour=red", ["colour", "unknown key"]),
    ("prune:{model}@0,0.5?method=wanda", ["calibration", "wanda needs calibration data"]),
    ("prune:{model}@0,0.5?method=wanda&calibration=file:/no/such.txt", ["calibration", "no such file"]),
    ("prune:{model}@0,0.5?structure=3:7", ["levels", "cannot be reached"]),
    ("prune:{model}@0,0.57?structure=3:7", ["model", "not a multiple of 7"]),
    ("prune:{model}@0,0.5?targets=no_such_layer", ["model", "match targets"]),
    ("prune:{model}", ["levels", "expected prune:MODEL@"]),
    ("prune:/no/such/model@0,0.5", ["model", "folder does not exist"]),
    (f"prune:{{model}}@0,0.5?method=wanda&calibration=task:icl_vs_if&seq_len={POSITIONS + 1}",
     ["seq_len", f"longer than the model's context window of {POSITIONS} tokens"]),
])
def test_a_bad_spec_ends_in_one_message_before_any_engine_starts(spec, words, tiny_llama_dir, tmp_path, monkeypatch):
    import harness.backends

    def no_engine(*args, **kwargs):
        raise AssertionError("an engine was started")

    monkeypatch.setattr(harness.backends, "make_backend", no_engine)
    text = spec.format(model=tiny_llama_dir)
    with pytest.raises(CheckpointError) as caught:
        evaluate(RunConfig(output=str(tmp_path / "out"), tasks=TASKS, checkpoints=text), progress=False)
    message = str(caught.value)
    assert text.split("?")[0] in message and all(word in message for word in words), message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_calibration_sequences_fit_the_models_window_when_seq_len_is_not_given(arch, tiny_tokenizer_dir, tmp_path):
    """The default calibration length (256 tokens) is cut to a model whose context is shorter
    (the demo's GPT-2 has 128 positions): a longer sequence indexes past its position table."""
    folder = build_tiny_model(tmp_path / "short", tiny_tokenizer_dir, arch=arch, positions=128)
    checkpoints = downscale.resolve([f"prune:{folder}@0,0.5?method=wanda&calibration=task:icl_vs_if&samples=4"])
    calibration = record(checkpoints[1])["calibration"]
    assert calibration["seq_len"] == 128 and calibration["sequences"] == 4
    with pytest.raises(CheckpointError, match="seq_len: 129 tokens is longer than the model's context window of "
                                              "128 tokens"):
        downscale.resolve([f"prune:{folder}@0,0.5?method=wanda&calibration=task:icl_vs_if&seq_len=129"])


def test_sparsegpt_without_llmcompressor_says_why(tiny_llama_dir):
    if importlib.util.find_spec("llmcompressor") is not None:
        pytest.skip("llmcompressor is installed here")
    with pytest.raises(CheckpointError, match="compressed-tensors"):
        resolve_checkpoints(RunConfig(checkpoints=f"prune:{tiny_llama_dir}@0,0.5?method=sparsegpt&{CALIBRATION}"))


def test_an_adapter_cannot_be_pruned(lora_run):
    with pytest.raises(CheckpointError, match="PEFT adapter"):
        downscale.resolve([f"prune:{lora_run / 'checkpoint-10'}@0,0.5"])


def test_prune_specs_are_not_mixed_with_other_checkpoints(tiny_llama_dir, llama_run):
    with pytest.raises(RunError, match="cannot be mixed"):
        resolve_checkpoints(RunConfig(checkpoints=[f"prune:{tiny_llama_dir}@0,0.5", str(llama_run)]))
    with pytest.raises(CheckpointError, match="a run sweeps one"):
        resolve_checkpoints(RunConfig(checkpoints=[f"prune:{tiny_llama_dir}@0,0.5",
                                                   f"prune:{tiny_llama_dir}@0,0.5?structure=2:4"]))


# --------------------------------------------------------------------------- the sweep


def sweep_config(checkpoints: str, output: Path, **overrides) -> RunConfig:
    settings = dict(output=str(output), tasks=TASKS, checkpoints=checkpoints, backend="hf", limit=4,
                    conjugates=["en"], bootstrap_resamples=100, truncate="left")
    settings.update(overrides)
    return RunConfig(**settings)


def samples_of(output: Path, label: str) -> dict:
    run = RunDirectory(output)
    return {(task, s.key): (s.output, s.loglikelihoods) for task in TASKS for s in run.read_samples(label, task)}


def test_a_swept_variant_equals_the_same_variant_evaluated_as_a_plain_checkpoint(tiny_tied_llama_dir, tmp_path):
    spec = f"prune:{tiny_tied_llama_dir}@0,0.5"
    evaluate(sweep_config(spec, tmp_path / "sweep"), progress=False)
    entries = {e["label"]: e for e in run_json(tmp_path / "sweep")["checkpoints"]}
    assert entries["sparsity-50"]["variant"]["method"] == "magnitude"
    assert entries["sparsity-50"]["variant"]["achieved"] == pytest.approx(0.5, abs=0.01)
    plain = tmp_path / "plain"
    shutil.copytree(entries["sparsity-50"]["model"], plain)
    evaluate(sweep_config(str(plain), tmp_path / "plain-run"), progress=False)
    swept, alone = samples_of(tmp_path / "sweep", "sparsity-50"), samples_of(tmp_path / "plain-run", "plain")
    assert swept and swept == alone
    assert swept != samples_of(tmp_path / "sweep", "sparsity-0")  # pruning changed something


def test_a_downscaling_report_draws_the_chart_and_the_retention_table(tiny_llama_dir, tmp_path):
    output = tmp_path / "run"
    evaluate(sweep_config(f"prune:{tiny_llama_dir}@0,0.4,0.8", output), progress=False)
    html = write_report(output).read_text()
    assert "<h2>Down-scaling</h2>" in html and "keeps 90% up to sparsity" in html
    assert (output / PLOTS / "downscaling.png").stat().st_size > 10_000
    run = RunResults(output)
    assert run.is_downscaling
    xs, _ = run.x_values("params")
    dense = parameter_count(str(tiny_llama_dir))
    zeros = run.variants["sparsity-80"]["zeros_added"]
    assert xs["sparsity-0"] == dense and xs["sparsity-80"] == dense - zeros
    assert compare([output], x="params", output=tmp_path / "cmp").name == COMPARE_HTML


# --------------------------------------------------------------------------- the statistics


def test_parameter_count_matches_the_model(tiny_llama_dir, tiny_tied_llama_dir):
    from transformers import AutoModelForCausalLM

    for folder in (tiny_llama_dir, tiny_tied_llama_dir):
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert parameter_count(str(folder)) == sum(p.numel() for p in model.parameters())
    assert parameter_count(str(tiny_llama_dir)) > parameter_count(str(tiny_tied_llama_dir))


def test_crossing_interpolates_and_says_when_a_level_is_never_reached():
    sparsity = np.array([0.0, 0.3, 0.6, 0.9])
    curves = np.array([[1.0, 1.0, 1.0], [0.9, 0.95, 1.0], [0.4, 0.92, 0.99], [0.1, 0.85, 0.98]])
    assert crossing(sparsity, curves, 0.9).tolist() == pytest.approx([0.3, 0.6 + 0.3 * 0.02 / 0.07, math.inf])
    assert crossing(sparsity, curves, 0.5)[0] == pytest.approx(0.3 + 0.3 * 0.4 / 0.5)
    assert str(Retention(0.9, math.inf, 0.7, math.inf)).startswith("not reached")
    # A dip before a recovery is read through the non-increasing fit: (0.7, 0.95) pool to 0.825.
    bumpy = np.array([1.0, 0.7, 0.95, 0.2])
    assert non_increasing(bumpy).ravel().tolist() == pytest.approx([1.0, 0.825, 0.825, 0.2])
    assert crossing(sparsity, bumpy, 0.9)[0] == pytest.approx(0.3 * 0.1 / 0.175)
    assert np.isnan(crossing(sparsity, np.full(4, np.nan), 0.9)[0])


def hand_made_run(path: Path, correct: dict[float, int], n: int = 100) -> Path:
    """A down-scaling results folder: closed_book accuracy ``correct[s]`` of ``n`` at each sparsity."""
    run = RunDirectory(path)
    rows, entries = [], []
    for sparsity, hits in correct.items():
        label, step = f"sparsity-{round(sparsity * 100)}", round(sparsity * 100)
        scores = [{"correct": i < hits} for i in range(n)]
        run.append_samples(label, "closed_book", [SampleRecord(
            id=f"q{i}", condition="closed_book", conjugate="en", prompt="p", answers={"target": ["a"]},
            output="o", scores=s) for i, s in enumerate(scores)])
        for metric in metric_names(GENERATE, ["target"]):
            rows.append(SummaryRow.of(aggregate(metric, scores, n_resamples=50), checkpoint=label, step=step,
                                      task="closed_book", task_version=1, task_hash="h", condition="closed_book",
                                      conjugate="en", mode=GENERATE, metric=metric))
        entries.append({"label": label, "step": step, "model": str(path / "m"), "revision": None, "adapter": None,
                        "variant": {"sparsity": sparsity, "achieved": sparsity, "method": "magnitude",
                                    "structure": "unstructured", "achieved_model": sparsity * 0.8,
                                    "layer_min": sparsity, "layer_max": sparsity, "params": 1000,
                                    "zeros_added": round(800 * sparsity)}})
    run.write_summary(rows)
    run.write_record(RunRecord.from_dict({"config": {}, "task_hashes": {"closed_book": "h"}, "checkpoints": entries,
                                          "skipped_checkpoints": {}}))
    return path


def test_the_downscaling_curve_normalises_to_the_dense_model_and_finds_the_retention_sparsity(tmp_path):
    run = RunResults(hand_made_run(tmp_path / "run", {0.0: 80, 0.3: 72, 0.6: 32, 0.9: 8}))
    curve = downscaling_curve(run, "closed_book", "accuracy", "closed_book", "en", n_resamples=500)
    assert curve.chance == 0 and curve.n == 100
    assert curve.normalised == pytest.approx((1.0, 0.9, 0.4, 0.1))
    keep90, keep50 = curve.retention
    assert keep90.sparsity == pytest.approx(0.3)  # 0.9 is kept at 0.3, lost just after
    assert keep50.sparsity == pytest.approx(0.3 + 0.3 * 0.4 / 0.5)
    assert keep50.ci_low < keep50.sparsity < keep50.ci_high < 0.9
    assert all(low <= value <= high for value, low, high in zip(curve.score, curve.score_low, curve.score_high))
    flat = RunResults(hand_made_run(tmp_path / "flat", {0.0: 80, 0.5: 79, 0.9: 78}))
    keep90 = downscaling_curve(flat, "closed_book", "accuracy", "closed_book", "en", n_resamples=200).retention[0]
    assert math.isinf(keep90.sparsity) and math.isinf(keep90.ci_high)
    html = write_report(tmp_path / "run").read_text()
    assert "Down-scaling" in html and "0.54 [" in html


def test_an_ordinary_run_has_no_downscaling_section(tmp_path, llama_run):
    output = tmp_path / "run"
    evaluate(sweep_config(str(llama_run), output, limit=2), progress=False)
    assert not RunResults(output).is_downscaling
    assert "<h2>Down-scaling</h2>" not in write_report(output).read_text()


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.vllm
def test_a_downscaling_sweep_runs_end_to_end_on_vllm(tiny_tied_llama_dir, tmp_path, vllm_cache_dir):
    """``harness evaluate --config``: variants reloaded in place into one vLLM engine (a tied
    model: the reload check applies), the report's chart, and the reloaded variant equal to the
    same folder evaluated in a fresh engine."""
    from harness import cli

    config = tmp_path / "downscale.yaml"
    config.write_text(f"output: {tmp_path / 'run'}\ntasks: [closed_book, overriding]\nconjugates: [en]\n"
                      f"checkpoints: 'prune:{tiny_tied_llama_dir}@0,0.3,0.6?method=wanda&{CALIBRATION}'\n"
                      "backend: vllm\nlimit: 4\ntruncate: left\nbootstrap_resamples: 100\n"
                      "backend_options: {dtype: float32, shutdown_timeout: 1}\n")
    assert cli.main(["evaluate", "--config", str(config)]) == 0
    html = (tmp_path / "run" / REPORT_HTML).read_text()
    assert "<h2>Down-scaling</h2>" in html and (tmp_path / "run" / PLOTS / "downscaling.png").is_file()
    record_ = run_json(tmp_path / "run")
    assert [e["label"] for e in record_["checkpoints"]] == ["sparsity-0", "sparsity-30", "sparsity-60"]
    assert record_["checkpoints"][2]["variant"]["method"] == "wanda"
    plain = tmp_path / "plain"
    shutil.copytree(record_["checkpoints"][2]["model"], plain)
    evaluate(sweep_config(str(plain), tmp_path / "plain-run", backend="vllm", limit=4,
                          backend_options={"dtype": "float32", "shutdown_timeout": 1}), progress=False)
    swept, alone = samples_of(tmp_path / "run", "sparsity-60"), samples_of(tmp_path / "plain-run", "plain")
    assert swept.keys() == alone.keys() and swept
    for key, (output, lls) in swept.items():
        assert output == alone[key][0], key
        for role, score in lls.items():
            assert score["logprob"] == pytest.approx(alone[key][1][role]["logprob"], abs=1e-3), key
