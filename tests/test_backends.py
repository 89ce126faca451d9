"""Tests of the inference engines (harness.backends) on tiny random models built offline.

Fast tests (transformers only) check tokenisation, the transformers engine against plain
forward passes, PEFT adapters, ``from_model`` hygiene and the factory. Tests marked ``slow`` and
``vllm`` start vLLM engines: each module-scoped *sweep* fixture starts its engine(s), runs the
whole scenario, records what it saw, and shuts the engine down before the next fixture starts
one (never two engines at once); the tests then assert on the records.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from harness.backends import HFBackend, make_backend
from harness.backends import tokens as tk
from harness.backends.hf import inference_mode
from harness.backends.api import ContinuationScore, GenerationRequest, LoglikelihoodRequest
from harness.checkpoints import Checkpoint
from harness.tasks.prompts import continuation_for
from harness.testing import build_tiny_tokenizer, checkpoints_of

ATOL = 1e-3  # float32 agreement between engines

GEN_REQUESTS = [
    GenerationRequest("Question: What is the capital of France?\nAnswer:", max_new_tokens=8, stop=("\n",)),
    GenerationRequest("The capital of", max_new_tokens=5, stop=()),
    GenerationRequest("Context: Oslo is in Norway.\n### Response:\n", max_new_tokens=12, stop=(" ",)),
    GenerationRequest("one two three four five six seven", max_new_tokens=10, stop=("e", "o")),
    GenerationRequest("", max_new_tokens=4, stop=()),
    GenerationRequest("Hello", max_new_tokens=0),
]

_P1 = "Question: What is the capital of Norway?\nAnswer:"
_P2 = "Context: The capital of Peru is Lima.\n### Response:\n"
LL_REQUESTS = [
    LoglikelihoodRequest(_P1, (continuation_for(_P1, "Oslo"), continuation_for(_P1, "Stockholm"))),
    LoglikelihoodRequest(_P2, (continuation_for(_P2, "Lima"), continuation_for(_P2, "Santiago"))),
    LoglikelihoodRequest("The capital of France is", (" Paris", " Rome", " Paris is big")),
    LoglikelihoodRequest("", ("The capital",)),
    LoglikelihoodRequest("yes", ("",)),
]


def manual_token_logprobs(model, ids: list[int]) -> list[float]:
    """log P(ids[t] | ids[:t]) for t >= 1 from one unpadded forward."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return [lp[t - 1, ids[t]].item() for t in range(1, len(ids))]


def assert_scores_close(a, b, atol=ATOL):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert len(ra) == len(rb)
        for x, y in zip(ra, rb):
            assert x.n_tokens == y.n_tokens
            assert x.is_greedy == y.is_greedy
            assert math.isclose(x.logprob, y.logprob, abs_tol=atol), (x, y)


def max_diff(a, b) -> float:
    return max((abs(x.logprob - y.logprob) for ra, rb in zip(a, b) for x, y in zip(ra, rb)), default=0.0)


# =========================================================================== tokens


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))


def test_special_prefix_is_bos(tokenizer):
    assert tk.special_prefix(tokenizer) == (tokenizer.bos_token_id,)


def test_encode_pair_tail_of_whole_encoding(tokenizer):
    prompt, cont = "The capital of France is", " Paris"
    pair = tk.encode_pair(tokenizer, prompt, cont)
    assert list(pair.context) == tk.encode_prompt(tokenizer, prompt)
    assert pair.ids == tokenizer(prompt + cont)["input_ids"]
    assert tokenizer.decode(list(pair.continuation)) == cont


def test_leading_space_changes_tokens(tokenizer):
    with_space = tk.encode_pair(tokenizer, "Answer:", " Paris")
    without = tk.encode_pair(tokenizer, "Answer:", "Paris")
    assert with_space.continuation != without.continuation
    assert with_space.context == without.context


def test_boundary_merge_falls_back_to_separate_encoding(tokenizer):
    # "Par" + "is" re-tokenises across the boundary: context stays the prompt's own tokens
    pair = tk.encode_pair(tokenizer, "The capital is Par", "is")
    assert list(pair.context) == tk.encode_prompt(tokenizer, "The capital is Par")
    assert tokenizer.decode(list(pair.continuation)) == "is"


