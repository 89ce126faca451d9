"""Context-reliance evaluation inside a finetuning loop.

:class:`ContextRelianceCallback` is a ``transformers.TrainerCallback`` (so it works with
``Trainer`` and its subclasses, TRL's ``SFTTrainer`` included); :func:`evaluate_model` does
one evaluation of a live model for custom training loops. Both write the results folder of
``harness evaluate`` (``run.json``, ``samples/<label>/<task>.jsonl``, ``summary.jsonl``), so
``harness report`` and ``compare`` read them as they read a sweep.

Two ways to evaluate:

- **live** (``backend="hf"``): the model being trained is scored in-process through
  :meth:`harness.backends.hf.HFBackend.from_model`, nothing saved. Every ``every_n_steps``
  steps and at the last step (labels ``step-N``), or after each save (``on_save=True``,
  labelled like the saved folder, ``checkpoint-N``, so a later ``harness evaluate`` into the
  same results folder skips them).
- **followed** (``on_save=True, follow=True``; the default for ``backend="vllm"``): training
  never waits for evaluation. A follower process (``harness evaluate --follow``, its own
  engine kept warm for the whole run; :mod:`harness.training.evaluator`) evaluates each
  checkpoint the trainer saves as soon as it is complete; ``on_save`` returns at once. At
  the end of training the callback tells the follower no more checkpoints will come, waits
  for it (``wait=False``: leaves it to finish on its own) and appends its metrics to
  ``state.log_history`` at each checkpoint's step. With vLLM on the training GPU, give the
  follower a small ``gpu_memory_utilization`` in ``backend_options``. A checkpoint the follower has not evaluated yet is kept
  from ``save_total_limit`` rotation (at most ``max_held`` beyond the limit; past that the
  oldest goes anyway, with a warning), by the marker-file protocol of
  :mod:`harness.checkpoints.holds` (:mod:`harness.training.keep`); the follower logs how far it
  lags behind training (:mod:`harness.sweep.lag`), and those values reach ``state.log_history``.

With ``at_start`` (default) the starting model is evaluated first: as ``step-0`` live; saved
as ``checkpoint-0`` when followed, so that the follower sees it like any other save.
``waited`` is how long the training loop spent in the callback (seconds), ``waited_at_end``
how long ``on_train_end`` waited for the follower.

**Training is unchanged.** Evaluation runs in eval mode without gradients, every module's
train/eval flag is put back as it was (the HF engine does both), and the Python, NumPy,
torch and CUDA random states are saved and restored around it, so dropout masks and data
order after an evaluation are those of a run without the callback. Only the main process
evaluates (data-parallel runs wait for it; sharded models are not supported).

**Metrics in the trainer's log.** Each evaluation's summary values are logged as
``ctx/<task>/<condition>/<metric>`` (``ctx/capitals/conflicting/context_hit_rate``); a conjugate
other than English adds its name before the metric
(``ctx/capitals/conflicting/fr/context_hit_rate``). Given the trainer (``trainer=``), the
callback logs through ``Trainer.log``: they land in ``state.log_history`` (and so in every
``trainer_state.json``) and every reporting integration (W&B, TensorBoard, the console)
receives them. A callback cannot reach the trainer otherwise, so without ``trainer=`` the
values only go to ``state.log_history`` (a warning says so)::

    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.add_callback(ContextRelianceCallback(tasks=["capitals"], every_n_steps=25, trainer=trainer))
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from transformers import TrainerCallback

from harness.backends import make_backend
from harness.backends.hf import HFBackend
from harness.checkpoints import Checkpoint, discover
from harness.errors import RunError
from harness.results import RunDirectory, SummaryRow
from harness.sweep.config import RunConfig
from harness.sweep.sweep import Sweep
from harness.sweep.trackers import log_metrics
from harness.training.evaluator import EvaluatorProcess, save_starting_model
from harness.training.keep import MAX_HELD, CheckpointKeeper

log = logging.getLogger("harness")

LIVE_BACKEND, SAVED_BACKEND = "hf", "vllm"


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Put the Python, NumPy, torch and (initialised) CUDA random states back afterwards."""
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def model_name(model: Any) -> str:
    """The folder or hub name a (possibly PEFT-wrapped) model was loaded from."""
    return getattr(model, "name_or_path", None) or type(model).__name__


def _evaluate(sweep: Sweep, backend: Any, checkpoint: Checkpoint, *, load: bool) -> list[SummaryRow]:
    with preserved_rng():
        return sweep.evaluate_checkpoint(checkpoint, backend, load=load, progress=False)


