"""The settings of ``harness finetune``: a YAML recipe validated into dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.dtypes import check_dtype_setting
from harness.errors import FinetuneError, did_you_mean
from harness.tasks.prompts import FORMATS
from harness.schema import load_config
from harness.seeding import replicate_seeds
from harness.tasks import placeholders

METHODS = ("full", "lora")


def lr_schedulers() -> list[str]:
    """The learning-rate schedules transformers' Trainer knows (``lr_scheduler``)."""
    from transformers import SchedulerType

    return [schedule.value for schedule in SchedulerType]


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
    format; the other keys are the callback's (``follow``: evaluate the saves in a follower
    process, by default with ``backend: vllm``). How long training waited for evaluation is
    written to ``<output_dir>/evaluation_wait.json``.
    """

    tasks: list[str]
    every_n_steps: int | None = None
    on_save: bool = False
    follow: bool | None = None
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
    response (not for ``chat``, whose template ends the reply); ``progress`` shows a
    progress bar of the steps on the console; ``prompt_template``/``closed_book_template`` render an Alpaca
    record with/without its ``input`` (module docstring). ``seeds`` runs the recipe once per
    seed (replicates: a claim about a recipe needs several), each in ``output_dir/seed-N``;
    ``seed`` is then ignored.
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
    seeds: list[int] | None = None
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
            fail("method", f"unknown method {self.method!r}{did_you_mean(self.method, METHODS)}; "
                           f"expected: {', '.join(METHODS)}")
        if self.format not in FORMATS:
            fail("format", f"unknown prompt format {self.format!r}{did_you_mean(self.format, FORMATS)}; "
                           f"expected: {', '.join(FORMATS)}")
        schedulers = lr_schedulers()
        if self.lr_scheduler not in schedulers:
            fail("lr_scheduler", f"unknown schedule {self.lr_scheduler!r}{did_you_mean(self.lr_scheduler, schedulers)}; "
                                 f"transformers has: {', '.join(schedulers)}")
        try:
            check_dtype_setting(self.dtype)
        except ValueError as error:
            fail("dtype", str(error))
        for key in ("max_steps", "batch_size", "gradient_accumulation_steps", "max_length",
                    "save_steps", "logging_steps"):
            if getattr(self, key) < 1:
                fail(key, "must be at least 1")
        if self.dense_save_steps is not None and self.dense_save_steps < 1:
            fail("dense_save_steps", "must be at least 1")
        if self.seed < 0:
            fail("seed", f"must not be negative, got {self.seed}")
        if self.seeds is not None and not replicate_seeds(self.seeds):
            fail("seeds", f"expected distinct seeds, at least one, none negative, got {self.seeds}")
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
