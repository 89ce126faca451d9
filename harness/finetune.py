"""A reference instruction-tuning run (``harness finetune``), with the mitigations of
context-parametric inversion as options.

transformers ``Trainer`` plus PEFT LoRA or full finetuning, on a local instruction dataset:

- Alpaca layout: records with ``instruction``, ``input`` (optional: the example's *context*)
  and ``output``;
- TULU / UltraChat layout: records with ``messages`` (``role``/``content``; ``system``,
  then alternating ``user``/``assistant``, ending with the ``assistant`` reply trained on).

Files are JSON, JSONL, CSV or Parquet (:func:`harness.tasks.read_records`).

**Prompts.** Training prompts are rendered with :func:`harness.prompts.apply_format` in the
run's ``format`` (``plain``, ``alpaca``, ``tulu``, ``chat``), so a model is evaluated in the
format it was trained in. An Alpaca record's task prompt is ``prompt_template`` filled with its
``instruction`` and ``input`` (default: the instruction, a blank line, the input), or
``closed_book_template`` when it has no input (default: the instruction alone). Set both to
train in the layout of your probe tasks, e.g. ``context : {input} question : {instruction}
answer :`` and ``question : {instruction} answer :``. The closed-book template may also name
any other text field of the record (``{cue}``), which lets the non-context-critical filter ask
the starting model in the form it knows, when the training layout is new to it. Earlier turns
of a conversation are rendered turn by turn in front of the last one (``chat``: the tokenizer's template over all messages); ``system``
messages lead the prompt. The loss is on the response tokens only: the last reply (earlier
replies are context) plus EOS, or for ``chat`` the template's text of the reply (its
end-of-turn marker included). Tokenisation is the engines' own
(:func:`harness.backends.tokens.encode_pair`), so a response is tokenised in training exactly
as its log-likelihood is scored in evaluation. Sequences longer than ``max_length`` lose
their tail; one left with no response token is dropped.

**Checkpoints.** HF Trainer layout: ``output_dir/checkpoint-N/`` with ``trainer_state.json``,
the weights (safetensors; a LoRA run saves the adapter) and the tokenizer, so each folder
loads on its own and ``harness evaluate --checkpoints output_dir`` sweeps them. Saves come
every ``save_steps`` steps, at the last step, and every ``dense_save_steps`` steps up to
``dense_until``: the inversion peaks early (steps 50-150 in the testbed notes), and runs
checkpointed every 100 steps missed the rise entirely. Tied embeddings stay tied as the
model's config says (transformers ties them on load and saves one copy).

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

:func:`run_finetune` is the whole run; ``harness finetune --config configs/finetune-*.yaml``
calls it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import datasets
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments,
    set_seed,
)
from transformers.pytorch_utils import Conv1D

from harness.backends.hf import HFBackend, resolve_dtype
from harness.backends.tokens import ScoringPair, encode_pair
from harness.callbacks import ContextRelianceCallback
from harness.examples import CONTEXT
from harness.prompts import FORMATS, apply_format
from harness.requests import continuation_for
from harness.results import atomic_write_text
from harness.runner import RunError
from harness.schema import load_config
from harness.tasks import DATA_SUFFIXES, examples_from_records, placeholders, read_records, render_template

log = logging.getLogger("harness")

METHODS = ("full", "lora")
MITIGATIONS_JSON = "mitigations.json"
FILTERED_OUT = "filtered_out.jsonl"
AUGMENTED = "augmented.jsonl"
CONFIG_JSON = "finetune_config.json"
IGNORE_INDEX = -100  # label of tokens without loss (the prompt), as transformers expects


class FinetuneError(RunError):
    """A finetuning run cannot start as configured; the message says which setting."""


# --------------------------------------------------------------------------- configuration


@dataclass
class LoraSettings:
    """PEFT LoRA settings; ``target_modules`` None means PEFT's default for the architecture."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | None = None


@dataclass
class FilterSettings:
    """Non-context-critical filtering (see the module docstring)."""

    fraction: float = 0.25
    batch_size: int = 16


@dataclass
class AugmentSettings:
    """Counterfactual augmentation: ``source`` is a builder name or a data file; ``seed``
    seeds the builder (the built-in probe tasks use 0) and the pick."""

    fraction: float = 0.1
    source: str = "world_facts"
    seed: int = 1


