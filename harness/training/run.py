"""A reference instruction-tuning run (``harness finetune``), with the mitigations as options.

transformers ``Trainer`` plus PEFT LoRA or full finetuning, on a local instruction dataset:

**Checkpoints.** HF Trainer layout: ``output_dir/checkpoint-N/`` with ``trainer_state.json``,
the weights (safetensors; a LoRA run saves the adapter) and the tokenizer, so each folder
loads on its own and ``harness evaluate --checkpoints output_dir`` sweeps them. Saves come
every ``save_steps`` steps, at the last step, and every ``dense_save_steps`` steps up to
``dense_until``: the inversion peaks early (steps 50-150 in the testbed notes), and runs
checkpointed every 100 steps missed the rise entirely. Tied embeddings stay tied as the
model's config says (transformers ties them on load and saves one copy).

:func:`run_finetune` is the whole run; ``harness finetune --config configs/finetune-*.yaml``
calls it. :func:`read_mitigations` reads back what its mitigations did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments,
    set_seed,
)

from harness.checkpoints import why_not_loaded
from harness.dtypes import torch_dtype
from harness.console import progress
from harness.errors import FinetuneError
from harness.io import read_jsonl, write_json
from harness.results import RECIPE_JSON
from harness.training.callbacks import ContextRelianceCallback
from harness.training.config import FinetuneConfig
from harness.training.data import IGNORE_INDEX, encode_training_example, load_instruction_data
from harness.training.mitigations import (
    PartialFreeze,
    RestoreFrozen,
    augment_counterfactual,
    filter_non_context_critical,
    qk_module_names,
    restrict_lora_to_qk,
    restrict_to_qk,
    trained_parameters,
)

log = logging.getLogger("harness")

MITIGATIONS_JSON = "mitigations.json"
CONFIG_JSON = "finetune_config.json"
EVALUATION_WAIT_JSON = "evaluation_wait.json"


@dataclass(frozen=True)
class Mitigations:
    """What a finished run's mitigations did, as ``mitigations.json`` records it.

    Each field is that mitigation's record (None when the run did not use it): the filter's
    ``fraction``, ``candidates``, ``dropped``, ``kept``...; the augmentation's ``fraction``,
    ``added``, ``pool``...; q/k-only's ``trained`` parameters. ``filtered_out`` are the
    records the filter dropped, as the dataset held them, best-answered first.
    """

    filter: dict[str, Any] | None = None
    augmentation: dict[str, Any] | None = None
    qk_only: dict[str, Any] | None = None
    filtered_out: list[dict[str, Any]] = field(default_factory=list)


def read_mitigations(output_dir: str | Path) -> Mitigations:
    """The :class:`Mitigations` of the run in ``output_dir`` (a :func:`run_finetune` folder)."""
    folder = Path(output_dir)
    path = folder / MITIGATIONS_JSON
    if not path.is_file():
        raise FinetuneError(f"{path}: no such file (is {folder} the output_dir of harness finetune?)")
    record = json.loads(path.read_text(encoding="utf-8"))
    kept = record.get("filter_non_context_critical")
    dropped = read_jsonl(folder / kept["file"]) if kept else []
    return Mitigations(filter=kept, augmentation=record.get("counterfactual_augmentation"),
                       qk_only=record.get("qk_only"), filtered_out=dropped)


class DenseSaves(TrainerCallback):
    """Saves every ``every`` steps up to step ``until``, on top of the Trainer's ``save_steps``."""

    def __init__(self, every: int, until: int):
        self.every, self.until = every, until

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step <= self.until and state.global_step % self.every == 0:
            control.should_save = True


class ConsoleProgress(TrainerCallback):
    """One progress bar for the run on the console, the latest loss beside it, and one line
    when training ends (the Trainer's own output goes to the engine log)."""

    def __init__(self, name: str):
        self.name, self.bar, self.loss = name, None, None
        self.started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()
        self.bar = progress(state.max_steps, f"finetune {self.name}", unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])
            self.bar.set_postfix_str(f"loss {self.loss:.3f}")

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()
        loss = f", last logged loss {self.loss:.3f}" if self.loss is not None else ""
        log.info("finetune %s: %d steps in %.0f s%s", self.name, state.global_step,
                 time.monotonic() - self.started, loss)


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
        # The console shows ConsoleProgress; the Trainer's own bar and metric dicts would be noise.
        disable_tqdm=True,
        # Recorded in trainer_state.json, so runs compare on tokens seen (harness compare --x tokens).
        include_num_input_tokens_seen="non_padding",
    )


def _load(config: FinetuneConfig) -> tuple[Any, Any]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(config.model, dtype=torch_dtype(config.dtype),
                                                     trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as error:  # no such folder, a hub model not here, a broken checkpoint
        raise FinetuneError(f"model: {why_not_loaded(config.model, error)}") from None
    if tokenizer.pad_token is None:
        # Padding positions carry no loss and no attention, so which token pads is immaterial.
        tokenizer.pad_token = tokenizer.eos_token
    # Right padding keeps every sequence at positions 0..n: models with absolute positions
    # (GPT-2) are not given position ids by the collator.
    tokenizer.padding_side = "right"
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
            follow=settings.follow, at_start=settings.at_start, backend=settings.backend,
            output=settings.output or str(output_dir / "context-reliance"),
            format=settings.format or config.format, conjugates=settings.conjugates, modes=settings.modes,
            limit=settings.limit, batch_size=settings.batch_size, backend_options=settings.backend_options,
            seed=config.seed, trust_remote_code=config.trust_remote_code,
        )
    except ValueError as error:
        raise FinetuneError(f"evaluation: {error}") from None


