"""What decides how a vLLM engine is set up and whether a running one can serve a checkpoint.

Environment defaults read when vLLM is imported, the LoRA ranks it accepts, and the
fingerprints that say whether two checkpoints can share an engine (the same architecture, the
same weights). Kept apart from the engine so that they can be used without importing vLLM.
"""

from __future__ import annotations

import json
import logging
import os
import typing

logger = logging.getLogger("harness")

#: default ``reload_atol`` per engine dtype (max abs difference of canary token log-probs)
DEFAULT_RELOAD_ATOL = {"float32": 1e-3, "float16": 0.1, "bfloat16": 0.5}

_FALLBACK_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_CONFIG_KEYS_IGNORED = {
    "_name_or_path", "name_or_path", "transformers_version", "_commit_hash", "torch_dtype",
    "dtype", "_attn_implementation_autoset", "_attn_implementation", "use_cache",
}


def set_environment_defaults() -> None:
    """Environment defaults vLLM reads when it is imported; values already set win.

    On CPU, vLLM otherwise reserves ``gpu_memory_utilization`` (0.92) of the machine's memory
    for its KV cache and refuses to start when other processes hold more than the rest;
    1 GiB of KV cache serves a small model's evaluation prompts. Compile caches go to the
    harness's cache folder so later runs start faster.
    """
    from harness.bundled import cache_dir

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_dir() / "vllm"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "torchinductor"))


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
