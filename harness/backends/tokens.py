"""Tokenisation shared by every engine, so that all of them score the very same token ids.

Both :class:`~harness.backends.hf.HFBackend` and :class:`~harness.backends.vllm.VLLMBackend`
turn text into token ids here, with the checkpoint's own (transformers) tokenizer; vLLM is
given token ids (``TokensPrompt``), never text. An engine therefore cannot disagree with the
other because it tokenised differently.

Decisions (made once, here):

* **Special tokens.** Texts are encoded without special tokens and the tokenizer's own
  *leading* special tokens (``<s>`` for Llama-style tokenizers, nothing for GPT-2) are
  prepended, found once by encoding a probe text (:func:`special_prefix`) — unless the text
  already begins with them: chat templates of Llama, Mistral and Gemma write ``<s>`` /
  ``<bos>`` themselves, and a second one would change every score. Trailing special tokens a
  tokenizer may append (``</s>``) are never used: a prompt must not end in EOS. A task may
  ask for no leading special tokens at all (``add_bos: false``: the conjugate-prompting
  paper tokenised its prompts with ``add_special_tokens=False``); every encoder takes it.
* **Continuations** (:func:`encode_pair`, lm-eval style): encode the prompt, encode
  ``prompt + continuation`` as a whole, and take the continuation's tokens as the tail of the
  whole after the prompt's tokens. The continuation is then tokenised as it would be in
  running text (``" Paris"`` after ``"Answer:"`` is the single token ``"ĠParis"``, and a
  SentencePiece tokenizer does not add a spurious ``"▁"``). Only when the prompt's tokens are
  *not* a prefix of the whole's (a merge across the boundary, e.g. a prompt ending mid-word)
  does it fall back to encoding the continuation on its own and concatenating, which keeps
  the text boundary exact. The leading-space rule itself is
  :func:`harness.tasks.prompts.continuation_for`'s; nothing here adds or strips spaces.
* **Empty prompt.** When there is no context token at all (empty prompt, no BOS), the
  tokenizer's BOS — else EOS — is used as the context, so the first continuation token has
  something to be conditioned on (lm-eval does the same).
* **Truncation.** Sequences longer than the engine's window lose tokens from the *left* of
  the prompt (the continuation is never cut; a continuation that does not fit is an error).
  Generation prompts are cut to ``max_length - max_new_tokens``.
* **Decoding** (:func:`decode_continuation`): generated ids are decoded in the context of the
  prompt's last tokens (as vLLM's incremental detokenizer does), so a first token ``"▁Paris"``
  decodes to ``" Paris"`` rather than losing its space; special tokens are skipped.
* **Stop strings** (:func:`cut_at_stop`): the text is cut before the earliest occurrence of any
  stop string.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from harness.checkpoints import Checkpoint
    from harness.backends.api import LoglikelihoodRequest

logger = logging.getLogger("harness")

_PROBE = "probe"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")

#: Text of the canary sequence used to check an engine against transformers after a reload.
CANARY_TEXT = (
    "The capital of France is Paris. Question: what is 2 + 3? Answer: 5\n"
    "### Response: the quick brown fox, 1999 (yes) [no]"
)


@dataclass(frozen=True)
class ScoringPair:
    """Token ids of one (prompt, continuation) pair: score ``continuation`` after ``context``."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]

    @property
    def ids(self) -> list[int]:
        return [*self.context, *self.continuation]


# --------------------------------------------------------------------------- tokenizers


def tokenizer_source(checkpoint: "Checkpoint") -> tuple[str, str | None]:
    """Where a checkpoint's tokenizer lives: the adapter folder when it ships tokenizer files
    (a finetune that added tokens), else the model (with its revision)."""
    if checkpoint.adapter and os.path.isdir(checkpoint.adapter):
        if any(os.path.exists(os.path.join(checkpoint.adapter, f)) for f in _TOKENIZER_FILES):
            return checkpoint.adapter, None
    return checkpoint.model, checkpoint.revision


