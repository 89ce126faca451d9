"""Inference engines behind one small protocol (:class:`~harness.backends.api.Backend`).

``make_backend("vllm" | "hf" | "auto", **options)`` builds one:

* ``"vllm"`` — :class:`~harness.backends.vllm.VLLMBackend` (one engine per sweep, in-place
  weight reloads verified against transformers, LoRA adapters as ``LoRARequest``).
* ``"hf"`` — :class:`~harness.backends.hf.HFBackend` (transformers; the reference, the
  fallback, and :meth:`~harness.backends.hf.HFBackend.from_model` for a model in a training
  loop).
* ``"auto"`` — vLLM when ``import vllm`` succeeds, else transformers (logged).

Options are checked against one table, :data:`ENGINE_OPTIONS`: a name it does not know is an
error; an option only the other engine takes is dropped (logged), so one run config serves
both engines; ``max_model_len`` is the transformers engine's ``max_length``.

Both engines tokenise with :mod:`harness.backends.tokens`, so they score the same token ids.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import Any

from harness.backends.api import HF, VLLM, Backend
from harness.backends.hf import HFBackend

logger = logging.getLogger("harness")

__all__ = ["Backend", "ENGINE_OPTIONS", "HFBackend", "VLLMBackend", "make_backend", "vllm_import_error"]

BACKEND_NAMES = ("auto", "vllm", "hf")


@dataclass(frozen=True)
class EngineOption:
    """One engine option: its type, the engines that take it, and (``flag``) whether
    ``harness evaluate`` has a flag of its own for it."""

    type: type
    engines: tuple[str, ...]
    help: str
    flag: bool = False


ENGINE_OPTIONS: dict[str, EngineOption] = {
    "dtype": EngineOption(str, (HF, VLLM), "weights' dtype: auto, float32, bfloat16, float16", flag=True),
    "max_model_len": EngineOption(int, (HF, VLLM), "context window in tokens", flag=True),
    "tensor_parallel_size": EngineOption(int, (VLLM,), "GPUs per engine (tensor parallelism)", flag=True),
    "pipeline_parallel_size": EngineOption(int, (VLLM,), "pipeline stages per engine (GPUs = TP x PP)", flag=True),
    "gpu_memory_utilization": EngineOption(float, (VLLM,), "share of GPU memory vLLM may take", flag=True),
    "enable_prefix_caching": EngineOption(bool, (VLLM,), "vLLM prefix caching", flag=True),
    "trust_remote_code": EngineOption(bool, (HF, VLLM), "run model code shipped with the checkpoint"),
    "enforce_eager": EngineOption(bool, (VLLM,), "no CUDA graphs / torch.compile (default on CPU: by job size)"),
    "seed": EngineOption(int, (VLLM,), "engine seed"),
    "verify_reload": EngineOption(bool, (VLLM,), "check every in-place reload against transformers"),
    "reload_atol": EngineOption(float, (VLLM,), "tolerance of that check (max |dlogprob|)"),
    "fix_tied_head": EngineOption(bool, (VLLM,), "re-pack a tied CPU output head after a reload"),
    "max_lora_rank": EngineOption(int, (VLLM,), "LoRA rank the engine is started with"),
    "max_loras": EngineOption(int, (VLLM,), "adapters per batch"),
    "reference_device": EngineOption(str, (VLLM,), "device of the transformers reference"),
    "reference_batch_size": EngineOption(int, (VLLM,), "batch size of the transformers reference"),
    "shutdown_timeout": EngineOption(float, (VLLM,), "seconds the engine process gets to exit"),
    "share_prompts": EngineOption(bool, (HF, VLLM), "compute a prompt shared by several continuations once"),
    "block_size": EngineOption(int, (VLLM,), "KV-cache block size (default 32 on CPU: more prompt sharing)"),
    "in_process": EngineOption(bool, (VLLM,), "run the vLLM engine inside this process (default on CPU)"),
    "engine_kwargs": EngineOption(dict, (VLLM,), "further vllm.LLM keyword arguments"),
    "device": EngineOption(str, (HF,), "where transformers models live: cpu, cuda, cuda:1"),
    "batch_size": EngineOption(int, (HF,), "sequences per transformers forward / generate call"),
}
# The transformers engine's name for the window.
_HF_NAMES = {"max_model_len": "max_length"}


def __getattr__(name: str) -> Any:  # lazy: importing harness.backends must not import vllm
    if name == "VLLMBackend":
        from harness.backends.vllm import VLLMBackend

        return VLLMBackend
    raise AttributeError(name)


def vllm_import_error() -> str | None:
    """None when ``import vllm`` works, else why it does not (a short message)."""
    from harness.backends.vllm_setup import set_environment_defaults

    set_environment_defaults()  # before vllm is first imported: it reads them then
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or a broken build raising anything else
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return None


def engine_options_for(engine: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` as ``engine``'s constructor takes them: unknown names are a ``TypeError``
    (with the closest known name), the other engine's options are dropped (logged)."""
    unknown = [name for name in options if name not in ENGINE_OPTIONS]
    if unknown:
        hints = [f"{name!r}" + "".join(f" (did you mean {m!r}?)"
                                       for m in difflib.get_close_matches(name, ENGINE_OPTIONS, 1))
                 for name in unknown]
        raise TypeError(f"unknown engine option {', '.join(hints)}; known: {', '.join(sorted(ENGINE_OPTIONS))}")
    dropped = sorted(name for name in options if engine not in ENGINE_OPTIONS[name].engines)
    if dropped:
        logger.info("%s engine: ignoring options of the other engine: %s", engine, ", ".join(dropped))
    kept = {name: value for name, value in options.items() if name not in dropped}
    if engine == HF:
        kept = {_HF_NAMES.get(name, name): value for name, value in kept.items()}
    return kept


def make_backend(name: str = "auto", **options: Any) -> Backend:
    """Build the engine called ``name`` (``"vllm"``, ``"hf"`` or ``"auto"``) with ``options``
    (names of :data:`ENGINE_OPTIONS`)."""
    key = name.lower().strip()
    if key not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if key == "auto":
        error = vllm_import_error()
        if error is None:
            logger.info("backend auto: using vLLM")
            key = VLLM
        else:
            logger.warning("backend auto: vllm does not import (%s); using transformers", error)
            key = HF
    kept = engine_options_for(key, options)
    if key == HF:
        return HFBackend(**kept)
    from harness.backends.vllm import VLLMBackend

    return VLLMBackend(**kept)
