"""A tiny Trainer for the tests of evaluation during training (the callback, the follower)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

TEXTS = ["The capital of France is Paris.", "The capital of Japan is Tokyo.", "Question: what is the capital "
         "of Peru?\nAnswer: Lima", "the quick brown fox one two three", "red blue green yellow black white"] * 3


def make_trainer(model_dir: Path, output_dir: Path, *, max_steps: int = 4, save_steps: int | None = None,
                 callbacks=(), save_total_limit: int | None = None) -> Trainer:
    """A Trainer of ``model_dir`` on TEXTS (batches of 4, a loss logged every step), saving
    only the model every ``save_steps`` steps (never without)."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows = []
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids})
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-3,
        logging_steps=1, seed=0, report_to="none", disable_tqdm=True,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500, save_only_model=True,
        save_total_limit=save_total_limit,
    )
    return Trainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                   data_collator=DataCollatorForSeq2Seq(tokenizer), callbacks=list(callbacks))


def losses(trainer: Trainer) -> list[float]:
    """The training losses logged, in order."""
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
