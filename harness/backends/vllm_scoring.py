"""Log-likelihoods on a vLLM engine: continuations scored from ``prompt_logprobs``, a prompt
shared by several continuations computed once through the prefix cache.

vLLM 0.32 has no request that scores several continuations of one prompt: prompt log-probs
are per sequence. What it offers to share a prompt is the prefix cache: a request reads the KV
blocks an earlier (or a same-step) request with the same leading tokens wrote, and computes
only the positions after them. It shares whole blocks (``block_size`` tokens), so the tokens
after the prompt's last full block are computed again for each continuation; the values are
those of a computation without the cache, to float rounding (docs/engines.md).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

from harness.backends import tokens as tk
from harness.backends.api import ContinuationScore


@functools.lru_cache(maxsize=None)
def flat_logprobs() -> dict[str, bool]:
    """``flat_logprobs=True`` where this vLLM has it: prompt log-probs then come back as a few
    flat lists instead of a dict and a ``Logprob`` object per prompt position, which the
    frontend builds for EVERY position of a scoring request (cached ones included), in Python;
    the values are the same."""
    try:
        from vllm import SamplingParams

        SamplingParams(flat_logprobs=True)
    except Exception:  # an older vLLM: the per-position dicts
        return {}
    return {"flat_logprobs": True}


def score_call(llm: Any, pairs: Sequence[tk.ScoringPair], indices: list[int],
               results: list[ContinuationScore | None], *, read_cache: bool, share: bool,
               lora_request: Any = None, stats: dict[str, Any] | None = None) -> list[int]:
    """One ``generate`` call scoring ``pairs[indices]`` into ``results``; returns the
    indices whose cache hit reached into the continuation (their first log-probs missing).

    ``share``: every context with two or more continuations is sent first as a request of
    its own, without its last token and without ``prompt_logprobs``: it writes the
    context's full KV blocks into the prefix cache, and each continuation right after it
    reads them (in the same engine step, or a later one), so the context is computed once
    and log-probs only for the positions after its last full block. Leaving the last token
    out keeps such a hit inside the context. ``stats`` (when given) counts the scored tokens
    and those read from the cache.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    scoring = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False,
                             skip_reading_prefix_cache=not read_cache, **flat_logprobs())
    prefill = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
    counts: dict[tuple[int, ...], int] = {}
    for i in indices:
        counts[pairs[i].context] = counts.get(pairs[i].context, 0) + 1
    prompts, params, owners = [], [], []
    sent: set[tuple[int, ...]] = set()
    for i in indices:
        context = pairs[i].context
        if share and counts[context] > 1 and len(context) > 1 and context not in sent:
            sent.add(context)
            prompts.append(TokensPrompt(prompt_token_ids=list(context[:-1])))
            params.append(prefill)
            owners.append(None)
        prompts.append(TokensPrompt(prompt_token_ids=pairs[i].ids))
        params.append(scoring)
        owners.append(i)
    outputs = llm.generate(prompts, params, use_tqdm=False, lora_request=lora_request)
    redo = []
    for i, out in zip(owners, outputs):
        if i is None:
            continue
        pair = pairs[i]
        n_ctx = len(pair.context)
        if stats is not None:
            stats["scored_tokens"] = stats.get("scored_tokens", 0) + len(pair.ids)
            stats["cached_tokens"] = stats.get("cached_tokens", 0) + (out.num_cached_tokens or 0)
        if read_cache and (out.num_cached_tokens or 0) > n_ctx - 1:
            redo.append(i)  # log-probs of the first continuation token(s) not computed
            continue
        ids = pair.ids
        entries = [out.prompt_logprobs[j][ids[j]] for j in range(n_ctx, len(ids))]
        results[i] = ContinuationScore(
            logprob=float(sum(e.logprob for e in entries)),
            n_tokens=len(entries),
            is_greedy=all(e.rank == 1 for e in entries),
        )
    return redo
