"""The transformers engine: the reference every other engine is checked against, the
fallback where vLLM does not import, and the engine for a model inside a training loop.

Greedy generation is batched over length-sorted, left-padded prompts. Log-likelihoods: the
continuations of one prompt (both answers of an item, every choice of a multiple-choice item)
are scored from ONE forward of the prompt — its KV cache is repeated for each continuation,
which then needs a forward of its own tokens only; a prompt with a single continuation is one
forward of the left-padded ``context + continuation``. Position ids are explicit (absolute-
position models such as GPT-2 see the same positions as unpadded); log-softmax in float32.
Tokenisation is :mod:`harness.backends.tokens`', shared with vLLM.

No gradients are ever computed (``torch.no_grad``), and a model's train/eval flags are
restored module by module after every call, so :meth:`HFBackend.from_model` can be used on a
model in the middle of finetuning.
"""

from __future__ import annotations

import gc
import logging
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from harness.backends import tokens as tk
from harness.backends.api import ContinuationScore, GenerationRequest
from harness.backends.base import Engine
from harness.checkpoints import Checkpoint
from harness.checkpoints.fingerprints import FULL, live_fingerprint
from harness.checkpoints.identity import CheckpointIdentity
from harness.dtypes import dtype_name, torch_dtype

logger = logging.getLogger("harness")


@contextmanager
def inference_mode(model: Any) -> Iterator[None]:
    """Eval mode and no gradients for the duration; every module's ``training`` flag is put
    back exactly as it was afterwards (also a mix of train and eval submodules)."""
    import torch

    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, flag in flags:
            module.training = flag


