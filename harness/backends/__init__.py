"""Inference engines behind one small protocol (:class:`~harness.backends.base.Backend`).

``make_backend("vllm" | "hf" | "auto", **options)`` builds one:

* ``"vllm"`` — :class:`~harness.backends.vllm.VLLMBackend` (one engine per sweep, in-place
  weight reloads verified against transformers, LoRA adapters as ``LoRARequest``).
* ``"hf"`` — :class:`~harness.backends.hf.HFBackend` (transformers; the reference, the
  fallback, and :meth:`~harness.backends.hf.HFBackend.from_model` for a model in a training
  loop).
* ``"auto"`` — vLLM when ``import vllm`` succeeds, else transformers (logged). Options only
  vLLM understands are dropped for the fallback (logged); ``max_model_len`` becomes
  ``max_length``.

Both engines tokenise with :mod:`harness.backends.tokens`, so they score the same token ids.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from harness.backends.base import Backend
from harness.backends.hf import HFBackend

logger = logging.getLogger("harness")

__all__ = ["Backend", "HFBackend", "VLLMBackend", "make_backend", "vllm_import_error"]

BACKEND_NAMES = ("auto", "vllm", "hf")


def __getattr__(name: str) -> Any:  # lazy: importing harness.backends must not import vllm
    if name == "VLLMBackend":
        from harness.backends.vllm import VLLMBackend

        return VLLMBackend
    raise AttributeError(name)


def vllm_import_error() -> str | None:
    """None when ``import vllm`` works, else why it does not (a short message)."""
    from harness.backends.vllm import set_environment_defaults

    set_environment_defaults()  # before vllm is first imported: it reads them then
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or a broken build raising anything else
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return None


def make_backend(name: str = "auto", **options: Any) -> Backend:
    """Build the engine called ``name`` (``"vllm"``, ``"hf"`` or ``"auto"``) with ``options``
    (the engine's keyword arguments; for ``"vllm"`` unknown ones are an error)."""
    key = name.lower().strip()
    if key not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if key == "hf":
        return _hf_backend(options)
    if key == "vllm":
        from harness.backends.vllm import VLLMBackend

        return VLLMBackend(**options)
    error = vllm_import_error()
    if error is None:
        from harness.backends.vllm import VLLMBackend

        logger.info("backend auto: using vLLM")
        return VLLMBackend(**options)
    logger.info("backend auto: vllm does not import (%s); using transformers", error)
    return _hf_backend(options)


def _hf_backend(options: dict[str, Any]) -> Backend:
    """The transformers engine for options written for either engine: ``max_model_len``
    becomes ``max_length`` and vLLM-only options are dropped (logged), so one run config
    serves both engines. Options neither engine knows are a ``TypeError``."""
    from harness.backends.vllm import VLLMBackend

    hf_options = dict(options)
    if "max_model_len" in hf_options and "max_length" not in hf_options:
        hf_options["max_length"] = hf_options.pop("max_model_len")
    accepted = set(inspect.signature(HFBackend.__init__).parameters) - {"self"}
    vllm_only = set(inspect.signature(VLLMBackend.__init__).parameters) - accepted
    dropped = sorted(k for k in hf_options if k in vllm_only)
    if dropped:
        logger.info("transformers engine: ignoring vLLM-only options: %s", ", ".join(dropped))
    return HFBackend(**{k: v for k, v in hf_options.items() if k not in vllm_only})
