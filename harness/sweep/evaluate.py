"""``harness evaluate`` as a function: every checkpoint of a run config on its tasks.

:func:`evaluate` resolves where the checkpoints come from (:func:`checkpoint_source`: a fixed
list, down-scaled variants, the bundled model, or a training run followed as it saves), makes
the engine, opens the :class:`~harness.sweep.sweep.Sweep`, and evaluates the checkpoints either
on this process's one engine, in step order (:func:`sweep_here`), or on Ray workers
(:mod:`harness.sweep.workers`). Observers and trackers are told each checkpoint's summary.
"""

from __future__ import annotations

import logging
from typing import Sequence

from harness.backends.api import HF, VLLM, Backend
from harness.checkpoints import Checkpoint, discover, interp
from harness.checkpoints.interp import is_interp_spec
from harness.checkpoints.sources import CheckpointSource, FixedCheckpoints, Follower
from harness.errors import RunError
from harness.results import SAMPLES, RunDirectory
from harness.sweep.config import ADAPTIVE, RunConfig
from harness.sweep.lag import FollowLag
from harness.sweep.schedule import sweep_adaptive
from harness.sweep.sweep import Observer, Sweep, select_tasks, sweep_here
from harness.sweep.trackers import make_trackers

log = logging.getLogger("harness")


def resolve_checkpoints(config: RunConfig) -> list[Checkpoint]:
    """The checkpoints a run evaluates (the bundled model when none are given).

    ``prune:`` entries (:mod:`harness.downscaling.specs`) become down-scaled variants and an
    ``interp:`` entry models between a base and a tuned model (:mod:`harness.checkpoints.interp`),
    built here, before any engine starts; a string that starts with ``prune:`` is one such spec
    whole (its sparsity levels are comma-separated).
    """
    if config.checkpoints:
        from harness.downscaling import variants
        from harness.downscaling.specs import is_prune_spec

        entries = [config.checkpoints] if isinstance(config.checkpoints, str) else list(config.checkpoints)
        interpolated = [entry for entry in entries if is_interp_spec(entry)]
        if interpolated and len(interpolated) < len(entries):
            raise RunError("checkpoints: interp: specs cannot be mixed with other checkpoints in one run (its x axis "
                           "is λ); evaluate them into separate --output folders")
        if interpolated:
            return interp.resolve(interpolated, extrapolate=config.extrapolate)
        pruned = [entry for entry in entries if is_prune_spec(entry)]
        if pruned and len(pruned) < len(entries):
            raise RunError("checkpoints: prune: specs cannot be mixed with other checkpoints in one run "
                           "(its x axis is sparsity); evaluate them into separate --output folders")
        if pruned:
            return list(variants.resolve(pruned, config.include_path))
        return discover(config.checkpoints, base_model=config.base_model)
    if config.model:
        return discover(config.model, base_model=config.base_model)
    from harness.checkpoints.bundled import MODEL_NAME, bundled_model_dir

    path = bundled_model_dir()
    log.info("no --model or --checkpoints: evaluating the bundled %s (%s)", MODEL_NAME, path)
    return [Checkpoint(label=MODEL_NAME, step=None, model=str(path))]


def checkpoint_source(config: RunConfig) -> CheckpointSource:
    """Where the run's checkpoints come from: a fixed list, or the run folder followed as a
    training run saves into it (``config.follow``)."""
    if not config.follow:
        return FixedCheckpoints(resolve_checkpoints(config))
    return Follower(config.checkpoints, base_model=config.base_model, poll_seconds=config.poll,
                    until_step=config.until_step, until_file=config.until_file, idle_timeout=config.idle_timeout,
                    complete_marker=config.complete_marker)


def engine_for(config: RunConfig, source: CheckpointSource) -> Backend:
    """The engine ``config.backend`` names, ``auto`` resolved: vLLM if it imports, unless it
    cannot run a checkpoint known up front (an adapter over an architecture it has no LoRA
    for), then transformers, saying why."""
    from harness.backends import make_backend

    options = dict(trust_remote_code=config.trust_remote_code, **config.backend_options)
    backend = make_backend(config.backend, **options)
    if config.backend == "auto" and backend.name == VLLM and isinstance(source, FixedCheckpoints):
        reason = next(filter(None, map(backend.cannot_run, source.checkpoints)), None)
        if reason:
            log.warning("backend auto: using transformers instead: %s", reason)
            backend.close()
            backend = make_backend(HF, **options)
    return backend


def kept(sweep: Sweep) -> str:
    """What an interrupted sweep leaves on disk, in words (the samples it wrote, the
    checkpoints it summarised)."""
    if not sweep.written:
        return f"no sample was written to {sweep.run.path / SAMPLES} by this run; nothing of its work is kept"
    return (f"{sweep.written} samples written to {sweep.run.path / SAMPLES} by this run are kept "
            f"({len(sweep.summary)} checkpoint(s) summarised); run the same command again to resume")


def evaluate(config: RunConfig, *, backend: Backend | None = None, progress: bool = True,
             command_line: Sequence[str] | None = None, observers: Sequence[Observer] = ()) -> RunDirectory:
    """Evaluate every checkpoint of ``config`` on its tasks and write the results folder.

    ``backend`` lets a caller reuse an engine it already has; otherwise one is made from
    ``config.backend`` (``auto`` is resolved before anything is written) and closed at the
    end. With ``config.workers``, the checkpoints are spread over that many Ray actors, each
    with an engine of its own (:mod:`harness.sweep.workers`); ``backend`` then only identifies
    the checkpoints (it loads nothing). With ``config.follow``, checkpoints are evaluated as a
    training run writes them (:mod:`harness.checkpoints.sources`). ``observers`` are called
    after each checkpoint, as are the trackers of ``config.log_to`` (:mod:`harness.sweep.trackers`).
    """
    # A misspelt task or a broken task file is refused before a model is found or loaded.
    tasks = select_tasks(config)
    source = checkpoint_source(config)
    trackers = make_trackers(config.log_to)
    owned = backend is None
    if backend is None:
        backend = engine_for(config, source)
    try:
        sweep = Sweep(config, engine=backend.name, command_line=command_line, tasks=tasks)
        try:
            every = [*observers, *(tracker.log for tracker in trackers)]
            if config.follow:  # marks each checkpoint evaluated and logs how far behind training it is
                every.append(FollowLag(config.checkpoints, config.output))
            if config.workers is not None:
                from harness.sweep.workers import evaluate_on_workers  # Ray: only when asked for

                evaluate_on_workers(sweep, source, backend, observers=every, progress=progress)
            elif config.schedule == ADAPTIVE:
                sweep_adaptive(sweep, source.checkpoints, backend, every, progress=progress)
                sweep.record.engine_stats = backend.stats or None
            else:
                sweep_here(sweep, source, backend, every, progress=progress)
                sweep.record.engine_stats = backend.stats or None  # engine starts, reloads, canaries
            sweep.finish()
        except KeyboardInterrupt:
            log.warning("interrupted: %s", kept(sweep))
            raise
        finally:
            sweep.close()
    finally:
        for tracker in trackers:
            tracker.close()
        if owned:
            backend.close()
    if not sweep.summary:
        reasons = "; ".join(f"{label}: {why}" for label, why in sweep.record.skipped_checkpoints.items())
        raise RunError(f"no checkpoint could be evaluated ({reasons or 'none found'}); see {sweep.run.run_json}")
    return sweep.run
