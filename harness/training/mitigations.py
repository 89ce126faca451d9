"""The mitigations of context-parametric inversion, as options of a finetuning run.

**Mitigations** (Goyal et al., ICLR 2025), each recorded in ``output_dir/mitigations.json``:

``filter_non_context_critical``
    Drops the ``fraction`` of context-bearing examples that the *starting* model answers
    best without their context. Every example with an ``input`` is scored twice under the
    starting model, with and without the input (the same training target, summed over its
    tokens); they are ranked by the closed-book log-likelihood per target token, and the top
    ``fraction`` is dropped (to ``output_dir/filtered_out.jsonl``, with both scores).
    Why closed-book and not the gain from the context: the paper defines non-context-critical
    examples as those answerable *without* the context. Ranking by the gain would also drop
    examples the model cannot answer either way (a small gain because the context does not
    help *yet*), which are not answerable without the context; per token, so long responses
    are not taken for hard ones. Examples without an ``input`` cannot be scored this way and
    are always kept; ``fraction`` is a share of the context-bearing ones (those whose target
    fits ``max_length`` both ways).
``counterfactual_augmentation``
    Mixes in knowledge-conflict examples whose context contradicts a real fact and whose
    target follows the context: from a fact builder of :data:`harness.data.BUILDERS`
    (``world_facts``, ``capitals``... their ``conflicting`` condition, built with ``seed``) or
    from the user's file (NQ-Swap or CF_World_Facts records). ``fraction`` is their share of
    the final training set; a pool smaller than needed is cycled through (recorded). The
    question is the instruction and the context the input. Written to
    ``output_dir/augmented.jsonl``. Built-in facts overlap the built-in probe tasks (another
    seed gives other counterfactual values and phrasings, not other facts): say so when
    reporting.
``qk_only``
    Trains only the attention query/key projections: LoRA on the q/k modules only, or full
    finetuning with every other weight frozen. Where q, k and v share one fused projection
    (GPT-2 ``c_attn``, GPT-NeoX/Pythia ``query_key_value``) the value outputs are held fixed
    (:class:`PartialFreeze`).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import TrainerCallback
from transformers.pytorch_utils import Conv1D

from harness.backends.hf import HFBackend
from harness.backends.tokens import ScoringPair
from harness.errors import FinetuneError
from harness.examples import CONTEXT
from harness.io import write_jsonl
from harness.tasks import DATA_SUFFIXES, examples_from_records, read_records
from harness.training.config import FinetuneConfig
from harness.training.data import IGNORE_INDEX, TrainingExample, encode_training_example

log = logging.getLogger("harness")

FILTERED_OUT = "filtered_out.jsonl"
AUGMENTED = "augmented.jsonl"


# --------------------------------------------------------------------------- non-context-critical filter


@dataclass(frozen=True)
class ContextScore:
    """Log-likelihood of an example's training target with and without its context."""

    with_context: float
    without_context: float
    n_tokens: int

    @property
    def without_context_per_token(self) -> float:
        return self.without_context / self.n_tokens

    @property
    def with_context_per_token(self) -> float:
        return self.with_context / self.n_tokens


def score_context_reliance(model: Any, tokenizer: Any, examples: Sequence[TrainingExample],
                           config: FinetuneConfig, *, batch_size: int = 16) -> list[ContextScore | None]:
    """Score each example's target with and without its ``input`` under ``model`` (in order);
    None for examples without an input or whose target does not fit ``max_length``."""
    def pair(example: TrainingExample, with_context: bool) -> ScoringPair | None:
        encoded = encode_training_example(example, config, tokenizer, with_context=with_context)
        if encoded is None:
            return None
        n_prompt = encoded["labels"].count(IGNORE_INDEX)
        return ScoringPair(tuple(encoded["input_ids"][:n_prompt]), tuple(encoded["input_ids"][n_prompt:]))

    pairs = [(pair(e, True), pair(e, False)) if e.input else (None, None) for e in examples]
    # The same target both ways: cutting to max_length may shorten the longer (with-context) one.
    usable = [i for i, (full, bare) in enumerate(pairs)
              if full is not None and bare is not None and full.continuation == bare.continuation]
    backend = HFBackend.from_model(model, tokenizer, batch_size=batch_size)
    scores = backend.score_pairs([pairs[i][j] for i in usable for j in (0, 1)])
    out: list[ContextScore | None] = [None] * len(examples)
    for k, i in enumerate(usable):
        full, bare = scores[2 * k], scores[2 * k + 1]
        out[i] = ContextScore(full.logprob, bare.logprob, full.n_tokens)
    return out


