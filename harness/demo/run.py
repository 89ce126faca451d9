"""``harness demo``: context-parametric inversion end to end on a CPU, offline.

Five stages, each cached in the output folder so a rerun skips what is finished:

1. **base** — pretrain a tiny GPT-2 on the synthetic world (:mod:`harness.demo.pretrain`): bio
   documents teach the known facts, reading documents teach copying from context.
2. **data** — one instruction-tuning file (:mod:`harness.demo.corpus`, ``split`` layout): a mix
   of non-context-critical (NC) and context-critical (CC) examples; plus a file of
   counterfactual examples for the augmentation.
3. **finetune** — each recipe (:data:`~harness.demo.recipe.RUNS`; by default *standard* and
   *counterfactual augmentation*, ``runs="all"`` for the four) once per finetuning seed (by
   default 0, 1, 2), each a run of :func:`harness.training.run.run_finetune` on that file in
   ``runs/RECIPE/seed-N``, with checkpoints every ``save_every`` steps and the in-training
   callback. The recipes: *standard*; *context-critical filtering* (``filter_non_context_critical``:
   the starting model drops the examples it answers best without their context);
   *counterfactual augmentation* (``counterfactual_augmentation``); *query/key only*
   (``qk_only``: only the q and k thirds of GPT-2's fused ``c_attn`` train). The seeds share the
   base and the data: they differ in the order the examples are trained in; with
   ``vary_base`` each seed finetunes a base of its own (pretrained with that seed).
4. **evaluate** — every checkpoint of every run (and the base as step 0) on the conflict,
   closed-book and open-book probes, with one engine for all of them (vLLM when installed).
5. **report** — a report per run, a comparison of all of them with each recipe's verdict over
   its seeds, and a text summary: per recipe the mean curve's first, peak and last value, the
   verdict over seeds (:func:`harness.reports.recipes.detect_inversion` on the seeds' folders)
   with the seeds' own verdicts, and the drop's difference from the standard recipe's with an
   interval over seeds. With one seed the verdicts are about that trajectory.

``--model smollm2`` skips pretraining: the same recipes as LoRA on the bundled
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
from typing import TYPE_CHECKING, Sequence

from harness.checkpoints.fingerprints import weights_fingerprint
from harness.conjugates import ENGLISH
from harness.console import aligned
from harness.demo import corpus as C
from harness.demo.recipe import RUNS, Base, DemoData, DemoResult, DemoRun, DemoSettings
from harness.dtypes import cpu_description
from harness.io import atomic_write_text, write_json
from harness.results import RunDirectory
from harness.scoring import GENERATE
from harness.stats import format_p

if TYPE_CHECKING:
    from harness.reports.inversion import Change

log = logging.getLogger("harness")
#: A run folder's record of the base weights it was finetuned from (their fingerprint).
BASE_WEIGHTS = "base_weights.txt"


@contextlib.contextmanager
def _stage(seconds: dict[str, float], name: str):
    """Log a stage's start and record how long it took."""
    log.info("demo: %s", name)
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 1)


def finetune_config(settings: DemoSettings, run: DemoRun, base: Path, data: DemoData, output: Path, seed: int):
    """The :class:`~harness.training.config.FinetuneConfig` of one demo run: its recipe's
    mitigation, finetuned with ``seed``. The counterfactual sample is drawn with the data's
    seed, so that a recipe's seeds differ only in the finetuning itself."""
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
        batch_size=settings.batch_size, max_length=recipe.max_length, add_eos=False, seed=seed,
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


def run_label(name: str, seed: int) -> str:
    """How a demo run (a recipe's seed) is named in folders and charts: ``standard/seed-1``."""
    return f"{name}/seed-{seed}"


