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
"""

from __future__ import annotations


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
