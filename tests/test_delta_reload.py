"""Delta reloads: an in-place vLLM reload reads only the tensors that changed.

The plan (:mod:`harness.backends.vllm_reload`) is tested without vLLM: which tensors a
query/key-only finetuned copy brings along (their fused siblings), and that anything unusual
means a full reload. The ``vllm`` tests run one engine on the tiny tied Llama through a
query/key-only copy (a delta), back (a delta made wrong on purpose: the canary must catch it and
the reload be redone in full) and another checkpoint (most bytes changed: a full reload).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from harness.backends.api import GenerationRequest, LoglikelihoodRequest
from harness.backends.vllm_reload import LoadedWeights, full_plan, plan_reload
from harness.checkpoints import Checkpoint
from harness.checkpoints.fingerprints import tensor_bytes
from harness.testing import LAYERS, checkpoints_of, finetune_query_key

ATOL = 1e-3
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IFT_HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def qk_copy(tied_llama_run, tmp_path):
    """checkpoint-10 of the tied run and a copy whose q_proj/k_proj tensors alone changed."""
    source = tied_llama_run / "checkpoint-10"
    return source, finetune_query_key(source, tmp_path / "qk")


# --------------------------------------------------------------------------- the plan


def test_query_key_change_reads_attention_only(qk_copy):
    source, copy = qk_copy
    plan = plan_reload(LoadedWeights.of(source), str(copy))
    sizes = tensor_bytes(copy / "model.safetensors")
    # q/k changed; v/o come along (vLLM fuses q, k, v into one parameter); nothing else
    expected = sorted(f"model.layers.{i}.self_attn.{p}.weight" for i in range(LAYERS) for p in ATTENTION)
    assert plan.delta and list(plan.names) == expected
    assert plan.tensors == len(expected) and plan.total_tensors == len(sizes)
    assert plan.bytes == sum(sizes[n] for n in expected) < plan.total_bytes == sum(sizes.values())
    assert plan.describe().startswith(f"{len(expected)} of {len(sizes)} tensors (")


def test_equal_weights_read_nothing(qk_copy, tmp_path):
    source, _ = qk_copy
    import shutil

    same = shutil.copytree(source, tmp_path / "same")
    plan = plan_reload(LoadedWeights.of(source), str(same))
    assert plan.delta and plan.names == () and plan.bytes == 0


def test_most_bytes_changed_is_a_full_reload(tied_llama_run):
    # two training steps: every tensor but the norms (all ones at init) changed
    first, second = tied_llama_run / "checkpoint-10", tied_llama_run / "checkpoint-20"
    plan = plan_reload(LoadedWeights.of(first), str(second))
    assert not plan.delta and plan.tensors == plan.total_tensors


def test_unusual_folders_get_a_full_reload(qk_copy, tmp_path):
    source, copy = qk_copy
    assert not plan_reload(None, str(copy)).delta  # nothing known about what is loaded
    loaded = LoadedWeights.of(source)
    # a shard index beside the weights
    (copy / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    assert LoadedWeights.of(copy) is None and not plan_reload(loaded, str(copy)).delta
    assert full_plan(str(copy)).tensors is None and full_plan(str(copy)).describe() == "every tensor"
    os.remove(copy / "model.safetensors.index.json")
    # what the Trainer saves beside the weights (vLLM reads model.safetensors when there is one)
    for name in ("training_args.bin", "optimizer.pt", "rng_state.pth"):
        (copy / name).write_bytes(b"not weights")
    assert plan_reload(loaded, str(copy)).delta
    # the loaded file rewritten since the engine read it: its hashes no longer say what is loaded
    os.utime(source / "model.safetensors", ns=(loaded.mtime_ns + 10**9, loaded.mtime_ns + 10**9))
    try:
        assert not plan_reload(loaded, str(copy)).delta
    finally:
        os.utime(source / "model.safetensors", ns=(loaded.mtime_ns, loaded.mtime_ns))


def test_other_shape_or_names_is_a_full_reload(tiny_llama_dir, tiny_tied_llama_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    # tied vs untied: lm_head.weight only in one of them
    assert not plan_reload(LoadedWeights.of(tiny_llama_dir), str(tiny_tied_llama_dir)).delta
    reshaped = shutil.copytree(tiny_llama_dir, tmp_path / "reshaped")
    tensors = load_file(str(reshaped / "model.safetensors"))
    name = "model.norm.weight"
    tensors[name] = torch.cat([tensors[name], tensors[name]])
    save_file(tensors, str(reshaped / "model.safetensors"), metadata={"format": "pt"})
    assert not plan_reload(LoadedWeights.of(tiny_llama_dir), str(reshaped)).delta


# --------------------------------------------------------------------------- the engine

GEN = [GenerationRequest("The capital of France is", max_new_tokens=8, stop=("\n",))]
LL = [LoglikelihoodRequest("The capital of France is", (" Paris", " Rome")),
      LoglikelihoodRequest("Water boils at", (" 100 degrees", " 50 degrees"))]


def _answers(backend, checkpoint):
    backend.load(checkpoint)
    return backend.generate(GEN), [s.logprob for scores in backend.loglikelihood(LL) for s in scores]


def _spy_on_reads(monkeypatch):
    """Record the names of the tensors the worker reads with ``safetensors.safe_open`` (the
    engine runs in this process)."""
    import safetensors

    real, names = safetensors.safe_open, []

    class Spy:
        def __init__(self, *args, **kwargs):
            self.handle = real(*args, **kwargs)

        def __enter__(self):
            self.inner = self.handle.__enter__()
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

        def get_tensor(self, name):
            names.append(name)
            return self.inner.get_tensor(name)

    monkeypatch.setattr(safetensors, "safe_open", Spy)
    return names


@pytest.fixture(scope="module")
def delta_sweep(tied_llama_run, tmp_path_factory, vllm_cache_dir):
    from harness.backends import HFBackend
    from harness.backends import vllm as vllm_backend
    from harness.backends.vllm import VLLMBackend

    monkeypatch = pytest.MonkeyPatch()
    first, second, _ = checkpoints_of(tied_llama_run)
    copy = finetune_query_key(tied_llama_run / "checkpoint-10", tmp_path_factory.mktemp("qk") / "checkpoint-10-qk")
    qk = Checkpoint(label="qk", step=11, model=str(copy))
    backend = VLLMBackend(dtype="float32", max_model_len=256, enforce_eager=True, seed=0, shutdown_timeout=1.0)
    out: dict = {}
    try:
        out["first"] = _answers(backend, first)
        reads = _spy_on_reads(monkeypatch)
        out["qk"] = _answers(backend, qk)
        out["qk_reads"] = list(reads)
        monkeypatch.undo()
        hf = HFBackend(max_model_len=256)
        hf.load(qk)
        out["qk_hf"] = hf.generate(GEN), [s.logprob for scores in hf.loglikelihood(LL) for s in scores]
        hf.close()
        # back to checkpoint-10 with a wrong delta: layer 1's attention (changed) left out
        real_plan = vllm_backend.plan_reload

        def wrong_plan(loaded, path):
            plan = real_plan(loaded, path)
            names = tuple(n for n in plan.names if not n.startswith("model.layers.1."))
            return replace(plan, names=names, tensors=len(names))

        monkeypatch.setattr(vllm_backend, "plan_reload", wrong_plan)
        out["back"] = _answers(backend, first)
        monkeypatch.undo()
        out["second"] = _answers(backend, second)
        out["stats"] = backend.stats
    finally:
        monkeypatch.undo()
        backend.close()
    return out


@pytest.mark.slow
@pytest.mark.vllm
def test_delta_reload_reads_only_changed_tensors(delta_sweep):
    delta = delta_sweep["stats"]["reload_reads"][0]
    assert delta["delta"] and delta["tensors"] == 4 * LAYERS < delta["of_tensors"]
    assert delta["bytes"] < delta["of_bytes"] / 2
    reads = delta_sweep["qk_reads"]
    assert sorted(reads) == sorted(f"model.layers.{i}.self_attn.{p}.weight" for i in range(LAYERS) for p in ATTENTION)
    assert not any("mlp" in n or "embed" in n or "norm" in n for n in reads)  # unchanged: not re-read


@pytest.mark.slow
@pytest.mark.vllm
def test_delta_reload_equals_transformers(delta_sweep):
    gen, ll = delta_sweep["qk"]
    hf_gen, hf_ll = delta_sweep["qk_hf"]
    assert gen == hf_gen
    assert max(abs(a - b) for a, b in zip(ll, hf_ll)) < ATOL
    # the copy really differs from what was loaded before it
    assert max(abs(a - b) for a, b in zip(ll, delta_sweep["first"][1])) > 1e-3
    canary = delta_sweep["stats"]["canary"]
    assert canary[0]["what"] == "delta reload" and canary[0]["ok"]


@pytest.mark.slow
@pytest.mark.vllm
def test_wrong_delta_is_caught_and_redone_in_full(delta_sweep):
    stats = delta_sweep["stats"]
    wrong, redone = stats["canary"][1], stats["canary"][2]
    assert wrong["what"] == "delta reload" and not wrong["ok"]
    assert redone["what"] == "reload" and redone["ok"]
    assert stats["fallbacks"] == 1 and stats["engine_starts"] == 1
    assert [r["delta"] for r in stats["reload_reads"]] == [True, True, False, False]
    # the answers after the fallback are checkpoint-10's again
    assert delta_sweep["back"][0] == delta_sweep["first"][0]
    assert max(abs(a - b) for a, b in zip(delta_sweep["back"][1], delta_sweep["first"][1])) < ATOL
    full = stats["reload_reads"][-1]  # checkpoint-20: most bytes changed
    assert full["tensors"] == full["of_tensors"] and full["bytes"] == full["of_bytes"]


def test_canary_counts_nan_as_a_mismatch(tiny_llama_dir, monkeypatch):
    # a fused parameter loaded in part keeps uninitialised memory: log-probs can come out NaN,
    # and max() skips a NaN that follows a number
    from harness.backends import vllm_reference

    class Reference:
        def load(self, checkpoint):
            pass

        def token_logprobs(self, ids):
            return [-1.0] * (len(ids) - 1)

        def close(self):
            pass

    monkeypatch.setattr(vllm_reference, "engine_token_logprobs",
                        lambda llm, ids, lora_request=None: [-1.0] + [float("nan")] * (len(ids) - 2))
    checkpoint = Checkpoint(label="c", step=1, model=str(tiny_llama_dir))
    diff = vllm_reference.canary_difference(None, Reference(), checkpoint, None, window=64)
    assert not diff <= ATOL