@dataclass
class EvaluationSettings:
    """In-training evaluation with :class:`harness.callbacks.ContextRelianceCallback`.

    ``output`` defaults to ``<output_dir>/context-reliance`` and ``format`` to the training
    format; the other keys are the callback's.
    """

    tasks: list[str]
    every_n_steps: int | None = None
    on_save: bool = False
    at_start: bool = True
    backend: str = "hf"
    output: str | None = None
    format: str | None = None
    conjugates: list[str] | None = None
    modes: list[str] | None = None
    limit: int | None = None
    batch_size: int = 64
    backend_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinetuneConfig:
    """Every setting of ``harness finetune`` (YAML keys; unknown keys are errors).

    ``model`` is a local folder or hub name; ``dataset`` a local instruction file;
    ``warmup_steps`` an integer count or a float ratio of ``max_steps`` below 1 (as
    transformers reads it); ``batch_size`` is per device; ``dtype`` the weights' dtype on
    load, ``bf16`` mixed-precision training; ``report_to`` transformers' reporting
    integrations (``wandb``, ``tensorboard``); ``add_eos`` trains an EOS token after the
    response (not for ``chat``, whose template ends the reply); ``progress`` shows the
    trainer's progress bar; ``prompt_template``/``closed_book_template`` render an Alpaca
    record with/without its ``input`` (module docstring).
    """

    model: str
    dataset: str
    output_dir: str
    format: str = "alpaca"
    method: str = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    learning_rate: float = 2e-4
    lr_scheduler: str = "constant_with_warmup"
    warmup_steps: float = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int = 1000
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    add_eos: bool = True
    progress: bool = True
    seed: int = 0
    save_steps: int = 50
    dense_save_steps: int | None = None
    dense_until: int = 200
    logging_steps: int = 10
    dtype: str = "float32"
    bf16: bool = False
    report_to: list[str] = field(default_factory=list)
    trust_remote_code: bool = False
    prompt_template: str = "{instruction}\n\n{input}"
    closed_book_template: str = "{instruction}"
    filter_non_context_critical: FilterSettings | None = None
    counterfactual_augmentation: AugmentSettings | None = None
    qk_only: bool = False
    evaluation: EvaluationSettings | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "FinetuneConfig":
        """Read a finetuning recipe; ``overrides`` (command-line flags) win over it."""
        config = load_config(cls, path, FinetuneError, **overrides)
        config.validate(str(path))
        return config

    def validate(self, where: str = "finetune config") -> None:
        def fail(key: str, problem: str) -> None:
            raise FinetuneError(f"{where}: {key}: {problem}")

        if self.method not in METHODS:
            fail("method", f"unknown method {self.method!r} (expected: {', '.join(METHODS)})")
        if self.format not in FORMATS:
            fail("format", f"unknown prompt format {self.format!r} (expected: {', '.join(FORMATS)})")
        for key in ("max_steps", "batch_size", "gradient_accumulation_steps", "max_length",
                    "save_steps", "logging_steps"):
            if getattr(self, key) < 1:
                fail(key, "must be at least 1")
        if self.dense_save_steps is not None and self.dense_save_steps < 1:
            fail("dense_save_steps", "must be at least 1")
        if self.warmup_steps < 0:
            fail("warmup_steps", "must not be negative")
        for key, settings in (("filter_non_context_critical", self.filter_non_context_critical),
                              ("counterfactual_augmentation", self.counterfactual_augmentation)):
            if settings is not None and not 0 < settings.fraction < 1:
                fail(f"{key}.fraction", f"must be between 0 and 1 (exclusive), got {settings.fraction}")
        for key in ("prompt_template", "closed_book_template"):
            try:
                names = set(placeholders(getattr(self, key)))
            except ValueError as err:
                fail(key, str(err))
            if key == "prompt_template" and names != {"instruction", "input"}:
                fail(key, "must use exactly the placeholders {instruction} and {input} (found: "
                          f"{', '.join('{' + n + '}' for n in sorted(names)) or 'none'})")
            if key == "closed_book_template" and "input" in names:
                fail(key, "renders examples without their input, so it cannot use {input}")
        if self.qk_only and self.method == "lora" and self.lora.target_modules is not None:
            fail("lora.target_modules", "qk_only chooses the LoRA targets (the q/k projections); remove one")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class InstructionExample:
    """One training example, independent of the prompt format.

    ``input`` is the example's context ("" when it has none): the part the
    non-context-critical filter takes away. ``history`` holds the earlier (user, assistant)
    turns of a conversation, ``record`` the record it was read from (written back when the
    example is filtered out).
    """

    instruction: str
    output: str
    input: str = ""
    history: tuple[tuple[str, str], ...] = ()
    system: str = ""
    record: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _from_messages(messages: Any, where: str, record: Mapping[str, Any]) -> InstructionExample:
    if not isinstance(messages, list) or not all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise FinetuneError(f"{where}: field 'messages': expected a list of {{role, content}} objects")
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    roles = [m["role"] for m in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2):
        raise FinetuneError(f"{where}: field 'messages': expected user and assistant turns in turn, "
                            f"ending with the assistant's reply (got roles: {', '.join(roles) or 'none'})")
    history = tuple((turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 2, 2))
    return InstructionExample(instruction=turns[-2]["content"], output=turns[-1]["content"],
                              history=history, system=system, record=record)