def evaluate_model(model: Any, tokenizer: Any, tasks: Sequence[str], *, output: str | Path, step: int,
                   label: str | None = None, **settings: Any) -> dict[str, float]:
    """Evaluate a live model on ``tasks`` as checkpoint ``label`` (default ``step-<step>``)
    of the results folder ``output``; return the metrics under their log names.

    For custom training loops: call it every N steps, log what it returns. ``settings`` are
    :class:`harness.sweep.config.RunConfig` fields (``format``, ``conjugates``, ``modes``,
    ``limit``, ``batch_size``...); ``backend_options`` go to
    :meth:`~harness.backends.hf.HFBackend.from_model` (``batch_size``, ``max_model_len``).
    Training state is left as it was (module docstring). A label already in ``output`` is
    not evaluated again (resume) and its stored metrics are returned — if its samples were made
    with this very model (its parameters' fingerprint); another model under the same label is
    a :class:`~harness.errors.RunError`.
    """
    name = model_name(model)
    sweep = Sweep(RunConfig(output=str(output), tasks=list(tasks), model=name, backend=LIVE_BACKEND, **settings))
    backend = HFBackend.from_model(model, tokenizer, **sweep.config.backend_options)
    try:
        rows = _evaluate(sweep, backend, Checkpoint(label=label or f"step-{step}", step=step, model=name),
                         load=False)
        sweep.finish()
    finally:
        sweep.close()
    return log_metrics(rows)