def _finetune(settings: DemoSettings, run: DemoRun, seed: int, base: Path, data: DemoData, out: Path) -> Path:
    from harness.training.run import run_finetune

    output = out / "runs" / run_label(run.name, seed)
    # Each seed's recipe.json holds the recipe's hash (every setting but the seed): the seeds
    # of one recipe are its replicates for `harness compare --recipe` and detect_inversion.
    config = finetune_config(settings, run, base, data, output, seed)
    record = output / "finetune_config.json"
    # The base's weights as well as its path: a base pretrained again (other settings, another
    # PRETRAIN_VERSION) replaces the old one in place.
    base_record, base_weights = output / BASE_WEIGHTS, weights_fingerprint(base)
    finished = output / f"checkpoint-{settings.steps}"
    same_config = record.is_file() and json.loads(record.read_text()) == json.loads(
        json.dumps(dataclasses.asdict(config)))
    same_base = base_record.is_file() and base_record.read_text() == base_weights
    if finished.is_dir() and same_config and same_base:
        log.info("finetune %s: cached", run_label(run.name, seed))
    else:
        # An interrupted or differently configured run is redone from the start, and its old
        # results go with it (their samples are another model's).
        if finished.is_dir():
            log.info("finetune %s: redone (%s)", run_label(run.name, seed),
                     "other settings" if not same_config else "its base has other weights now"
                     if base_record.is_file() else f"made before runs recorded their base weights ({BASE_WEIGHTS})")
        shutil.rmtree(output, ignore_errors=True)
        shutil.rmtree(out / "results" / run_label(run.name, seed), ignore_errors=True)
        log.info("finetune %s: %s, %d steps", run_label(run.name, seed), run.title, settings.steps)
        run_finetune(config)
        atomic_write_text(base_record, base_weights)
    # The base model is the run's step 0: a link, so a sweep over the run folder includes it.
    step0 = output / "checkpoint-0"
    if not step0.exists():
        step0.symlink_to(base.resolve(), target_is_directory=True)
    return output


def _evaluate(settings: DemoSettings, run_folders: dict[str, Path], out: Path) -> dict[str, Path]:
    """Every checkpoint of each run (label -> its folder) with one engine; label -> results folder."""
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


def _spread(values: Sequence[float]) -> str:
    """The seeds' range: ``.196–.262``."""
    return f"{_share(min(values))}–{_share(max(values))}"


def _drop(change: Change) -> str:
    """A drop with the bound and p-value that made its verdict (or why none could)."""
    if not change.resolvable:
        return str(change)
    return f"{change.value:+.3f} (>= {change.lower:+.3f}, {format_p(change.p_value)})"


def _final_accuracy(path: Path, task: str, condition: str) -> float | None:
    """Accuracy on ``task``'s ``condition`` (greedy, English prompt) at the run's last step."""
    summary = RunDirectory(path).read_summary()
    last_step = max((r.step for r in summary if r.step is not None), default=None)
    values = [r.value for r in summary if r.task == task and r.condition == condition and r.metric == "accuracy"
              and r.mode == GENERATE and r.step == last_step and r.conjugate == ENGLISH]
    return values[0] if values else None


def _over_seeds(values: Sequence[float | None]) -> str:
    """One value, or the mean over seeds with their range."""
    known = [value for value in values if value is not None]
    if not known:
        return "n/a"
    if len(values) == 1:
        return _share(known[0])
    return f"{_share(sum(known) / len(known))} [{_spread(known)}]"