def test_empty_prompt_and_empty_continuation(tokenizer):
    pair = tk.encode_pair(tokenizer, "", "The capital")
    assert pair.context == (tokenizer.bos_token_id,)
    empty = tk.encode_pair(tokenizer, "yes", "")
    assert empty.continuation == ()


def test_truncation_keeps_continuation(tokenizer):
    prompt = " ".join(["capital"] * 50)
    pair = tk.encode_pair(tokenizer, prompt, " Paris", max_length=10)
    assert len(pair.ids) == 10
    assert tokenizer.decode(list(pair.continuation)) == " Paris"
    with pytest.raises(ValueError):
        tk.encode_pair(tokenizer, "a", " Paris Paris Paris", max_length=2)
    assert len(tk.encode_prompt(tokenizer, prompt, max_length=7)) == 7


def test_a_chat_template_that_writes_the_bos_token_gets_one_bos(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from harness.tasks.prompts import apply_format

    # As Llama 2/3, Mistral and Gemma templates do: the template itself writes <s>.
    chat = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    chat.chat_template = ("{{ bos_token }}{% for m in messages %}user: {{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}assistant:{% endif %}")
    text = apply_format("What is the capital of France?", "chat", chat)
    assert text.startswith("<s>")
    bos = chat.bos_token_id
    ids = tk.encode_prompt(chat, text)
    assert ids[0] == bos and ids[1] != bos
    pair = tk.encode_pair(chat, text, " Paris")
    assert pair.context[0] == bos and pair.context[1] != bos and pair.context == tuple(ids)
    plain = tk.encode_prompt(chat, "What is the capital of France?")  # no <s> in the text: one is added
    assert plain[0] == bos and plain[1] != bos


def test_cut_at_stop_and_decode(tokenizer):
    assert tk.cut_at_stop("Paris\nRome", ("\n",)) == "Paris"
    assert tk.cut_at_stop("abcabc", ("c", "b")) == "a"
    assert tk.cut_at_stop("abc", ()) == "abc"
    prompt = tk.encode_prompt(tokenizer, "Answer:")
    gen = tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    assert tk.decode_continuation(tokenizer, prompt, gen) == " Paris"


def test_tokenizer_fingerprint(tiny_tokenizer_dir, tiny_llama_dir, tmp_path):
    from transformers import AutoTokenizer

    a = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    b = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    other = build_tiny_tokenizer(tmp_path / "other", vocab_size=400)
    assert tk.tokenizer_fingerprint(a) == tk.tokenizer_fingerprint(b)
    assert tk.tokenizer_fingerprint(a) != tk.tokenizer_fingerprint(other)


def test_canary_ids_valid(tokenizer):
    ids = tk.canary_ids(tokenizer)
    assert 20 < len(ids) <= 96 and all(0 <= i < len(tokenizer) for i in ids)
    assert len(tk.canary_ids(tokenizer, max_length=16)) == 16


def test_architecture_fingerprint(llama_run, tied_llama_run):
    from harness.backends.vllm_setup import architecture_fingerprint

    a, b = (architecture_fingerprint(str(p), None) for p in sorted(llama_run.glob("checkpoint-*"))[:2])
    tied = architecture_fingerprint(str(next(tied_llama_run.glob("checkpoint-*"))), None)
    assert a == b and a != tied


# =========================================================================== HF engine


@pytest.fixture(scope="module")
def hf_llama(tiny_llama_dir):
    backend = HFBackend(batch_size=4)
    backend.load(Checkpoint("llama", 0, str(tiny_llama_dir)))
    return backend


@pytest.mark.parametrize("model_fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_hf_loglikelihood_matches_unpadded_forward(request, model_fixture):
    path = request.getfixturevalue(model_fixture)
    backend = HFBackend(batch_size=3)
    backend.load(Checkpoint("m", 0, str(path)))
    scores = backend.loglikelihood(LL_REQUESTS)
    assert [len(s) for s in scores] == [len(r.continuations) for r in LL_REQUESTS]
    for req, row in zip(LL_REQUESTS, scores):
        for cont, score in zip(req.continuations, row):
            pair = tk.encode_pair(backend.tokenizer, req.prompt, cont)
            if not pair.continuation:
                assert score == ContinuationScore(0.0, 0, True)
                continue
            lps = manual_token_logprobs(backend.model, pair.ids)[len(pair.context) - 1:]
            assert score.n_tokens == len(pair.continuation)
            assert score.logprob == pytest.approx(sum(lps), abs=1e-4)
    # batch size does not change the numbers (left padding + position ids)
    single = HFBackend(batch_size=1)
    single.load(Checkpoint("m", 0, str(path)))
    assert_scores_close(scores, single.loglikelihood(LL_REQUESTS), atol=1e-4)


def test_hf_is_greedy(hf_llama):
    prompt = "The capital of"
    gen = hf_llama.generate([GenerationRequest(prompt, max_new_tokens=3, stop=())])[0].text
    (score,) = hf_llama.loglikelihood([LoglikelihoodRequest(prompt, (gen,))])[0]
    assert score.is_greedy
    (other,) = hf_llama.loglikelihood([LoglikelihoodRequest(prompt, (" zzz",))])[0]
    assert not other.is_greedy


@pytest.mark.parametrize("model_fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_hf_generate_greedy_and_batch_invariant(request, model_fixture):
    path = request.getfixturevalue(model_fixture)
    batched = HFBackend(batch_size=4)
    batched.load(Checkpoint("m", 0, str(path)))
    single = HFBackend(batch_size=1)
    single.load(Checkpoint("m", 0, str(path)))
    out = batched.generate(GEN_REQUESTS)
    assert out == single.generate(GEN_REQUESTS)
    assert out[-1].text == ""  # max_new_tokens=0
    model, tok = batched.model, batched.tokenizer
    for req, gen in zip(GEN_REQUESTS, out):
        ids = tk.encode_prompt(tok, req.prompt)
        prompt_ids = list(ids)
        new: list[int] = []
        with torch.no_grad():
            for _ in range(req.max_new_tokens):
                nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                new.append(nxt)
                ids.append(nxt)
                if any(s in tk.decode_continuation(tok, prompt_ids, new) for s in req.stop):
                    break
        expected = tk.cut_at_stop(tk.decode_continuation(tok, prompt_ids, new), req.stop)
        assert gen.text == expected
        assert not any(s in gen.text for s in req.stop if s)


def test_hf_from_model_restores_modes_and_computes_no_gradients(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    model.train()
    model.model.layers[0].eval()  # a mixed state must survive too
    flags = {name: m.training for name, m in model.named_modules()}
    backend = HFBackend.from_model(model, tok, batch_size=2)
    scores = backend.loglikelihood(LL_REQUESTS[:2])
    backend.generate(GEN_REQUESTS[:2])
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    # the same numbers as a loaded checkpoint
    loaded = HFBackend()
    loaded.load(Checkpoint("m", 0, str(tiny_llama_dir)))
    assert_scores_close(scores, loaded.loglikelihood(LL_REQUESTS[:2]), atol=1e-5)
    backend.close()  # forgets, does not destroy
    assert next(model.parameters()).numel() > 0


def test_inference_mode_restores_on_error(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)).train()
    with pytest.raises(RuntimeError):
        with inference_mode(model):
            assert not model.training and not torch.is_grad_enabled()
            raise RuntimeError("boom")
    assert model.training and torch.is_grad_enabled()


def peft_reference(base_dir: Path, adapter: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter)).eval()


def test_hf_adapters_match_peft_and_swap(lora_run, tiny_llama_dir):
    adapters = checkpoints_of(lora_run, base=tiny_llama_dir)
    backend = HFBackend(batch_size=4)
    first = []
    for ckpt in adapters + adapters[:1]:  # a, b, a again: swapping over the kept base
        backend.load(ckpt)
        scores = backend.loglikelihood(LL_REQUESTS[:3])
        reference = peft_reference(tiny_llama_dir, Path(ckpt.adapter))
        for req, row in zip(LL_REQUESTS[:3], scores):
            for cont, score in zip(req.continuations, row):
                pair = tk.encode_pair(backend.tokenizer, req.prompt, cont)
                lps = manual_token_logprobs(reference, pair.ids)[len(pair.context) - 1:]
                assert score.logprob == pytest.approx(sum(lps), abs=1e-4)
        first.append(scores)
    assert max_diff(first[0], first[2]) < 1e-5
    assert max_diff(first[0], first[1]) > 0.1  # the adapters really differ


# =========================================================================== shared prompts

_LONG = ("Context: " + " ".join(["the capital city of the country is a large old city"] * 8)
         + ".\nQuestion: What is the capital of Norway?\nAnswer:")
#: Prompts that end with and without a space, one to five continuations (multiple choice),
#: continuations that share leading tokens, a prompt long enough for whole KV blocks.
SHARED_REQUESTS = LL_REQUESTS + [
    LoglikelihoodRequest("The capital of France is ", ("Paris", " Paris", "Rome", "Paris is big")),
    LoglikelihoodRequest(_LONG, tuple(continuation_for(_LONG, a) for a in ("Oslo", "Stockholm", "Oslo Oslo", "Lima", "Rome"))),
    LoglikelihoodRequest(_LONG + " ", ("Oslo", "Stockholm")),
    LoglikelihoodRequest("one two", (" three",)),
]


def _shared_and_whole(ckpt: Checkpoint, batch_size: int = 3):
    out = {}
    for share in (True, False):
        backend = HFBackend(batch_size=batch_size, share_prompts=share)
        backend.load(ckpt)
        out[share] = backend.loglikelihood(SHARED_REQUESTS)
    return out[True], out[False]


@pytest.mark.parametrize("model_fixture", ["tiny_llama_dir", "tiny_tied_llama_dir", "tiny_gpt2_dir"])
def test_hf_shared_prompt_equals_whole_sequences(request, model_fixture):
    path = request.getfixturevalue(model_fixture)
    shared, whole = _shared_and_whole(Checkpoint("m", 0, str(path)))
    assert_scores_close(shared, whole, atol=1e-5)  # n_tokens and greediness equal too


def test_hf_shared_prompt_equals_whole_sequences_with_an_adapter(lora_run, tiny_llama_dir):
    adapter = checkpoints_of(lora_run, base=tiny_llama_dir)[0]
    shared, whole = _shared_and_whole(adapter)
    assert_scores_close(shared, whole, atol=1e-5)


def test_hf_shared_prompt_computes_each_prompt_once(tiny_llama_dir):
    """Token positions run through the model: a shared prompt is computed once, then only the
    continuations' tokens (all but the last of each)."""
    seen = {}
    for share in (True, False):
        backend = HFBackend(batch_size=16, share_prompts=share)
        backend.load(Checkpoint("m", 0, str(tiny_llama_dir)))
        widths: list[tuple[int, int]] = []
        handle = backend.model.model.register_forward_pre_hook(
            lambda module, args, kwargs: widths.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
        backend.loglikelihood([SHARED_REQUESTS[-3]])  # one long prompt, five continuations
        handle.remove()
        seen[share] = widths
    prompt = len(tk.encode_prompt(_tokenizer_of(tiny_llama_dir), _LONG))
    (ctx_rows, ctx_width), (tail_rows, tail_width) = seen[True]
    assert (ctx_rows, ctx_width) == (1, prompt)
    assert tail_rows <= 5 and tail_width < 5
    assert seen[False] == [(5, seen[False][0][1])] and seen[False][0][1] > prompt


def _tokenizer_of(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def test_compile_rule_follows_the_size_of_the_job():
    from harness.backends.vllm_setup import compile_pays_off

    small = compile_pays_off(requests=600, params=150_000, layers=2, warm=False)
    assert not small.compile and "eager" in small.reason
    assert not compile_pays_off(requests=None, params=135_000_000, layers=30, warm=True).compile  # no hint
    big = compile_pays_off(requests=50_000, params=135_000_000, layers=30, warm=False)
    assert big.compile and big.saves_s > big.costs_s
    # a warm compile cache costs less start-up, so a smaller job pays for it
    middle = dict(requests=1_000, params=135_000_000, layers=30)
    assert compile_pays_off(**middle, warm=True).compile and not compile_pays_off(**middle, warm=False).compile


def test_engine_placement_follows_the_environment(monkeypatch):
    from harness.backends import vllm_setup

    monkeypatch.setenv(vllm_setup.MULTIPROCESSING_ENV, "1")
    assert not vllm_setup.default_in_process(None)
    monkeypatch.setenv(vllm_setup.MULTIPROCESSING_ENV, "0")
    assert vllm_setup.default_in_process(None)
    monkeypatch.delenv(vllm_setup.MULTIPROCESSING_ENV)
    monkeypatch.setattr(vllm_setup, "cpu_build", lambda: True)
    assert vllm_setup.default_in_process(None) and not vllm_setup.default_in_process(2)
    monkeypatch.setattr(vllm_setup, "cpu_build", lambda: False)
    assert not vllm_setup.default_in_process(1)


def test_cpu_environment_defaults_yield_to_the_user(monkeypatch, tmp_path):
    from harness.backends import vllm_setup

    monkeypatch.setattr(vllm_setup, "cpu_build", lambda: True)
    monkeypatch.setenv("IFT_HARNESS_CACHE", str(tmp_path))
    for name in ("VLLM_USE_AOT_COMPILE", "OMP_WAIT_POLICY", "VLLM_CACHE_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    vllm_setup.set_environment_defaults()
    import os

    assert os.environ["VLLM_USE_AOT_COMPILE"] == "0" and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["VLLM_CACHE_ROOT"] == str(tmp_path / "vllm")


def test_compile_cache_mark(monkeypatch, tmp_path):
    from harness.backends import vllm_setup

    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path))
    assert not vllm_setup.compile_cache_warm("llama|float32|len=256")
    vllm_setup.mark_compiled("llama|float32|len=256")
    assert vllm_setup.compile_cache_warm("llama|float32|len=256")
    assert not vllm_setup.compile_cache_warm("llama|float32|len=512")


# =========================================================================== factory


def test_make_backend_names():
    assert isinstance(make_backend("hf", batch_size=2), HFBackend)
    with pytest.raises(ValueError):
        make_backend("tgi")
    assert isinstance(make_backend("hf", tensor_parallel_size=2, max_model_len=64), HFBackend)  # vLLM-only: dropped
    with pytest.raises(TypeError):
        make_backend("hf", colour="red")


def test_make_backend_auto_falls_back_to_hf(monkeypatch, caplog):
    import harness.backends as backends

    monkeypatch.setattr(backends, "vllm_import_error", lambda: "ImportError: no vllm here")
    with caplog.at_level(logging.INFO, logger="harness"):
        backend = make_backend("auto", dtype="float32", max_model_len=128, enforce_eager=True)
    assert isinstance(backend, HFBackend)
    assert backend.max_model_len == 128
    assert "no vllm here" in caplog.text and "enforce_eager" in caplog.text


# =========================================================================== vLLM engine

VLLM_OPTIONS = dict(dtype="float32", max_model_len=256, enforce_eager=True, seed=0, shutdown_timeout=1.0)


def _hf_results(ckpt: Checkpoint):
    hf = HFBackend(batch_size=4, max_model_len=256)
    hf.load(ckpt)
    return hf.generate(GEN_REQUESTS), hf.loglikelihood(LL_REQUESTS)


def _count_generate_calls(backend):
    """Wrap ``backend.llm.generate`` to count engine calls; returns the counter list."""
    calls: list[int] = []
    original = backend.llm.generate

    def counted(*args, **kwargs):
        calls.append(len(args[0]) if args else 0)
        return original(*args, **kwargs)

    backend.llm.generate = counted
    return calls


def _sweep(backend, checkpoints):
    """Load each checkpoint in turn; record both engines' answers and vLLM's engine calls."""
    records = []
    for ckpt in checkpoints:
        backend.load(ckpt)
        gen = backend.generate(GEN_REQUESTS)
        calls = _count_generate_calls(backend)
        ll = backend.loglikelihood(LL_REQUESTS)
        hf_gen, hf_ll = _hf_results(ckpt)
        records.append(dict(label=ckpt.label, gen=gen, ll=ll, hf_gen=hf_gen, hf_ll=hf_ll,
                            ll_calls=len(calls)))
    return records


def _engine_children() -> dict[int, str]:
    """Live child processes (pid -> name) other than multiprocessing's resource tracker: while
    an engine runs, its ``VLLM::EngineCore`` and ``VLLM::Worker`` processes."""
    import psutil

    live = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped: gone
                continue
            if "resource_tracker" in " ".join(p.cmdline()):
                continue
            live[p.pid] = p.name()
        except psutil.Error:
            pass
    return live


def _shared_prompt_scores(backend, hf) -> dict:
    """SHARED_REQUESTS scored by the loaded engine with prompt sharing on and off (prefix cache
    emptied before each), and by transformers."""
    out = {}
    for share in (True, False):
        backend.share_prompts = share
        backend.llm.reset_prefix_cache()
        cached = backend.stats["cached_tokens"]
        out[f"share_{share}"] = backend.loglikelihood(SHARED_REQUESTS)
        out[f"share_{share}_cached"] = backend.stats["cached_tokens"] - cached
    backend.share_prompts = True
    out["share_hf"] = hf.loglikelihood(SHARED_REQUESTS)
    return out


def _assert_sharing_is_exact(out) -> None:
    assert_scores_close(out["share_True"], out["share_False"], atol=1e-5)
    assert_scores_close(out["share_True"], out["share_hf"])
    assert out["share_True_cached"] > out["share_False_cached"]  # prompts really were shared


@pytest.fixture(scope="module")
def untied_then_gpt2_sweep(llama_run, gpt2_run, vllm_cache_dir):
    """One engine through three untied Llama checkpoints (two in-place reloads), a prefix-
    cache edge case, then a GPT-2 run (another architecture: a new engine; tied head
    reloads), then close()."""
    from harness.backends.vllm import VLLMBackend

    backend = VLLMBackend(**VLLM_OPTIONS)
    before = _engine_children()
    out: dict = {"llama": _sweep(backend, checkpoints_of(llama_run))}
    out["llama_stats"] = {k: (list(v) if isinstance(v, list) else v) for k, v in backend.stats.items()}
    # a context of exactly one KV block (vLLM's CPU block size is 128 tokens): the block is
    # fully cached for the 2nd and 3rd continuations, so its last position's log-probs would
    # be missing; those requests must be recomputed without reading the cache.
    tok = backend.tokenizer
    prompt = "x"
    while len(tk.encode_prompt(tok, prompt)) < 128:
        prompt += " x"
    edge = [LoglikelihoodRequest(prompt, (" Paris", " Rome", " Paris Rome"))]
    out["edge_context_len"] = len(tk.encode_prompt(tok, prompt))
    out["edge_first"] = backend.loglikelihood(edge)
    calls = _count_generate_calls(backend)
    out["edge"] = backend.loglikelihood(edge)  # now the prompt's block is surely cached
    out["edge_calls"] = len(calls)
    hf = HFBackend(max_model_len=256)
    hf.load(checkpoints_of(llama_run)[-1])
    out["edge_hf"] = hf.loglikelihood(edge)
    out.update(_shared_prompt_scores(backend, hf))
    # longer than the window: vLLM scores at most max_model_len - 1 = 255 tokens (left-cut)
    long = [LoglikelihoodRequest(" ".join(["capital"] * 300), (" Paris", " Rome"))]
    out["long"] = backend.loglikelihood(long)
    hf255 = HFBackend(max_model_len=255)
    hf255.load(checkpoints_of(llama_run)[-1])
    out["long_hf"] = hf255.loglikelihood(long)
    out["children_in_process"] = {k: v for k, v in _engine_children().items() if k not in before}
    backend.in_process = False  # the GPT-2 engine runs in its own processes: both ways are covered
    out["gpt2"] = _sweep(backend, checkpoints_of(gpt2_run))
    out["stats"] = backend.stats
    out["children_open"] = {k: v for k, v in _engine_children().items() if k not in before}
    backend.close()
    out["children_closed"] = {k: v for k, v in _engine_children().items() if k not in before}
    out["closed_llm"] = backend.llm
    return out


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_untied_llama_sweep_matches_hf(untied_then_gpt2_sweep):
    records = untied_then_gpt2_sweep["llama"]
    assert [r["label"] for r in records] == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    for r in records:
        assert r["gen"] == r["hf_gen"], r["label"]
        assert_scores_close(r["ll"], r["hf_ll"])
        assert r["ll_calls"] == 1  # all continuations of all requests in ONE engine call
    # checkpoints really differ, so agreement after reload is not agreement with checkpoint-10
    assert max_diff(records[0]["ll"], records[1]["ll"]) > 0.1
    stats = untied_then_gpt2_sweep["llama_stats"]
    assert stats["engine_starts"] == 1 and stats["reloads"] == 2 and stats["fallbacks"] == 0
    assert all(c["ok"] and c["max_abs_diff"] < ATOL for c in stats["canary"])


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_shared_prompts_equal_whole_sequences_untied(untied_then_gpt2_sweep):
    _assert_sharing_is_exact(untied_then_gpt2_sweep)


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_shared_prompts_equal_whole_sequences_tied(tied_llama_sweep):
    _assert_sharing_is_exact(tied_llama_sweep)


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_prefix_cache_edge_recomputes(untied_then_gpt2_sweep):
    assert untied_then_gpt2_sweep["edge_context_len"] == 128
    assert_scores_close(untied_then_gpt2_sweep["edge_first"], untied_then_gpt2_sweep["edge_hf"])
    assert_scores_close(untied_then_gpt2_sweep["edge"], untied_then_gpt2_sweep["edge_hf"])
    assert untied_then_gpt2_sweep["edge_calls"] == 2  # one call + one recompute without cache


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_scores_sequences_longer_than_the_window(untied_then_gpt2_sweep):
    assert_scores_close(untied_then_gpt2_sweep["long"], untied_then_gpt2_sweep["long_hf"])


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_gpt2_new_engine_and_tied_reloads(untied_then_gpt2_sweep):
    records = untied_then_gpt2_sweep["gpt2"]
    for r in records:
        assert r["gen"] == r["hf_gen"], r["label"]
        assert_scores_close(r["ll"], r["hf_ll"])
    stats = untied_then_gpt2_sweep["stats"]
    assert stats["engine_starts"] == 2  # another architecture: a new engine
    assert stats["reloads"] == 4 and stats["fallbacks"] == 0


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_close_shuts_engine_down(untied_then_gpt2_sweep):
    modes = [mode["in_process"] for mode in untied_then_gpt2_sweep["stats"]["engine_mode"]]
    assert modes == [True, False]  # vLLM's CPU build: in this process by default; then asked otherwise
    assert not untied_then_gpt2_sweep["children_in_process"]
    assert untied_then_gpt2_sweep["children_open"]  # the second engine runs in child processes
    assert not untied_then_gpt2_sweep["children_closed"]
    assert untied_then_gpt2_sweep["closed_llm"] is None


@pytest.fixture(scope="module")
def tied_llama_sweep(tied_llama_run, vllm_cache_dir):
    """One engine through three tied-embedding Llama checkpoints; then the CPU head fix is
    switched off and checkpoint-10 reloaded: the canary check must catch the stale head and
    fall back to a fresh engine."""
    from harness.backends.vllm import VLLMBackend

    backend = VLLMBackend(**VLLM_OPTIONS)
    ckpts = checkpoints_of(tied_llama_run)
    out: dict = {"sweep": _sweep(backend, ckpts)}
    out["stats_sweep"] = {k: (list(v) if isinstance(v, list) else v) for k, v in backend.stats.items()}
    backend.fix_tied_head = False
    hf = HFBackend(max_model_len=256)
    hf.load(ckpts[-1])
    out.update(_shared_prompt_scores(backend, hf))
    out["sabotage"] = _sweep(backend, ckpts[:1])
    out["stats"] = backend.stats
    backend.close()
    return out


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_tied_llama_sweep_matches_hf(tied_llama_sweep):
    for r in tied_llama_sweep["sweep"]:
        assert r["gen"] == r["hf_gen"], r["label"]
        assert_scores_close(r["ll"], r["hf_ll"])
    stats = tied_llama_sweep["stats_sweep"]
    assert stats["engine_starts"] == 1 and stats["reloads"] == 2 and stats["fallbacks"] == 0


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_reload_check_catches_stale_tied_head(tied_llama_sweep):
    stats = tied_llama_sweep["stats"]
    bad = stats["canary"][-2]
    assert bad["what"] == "reload" and not bad["ok"] and bad["max_abs_diff"] > 0.1
    assert stats["canary"][-1]["what"] == "fresh engine" and stats["canary"][-1]["ok"]
    assert stats["fallbacks"] == 1 and stats["engine_starts"] == 2
    (r,) = tied_llama_sweep["sabotage"]  # answers come from the fresh engine: right
    assert r["gen"] == r["hf_gen"]
    assert_scores_close(r["ll"], r["hf_ll"])


@pytest.fixture(scope="module")
def lora_sweep(lora_run, tiny_llama_dir, vllm_cache_dir):
    """One LoRA engine over the tiny Llama serving two adapters (a, b, a again), then its base
    model without an adapter, then adapter b again."""
    from harness.backends.vllm import VLLMBackend

    backend = VLLMBackend(**VLLM_OPTIONS)
    adapters = checkpoints_of(lora_run, base=tiny_llama_dir)
    out: dict = {"records": [], "lora_ids": []}
    for ckpt in adapters + adapters[:1] + [Checkpoint("base", 0, str(tiny_llama_dir))] + adapters[1:2]:
        backend.load(ckpt)
        out["lora_ids"].append(backend._lora_request.lora_int_id if backend._lora_request else None)
        gen = backend.generate(GEN_REQUESTS)
        ll = backend.loglikelihood(LL_REQUESTS)
        hf = HFBackend(batch_size=4, max_model_len=256)
        hf.load(ckpt)
        out["records"].append(dict(label=ckpt.label, gen=gen, ll=ll,
                                   hf_gen=hf.generate(GEN_REQUESTS), hf_ll=hf.loglikelihood(LL_REQUESTS)))
    out["engine"] = backend._engine
    out["stats"] = backend.stats
    base = HFBackend(batch_size=4, max_model_len=256)
    base.load(Checkpoint("base", 0, str(tiny_llama_dir)))
    out["base_gen"] = base.generate(GEN_REQUESTS)
    backend.close()
    return out


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_lora_matches_peft(lora_sweep):
    records = lora_sweep["records"]
    for r in records:
        assert r["gen"] == r["hf_gen"], r["label"]  # engine generation == PEFT generation
        assert_scores_close(r["ll"], r["hf_ll"])
    assert records[0]["gen"] != lora_sweep["base_gen"]  # the adapter is applied
    assert records[0]["gen"] != records[1]["gen"]
    assert records[2]["gen"] == records[0]["gen"]
    assert records[3]["gen"] == lora_sweep["base_gen"]  # the LoRA engine's base, no adapter
    assert records[4]["gen"] == records[1]["gen"]


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_lora_one_engine_unique_ids(lora_sweep):
    assert lora_sweep["stats"]["engine_starts"] == 1
    assert lora_sweep["engine"].lora and lora_sweep["engine"].lora_rank == 8
    ids = lora_sweep["lora_ids"]
    assert ids[0] != ids[1] and ids[2] == ids[0] and ids[3] is None and ids[4] == ids[1]


@pytest.mark.vllm
def test_lora_rank_rounding(lora_run):
    from harness.backends.vllm_setup import adapter_rank, round_lora_rank, vllm_lora_ranks

    assert 8 in vllm_lora_ranks() and 512 in vllm_lora_ranks()
    assert [round_lora_rank(r) for r in (1, 4, 8, 9, 100, 128)] == [1, 8, 8, 16, 128, 128]
    with pytest.raises(ValueError):
        round_lora_rank(4096)
    assert adapter_rank(str(next(lora_run.glob("checkpoint-*")))) == 8


@pytest.mark.vllm
def test_make_backend_auto_picks_vllm():
    from harness.backends.vllm import VLLMBackend

    backend = make_backend("auto", **VLLM_OPTIONS)
    assert isinstance(backend, VLLMBackend) and backend.llm is None  # no engine until load()