def _from_record(record: Mapping[str, Any], where: str) -> InstructionExample:
    if "messages" in record:
        return _from_messages(record["messages"], where, record)
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise FinetuneError(f"{where}: expected an Alpaca record (instruction, input, output) "
                                f"or a 'messages' list; field {key!r} is missing or not text")
    context = record.get("input") or ""
    if not isinstance(context, str):
        raise FinetuneError(f"{where}: field 'input': expected text, got {context!r}")
    return InstructionExample(instruction=record["instruction"], input=context, output=record["output"],
                              record=record)


def load_instruction_data(path: str | Path) -> list[InstructionExample]:
    """The examples of a local instruction file (Alpaca or ``messages`` records)."""
    path = Path(path)
    records = read_records(path)
    if not records:
        raise FinetuneError(f"{path}: dataset: no records")
    return [_from_record(record, f"{path}: record {number}") for number, record in enumerate(records, 1)]


DEFAULT_TEMPLATES = (FinetuneConfig.prompt_template, FinetuneConfig.closed_book_template)


def _task_prompt(example: InstructionExample, with_context: bool, templates: tuple[str, str]) -> str:
    prompt_template, closed_book_template = templates
    if example.input and with_context:
        return render_template(prompt_template, {"instruction": example.instruction, "input": example.input})
    values = {**{k: v for k, v in example.record.items() if isinstance(v, str)}, "instruction": example.instruction}
    missing = [name for name in placeholders(closed_book_template) if name not in values]
    if missing:
        raise FinetuneError(f"closed_book_template: the record has no text field {missing[0]!r} "
                            f"(record: {json.dumps(dict(example.record))[:200]})")
    return render_template(closed_book_template, values)


def render_example(example: InstructionExample, fmt: str, tokenizer: Any = None, *,
                   with_context: bool = True, templates: tuple[str, str] = DEFAULT_TEMPLATES) -> tuple[str, str]:
    """The (prompt, target) texts of an example in format ``fmt`` (module docstring);
    ``templates`` are the config's ``(prompt_template, closed_book_template)``.

    For formats other than ``chat`` the target is the response with the leading-space rule of
    :func:`harness.requests.continuation_for` (EOS is added as a token by :func:`encode_example`).
    """
    prompt_text = _task_prompt(example, with_context, templates)
    if fmt == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise FinetuneError("format chat: the model's tokenizer has no chat template; use plain, alpaca or tulu")
        messages = [{"role": "system", "content": example.system}] if example.system else []
        for user, assistant in example.history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": prompt_text})
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": example.output}],
                                             tokenize=False)
        if not full.startswith(prompt):
            raise FinetuneError("format chat: the chat template renders the conversation differently with the "
                                "reply appended, so the reply's tokens cannot be told apart; use another format")
        return prompt, full[len(prompt):]
    prompt = example.system + "\n\n" if example.system else ""
    for user, assistant in example.history:
        turn = apply_format(user, fmt, tokenizer)
        prompt += turn + continuation_for(turn, assistant) + "\n\n"
    prompt += apply_format(prompt_text, fmt, tokenizer)
    return prompt, continuation_for(prompt, example.output)


def encode_example(tokenizer: Any, prompt: str, target: str, *, add_eos: bool,
                   max_length: int) -> dict[str, list[int]] | None:
    """Token ids, attention mask and labels (prompt tokens ignored) of one training sequence,
    cut to ``max_length``; None when no target token is left."""
    pair = encode_pair(tokenizer, prompt, target)
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    ids = [*pair.context, *pair.continuation, *eos][:max_length]
    n_prompt = len(pair.context)
    if len(ids) <= n_prompt:
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids),
            "labels": [IGNORE_INDEX] * n_prompt + ids[n_prompt:]}