def _summary(settings: DemoSettings, folders: dict[str, list[Path]], results: dict[str, list[Path]],
             bases: Sequence[Base]) -> tuple[str, list[tuple[str, ...]]]:
    """The demo's result as text and as the table's rows (a header, then a row a recipe, with its
    verdict on the conflict probe and its closed-book and open-book accuracy at the last step);
    with several seeds the verdicts are about each recipe over its seeds
    (:func:`~harness.reports.recipes.detect_inversion` given the seeds' folders), with the
    seeds' own verdicts and each recipe's drop against the first recipe's; with one seed they
    are about each run's trajectory. The text lists each recipe's setup below the table."""
    from harness.reports.inversion import INVERSION_METHOD
    from harness.reports.mitigations import MITIGATION_METHOD, recipe_difference
    from harness.reports.recipes import RECIPE_METHOD, detect_inversion

    recipe = settings.recipe
    seeds = settings.seeds
    titles = {r.name: r.title for r in RUNS}
    several = len(seeds) > 1
    verdicts = {name: detect_inversion(paths if several else paths[0], recipe.conflict_task)
                for name, paths in results.items()}
    accuracy = {name: tuple(_over_seeds([_final_accuracy(path, *book) for path in paths])
                            for book in (recipe.closed_book, recipe.open_book)) for name, paths in results.items()}
    books = ("closed-book", recipe.open_book[1].replace("_", "-"))
    reference = next(iter(verdicts))
    if several:
        rows = [("recipe", "first", "peak (step) [seeds' range]", "last [seeds' range]", "drop (lower bound, p)",
                 "verdict", "per seed", f"drop − {reference}'s [95% CI]", *books)]
        for name, verdict in verdicts.items():
            peak = verdict.peak_index
            against = ("reference" if name == reference else
                       str(recipe_difference(verdict, verdicts[reference], name, reference).drop))
            rows.append((name, _share(verdict.curve[0]),
                         f"{_share(verdict.curve[peak])} ({verdict.checkpoints[peak].step}) "
                         f"[{_spread([s.peak for s in verdict.per_seed])}]",
                         f"{_share(verdict.curve[-1])} [{_spread([s.last for s in verdict.per_seed])}]",
                         _drop(verdict.drop), verdict.verdict, verdict.seed_verdicts, against, *accuracy[name]))
        n = next(iter(verdicts.values())).per_seed[0].n
        what = (f"over {len(seeds)} finetuning seeds per recipe ({', '.join(map(str, seeds))}; the mean over seeds, "
                "the seeds' range in brackets)")
        method = f"Verdicts about each recipe, {RECIPE_METHOD}. Against {reference}: {MITIGATION_METHOD}."
        per_seed = ["Per seed:", *(f"- {run_label(name, seed)}: {one.verdict}; first {_share(one.first)}, peak "
                                   f"{_share(one.peak)} ({one.peak_checkpoint.step}), last {_share(one.last)}; "
                                   f"drop {_drop(one.drop)}"
                                   for name, verdict in verdicts.items()
                                   for seed, one in zip(seeds, verdict.per_seed)), ""]
    else:
        rows = [("run", "first", "peak [95% CI] (step)", "last", "drop (lower bound, p)", "verdict", *books)]
        for name, verdict in verdicts.items():
            rows.append((name, _share(verdict.first),
                         f"{_share(verdict.peak)} [{_share(verdict.peak_ci[0])}, {_share(verdict.peak_ci[1])}] "
                         f"({verdict.peak_checkpoint.step})", _share(verdict.last), _drop(verdict.drop),
                         verdict.verdict, *accuracy[name]))
        n = next(iter(verdicts.values())).n
        what = f"one finetuning seed ({seeds[0]}): each verdict is about that one trajectory"
        method = f"Verdicts: {INVERSION_METHOD}."
        per_seed = []
    setups = [f"- {name}: {titles[name]}; {_run_setup(settings, paths[0])}" for name, paths in folders.items()]
    return "\n".join([
        f"Context reliance on {recipe.conflict_task} (context_hit_rate: the context's answer is in the greedy "
        f"output; n={n} conflicts at every checkpoint), {what}, and accuracy at the last step:", "",
        aligned(rows), "", method, "", *per_seed, *setups, "",
        " ".join([*(base.description for base in bases), recipe.base_note]).strip(), settings.caveats]), rows


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
    from harness.reports.recipes import recipe_verdicts
    from harness.reports.report import write_report
    from harness.reports.runs import RunResults

    seconds: dict[str, float] = {}
    recipe = settings.recipe
    seeds = settings.seeds
    with _stage(seconds, recipe.base_stage):
        if settings.vary_base:
            bases = {seed: recipe.make_base(settings, out, seed) for seed in seeds}
        else:
            shared = recipe.make_base(settings, out, None)
            bases = {seed: shared for seed in seeds}
    with _stage(seconds, "writing the instruction-tuning data"):
        data = recipe.write_data(settings, out)
    folders: dict[str, list[Path]] = {}
    with _stage(seconds, "instruction tuning"):
        for run in [r for r in RUNS if r.name in settings.runs]:
            folders[run.name] = [_finetune(settings, run, seed, bases[seed].path, data, out) for seed in seeds]
    with _stage(seconds, "evaluating every checkpoint"):
        evaluated = _evaluate(settings, {run_label(name, seed): folder for name, paths in folders.items()
                                         for seed, folder in zip(seeds, paths)}, out)
    results = {name: [evaluated[run_label(name, seed)] for seed in seeds] for name in folders}
    with _stage(seconds, "reports"):
        for path in evaluated.values():
            write_report(path)
        recipes = ({name: recipe_verdicts([RunResults(path) for path in paths]) for name, paths in results.items()}
                   if len(seeds) > 1 else None)
        report = compare([str(p) for p in evaluated.values()], labels=list(evaluated), x="step",
                         output=str(out / "compare"), recipes=recipes)
        summary, rows = _summary(settings, folders, results, list(dict.fromkeys(bases.values())))
    atomic_write_text(out / "summary.txt", summary + "\n")
    write_json(out / "timings.json", seconds)
    return DemoResult(out=out, report=report, summary=summary, seconds=seconds), rows