def non_context_critical(scores: Sequence[ContextScore | None], fraction: float) -> list[int]:
    """Indices of the ``fraction`` of scored examples with the highest closed-book
    log-likelihood per target token (the most answerable without their context), best first."""
    scored = [i for i, s in enumerate(scores) if s is not None]
    ranked = sorted(scored, key=lambda i: -scores[i].without_context_per_token)  # stable: ties by order
    return ranked[:round(fraction * len(scored))]


def filter_non_context_critical(model: Any, tokenizer: Any, examples: list[TrainingExample],
                                config: FinetuneConfig, output_dir: Path) -> tuple[list[TrainingExample], dict]:
    """Drop the non-context-critical examples; write them to ``filtered_out.jsonl``."""
    settings = config.filter_non_context_critical
    scores = score_context_reliance(model, tokenizer, examples, config, batch_size=settings.batch_size)
    dropped = non_context_critical(scores, settings.fraction)
    lines = []
    for rank, i in enumerate(dropped, 1):
        score = scores[i]
        lines.append({**examples[i].record, "filter": {
            "rank": rank, "n_tokens": score.n_tokens,
            "ll_without_context": score.without_context, "ll_with_context": score.with_context,
            "ll_per_token_without_context": score.without_context_per_token,
            "ll_per_token_with_context": score.with_context_per_token,
        }})
    write_jsonl(output_dir / FILTERED_OUT, lines)
    gone = set(dropped)
    record = {
        "fraction": settings.fraction,
        "criterion": "highest closed-book log-likelihood per target token under the starting model",
        "candidates": sum(s is not None for s in scores),
        "without_context": sum(not e.input for e in examples),
        "dropped": len(dropped),
        "kept": len(examples) - len(dropped),
        "threshold_ll_per_token": lines[-1]["filter"]["ll_per_token_without_context"] if lines else None,
        "file": FILTERED_OUT,
    }
    return [e for i, e in enumerate(examples) if i not in gone], record


# --------------------------------------------------------------------------- counterfactual augmentation


def counterfactual_pool(source: str, seed: int) -> list[TrainingExample]:
    """Knowledge-conflict training examples from a fact builder or a user's data file."""
    from harness.data import BUILDERS  # loads the fact packages: only when augmenting

    path = Path(source)
    if path.suffix.lower() in DATA_SUFFIXES:
        examples = examples_from_records(read_records(path), "auto", str(path))
    elif source in BUILDERS:
        examples = BUILDERS[source](seed=seed)
    else:
        raise FinetuneError(f"counterfactual_augmentation.source: {source!r} is neither a data file "
                            f"({', '.join(DATA_SUFFIXES)}) nor a builder ({', '.join(sorted(BUILDERS))})")
    pool = [
        TrainingExample(instruction=e.fields["question"], input=e.fields["context"],
                           output=e.answers[CONTEXT][0],
                           record={"id": e.id, "instruction": e.fields["question"], "input": e.fields["context"],
                                   "output": e.answers[CONTEXT][0], "source": source})
        for e in examples
        if e.condition == "conflicting" and CONTEXT in e.answers and {"context", "question"} <= set(e.fields)
    ]
    if not pool:
        raise FinetuneError(f"counterfactual_augmentation.source: {source!r} has no conflicting examples "
                            "with a context and a question")
    return pool


def augment_counterfactual(examples: list[TrainingExample], config: FinetuneConfig,
                           output_dir: Path) -> tuple[list[TrainingExample], dict]:
    """Add counterfactual examples making up ``fraction`` of the result (a seeded pick);
    write the added ones to ``augmented.jsonl``."""
    settings = config.counterfactual_augmentation
    pool = counterfactual_pool(settings.source, settings.seed)
    rng = random.Random(settings.seed)
    rng.shuffle(pool)
    n_add = round(settings.fraction * len(examples) / (1 - settings.fraction))
    added = [pool[i % len(pool)] for i in range(n_add)]
    write_jsonl(output_dir / AUGMENTED, [e.record for e in added])
    combined = examples + added  # the Trainer's sampler shuffles
    record = {"fraction": settings.fraction, "source": settings.source, "seed": settings.seed,
              "pool": len(pool), "added": n_add, "unique": min(n_add, len(pool)),
              "final_size": len(combined), "file": AUGMENTED}
    if n_add > len(pool):
        record["note"] = f"the pool holds {len(pool)} examples; each is used about {n_add / len(pool):.1f} times"
        log.warning("counterfactual_augmentation: %s", record["note"])
    return combined, record


# --------------------------------------------------------------------------- query/key only


