"""``harness demo``: context-parametric inversion end to end on a CPU, offline.

Five stages, each cached in the output folder so a rerun skips what is finished:

1. **base** — pretrain a tiny GPT-2 on the synthetic world (:mod:`harness.pretrain`): bio
   documents teach the known facts, reading documents teach copying from context.
2. **data** — instruction-tuning files for the four runs (:mod:`harness.data.world`).
3. **finetune** — four instruction-tuning runs through :func:`harness.finetune.run_finetune`
   with dense early checkpoints and the in-training callback: *standard* (50% non-context-
   critical examples), *context-critical only* (the NC examples dropped), *counterfactual
   augmentation* (10% examples whose context contradicts memory, target follows the
   context) and *query/key only* (only the q and k thirds of GPT-2's fused ``c_attn`` train).
4. **evaluate** — every checkpoint of every run (and the base as step 0) on the conflict,
   closed-book and open-book probes, with one engine for all of them (vLLM when installed).
5. **report** — a report per run, a comparison of the four, and a text summary with the
   peak, the drop and its paired-bootstrap CI for each run.

Why GPT-2 (learned absolute positions) and not a Llama (RoPE) of the same size: in the
prototypes recorded in ``shared/notes/inversion-testbed.md`` a Llama base connected its memory
to the finetuning format at once (memory answers on 64% of conflicts by step 50), so context
reliance had no phase to rise in, while GPT-2 rose and fell in 3 of 3 runs. Its embeddings are
untied because vLLM's in-place weight reload on CPU is exact only for untied models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data import world as W
from harness.runner import RunError

log = logging.getLogger("harness")

PROBES = ["world_conflict", "world_recall", "world_open_book"]
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


@dataclass(frozen=True)
class DemoRun:
    """One instruction-tuning run of the demo: its data mixture and mitigation."""

    name: str
    title: str
    nc_share: float
    cf_share: float = 0.0
    qk_only: bool = False


RUNS = (
    DemoRun("standard", "standard (50% non-context-critical)", nc_share=0.5),
    DemoRun("cc_only", "context-critical filtering (NC examples dropped)", nc_share=0.0),
    # NC and CC keep their 1:1 ratio among the non-counterfactual examples.
    DemoRun("cf_augment", "counterfactual augmentation (10%)", nc_share=0.45, cf_share=0.10),
    DemoRun("qk_only", "query/key weights only", nc_share=0.5, qk_only=True),
)


@dataclass
class DemoSettings:
    """Settings of ``harness demo`` (``quick`` shrinks everything to test the plumbing)."""

    out: str = "results/demo"
    quick: bool = False
    world_seed: int = 0
    seed: int = 0
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-4
    warmup_steps: int = 50
    dense_every: int = 10
    dense_until: int = 100
    save_every: int = 25
    threads: int = 2
    backend: str = "auto"
    limit: int | None = None
    pretrain_steps: int | None = None
    runs: list[str] = field(default_factory=lambda: [r.name for r in RUNS])

    def __post_init__(self) -> None:
        if self.quick:
            # Plumbing only: a base that has not learned much, a few steps, a few probes.
            self.steps, self.warmup_steps, self.dense_every, self.dense_until, self.save_every = 20, 5, 10, 10, 10
            self.limit = self.limit or 20
            self.pretrain_steps = self.pretrain_steps or 30
        unknown = set(self.runs) - {r.name for r in RUNS}
        if unknown:
            raise RunError(f"--runs: unknown run(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(r.name for r in RUNS)})")


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


def _pretrain(settings: DemoSettings, out: Path):
    from harness.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(world_seed=settings.world_seed, seed=settings.seed)
    if settings.pretrain_steps is not None:
        config = dataclasses.replace(config, max_steps=settings.pretrain_steps)
    result = pretrain(out / "base", config, threads=settings.threads,
                      log=lambda line: log.info("pretrain: %s", line))
    log.info("base: %d steps, closed-book recall %.3f, open-book (pretraining format) %.3f%s",
             result.steps, result.recall, result.open_book, " (cached)" if result.cached else "")
    return result


def _write_data(settings: DemoSettings, out: Path) -> dict[str, Path]:
    world = W.make_world(settings.world_seed)
    files = {}
    n = settings.steps * settings.batch_size
    for run in RUNS:
        if run.name not in settings.runs:
            continue
        path = out / "data" / f"{run.name}.jsonl"
        # Deterministic for the settings, so an existing file is the same file.
        if not path.is_file():
            W.write_instruction_jsonl(path, world, n, seed=settings.seed, nc_share=run.nc_share,
                                      cf_share=run.cf_share)
        files[run.name] = path
    return files


def _finetune_config(settings: DemoSettings, run: DemoRun, base: Path, data: Path, output: Path):
    from harness.finetune import EvaluationSettings, FinetuneConfig

    return FinetuneConfig(
        model=str(base), dataset=str(data), output_dir=str(output), format="plain", method="full",
        learning_rate=settings.learning_rate, lr_scheduler="constant_with_warmup",
        warmup_steps=settings.warmup_steps, weight_decay=0.0, max_steps=settings.steps,
        batch_size=settings.batch_size, max_length=128, add_eos=False, seed=settings.seed,
        save_steps=settings.save_every, dense_save_steps=settings.dense_every,
        dense_until=settings.dense_until, logging_steps=settings.dense_every, qk_only=run.qk_only,
        # The in-training curve (transformers engine, live model) on a slice of the conflict
        # probe: what a researcher sees in the trainer's log while the run goes on.
        evaluation=EvaluationSettings(tasks=["world_conflict"], on_save=True, at_start=True,
                                      limit=50, modes=["generate"]),
    )


def _finetune(settings: DemoSettings, run: DemoRun, base: Path, data: Path, out: Path) -> Path:
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

    backend = make_backend(settings.backend, max_model_len=128, dtype="float32")
    results = {}
    try:
        for name, folder in run_folders.items():
            config = RunConfig(output=str(out / "results" / name), tasks=list(PROBES), checkpoints=str(folder),
                               backend=settings.backend, format="plain", conjugates=["en"],
                               limit=settings.limit, seed=settings.seed, batch_size=1024)
            results[name] = evaluate(config, backend=backend, command_line=["harness", "demo"]).path
    finally:
        backend.close()
    return results


def _summary(results: dict[str, Path], pretrained: Any) -> str:
    from harness.report import detect_inversion
    from harness.results import RunDirectory

    titles = {r.name: r.title for r in RUNS}
    lines = []
    for name, path in results.items():
        verdict = detect_inversion(path, "world_conflict")
        rows = RunDirectory(path).read_summary()
        last_step = max((r["step"] for r in rows if r["step"] is not None), default=None)

        def final(task: str, metric: str = "accuracy") -> str:
            values = [r["value"] for r in rows if r["task"] == task and r["metric"] == metric
                      and r["mode"] == "generate" and r["step"] == last_step]
            return f"{values[0]:.2f}" if values and values[0] is not None else "n/a"

        lines.append(f"- {titles[name]}: {verdict}. At the last step: closed-book recall "
                     f"{final('world_recall')}, open-book {final('world_open_book')}.")
    base = (f"Base model: {pretrained.steps} pretraining steps, closed-book recall {pretrained.recall:.2f}, "
            f"open-book (pretraining format) {pretrained.open_book:.2f}"
            f"{'' if pretrained.reached else ' (thresholds not reached)'}.")
    return "\n".join(["Context reliance on the conflict probe (context_rate, greedy answer):", *lines, "",
                      base, ARCHITECTURE_NOTE, CAVEATS])


def run_demo(settings: DemoSettings) -> DemoResult:
    """Run (or resume) the whole demo; see the module docstring."""
    import torch

    from harness.report import compare, write_report

    torch.set_num_threads(settings.threads)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with _stage(seconds, "pretraining the base model"):
        pretrained = _pretrain(settings, out)
    with _stage(seconds, "writing the instruction-tuning data"):
        data = _write_data(settings, out)
    runs = {r.name: r for r in RUNS if r.name in settings.runs}
    folders = {}
    with _stage(seconds, "instruction tuning"):
        for name, run in runs.items():
            folders[name] = _finetune(settings, run, pretrained.path, data[name], out)
    with _stage(seconds, "evaluating every checkpoint"):
        results = _evaluate(settings, folders, out)
    with _stage(seconds, "reports"):
        for path in results.values():
            write_report(path)
        report = compare([str(p) for p in results.values()], labels=list(results), x="step",
                         output=str(out / "compare"))
        summary = _summary(results, pretrained)
    (out / "summary.txt").write_text(summary + "\n", encoding="utf-8")
    (out / "timings.json").write_text(json.dumps(seconds, indent=2) + "\n", encoding="utf-8")
    return DemoResult(out=out, report=report, summary=summary, seconds=seconds)