def load_tokenizer(checkpoint: "Checkpoint", *, trust_remote_code: bool = False):
    """The checkpoint's transformers tokenizer (see :func:`tokenizer_source`)."""
    from transformers import AutoTokenizer

    source, revision = tokenizer_source(checkpoint)
    return AutoTokenizer.from_pretrained(
        source, revision=revision, trust_remote_code=trust_remote_code
    )


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash that changes whenever the tokenizer would encode or decode differently.

    Fast tokenizers hash their full serialisation (vocabulary, merges, normalizer,
    pre-tokenizer, post-processor, added tokens); others their vocabulary. Special tokens are
    always included.
    """
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    specials = getattr(tokenizer, "special_tokens_map", {}) or {}
    h.update(json.dumps(specials, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _cache(tokenizer: Any) -> dict:
    cache = getattr(tokenizer, "_harness_cache", None)
    if cache is None:
        cache = {}
        try:
            setattr(tokenizer, "_harness_cache", cache)
        except Exception:  # pragma: no cover - exotic tokenizers with __slots__
            pass
    return cache


def special_prefix(tokenizer: Any) -> tuple[int, ...]:
    """The special tokens the tokenizer puts *before* a text (e.g. ``(bos_id,)`` or ``()``)."""
    cache = _cache(tokenizer)
    if "prefix" not in cache:
        with_special = tokenizer(_PROBE, add_special_tokens=True)["input_ids"]
        bare = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
        prefix: tuple[int, ...] = ()
        for n in range(len(with_special) - len(bare) + 1):
            if list(with_special[n: n + len(bare)]) == list(bare):
                prefix = tuple(with_special[:n])
                break
        cache["prefix"] = prefix
    return cache["prefix"]


def _encode(tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _fallback_context_token(tokenizer: Any) -> list[int]:
    for tid in (getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if tid is not None:
            return [int(tid)]
    raise ValueError("cannot score a continuation of an empty prompt: the tokenizer has no BOS/EOS")


# --------------------------------------------------------------------------- encoding

_TRUNCATION_WARNED: set[int] = set()


def _warn_truncation(n_tokens: int, window: int) -> None:
    """Say once per window size that prompts are being cut: the results of such prompts
    lost the start of their context, which a researcher must know."""
    if window not in _TRUNCATION_WARNED:
        _TRUNCATION_WARNED.add(window)
        logger.warning(
            "a prompt of %d tokens does not fit the model's window of %d: prompts are cut from the "
            "left (their start, often the context, is lost). Raise --max-model-len if the model "
            "allows it, or leave the task out", n_tokens, window)



def _with_prefix(tokenizer: Any, ids: list[int], add_bos: bool = True) -> list[int]:
    """``ids`` with the tokenizer's leading special tokens, unless they already start with them
    or ``add_bos`` is false."""
    if not add_bos:
        return ids
    prefix = list(special_prefix(tokenizer))
    return ids if prefix and ids[: len(prefix)] == prefix else prefix + ids


def encode_prompt(tokenizer: Any, prompt: str, *, max_length: int | None = None, add_bos: bool = True) -> list[int]:
    """Token ids of a generation prompt: leading special tokens (unless not ``add_bos``) + the
    encoded text, cut from the left to ``max_length`` tokens when given. Never empty."""
    ids = _with_prefix(tokenizer, _encode(tokenizer, prompt), add_bos)
    if not ids:
        ids = _fallback_context_token(tokenizer)
    if max_length is not None and len(ids) > max_length:
        _warn_truncation(len(ids), max_length)
        ids = ids[len(ids) - max(max_length, 1):]
    return ids


def encode_pair(
    tokenizer: Any, prompt: str, continuation: str, *, max_length: int | None = None, add_bos: bool = True
) -> ScoringPair:
    """Token ids to score ``continuation`` after ``prompt`` (see the module docstring)."""
    context = _with_prefix(tokenizer, _encode(tokenizer, prompt), add_bos)
    if not continuation:
        cont: list[int] = []
    else:
        whole = _with_prefix(tokenizer, _encode(tokenizer, prompt + continuation), add_bos)
        if whole[: len(context)] == context and len(whole) > len(context):
            cont = whole[len(context):]
        else:
            logger.debug(
                "prompt tokens are not a prefix of prompt+continuation tokens "
                "(merge across the boundary); encoding the continuation %r separately",
                continuation,
            )
            cont = _encode(tokenizer, continuation)
    if not context:
        context = _fallback_context_token(tokenizer)
    if max_length is not None and len(context) + len(cont) > max_length:
        if len(cont) >= max_length:
            raise ValueError(
                f"continuation of {len(cont)} tokens does not fit a window of {max_length}"
            )
        _warn_truncation(len(context) + len(cont), max_length)
        context = context[len(context) + len(cont) - max_length:]
    return ScoringPair(tuple(context), tuple(cont))


def encode_loglikelihood(
    tokenizer: Any, requests: Sequence["LoglikelihoodRequest"], *, max_length: int | None = None
) -> list[list[ScoringPair]]:
    """One list of :class:`ScoringPair` per request, one pair per continuation."""
    return [
        [encode_pair(tokenizer, r.prompt, c, max_length=max_length, add_bos=r.add_bos) for c in r.continuations]
        for r in requests
    ]


def canary_ids(tokenizer: Any, *, max_length: int | None = None) -> list[int]:
    """A short fixed token sequence (about 40 ids) to compare engines on: :data:`CANARY_TEXT`
    plus a few ids spread over the vocabulary, so that rare rows of the embedding and the
    output head are exercised too."""
    ids = encode_prompt(tokenizer, CANARY_TEXT)
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    vocab = len(tokenizer)
    spread = [i for i in (vocab * k // 9 for k in range(1, 9)) if i not in specials]
    ids = ids + spread
    if max_length is not None:
        ids = ids[:max_length]
    return ids


# --------------------------------------------------------------------------- decoding


def decode_continuation(tokenizer: Any, prompt_ids: Sequence[int], generated_ids: Sequence[int]) -> str:
    """Text of ``generated_ids`` as it reads after the prompt (special tokens skipped).

    Decodes the last prompt tokens together with the generated ones and removes the prompt
    part, so tokenizers that drop a word's leading space when it starts a decode (SentencePiece)
    give the same text as vLLM's incremental detokenizer.
    """
    generated_ids = list(generated_ids)
    if not generated_ids:
        return ""
    tail = list(prompt_ids[-6:])
    head = tokenizer.decode(tail, skip_special_tokens=True)
    full = tokenizer.decode(tail + generated_ids, skip_special_tokens=True)
    if full.startswith(head):
        return full[len(head):]
    return tokenizer.decode(generated_ids, skip_special_tokens=True)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` cut before the earliest occurrence of any (non-empty) stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1 and i < cut:
                cut = i
    return text[:cut]
