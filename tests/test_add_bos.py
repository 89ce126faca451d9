"""A task's ``add_bos`` option: prompts read without the tokenizer's BOS (the conjugate-
prompting paper tokenised with ``add_special_tokens=False``), the same way on every engine."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from harness.backends import HFBackend, tokens as tk
from harness.backends.api import GenerationRequest, LoglikelihoodRequest
from harness.backends.base import Engine
from harness.cli import main
from harness.results import RunDirectory
from harness.sweep.config import RunConfig
from harness.sweep.evaluate import evaluate
from harness.tasks import TaskRegistry
from harness.testing import checkpoints_of

DATA = Path(__file__).parent / "data"
PROMPT = "Capitalize every character.\nInput: what is 7 times 5?\nOutput:"


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))


def test_without_bos_the_ids_are_the_bare_encoding(tokenizer):
    bare = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    assert tk.encode_prompt(tokenizer, PROMPT) == [tokenizer.bos_token_id, *bare]
    assert tk.encode_prompt(tokenizer, PROMPT, add_bos=False) == bare
    pair = tk.encode_pair(tokenizer, PROMPT, " WHAT", add_bos=False)
    assert list(pair.context) == bare and pair.ids == tokenizer(PROMPT + " WHAT", add_special_tokens=False)["input_ids"]
    request = LoglikelihoodRequest(PROMPT, (" WHAT",), add_bos=False)
    assert tk.encode_loglikelihood(tokenizer, [request]) == [[pair]]


class Recording(HFBackend):
    """The transformers engine, keeping the token ids the shared base hands it."""

    def __init__(self, **options):
        super().__init__(**options)
        self.seen: list[list[int]] = []

    def _generate_ids(self, prompts, requests):
        self.seen += [list(ids) for ids in prompts]
        return super()._generate_ids(prompts, requests)

    def score_pairs(self, pairs):
        self.seen += [list(pair.context) for pair in pairs]
        return super().score_pairs(pairs)


def test_both_engines_encode_requests_in_the_shared_base():
    from harness.backends.vllm import VLLMBackend

    for method in ("generate", "loglikelihood"):
        assert getattr(VLLMBackend, method) is getattr(HFBackend, method) is getattr(Engine, method)


def test_the_engine_reads_add_bos_from_each_request(llama_run, tokenizer):
    engine = Recording(max_model_len=256)
    engine.load(checkpoints_of(llama_run)[0])
    bare = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    engine.generate([GenerationRequest(PROMPT, max_new_tokens=2, add_bos=False), GenerationRequest(PROMPT, 2)])
    without, with_bos = engine.loglikelihood([LoglikelihoodRequest(PROMPT, (" WHAT",), add_bos=False),
                                              LoglikelihoodRequest(PROMPT, (" WHAT",))])
    assert engine.seen == [bare, [tokenizer.bos_token_id, *bare]] * 2
    assert not math.isclose(without[0].logprob, with_bos[0].logprob, abs_tol=1e-4)


def test_the_papers_layout_has_no_bos_and_the_run_records_it(llama_run, tmp_path):
    registry = TaskRegistry()
    assert registry.get("icl_vs_if").config.prompt.add_bos is False
    assert registry.get(str(DATA / "conjugate_prompting.csv")).config.prompt.add_bos is False
    assert registry.get("capitals").config.prompt.add_bos is True
    config = RunConfig(output=str(tmp_path / "out"), model=str(checkpoints_of(llama_run)[0].model),
                       tasks=["capitals", str(DATA / "conjugate_prompting.csv")], backend="hf", limit=1,
                       conjugates=["en"], bootstrap_resamples=20)
    evaluate(config, progress=False)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["task_add_bos"] == {"capitals": True, "conjugate_prompting": False}
    assert RunDirectory(tmp_path / "out").read_summary()


def test_validate_shows_a_file_in_its_own_conjugate(tmp_path, capsys):
    with open(DATA / "conjugate_prompting.csv", newline="") as source:
        rows = [row for row in csv.DictReader(source) if "-fr-" in row["config"]]
    french = tmp_path / "french.csv"
    with open(french, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["validate", str(french)]) == 0
    shown = capsys.readouterr().out
    assert "conjugates: fr" in shown and "Combien" in shown


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_and_transformers_agree_without_bos(llama_run, vllm_cache_dir):
    from harness.backends.vllm import VLLMBackend

    checkpoint = checkpoints_of(llama_run)[-1]
    generate = [GenerationRequest(PROMPT, max_new_tokens=6, stop=(), add_bos=False)]
    score = [LoglikelihoodRequest(PROMPT, (" WHAT", " 35"), add_bos=False)]
    vllm = VLLMBackend(dtype="float32", max_model_len=256, enforce_eager=True, seed=0, shutdown_timeout=1.0)
    try:
        vllm.load(checkpoint)
        answers = vllm.generate(generate), vllm.loglikelihood(score)
        with_bos = vllm.loglikelihood([LoglikelihoodRequest(PROMPT, (" WHAT", " 35"))])
    finally:
        vllm.close()
    hf = HFBackend(max_model_len=256)
    hf.load(checkpoint)
    assert answers[0] == hf.generate(generate)
    for ours, theirs, bos in zip(answers[1][0], hf.loglikelihood(score)[0], with_bos[0]):
        assert ours.n_tokens == theirs.n_tokens and math.isclose(ours.logprob, theirs.logprob, abs_tol=1e-3)
        assert not math.isclose(ours.logprob, bos.logprob, abs_tol=1e-3)  # the BOS really was left out
