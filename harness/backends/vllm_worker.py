"""Code that runs inside vLLM's worker processes (imported there by qualified name).

vLLM spawns its workers, so this module must stay importable on its own: no imports of the
rest of ``harness`` at module level, nothing heavy at import time.

:class:`HarnessWorkerExtension` is passed to the engine as
``worker_extension_cls="harness.backends.vllm_worker.HarnessWorkerExtension"``; vLLM mixes it
into its worker class, and the driver calls its methods by name with
``llm.collective_rpc("harness_...")`` (no pickled functions, so no
``VLLM_ALLOW_INSECURE_SERIALIZATION``).

Why it exists (docs/engines.md): on CPU vLLM packs every linear weight for
oneDNN / its small-GEMM kernel after loading and keeps the packed copy in
``layer.cpu_linear``, the output head included. With tied embeddings a checkpoint has no
``lm_head.weight``, an in-place ``reload_weights`` never re-packs the head, and the engine goes
on projecting with the *first* checkpoint's embeddings — silently wrong log-probs. Re-running
the dispatch for the head after the reload fixes it. The backend still verifies every reload
against transformers, whatever this fix does.

:meth:`HarnessWorkerExtension.harness_load_tensors` reloads only some tensors of a checkpoint
(the ones that changed, chosen by :mod:`harness.backends.vllm_reload`).
"""

from __future__ import annotations

import logging

#: What vLLM's in-place reload logs about parameters it was given no tensor for: expected when
#: only the changed tensors are given (those layers keep their loaded, already packed weights).
_PARTIAL_RELOAD_WARNINGS = {
    "vllm.model_executor.model_loader.reload.layerwise": "%s: Failed to load weights",
    "vllm.model_executor.model_loader.reload.inplace": "Following weights were not loaded from checkpoint: %s",
}


class _DropMessage(logging.Filter):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != self.message


class HarnessWorkerExtension:
    """Methods mixed into vLLM's worker (``self`` is the worker)."""

    def harness_redispatch_tied_head(self) -> bool:
        """Re-pack the output head's CPU GEMM weights from the (reloaded) tied embeddings.

        Guarded: does nothing (returns False) unless the platform is CPU, the model ties its
        word embeddings and the head carries a packed ``cpu_linear``. Returns True when the
        head was re-dispatched.
        """
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return False
        runner = self.model_runner  # type: ignore[attr-defined]
        model = runner.get_model() if hasattr(runner, "get_model") else runner.model
        model_config = runner.vllm_config.model_config
        text_config = getattr(model_config, "hf_text_config", None) or model_config.hf_config
        if not getattr(text_config, "tie_word_embeddings", False):
            return False
        head = getattr(model, "lm_head", None)
        if head is None or not hasattr(head, "cpu_linear") or not hasattr(head, "weight"):
            return False
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

        dispatch_cpu_unquantized_gemm(head, remove_weight=False)
        return True

    def harness_load_tensors(self, file: str, names: list[str]) -> dict[str, int]:
        """Reload only the tensors ``names`` of the safetensors ``file`` in place; the others
        keep their loaded values. Returns ``{"tensors": n, "bytes": b}``: what was read.

        It is vLLM's own in-place reload (``reload_weights``) given these tensors instead of
        the whole folder, so the model's ``load_weights`` maps them onto its (fused)
        parameters and every layer given a tensor is processed again after loading (on CPU:
        its GEMM weights re-packed) — the same steps as a full reload. A layer of a fused
        parameter must get all its tensors (:mod:`harness.backends.vllm_reload` sees to it):
        a fused parameter loaded in part keeps uninitialised memory.
        """
        from safetensors import safe_open

        read = {"tensors": 0, "bytes": 0}

        def tensors():
            with safe_open(file, framework="pt") as handle:
                for name in names:
                    tensor = handle.get_tensor(name)
                    read["tensors"] += 1
                    read["bytes"] += tensor.numel() * tensor.element_size()
                    yield name, tensor

        filters = [(logging.getLogger(name), _DropMessage(message)) for name, message in _PARTIAL_RELOAD_WARNINGS.items()]
        for log, drop in filters:
            log.addFilter(drop)
        try:
            self.reload_weights(weights_iterator=tensors(), is_checkpoint_format=True)  # type: ignore[attr-defined]
        finally:
            for log, drop in filters:
                log.removeFilter(drop)
        return read