class ContextRelianceCallback(TrainerCallback):
    """Evaluates context reliance during training (module docstring).

    Args:
        tasks: task names or files, as ``harness evaluate --tasks``.
        every_n_steps: evaluate the live model every N optimizer steps and at the last step.
        on_save: evaluate each saved checkpoint instead.
        follow: hand the saved checkpoints to a follower process instead of evaluating them in
            the training process (default: yes for vLLM, no for transformers).
        wait: at the end of training, wait for the follower to finish (default True).
        at_start: also evaluate the starting model before the first step.
        backend: ``"hf"`` or ``"vllm"``.
        output: results folder; default ``<args.output_dir>/context-reliance``. A run that
            starts from step 0 refuses a folder that already holds results (a resumed run
            continues it).
        format, conjugates, modes, limit: as for ``harness evaluate``.
        trainer: the trainer, so metrics reach its reporting integrations (module docstring).
        tokenizer: for the HF engine; default the trainer's ``processing_class``.
        max_held: followed: checkpoints not evaluated yet are kept from ``save_total_limit``
            rotation, at most this many beyond the limit (:mod:`harness.training.keep`).
        run_settings: other :class:`~harness.sweep.config.RunConfig` fields (``batch_size``,
            ``seed``, ``backend_options``: engine options, ``include_path``, ``log_to``...).
    """

    def __init__(self, tasks: Sequence[str], *, every_n_steps: int | None = None, on_save: bool = False,
                 follow: bool | None = None, wait: bool = True, at_start: bool = True,
                 backend: str = LIVE_BACKEND, output: str | Path | None = None, format: str = "plain",
                 conjugates: Sequence[str] | None = None, modes: Sequence[str] | None = None,
                 limit: int | None = None, trainer: Any = None, tokenizer: Any = None, max_held: int = MAX_HELD,
                 **run_settings: Any):
        if (every_n_steps is None) == (not on_save):
            raise ValueError("ContextRelianceCallback: give exactly one of every_n_steps and on_save=True")
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError("ContextRelianceCallback: every_n_steps must be at least 1")
        if backend not in (LIVE_BACKEND, SAVED_BACKEND):
            raise ValueError(f"ContextRelianceCallback: backend must be {LIVE_BACKEND!r} or {SAVED_BACKEND!r}")
        if backend == SAVED_BACKEND and not on_save:
            raise ValueError("ContextRelianceCallback: vLLM evaluates saved checkpoints; use on_save=True")
        self.follow = backend == SAVED_BACKEND if follow is None else follow
        if self.follow and not on_save:
            raise ValueError("ContextRelianceCallback: a follower evaluates saved checkpoints; use on_save=True")
        self.config = RunConfig(
            tasks=list(tasks), backend=backend, format=format, limit=limit,
            conjugates=None if conjugates is None else list(conjugates),
            modes=None if modes is None else list(modes), **run_settings,
        )
        self.config.validate()
        self.every_n_steps, self.on_save_only, self.at_start, self.wait = every_n_steps, on_save, at_start, wait
        self.output, self.trainer, self.tokenizer = output, trainer, tokenizer
        self.sweep: Sweep | None = None
        self.engine: Any = None
        self.follower: EvaluatorProcess | None = None
        self.keeper = CheckpointKeeper(max_held)
        self.waited = 0.0
        self.waited_at_end = 0.0
        self._warned_no_trainer = False

    @property
    def live(self) -> bool:
        return self.config.backend == LIVE_BACKEND and not self.follow

    # ------------------------------------------------------------------ events

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero:
            return
        start = time.perf_counter()
        output = str(self.output or Path(args.output_dir) / "context-reliance")
        if state.global_step == 0 and RunDirectory(output).read_summary():
            raise RunError(f"{output}: holds results of an earlier run; this training run starts from step 0 "
                           "and would mix them. Use a new output folder")
        tokenizer = self.tokenizer or processing_class
        if self.follow:
            if self.at_start and state.global_step == 0:
                save_starting_model(model, tokenizer, state, Path(args.output_dir))
            self.follower = EvaluatorProcess.start(self.config, run_dir=args.output_dir, output=output)
            self.keeper.take_over(args)  # save_total_limit: keep what the follower has not evaluated
            self.waited += time.perf_counter() - start
            return
        self.sweep = Sweep(dataclasses.replace(self.config, output=output, model=model_name(model)))
        if self.live:
            if tokenizer is None:
                raise RunError("ContextRelianceCallback: the HF engine needs the tokenizer: pass tokenizer= "
                               "or give the trainer a processing_class")
            self.engine = HFBackend.from_model(model, tokenizer, **self.config.backend_options)
        if self.at_start and state.global_step == 0:
            self._run(state, control, Checkpoint(label="step-0", step=0, model=model_name(model)))
        self.waited += time.perf_counter() - start

    def on_step_end(self, args, state, control, **kwargs):
        if self.sweep is None or self.every_n_steps is None:
            return
        step = state.global_step
        if step % self.every_n_steps == 0 or step >= state.max_steps:
            self._timed(state, control, Checkpoint(label=f"step-{step}", step=step, model=self.sweep.config.model))

    def on_save(self, args, state, control, **kwargs):
        if self.follower is not None:
            self.keeper.rotate(args.output_dir, state.best_model_checkpoint)
        if self.sweep is None or not self.on_save_only:
            return  # followed: the follower finds the checkpoint itself
        # The folder the Trainer just wrote; discovery reads its step, adapter and base model.
        (checkpoint,) = discover(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))
        self._timed(state, control, checkpoint)

    def on_train_end(self, args, state, control, **kwargs):
        if self.follower is not None:
            start = time.perf_counter()
            self.follower.no_more_checkpoints(state.global_step)
            if self.wait:
                self.follower.wait()
                for step, metrics in self.follower.metrics_by_step():
                    state.log_history.append({**metrics, "step": step})
                self.keeper.rotate(args.output_dir, state.best_model_checkpoint)
            self.keeper.give_back(args)
            self.waited_at_end = time.perf_counter() - start
            return
        if self.sweep is None:
            return
        self.sweep.finish()
        if not self.live and self.engine is not None:
            self.engine.close()
        self.engine = None

    # ------------------------------------------------------------------ helpers

    def _timed(self, state, control, checkpoint: Checkpoint) -> None:
        start = time.perf_counter()
        self._run(state, control, checkpoint)
        self.waited += time.perf_counter() - start

    def _run(self, state, control, checkpoint: Checkpoint) -> None:
        if self.engine is None:  # saved checkpoints: one engine for every save, started on first use
            self.engine = make_backend(self.config.backend, trust_remote_code=self.config.trust_remote_code,
                                       **self.config.backend_options)
        metrics = log_metrics(_evaluate(self.sweep, self.engine, checkpoint, load=not self.live))
        if not metrics:  # nothing scored (a checkpoint that failed to load is recorded in run.json)
            return
        if self.trainer is not None:
            # Trainer.log clears control.should_log; put it back, or the step's loss would not
            # be logged (and the next logged loss would average over two windows).
            should_log = control.should_log
            self.trainer.log(metrics)
            control.should_log = should_log
            return
        if not self._warned_no_trainer:
            log.warning("ContextRelianceCallback: no trainer= given; metrics go to state.log_history and %s "
                        "only, not to the reporting integrations", self.sweep.run.path)
            self._warned_no_trainer = True
        state.log_history.append({**metrics, "step": state.global_step})
