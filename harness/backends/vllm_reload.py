"""In-place reloads of a running vLLM engine: which tensors to read (only those that changed
since the loaded checkpoint), and reading them.

Finetuning that freezes layers, trains attention query/key only or merges an adapter leaves
most tensors of a checkpoint byte-for-byte equal to the previous save's. The per-tensor content
hashes of :func:`harness.checkpoints.fingerprints.tensor_hashes` (cached: a sweep has usually
computed them already to identify the checkpoint) tell which tensors changed, and the engine's
worker reloads only those (:meth:`harness.backends.vllm_worker.HarnessWorkerExtension.harness_load_tensors`).

A delta is planned only when nothing is unusual; otherwise every tensor is reloaded, as
before. It needs: one ``model.safetensors`` in each folder (no shard index), the loaded file unchanged on disk since the engine loaded it (size and modification
time), the same tensor names with the same dtypes and shapes, and at most half of the bytes
changed (:data:`DELTA_AT_MOST`; a training step changes nearly all of them, and then vLLM's
own reload costs little more). The engine's canary check still verifies every reload, delta
or not.

vLLM loads some checkpoint tensors into one fused parameter (``q_proj``/``k_proj``/``v_proj``
into ``qkv_proj``, ``gate_proj``/``up_proj`` into ``gate_up_proj``, numbered experts into one
expert layer), and a fused parameter loaded in part would keep uninitialised memory in the
rest. So a changed tensor brings along every tensor of its module's parent (its siblings:
``q_proj`` brings ``k_proj``, ``v_proj``, ``o_proj``), and for a numbered parent every numbered
sibling's (all experts, all layers' norms).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.checkpoints.fingerprints import tensor_bytes, tensor_hashes

WEIGHTS_FILE = "model.safetensors"

#: A delta is planned only when it reads at most this share of the checkpoint's bytes.
DELTA_AT_MOST = 0.5

logger = logging.getLogger("harness")


@dataclass(frozen=True)
class LoadedWeights:
    """The one safetensors file a checkpoint folder's weights are in, with its size and
    modification time when it was read (what tells that it was not rewritten since)."""

    file: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, folder: str | os.PathLike[str] | None) -> LoadedWeights | None:
        """``folder``'s weights file, or None unless its safetensors weights are one
        ``model.safetensors`` with no shard index. (vLLM reads safetensors where there are
        any, so ``.bin``/``.pt`` files beside them — the Trainer's ``training_args.bin``,
        ``optimizer.pt`` — are not weights it loads.)"""
        if folder is None or not os.path.isdir(folder):
            return None
        folder = Path(folder)
        weight_files = [p.name for p in folder.iterdir() if p.name.endswith((".safetensors", ".safetensors.index.json"))]
        if weight_files != [WEIGHTS_FILE]:
            return None
        stat = (folder / WEIGHTS_FILE).stat()
        return cls(str(folder / WEIGHTS_FILE), stat.st_size, stat.st_mtime_ns)

    def unchanged(self) -> bool:
        """Whether the file on disk is still the one that was read."""
        try:
            stat = os.stat(self.file)
        except OSError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (self.size, self.mtime_ns)


@dataclass(frozen=True)
class ReloadPlan:
    """What an in-place reload reads: ``names`` of ``file`` (a delta), or every tensor
    (``names`` None: vLLM's own reload of the folder). Counts are None where unknown (weights
    not in one safetensors file)."""

    names: tuple[str, ...] | None
    file: str | None = None
    tensors: int | None = None
    total_tensors: int | None = None
    bytes: int | None = None
    total_bytes: int | None = None

    @property
    def delta(self) -> bool:
        return self.names is not None

    def record(self, label: str, seconds: float) -> dict[str, Any]:
        """The engine stats' ``reload_reads`` entry of this reload of checkpoint ``label``."""
        return {"label": label, "delta": self.delta, "tensors": self.tensors, "of_tensors": self.total_tensors,
                "bytes": self.bytes, "of_bytes": self.total_bytes, "seconds": round(seconds, 3)}

    def describe(self) -> str:
        """``"12 of 30 tensors (4.1 of 11.5 MB)"``; ``"every tensor"`` when counts are unknown."""
        if self.tensors is None or self.bytes is None:
            return "every tensor"
        return (f"{self.tensors} of {self.total_tensors} tensors "
                f"({self.bytes / 1e6:.1f} of {self.total_bytes / 1e6:.1f} MB)")


