"""``harness demo``: context-parametric inversion end to end on a CPU, offline.

Five stages, each cached in the output folder so a rerun skips what is finished:

1. **base** — pretrain a tiny GPT-2 on the synthetic world (:mod:`harness.demo.pretrain`): bio
   documents teach the known facts, reading documents teach copying from context.
2. **data** — one instruction-tuning file (:mod:`harness.demo.corpus`, ``split`` layout): a mix
   of non-context-critical (NC) and context-critical (CC) examples; plus a file of
   counterfactual examples for the augmentation.
3. **finetune** — four runs of :func:`harness.training.run.run_finetune` on that file, with
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
SmolLM2-135M-Instruct (chat format), on real facts (:mod:`harness.demo.fact_instructions`:
NC examples about real countries, CC examples about invented ones), evaluated on the
``capitals`` knowledge-conflict probe, whose facts are never trained on.

Why GPT-2 (learned absolute positions) and not a Llama (RoPE) of the same size: in the
prototypes recorded in docs/inversion-testbed.md a Llama base connected its memory
to the finetuning format at once (memory answers on 64% of conflicts by step 50), so context
reliance had no phase to rise in, while GPT-2 rose and fell in 3 of 3 runs. Its embeddings are
untied because vLLM's in-place weight reload on CPU is exact only for untied models. The
recipe's measurements are in ``docs/demo-recipe.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import shutil
import time
from pathlib import Path

from harness.conjugates import ENGLISH
from harness.console import aligned
from harness.demo import corpus as C
from harness.demo.recipe import RUNS, Base, DemoData, DemoResult, DemoRun, DemoSettings
from harness.dtypes import cpu_description
from harness.io import atomic_write_text, write_json
from harness.results import RunDirectory
from harness.scoring import GENERATE
from harness.stats import format_p

log = logging.getLogger("harness")


@contextlib.contextmanager
def _stage(seconds: dict[str, float], name: str):
    """Log a stage's start and record how long it took."""
    log.info("demo: %s", name)
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 1)


def finetune_config(settings: DemoSettings, run: DemoRun, base: Path, data: DemoData, output: Path):
    """The :class:`~harness.training.config.FinetuneConfig` of one demo run (its recipe's mitigation)."""
    from harness.training.config import (
        AugmentSettings,
        EvaluationSettings,
        FilterSettings,
        FinetuneConfig,
    )

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
    from harness.training.run import run_finetune

    output = out / "runs" / run.name
    config = finetune_config(settings, run, base, data, output)
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
    from harness.sweep.config import RunConfig
    from harness.sweep.evaluate import evaluate

    recipe = settings.recipe
    backend = make_backend(settings.backend, max_model_len=recipe.max_length, dtype="float32")
    results = {}
    try:
        for name, folder in run_folders.items():
            config = RunConfig(output=str(out / "results" / name), tasks=list(recipe.probes), checkpoints=str(folder),
                               backend=settings.backend, format=recipe.format, conjugates=["en"],
                               modes=recipe.modes,
                               limit=settings.limit, seed=settings.seed, batch_size=1024)
            start = time.perf_counter()
            results[name] = evaluate(config, backend=backend, command_line=["harness", "demo"]).path
            done = RunDirectory(results[name]).read_summary()
            log.info("evaluated %s: %d checkpoints in %.1f s", name, len({row.checkpoint for row in done}),
                     time.perf_counter() - start)
    finally:
        backend.close()
    return results


def _run_setup(settings: DemoSettings, folder: Path) -> str:
    """What the run trained on, from its own records (:func:`harness.training.run.read_mitigations`)."""
    from harness.training.run import read_mitigations

    mitigations = read_mitigations(folder)
    parts = [f"{settings.nc_share:.0%} non-context-critical examples"]
    if mitigations.filter is not None:
        # ``kind`` is the demo's own field of its training records, kept in the filter's file.
        kinds = [record.get("kind") for record in mitigations.filtered_out]
        share = sum(k == C.NC for k in kinds) / len(kinds) if kinds else 0.0
        parts = [f"the filter dropped {mitigations.filter['dropped']} of {mitigations.filter['candidates']} "
                 f"examples ({share:.0%} of them non-context-critical)"]
    if mitigations.augmentation is not None:
        parts.append(f"{mitigations.augmentation['added']} counterfactual examples added "
                     f"({mitigations.augmentation['fraction']:.0%})")
    if mitigations.qk_only is not None:
        parts.append("only the query/key projections trained")
    return "; ".join(parts)


def _share(value: float | None) -> str:
    """A share as papers print it: ``.137``."""
    return "n/a" if value is None else f"{value:.3f}".replace("0.", ".", 1)


