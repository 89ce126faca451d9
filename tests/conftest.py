"""Shared test fixtures: tiny random models, checkpoints and adapters, all built offline.

Nothing here downloads anything. Every model is built from scratch (by the builders of
:mod:`harness.testing`) in a session-scoped temporary folder the first time a test asks for
it (a few seconds in all), then reused.

Tokenizer
    :func:`tiny_tokenizer_dir` — the byte-level BPE tokenizer of
    :func:`harness.testing.build_tiny_tokenizer`.

Models (float32 safetensors folders, tokenizer files beside the weights)
    :func:`tiny_llama_dir` (untied ``LlamaForCausalLM``), :func:`tiny_tied_llama_dir`
    (``tie_word_embeddings=True``: no ``lm_head.weight`` in the file), :func:`tiny_gpt2_dir`
    (``GPT2LMHeadModel``, tied as GPT-2 is by default). Hidden size 64, 2 layers, 2 heads of
    32 (vLLM's CPU attention needs a head size of at least 32), 256 positions.

Checkpoint runs (HF Trainer layout)
    :func:`make_checkpoint_run` — a factory ``(name, arch="llama", tied=False, steps=(10, 20,
    30)) -> Path`` writing ``<run>/checkpoint-10``, ``<run>/checkpoint-20``... each a full model
    with different weights plus a ``trainer_state.json``. Ready-made session runs:
    :func:`llama_run`, :func:`tied_llama_run`, :func:`gpt2_run` (three checkpoints each).

LoRA adapters
    :func:`make_lora_run` — a factory writing PEFT LoRA adapters over a base model folder in the
    same Trainer layout (``<run>/checkpoint-N/adapter_config.json``...), with random (non-zero)
    ``A`` and ``B`` so each adapter really changes the model. :func:`lora_run` — two adapters of
    rank 8 over :func:`tiny_llama_dir`.

Markers: ``slow`` (takes more than a few seconds) and ``vllm`` (needs the ``vllm`` package;
skipped where it does not import). vLLM tests run with ``VLLM_CPU_KVCACHE_SPACE=1`` and caches
under the session's temporary folder unless the environment already sets them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable

import pytest

from harness.testing import build_checkpoint_run, build_lora_run, build_tiny_model, build_tiny_tokenizer

# --------------------------------------------------------------------------- environment

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A CPU without AMX/AVX512-BF16 whatever the machine: engines default to float32 (harness.dtypes).
os.environ.setdefault("IFT_HARNESS_CPU_FLAGS", "")

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds (vLLM engines)")
    config.addinivalue_line("markers", "vllm: needs the vllm package; skipped without it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_VLLM:
        return
    skip = pytest.mark.skip(reason="vllm is not installed")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vllm_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for vLLM's and torch inductor's caches (set in the environment, inherited by
    the spawned engine processes) unless the environment already names one."""
    path = Path(os.environ.get("VLLM_CACHE_ROOT") or tmp_path_factory.mktemp("vllm-cache"))
    os.environ.setdefault("VLLM_CACHE_ROOT", str(path))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(path / "inductor"))
    return path


# --------------------------------------------------------------------------- tokenizer

@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny byte-level BPE tokenizer (see module docstring)."""
    path = tmp_path_factory.mktemp("tiny-tokenizer")
    build_tiny_tokenizer(path)
    return path


# --------------------------------------------------------------------------- models

@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """Tiny untied ``LlamaForCausalLM`` folder (seed 0)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_tied_llama_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """Tiny ``LlamaForCausalLM`` with ``tie_word_embeddings=True`` (seed 0)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-tied-llama"), tiny_tokenizer_dir, tied=True)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """Tiny ``GPT2LMHeadModel``, tied embeddings as GPT-2 has by default (seed 0)."""
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny-gpt2"), tiny_tokenizer_dir, arch="gpt2", tied=True
    )


# --------------------------------------------------------------------------- checkpoint runs


@pytest.fixture(scope="session")
def make_checkpoint_run(tmp_path_factory, tiny_tokenizer_dir) -> Callable[..., Path]:
    """Factory writing a fake finetuning run in HF Trainer layout.

    ``make_checkpoint_run(name, arch="llama", tied=False, steps=(10, 20, 30), seed=0)``
    returns the run folder; ``<run>/checkpoint-<step>`` holds a full tiny model whose weights
    differ for every step (seed ``seed + index``), its tokenizer and ``trainer_state.json``.
    Calls with the same arguments return the same folder (built once per session).
    """
    built: dict[tuple, Path] = {}

    def make(name: str, arch: str = "llama", tied: bool = False,
             steps: tuple[int, ...] = (10, 20, 30), seed: int = 0) -> Path:
        key = (name, arch, tied, tuple(steps), seed)
        if key in built:
            return built[key]
        built[key] = build_checkpoint_run(tmp_path_factory.mktemp(name), tiny_tokenizer_dir, arch=arch,
                                          tied=tied, steps=steps, seed=seed)
        return built[key]

    return make


@pytest.fixture(scope="session")
def llama_run(make_checkpoint_run) -> Path:
    """Three untied tiny Llama checkpoints: ``checkpoint-10/20/30``."""
    return make_checkpoint_run("llama-run", arch="llama", tied=False)


@pytest.fixture(scope="session")
def tied_llama_run(make_checkpoint_run) -> Path:
    """Three tied-embedding tiny Llama checkpoints: ``checkpoint-10/20/30``."""
    return make_checkpoint_run("tied-llama-run", arch="llama", tied=True)


@pytest.fixture(scope="session")
def gpt2_run(make_checkpoint_run) -> Path:
    """Three tiny GPT-2 (tied) checkpoints: ``checkpoint-10/20/30``."""
    return make_checkpoint_run("gpt2-run", arch="gpt2", tied=True)


# --------------------------------------------------------------------------- LoRA adapters


@pytest.fixture(scope="session")
def make_lora_run(tmp_path_factory) -> Callable[..., Path]:
    """Factory writing PEFT LoRA adapter checkpoints over a base model in Trainer layout.

    ``make_lora_run(name, base_dir, steps=(10, 20), r=8, target_modules=("q_proj", "v_proj"))``
    returns the run folder; ``<run>/checkpoint-<step>`` holds ``adapter_config.json`` +
    ``adapter_model.safetensors`` (a different random adapter per step) and
    ``trainer_state.json``. Use :func:`checkpoints_of(run, base=base_dir)` for Checkpoints.
    """
    built: dict[tuple, Path] = {}

    def make(name: str, base_dir: Path, steps: tuple[int, ...] = (10, 20), r: int = 8,
             target_modules: tuple[str, ...] = ("q_proj", "v_proj")) -> Path:
        key = (name, str(base_dir), tuple(steps), r, tuple(target_modules))
        if key in built:
            return built[key]
        built[key] = build_lora_run(tmp_path_factory.mktemp(name), base_dir, steps=steps, r=r,
                                    target_modules=target_modules)
        return built[key]

    return make


@pytest.fixture(scope="session")
def lora_run(make_lora_run, tiny_llama_dir) -> Path:
    """Two rank-8 LoRA adapters (q_proj, v_proj) over :func:`tiny_llama_dir`."""
    return make_lora_run("lora-run", tiny_llama_dir)