def full_plan(folder: str) -> ReloadPlan:
    """A reload of every tensor in ``folder``, counted where its weights are one safetensors file."""
    new = LoadedWeights.of(folder)
    sizes = tensor_bytes(new.file) if new is not None else None
    if sizes is None:
        return ReloadPlan(None)
    total = sum(sizes.values())
    return ReloadPlan(None, new.file, len(sizes), len(sizes), total, total)


def plan_reload(loaded: LoadedWeights | None, folder: str) -> ReloadPlan:
    """The tensors of ``folder`` to read when the engine holds ``loaded``: a delta when
    nothing is unusual (module docstring), else every tensor."""
    new = LoadedWeights.of(folder)
    if loaded is None or new is None or not loaded.unchanged():
        return full_plan(folder)
    old_hashes, new_hashes = tensor_hashes(loaded.file), tensor_hashes(new.file)
    sizes = tensor_bytes(new.file)
    old_hashes.pop("__metadata__", None)
    new_hashes.pop("__metadata__", None)
    # a hash ends with ":<dtype><shape>", so equal names with another dtype or shape differ in
    # more than their bytes: not a delta
    if sizes is None or old_hashes.keys() != new_hashes.keys() or old_hashes.keys() != sizes.keys() or any(
            old_hashes[name].split(":", 1)[1:] != new_hashes[name].split(":", 1)[1:] for name in new_hashes):
        return full_plan(folder)
    changed = {_load_group(name) for name in new_hashes if old_hashes[name] != new_hashes[name]}
    names = tuple(sorted(name for name in new_hashes if _load_group(name) in changed))
    plan = ReloadPlan(names, new.file, len(names), len(sizes), sum(sizes[name] for name in names),
                      sum(sizes.values()))
    # most bytes changed (a training step moves nearly every tensor): vLLM's own reload, its
    # tested path, costs little more
    return plan if plan.bytes <= DELTA_AT_MOST * plan.total_bytes else full_plan(folder)


def _load_group(name: str) -> str:
    """The tensors that must be loaded together with ``name`` share this key (module
    docstring): its module's parent, or that parent's parent when the parent is numbered."""
    parts = name.split(".")[:-2]  # drop the tensor's own name and its module's
    if parts and parts[-1].isdigit():
        parts = parts[:-1]
    return ".".join(parts)


def reload_in_place(llm: Any, folder: str, plan: ReloadPlan, *, label: str,
                    fix_tied_head: bool) -> tuple[ReloadPlan, float]:
    """Reload ``llm``'s weights from ``folder`` as ``plan`` says, re-dispatch a tied CPU output
    head (:mod:`harness.backends.vllm_worker`) when ``fix_tied_head`` and empty the prefix
    cache. Returns the plan with the counts the worker really read, and the seconds it took."""
    start = time.perf_counter()
    if not plan.delta:
        llm.collective_rpc("reload_weights", kwargs={"weights_path": folder})
    elif plan.names:  # an empty delta (equal weights) reads nothing
        # one worker (the harness's engines): its counts are the reload's
        (read, *_) = llm.collective_rpc("harness_load_tensors", kwargs={"file": plan.file, "names": list(plan.names)})
        plan = replace(plan, tensors=read["tensors"], bytes=read["bytes"])
    fixed = fix_tied_head and any(llm.collective_rpc("harness_redispatch_tied_head"))
    llm.reset_prefix_cache()
    seconds = time.perf_counter() - start
    logger.log(logging.INFO if plan.delta else logging.DEBUG, "vllm: %s: reloaded %s in %.2f s%s", label,
               plan.describe(), seconds, " (tied CPU head re-dispatched)" if fixed else "")
    return plan, seconds