class PartialFreeze:
    """Holds part of a trained parameter fixed: the slices ``index`` along ``dim``.

    Their gradient is zeroed (so gradient clipping and the optimizer state never see them)
    and their values are put back after every optimizer step by :meth:`restore` (so weight
    decay, or any optimizer that moves a weight with zero gradient, cannot change them): they
    stay bit-identical to the start.
    """

    def __init__(self, param: Any, dim: int, index: Any):
        self.param, self.dim, self.index = param, dim, index.to(param.device)
        self.values = param.detach().index_select(dim, self.index).clone()
        self.handle = param.register_hook(lambda grad: grad.index_fill(dim, self.index.to(grad.device), 0))

    def restore(self) -> None:
        with torch.no_grad():
            device = self.param.device
            self.param.index_copy_(self.dim, self.index.to(device), self.values.to(device))


def _gpt2_value_outputs(out_features: int, config: Any) -> torch.Tensor:
    # c_attn's output is [q | k | v], each n_embd wide (GPT2Attention splits it in three).
    return torch.arange(2 * out_features // 3, out_features)


def _neox_value_outputs(out_features: int, config: Any) -> torch.Tensor:
    # query_key_value's output is per head [q k v], each head_size wide (GPTNeoXAttention
    # views it as (..., heads, 3 * head_size) and chunks the last dim in three).
    head_size = config.hidden_size // config.num_attention_heads
    outputs = torch.arange(out_features)
    return outputs[(outputs // head_size) % 3 == 2]


# model_type -> (fused q/k/v module name, value outputs of that module's output features)
FUSED_QKV = {"gpt2": ("c_attn", _gpt2_value_outputs), "gpt_neox": ("query_key_value", _neox_value_outputs)}
SEPARATE_QK = ("q_proj", "k_proj")


def qk_module_names(model: Any) -> list[str]:
    """The leaf names of the modules holding ``model``'s attention query/key projections."""
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if set(SEPARATE_QK) <= leaves:
        return list(SEPARATE_QK)
    model_type = getattr(model.config, "model_type", None)
    if model_type in FUSED_QKV and FUSED_QKV[model_type][0] in leaves:
        return [FUSED_QKV[model_type][0]]
    raise FinetuneError(f"qk_only: cannot find the query/key projections of model type {model_type!r} "
                        f"(supported: modules named {' and '.join(SEPARATE_QK)}, or fused in "
                        + ", ".join(f"{t} {m}" for t, (m, _) in FUSED_QKV.items()) + ")")


def _value_outputs(model: Any, out_features: int) -> torch.Tensor | None:
    """The value outputs of a fused q/k/v projection of ``model``; None when q/k are separate."""
    fused = FUSED_QKV.get(getattr(model.config, "model_type", None))
    return None if fused is None else fused[1](out_features, model.config)


def restrict_to_qk(model: Any) -> list[PartialFreeze]:
    """Full finetuning of q/k only: freeze every parameter but the q/k projections' weights
    and biases; in a fused projection also hold its value outputs (returned freezes)."""
    names = qk_module_names(model)
    model.requires_grad_(False)
    freezes = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in names:
            continue
        module.requires_grad_(True)
        # Conv1D (GPT-2) stores its weight as (in, out), nn.Linear as (out, in).
        out_dim = 1 if isinstance(module, Conv1D) else 0
        values = _value_outputs(model, module.weight.shape[out_dim])
        if values is not None:
            freezes.append(PartialFreeze(module.weight, out_dim, values))
            if module.bias is not None:
                freezes.append(PartialFreeze(module.bias, 0, values))
    return freezes


def restrict_lora_to_qk(model: Any) -> list[PartialFreeze]:
    """LoRA on a fused q/k/v projection: hold the value rows of every ``lora_B`` at zero, so
    the adapter changes only q and k. (Separate q/k modules need nothing: LoRA targets them.)"""
    names = qk_module_names(model)
    freezes = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in names and hasattr(module, "lora_B"):
            for lora_b in module.lora_B.values():  # weight (out_features, r): a row an output
                values = _value_outputs(model, lora_b.weight.shape[0])
                if values is not None:
                    freezes.append(PartialFreeze(lora_b.weight, 0, values))
    return freezes


def trained_parameters(model: Any) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


class RestoreFrozen(TrainerCallback):
    """Puts the :class:`PartialFreeze` slices back after each optimizer step."""

    def __init__(self, freezes: Sequence[PartialFreeze]):
        self.freezes = list(freezes)

    def on_optimizer_step(self, args, state, control, **kwargs):
        for freeze in self.freezes:
            freeze.restore()