@dataclass(frozen=True)
class SavedCheckpoint:
    """One ``checkpoint-N`` folder of a finetuning run, as its ``trainer_state.json`` records it."""

    folder: str
    step: int
    epoch: float | None
    tokens_seen: int | None
    loss: float | None  # the last training loss logged at or before ``step``
    loss_step: int | None  # the step ``loss`` was logged at


def saved_checkpoints(output_dir: str | Path) -> list[SavedCheckpoint]:
    """The checkpoints a finetuning run saved, in step order (``harness finetune``'s closing table)."""
    rows = []
    for folder in Path(output_dir).glob("checkpoint-*"):
        try:
            state = json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue  # not (yet) a complete checkpoint
        step = int(state.get("global_step", 0))
        logged = [(entry["loss"], entry.get("step", 0)) for entry in state.get("log_history", [])
                  if "loss" in entry and entry.get("step", 0) <= step]
        loss, loss_step = logged[-1] if logged else (None, None)
        rows.append(SavedCheckpoint(folder.name, step, state.get("epoch"),
                                    state.get("num_input_tokens_seen") or None, loss, loss_step))
    return sorted(rows, key=lambda row: row.step)


def recipe_hash(config: FinetuneConfig) -> str:
    """What identifies a recipe across its seeds: a hash of every setting but the seeds and the
    output folder (short sha256 of the settings as sorted JSON)."""
    settings = {key: value for key, value in dataclasses.asdict(config).items()
                if key not in ("seed", "seeds", "output_dir")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def run_recipe(config: FinetuneConfig) -> list[Path]:
    """Run ``config`` once per seed of ``config.seeds`` (once, with ``config.seed``, when it has
    none): each seed's run in ``output_dir/seed-N``. Each run's ``recipe.json`` holds its seed
    and the recipe's hash (:func:`recipe_hash`), which is how its seeds are told to be
    replicates of one recipe. Returns the runs' folders."""
    config.validate()
    if config.seeds is None:
        return [run_finetune(config)]
    return [run_finetune(dataclasses.replace(config, seed=seed, seeds=None,
                                             output_dir=str(Path(config.output_dir) / f"seed-{seed}")),
                         recipe=recipe_hash(config))
            for seed in config.seeds]


def run_finetune(config: FinetuneConfig, *, recipe: str | None = None) -> Path:
    """Run the finetuning ``config`` describes; return its output folder (checkpoint-N
    folders, ``mitigations.json``, ``finetune_config.json``, ``recipe.json`` with the seed and
    the ``recipe`` hash (its own when not given, :func:`recipe_hash`), the mitigations' data
    files)."""
    config.validate()
    output_dir = Path(config.output_dir)
    if output_dir.is_dir() and any(output_dir.glob("checkpoint-*")):
        raise FinetuneError(f"output_dir: {output_dir} already holds checkpoints; use a new folder "
                            "(a sweep over it would mix two runs)")
    evaluation = None if config.evaluation is None else _evaluation_callback(config, output_dir)
    # A missing or broken dataset or model is refused before anything is written.
    examples = load_instruction_data(config.dataset)
    set_seed(config.seed)
    model, tokenizer = _load(config)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / CONFIG_JSON, dataclasses.asdict(config))
    write_json(output_dir / RECIPE_JSON, {"recipe": recipe or recipe_hash(config), "seed": config.seed})
    args = _training_arguments(config, output_dir)
    model.to(args.device)  # scoring for the filter runs where training will

    mitigations: dict[str, Any] = {}
    if config.filter_non_context_critical is not None:
        examples, mitigations["filter_non_context_critical"] = filter_non_context_critical(
            model, tokenizer, examples, config, output_dir)
    if config.counterfactual_augmentation is not None:
        examples, mitigations["counterfactual_augmentation"] = augment_counterfactual(examples, config, output_dir)

    encoded = [encode_training_example(e, config, tokenizer) for e in examples]
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
        mitigations["qk_only"] = {"method": config.method, "trained": trained_parameters(model),
                                  "value_outputs_held": [n for n, p in model.named_parameters()
                                                         if any(p is f.param for f in freezes)]}
    write_json(output_dir / MITIGATIONS_JSON, mitigations)

    callbacks: list[TrainerCallback] = [ConsoleProgress(output_dir.name)] if config.progress else []
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
    start = time.perf_counter()
    trainer.train()
    if evaluation is not None:
        wait = {"training_s": round(time.perf_counter() - start, 2), "waited_s": round(evaluation.waited, 2),
                "waited_at_end_s": round(evaluation.waited_at_end, 2), "follow": evaluation.follow}
        write_json(output_dir / EVALUATION_WAIT_JSON, wait)
        log.info("training waited %.1f s of %.1f s for evaluation (%.1f s at the end%s)", wait["waited_s"],
                 wait["training_s"], wait["waited_at_end_s"], ", followed" if evaluation.follow else "")
    return output_dir