class HFBackend(Engine):
    """transformers engine (see module docstring).

    Args:
        dtype: weights' dtype when loading checkpoints: ``"float32"``, ``"bfloat16"``,
            ``"float16"`` or a ``torch.dtype``; default (None or ``"auto"``): the dtype each
            checkpoint is stored in, as the vLLM engine does, except half precision on a CPU
            without fast bfloat16 units: float32 (:func:`harness.dtypes.cpu_dtype`).
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``... where loaded models live.
        batch_size: sequences per forward / generate call.
        trust_remote_code: passed to ``from_pretrained``; off unless the user asks.
        max_model_len: window in tokens (prompts are cut from the left to fit); default the
            model's ``max_position_embeddings`` when it has one.
        share_prompts: score the continuations of one prompt from one forward of the prompt
            (its KV cache), as :meth:`_score_shared` does; False scores every
            ``prompt + continuation`` as a sequence of its own (the same numbers to float
            rounding, more work).
    """

    name = "hf"

    def __init__(
        self,
        *,
        dtype: Any = None,
        device: str = "cpu",
        batch_size: int = 16,
        trust_remote_code: bool = False,
        max_model_len: int | None = None,
        share_prompts: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.requested_dtype = None if dtype in (None, "auto") else dtype_name(dtype)
        self.dtype: Any = None  # the torch dtype of the loaded model
        self.device = device
        self.batch_size = batch_size
        self.trust_remote_code = trust_remote_code
        self.configured_window = max_model_len
        self.share_prompts = share_prompts
        self.model: Any = None
        self.tokenizer: Any = None
        self.checkpoint: Checkpoint | None = None
        self._base_key: tuple[str, str | None] | None = None  # base of a PEFT model
        self._owns_model = True

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, *, batch_size: int = 16, max_model_len: int | None = None
    ) -> "HFBackend":
        """Wrap an already-loaded model (e.g. the one being finetuned) and its tokenizer.

        The model stays where it is (device, dtype); calls never change its train/eval mode
        for good and never compute gradients. :meth:`close` leaves it alone.
        """
        backend = cls(batch_size=batch_size, max_model_len=max_model_len)
        backend.model = model
        backend.tokenizer = tokenizer
        backend._owns_model = False
        try:
            param = next(model.parameters())
            backend.device, backend.dtype = str(param.device), param.dtype
        except StopIteration:  # pragma: no cover
            pass
        return backend

    def identity(self, checkpoint: Checkpoint, *, fingerprint: str = FULL) -> CheckpointIdentity:
        """As :meth:`Engine.identity`; a model given to :meth:`from_model` is identified by its
        parameters in memory, whatever ``checkpoint`` names."""
        if self._owns_model or self.model is None:
            return super().identity(checkpoint, fingerprint=fingerprint)
        return CheckpointIdentity(model=checkpoint.model, revision=None, adapter=None,
                                  weights=live_fingerprint(self.model), engine=self.name,
                                  engine_version=self.engine_version(), dtype=dtype_name(self.dtype),
                                  device=str(self.device))

    def load(self, checkpoint: Checkpoint) -> None:
        """Load ``checkpoint.model`` (at ``revision``) and, for an adapter checkpoint, apply the
        PEFT adapter over it. Consecutive adapters over the same base reuse the loaded base."""
        from transformers import AutoModelForCausalLM

        base_key = (checkpoint.model, checkpoint.revision)
        reuse_base = (
            checkpoint.adapter is not None
            and self._base_key == base_key
            and self.model is not None
            and self._owns_model
        )
        if reuse_base:
            base = self.model.unload()  # drops the previous adapter's layers, no merge
            logger.debug("hf: swapping adapter over loaded base %s", checkpoint.model)
        else:
            self.close()
            logger.debug("hf: loading %s%s", checkpoint.model,
                         f"@{checkpoint.revision}" if checkpoint.revision else "")
            base = AutoModelForCausalLM.from_pretrained(
                checkpoint.model,
                revision=checkpoint.revision,
                dtype=torch_dtype(self.dtype_for(checkpoint)),
                trust_remote_code=self.trust_remote_code,
            ).to(self.device)
        self.dtype = next(base.parameters()).dtype
        if checkpoint.adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, checkpoint.adapter, is_trainable=False)
            model.to(self.device)
            self._base_key = base_key
        else:
            model = base
            self._base_key = None
        model.eval()
        model.requires_grad_(False)
        self.model = model
        self.tokenizer = tk.load_tokenizer(checkpoint, trust_remote_code=self.trust_remote_code)
        self.checkpoint = checkpoint
        self._owns_model = True

    def close(self) -> None:
        """Drop the loaded model (a model given to :meth:`from_model` is only forgotten)."""
        if self.model is None:
            return
        owned = self._owns_model
        self.model = None
        self.tokenizer = None
        self.checkpoint = None
        self._base_key = None
        if owned:
            gc.collect()
            if str(self.device).startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ helpers

    def _require_loaded(self) -> None:
        if self.model is None or self.tokenizer is None:
            raise RuntimeError("no model loaded: call load(checkpoint) first")

    @property
    def generation_window(self) -> int | None:
        return self.max_model_len

    @property
    def max_model_len(self) -> int | None:
        """The window in tokens: the one asked for, else the loaded model's."""
        if self.configured_window is not None:
            return self.configured_window
        config = getattr(self.model, "config", None)
        for attr in ("max_position_embeddings", "n_positions"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def _device(self):
        try:
            return next(self.model.parameters()).device
        except StopIteration:  # pragma: no cover
            return self.device

    def _pad_id(self) -> int:
        for tid in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if tid is not None:
                return int(tid)
        return 0  # pragma: no cover

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return sorted(ids)

    def _left_pad(self, seqs: Sequence[Sequence[int]]):
        """Left-padded ids, attention mask and position ids (0 at each row's first token)."""
        import torch

        width = max(len(s) for s in seqs)
        pad = self._pad_id()
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            if seq:
                ids[row, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
                mask[row, width - len(seq):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = self._device
        return ids.to(device), mask.to(device), positions.to(device)

    # ------------------------------------------------------------------ generation

    def _generate_ids(self, prompts: list[list[int]], requests: list[GenerationRequest]) -> list[str]:
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        texts: list[str] = [""] * len(prompts)
        with inference_mode(self.model):
            for start in range(0, len(order), self.batch_size):
                batch = order[start: start + self.batch_size]
                generated = self._generate_batch([prompts[i] for i in batch], [requests[i] for i in batch])
                for i, text in zip(batch, generated):
                    texts[i] = text
        return texts

    def _generate_batch(self, prompts: list[list[int]], requests: list[GenerationRequest]) -> list[str]:
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        ids, mask, _ = self._left_pad(prompts)
        width = ids.shape[1]
        limits = [r.max_new_tokens for r in requests]
        eos = self._eos_ids()
        tokenizer = self.tokenizer

        def finished(row: int, generated: list[int]) -> bool:
            if len(generated) >= limits[row] or any(t in eos for t in generated):
                return True
            stop = requests[row].stop
            if stop:
                text = tk.decode_continuation(tokenizer, prompts[row], generated)
                return any(s and s in text for s in stop)
            return False

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # type: ignore[override]
                rows = input_ids[:, width:].tolist()
                return torch.tensor([finished(r, g) for r, g in enumerate(rows)],
                                    dtype=torch.bool, device=input_ids.device)

        # Plain greedy decoding: neutral values for everything a model's own
        # generation_config.json could otherwise slip in (unset fields are filled from it).
        config = GenerationConfig(
            do_sample=False, num_beams=1, max_new_tokens=max(limits), min_new_tokens=0,
            repetition_penalty=1.0, no_repeat_ngram_size=0, length_penalty=1.0,
            pad_token_id=self._pad_id(), eos_token_id=eos or None,
        )
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, generation_config=config,
            stopping_criteria=StoppingCriteriaList([_Stop()]),
        )
        texts = []
        for row, generated in enumerate(out[:, width:].tolist()):
            generated = generated[: limits[row]]
            for n, t in enumerate(generated):
                if t in eos:
                    generated = generated[:n]
                    break
            texts.append(tk.decode_continuation(tokenizer, prompts[row], generated))
        return texts

    # ------------------------------------------------------------------ log-likelihood

    def _score_ids(self, pairs: list[tk.ScoringPair]) -> list[ContinuationScore]:
        """Pairs whose context is shared with another pair are scored from one forward of that
        context (:meth:`_score_shared`); the others as whole sequences."""
        results: list[ContinuationScore | None] = [None] * len(pairs)
        by_context: dict[tuple[int, ...], list[int]] = {}
        for i, pair in enumerate(pairs):
            by_context.setdefault(pair.context, []).append(i)
        groups = [indices for indices in by_context.values() if len(indices) > 1]
        with inference_mode(self.model):
            if groups and self.share_prompts:
                self._score_shared(pairs, groups, results)
            rest = [i for i, score in enumerate(results) if score is None]
            order = sorted(rest, key=lambda i: -len(pairs[i].ids))
            for start in range(0, len(order), self.batch_size):
                batch = order[start: start + self.batch_size]
                for i, score in zip(batch, self._score_batch([pairs[i] for i in batch])):
                    results[i] = score
        return results  # type: ignore[return-value]

    def _score_shared(self, pairs: Sequence[tk.ScoringPair], groups: list[list[int]],
                      results: list[ContinuationScore | None]) -> None:
        """Score each group of pairs with one context: one batched forward of the contexts
        (keeping their KV cache), then every continuation of the batch from that cache.

        Fills ``results`` for the groups it scored; a model whose forward returns no cache it
        can reorder leaves them to the whole-sequence path.
        """
        groups = sorted(groups, key=lambda g: -len(pairs[g[0]].context))
        per_batch = max(1, self.batch_size // 2)  # about two continuations a context
        for start in range(0, len(groups), per_batch):
            batch = groups[start: start + per_batch]
            scores = self._shared_batch([pairs[g[0]].context for g in batch],
                                        [[pairs[i].continuation for i in g] for g in batch])
            if scores is None:
                return
            for group, group_scores in zip(batch, scores):
                for i, score in zip(group, group_scores):
                    results[i] = score

    def _shared_batch(self, contexts: Sequence[Sequence[int]],
                      continuations: Sequence[Sequence[Sequence[int]]]) -> list[list[ContinuationScore]] | None:
        import torch

        ids, mask, positions = self._left_pad(contexts)
        try:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             logits_to_keep=1)
        except TypeError:  # a model without logits_to_keep
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache = getattr(out, "past_key_values", None)
        if cache is None or not hasattr(cache, "reorder_cache"):
            return None
        # The context's last logits predict every continuation's first token.
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        rows = [(b, cont) for b, conts in enumerate(continuations) for cont in conts]
        values = [[float(first[b, cont[0]])] for b, cont in rows]
        greedy = [bool(first[b].argmax() == cont[0]) for b, cont in rows]
        longer = [r for r, (_, cont) in enumerate(rows) if len(cont) > 1]
        if longer:
            # One row per continuation of two or more tokens: its context's cache (rows
            # repeated with reorder_cache, as beam search does), then all but its last token,
            # right-padded: padding after the real tokens cannot change them (causal).
            index = torch.tensor([rows[r][0] for r in longer], device=ids.device)
            cache.reorder_cache(index)
            width = max(len(rows[r][1]) - 1 for r in longer)
            tail = torch.full((len(longer), width), self._pad_id(), dtype=torch.long)
            tail_mask = torch.zeros((len(longer), width), dtype=torch.long)
            for row, r in enumerate(longer):
                cont = rows[r][1]
                tail[row, : len(cont) - 1] = torch.tensor(cont[:-1], dtype=torch.long)
                tail_mask[row, : len(cont) - 1] = 1
            tail, tail_mask = tail.to(ids.device), tail_mask.to(ids.device)
            lengths = mask.sum(-1).index_select(0, index)
            tail_positions = lengths[:, None] + torch.arange(width, device=ids.device)[None, :]
            logits = self.model(input_ids=tail, attention_mask=torch.cat([mask.index_select(0, index), tail_mask], 1),
                                position_ids=tail_positions, past_key_values=cache, use_cache=True).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, r in enumerate(longer):
                cont = rows[r][1]
                lp = logprobs[row, : len(cont) - 1]
                target = torch.tensor(cont[1:], device=lp.device)
                values[r] += lp.gather(-1, target[:, None])[:, 0].tolist()
                greedy[r] = greedy[r] and bool((lp.argmax(-1) == target).all())
        scores = [ContinuationScore(logprob=float(sum(v)), n_tokens=len(v), is_greedy=g)
                  for v, g in zip(values, greedy)]
        out_groups, start = [], 0
        for conts in continuations:
            out_groups.append(scores[start: start + len(conts)])
            start += len(conts)
        return out_groups

    def token_logprobs(self, ids: Sequence[int]) -> list[float]:
        """Log-prob of each token of ``ids`` after its predecessors (``len(ids) - 1`` values):
        the reference side of an engine's canary check."""
        self._require_loaded()
        pair = tk.ScoringPair(tuple(ids[:1]), tuple(ids[1:]))
        with inference_mode(self.model):
            logprobs, _ = self._continuation_logprobs([pair])
        return logprobs[0]

    def _forward_logits(self, ids, mask, positions, keep: int):
        try:
            return self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                              logits_to_keep=keep, use_cache=False).logits
        except TypeError:  # a model without logits_to_keep
            return self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                              use_cache=False).logits[:, -keep:]

    def _continuation_logprobs(self, pairs: Sequence[tk.ScoringPair]):
        import torch

        ids, mask, positions = self._left_pad([p.ids for p in pairs])
        keep = max(len(p.continuation) for p in pairs) + 1
        logits = self._forward_logits(ids, mask, positions, keep).float()
        logprobs = torch.log_softmax(logits, dim=-1)
        values, greedy = [], []
        for row, pair in enumerate(pairs):
            n = len(pair.continuation)
            # logits at position t predict token t + 1: the continuation's n tokens are
            # predicted by the n positions before the last one.
            lp = logprobs[row, keep - n - 1: keep - 1]
            target = torch.tensor(pair.continuation, device=lp.device)
            values.append(lp.gather(-1, target[:, None])[:, 0].tolist())
            greedy.append(bool((lp.argmax(-1) == target).all()))
        return values, greedy

    def _score_batch(self, pairs: Sequence[tk.ScoringPair]) -> list[ContinuationScore]:
        values, greedy = self._continuation_logprobs(pairs)
        return [
            ContinuationScore(logprob=float(sum(v)), n_tokens=len(v), is_greedy=g)
            for v, g in zip(values, greedy)
        ]