def _summary(settings: DemoSettings, folders: dict[str, Path], results: dict[str, Path],
             base: Base) -> tuple[str, list[tuple[str, ...]]]:
    """The demo's result as text and as the table's rows (a header, then a row a run, with its
    verdict on the conflict probe and its closed-book and open-book accuracy at the last step);
    the text lists each run's setup below the table."""
    from harness.reports.inversion import INVERSION_METHOD
    from harness.reports.recipes import detect_inversion

    recipe = settings.recipe
    runs = {r.name: r for r in RUNS}
    rows = [("run", "first", "peak [95% CI] (step)", "last", "drop (lower bound, p)", "verdict", "closed-book",
             recipe.open_book[1].replace("_", "-"))]
    setups, n = [], None
    for name, path in results.items():
        verdict = detect_inversion(path, recipe.conflict_task)
        n = verdict.n
        summary = RunDirectory(path).read_summary()
        last_step = max((r.step for r in summary if r.step is not None), default=None)

        def final(task: str, condition: str) -> float | None:
            values = [r.value for r in summary if r.task == task and r.condition == condition
                      and r.metric == "accuracy" and r.mode == GENERATE and r.step == last_step
                      and r.conjugate == ENGLISH]
            return values[0] if values else None

        drop = verdict.drop
        rows.append((name, _share(verdict.first),
                     f"{_share(verdict.peak)} [{_share(verdict.peak_ci[0])}, {_share(verdict.peak_ci[1])}] "
                     f"({verdict.peak_checkpoint.step})", _share(verdict.last),
                     f"{drop.value:+.3f} (>= {drop.lower:+.3f}, {format_p(drop.p_value)})", verdict.verdict,
                     _share(final(*recipe.closed_book)), _share(final(*recipe.open_book))))
        setups.append(f"- {name}: {runs[name].title}; {_run_setup(settings, folders[name])}")
    return "\n".join([
        f"Context reliance on {recipe.conflict_task} (context_hit_rate: the context's answer is in the greedy "
        f"output; n={n} conflicts at every checkpoint), and accuracy at the last step:", "",
        aligned(rows), "", f"Verdicts: {INVERSION_METHOD}.", "", *setups, "", base.description, recipe.caveats]), rows


def run_demo(settings: DemoSettings, command: str = "harness.demo.run_demo") -> DemoResult:
    """Run (or resume) the whole demo; see the module docstring. One demo at a time writes a
    folder (it holds the folder's writer lock). ``command`` is what ran it, for ``demo.json``:
    the record of the measurement (command, date, CPU, load, stage timings, the summary table)
    from which ``docs/readme_numbers.py`` writes the README's demo numbers."""
    import torch

    torch.set_num_threads(settings.threads)
    out = Path(settings.out)
    # The console's log file is opened before the demo starts: only the stages' outputs count.
    fresh = not any((out / stage).exists() for stage in ("base", "data", "runs", "results"))
    record = {"command": command, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "cpu": cpu_description(), "fresh": fresh, "load_average_before": _load_average()}
    with RunDirectory(out).lock(), _one_line_a_run():
        result, rows = _run_stages(settings, out)
    write_json(out / "demo.json", {**record, "load_average_after": _load_average(), "seconds": result.seconds,
                                   "total_s": round(sum(result.seconds.values()), 1), "table": rows,
                                   "summary": result.summary})
    return result


def _load_average() -> float | None:
    """The 1-minute load average: a timing is only as good as the machine was idle."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


@contextlib.contextmanager
def _one_line_a_run():
    """The demo evaluates dozens of checkpoints: the sweep's line per checkpoint is left out of
    the console (it says one line a run instead) unless the harness logs at DEBUG (``-v``)."""
    from harness.sweep.sweep import checkpoint_log

    level = checkpoint_log.level
    if not log.isEnabledFor(logging.DEBUG):
        checkpoint_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        checkpoint_log.setLevel(level)


def _run_stages(settings: DemoSettings, out: Path) -> tuple[DemoResult, list[tuple[str, ...]]]:
    from harness.reports.compare import compare
    from harness.reports.report import write_report

    seconds: dict[str, float] = {}
    recipe = settings.recipe
    with _stage(seconds, recipe.base_stage):
        base = recipe.make_base(settings, out)
    with _stage(seconds, "writing the instruction-tuning data"):
        data = recipe.write_data(settings, out)
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
        summary, rows = _summary(settings, folders, results, base)
    atomic_write_text(out / "summary.txt", summary + "\n")
    write_json(out / "timings.json", seconds)
    return DemoResult(out=out, report=report, summary=summary, seconds=seconds), rows