def _encode(example: InstructionExample, config: FinetuneConfig, tokenizer: Any, *,
            with_context: bool = True) -> dict[str, list[int]] | None:
    prompt, target = render_example(example, config.format, tokenizer, with_context=with_context,
                                    templates=(config.prompt_template, config.closed_book_template))
    # The chat template ends the reply itself; ``add_eos: false`` trains the response tokens
    # alone (the demo's one-token answers).
    add_eos = config.add_eos and config.format != "chat"
    return encode_example(tokenizer, prompt, target, add_eos=add_eos, max_length=config.max_length)


# --------------------------------------------------------------------------- mitigation: filter


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


def score_context_reliance(model: Any, tokenizer: Any, examples: Sequence[InstructionExample],
                           config: FinetuneConfig, *, batch_size: int = 16) -> list[ContextScore | None]:
    """Score each example's target with and without its ``input`` under ``model`` (in order);
    None for examples without an input or whose target does not fit ``max_length``."""
    def pair(example: InstructionExample, with_context: bool) -> ScoringPair | None:
        encoded = _encode(example, config, tokenizer, with_context=with_context)
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


def filter_non_context_critical(model: Any, tokenizer: Any, examples: list[InstructionExample],
                                config: FinetuneConfig, output_dir: Path) -> tuple[list[InstructionExample], dict]:
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
    _write_jsonl(output_dir / FILTERED_OUT, lines)
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


# --------------------------------------------------------------------------- mitigation: augmentation


