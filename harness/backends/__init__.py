"""Inference engines behind one small protocol (:class:`~harness.backends.api.Backend`).

``make_backend("vllm" | "hf" | "auto", **options)`` builds one:

* ``"vllm"`` — :class:`~harness.backends.vllm.VLLMBackend` (one engine per sweep, in-place
  weight reloads verified against transformers, LoRA adapters as ``LoRARequest``).
* ``"hf"`` — :class:`~harness.backends.hf.HFBackend` (transformers; the reference, the
  fallback, and :meth:`~harness.backends.hf.HFBackend.from_model` for a model in a training
  loop).
* ``"auto"`` — vLLM when ``import vllm`` succeeds, else transformers (logged).

Options are checked against one table (:mod:`harness.backends.options`): a name it does not
know is an error; an option only the other engine takes is dropped (logged), so one run config
serves both engines.

Both engines tokenise with :mod:`harness.backends.tokens`, so they score the same token ids.
"""

from __future__ import annotations

import logging
from typing import Any

from harness.backends.api import HF, VLLM, Backend
from harness.backends.hf import HFBackend
from harness.backends.options import ENGINE_OPTIONS, engine_options_for
from harness.backends.vllm_setup import vllm_import_error
from harness.errors import did_you_mean

logger = logging.getLogger("harness")

__all__ = ["Backend", "ENGINE_OPTIONS", "HFBackend", "VLLMBackend", "make_backend", "vllm_import_error"]

BACKEND_NAMES = ("auto", "vllm", "hf")


def __getattr__(name: str) -> Any:  # lazy: importing harness.backends must not import vllm
    if name == "VLLMBackend":
        from harness.backends.vllm import VLLMBackend

        return VLLMBackend
    raise AttributeError(name)


def make_backend(name: str = "auto", **options: Any) -> Backend:
    """Build the engine called ``name`` (``"vllm"``, ``"hf"`` or ``"auto"``) with ``options``
    (names of :data:`ENGINE_OPTIONS`)."""
    key = name.lower().strip()
    if key not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}{did_you_mean(key, BACKEND_NAMES)}; choose one of "
                         f"{', '.join(BACKEND_NAMES)}")
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