def counterfactual_pool(source: str, seed: int) -> list[InstructionExample]:
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
        InstructionExample(instruction=e.fields["question"], input=e.fields["context"],
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


def augment_counterfactual(examples: list[InstructionExample], config: FinetuneConfig,
                           output_dir: Path) -> tuple[list[InstructionExample], dict]:
    """Add counterfactual examples making up ``fraction`` of the result (a seeded pick);
    write the added ones to ``augmented.jsonl``."""
    settings = config.counterfactual_augmentation
    pool = counterfactual_pool(settings.source, settings.seed)
    rng = random.Random(settings.seed)
    rng.shuffle(pool)
    n_add = round(settings.fraction * len(examples) / (1 - settings.fraction))
    added = [pool[i % len(pool)] for i in range(n_add)]
    _write_jsonl(output_dir / AUGMENTED, [e.record for e in added])
    combined = examples + added  # the Trainer's sampler shuffles
    record = {"fraction": settings.fraction, "source": settings.source, "seed": settings.seed,
              "pool": len(pool), "added": n_add, "unique": min(n_add, len(pool)),
              "final_size": len(combined), "file": AUGMENTED}
    if n_add > len(pool):
        record["note"] = f"the pool holds {len(pool)} examples; each is used about {n_add / len(pool):.1f} times"
        log.warning("counterfactual_augmentation: %s", record["note"])
    return combined, record


# --------------------------------------------------------------------------- mitigation: q/k only


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


def _trained_parameters(model: Any) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


# --------------------------------------------------------------------------- trainer callbacks


class DenseSaves(TrainerCallback):
    """Saves every ``every`` steps up to step ``until``, on top of the Trainer's ``save_steps``."""

    def __init__(self, every: int, until: int):
        self.every, self.until = every, until

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step <= self.until and state.global_step % self.every == 0:
            control.should_save = True


class RestoreFrozen(TrainerCallback):
    """Puts the :class:`PartialFreeze` slices back after each optimizer step."""

    def __init__(self, freezes: Sequence[PartialFreeze]):
        self.freezes = list(freezes)

    def on_optimizer_step(self, args, state, control, **kwargs):
        for freeze in self.freezes:
            freeze.restore()


# --------------------------------------------------------------------------- the run


def _write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _training_arguments(config: FinetuneConfig, output_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        # Checkpoints are for evaluation, and a run never resumes (run_finetune refuses an
        # output_dir with checkpoints): optimizer states would only multiply the disk use.
        save_only_model=True,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.bf16,
        report_to=config.report_to or "none",
        disable_tqdm=not config.progress,
    )


def _load(config: FinetuneConfig) -> tuple[Any, Any]:
    tokenizer = AutoTokenizer.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
    if tokenizer.pad_token is None:
        # Padding positions carry no loss and no attention, so which token pads is immaterial.
        tokenizer.pad_token = tokenizer.eos_token
    # Right padding keeps every sequence at positions 0..n: models with absolute positions
    # (GPT-2) are not given position ids by the collator.
    tokenizer.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(config.model, dtype=resolve_dtype(config.dtype),
                                                 trust_remote_code=config.trust_remote_code)
    return model, tokenizer


def _wrap_lora(model: Any, config: FinetuneConfig) -> Any:
    targets = qk_module_names(model) if config.qk_only else config.lora.target_modules
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _evaluation_callback(config: FinetuneConfig, output_dir: Path) -> ContextRelianceCallback:
    """The in-training evaluation of ``config.evaluation``, its settings checked before any
    loading; the trainer is attached once it exists, the tokenizer is its processing_class."""
    settings = config.evaluation
    try:
        return ContextRelianceCallback(
            tasks=settings.tasks, every_n_steps=settings.every_n_steps, on_save=settings.on_save,
            at_start=settings.at_start, backend=settings.backend,
            output=settings.output or str(output_dir / "context-reliance"),
            format=settings.format or config.format, conjugates=settings.conjugates, modes=settings.modes,
            limit=settings.limit, batch_size=settings.batch_size, backend_options=settings.backend_options,
            seed=config.seed, trust_remote_code=config.trust_remote_code,
        )
    except ValueError as error:
        raise FinetuneError(f"evaluation: {error}") from None


def run_finetune(config: FinetuneConfig) -> Path:
    """Run the finetuning ``config`` describes; return its output folder (checkpoint-N
    folders, ``mitigations.json``, ``finetune_config.json``, the mitigations' data files)."""
    config.validate()
    output_dir = Path(config.output_dir)
    if output_dir.is_dir() and any(output_dir.glob("checkpoint-*")):
        raise FinetuneError(f"output_dir: {output_dir} already holds checkpoints; use a new folder "
                            "(a sweep over it would mix two runs)")
    evaluation = None if config.evaluation is None else _evaluation_callback(config, output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / CONFIG_JSON, json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    set_seed(config.seed)
    args = _training_arguments(config, output_dir)
    model, tokenizer = _load(config)
    model.to(args.device)  # scoring for the filter runs where training will
    examples = load_instruction_data(config.dataset)

    mitigations: dict[str, Any] = {}
    if config.filter_non_context_critical is not None:
        examples, mitigations["filter_non_context_critical"] = filter_non_context_critical(
            model, tokenizer, examples, config, output_dir)
    if config.counterfactual_augmentation is not None:
        examples, mitigations["counterfactual_augmentation"] = augment_counterfactual(examples, config, output_dir)

    encoded = [_encode(e, config, tokenizer) for e in examples]
    rows = [e for e in encoded if e is not None]
    if not rows:
        raise FinetuneError(f"{config.dataset}: no example keeps a response token within max_length "
                            f"{config.max_length}")
    if len(rows) < len(encoded):
        log.warning("%d examples left no response token within max_length %d; dropped",
                    len(encoded) - len(rows), config.max_length)

    freezes: list[PartialFreeze] = []
    if config.method == "lora":
        model = _wrap_lora(model, config)
        if config.qk_only:
            freezes = restrict_lora_to_qk(model)
    elif config.qk_only:
        freezes = restrict_to_qk(model)
    if config.qk_only:
        mitigations["qk_only"] = {"method": config.method, "trained": _trained_parameters(model),
                                  "value_outputs_held": [n for n, p in model.named_parameters()
                                                         if any(p is f.param for f in freezes)]}
    atomic_write_text(output_dir / MITIGATIONS_JSON, json.dumps(mitigations, indent=2) + "\n")

    callbacks = []
    if config.dense_save_steps is not None:
        callbacks.append(DenseSaves(config.dense_save_steps, config.dense_until))
    if freezes:
        callbacks.append(RestoreFrozen(freezes))
    trainer = Trainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
        data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX),
        processing_class=tokenizer, callbacks=callbacks,
    )
    if evaluation is not None:
        evaluation.trainer = trainer  # so its metrics reach the reporting integrations
        trainer.add_callback(evaluation)
    trainer.train()
    return output_dir
