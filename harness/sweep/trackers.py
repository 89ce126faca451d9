"""Summary values on training dashboards, at the checkpoint's training step.

Every summary row becomes one scalar named ``ctx/<task>/<condition>/<metric>`` (a conjugate
other than English adds its name before the metric: ``ctx/capitals/conflicting/fr/context_hit_rate``)
— the names the training callback logs under, so a followed run and the callback draw the
same curves. ``harness evaluate --log-to`` takes:

- ``tensorboard=DIR``: TensorBoard event files in DIR (the ``tensorboard`` package);
- ``wandb``: a new W&B run; ``wandb=RUN_ID``: into an existing run, e.g. the training run's
  own (``resume="allow"``). Values are logged against a custom step metric,
  ``train/global_step`` (``define_metric("ctx/*", step_metric="train/global_step")``), so they
  land at the training step even after the training run's own steps have moved on. W&B's
  project, entity and mode come from its usual environment variables (``WANDB_PROJECT``,
  ``WANDB_MODE=offline``...). The run is finished when the sweep ends, but W&B's service
  writes the last of an offline run file just after, in its own process: the file is complete
  when the process exits (W&B's exit hook waits for it) or after ``wandb.teardown()``, so
  ``wandb sync`` it then.

Both packages are optional (the ``tracking`` extra); asking for one that is not installed
is one clear error before anything is evaluated.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, Sequence

from harness.checkpoints import Checkpoint
from harness.conjugates import ENGLISH
from harness.errors import RunError
from harness.results import SummaryRow

log = logging.getLogger("harness")

LOG_PREFIX = "ctx"
STEP_METRIC = "train/global_step"


def metric_key(row: SummaryRow) -> str:
    """The log name of a summary row (module docstring)."""
    conjugate = [] if row.conjugate == ENGLISH else [row.conjugate]
    return "/".join([LOG_PREFIX, row.task, row.condition, *conjugate, row.metric])


def log_metrics(rows: Sequence[SummaryRow]) -> dict[str, float]:
    """Summary rows as a ``{name: value}`` dict for a logger (undefined values left out)."""
    return {metric_key(row): row.value for row in rows if row.value is not None}


class Tracker(Protocol):
    """Receives each checkpoint's summary rows once they are written (none for a skipped one)."""

    def log(self, checkpoint: Checkpoint, rows: list[SummaryRow]) -> None: ...

    def close(self) -> None: ...


def known_step(checkpoint: Checkpoint) -> int | None:
    """The training step to log ``checkpoint``'s values at; None, with a warning, when it has no
    known step (a hand-named folder): logging it at 0 would overwrite the base model's values."""
    if checkpoint.step is None:
        log.warning("log_to: checkpoint %s has no known training step; its values are not logged to the "
                    "dashboard (they are in the results folder)", checkpoint.label)
    return checkpoint.step


class TensorBoardTracker:
    """Scalars in TensorBoard event files in ``folder``."""

    def __init__(self, folder: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RunError("log_to: tensorboard needs the tensorboard package "
                           "(pip install 'ift-harness[tracking]' or pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=folder)

    def log(self, checkpoint: Checkpoint, rows: list[SummaryRow]) -> None:
        if not rows:  # a skipped checkpoint: nothing to log
            return
        step = known_step(checkpoint)
        if step is None:
            return
        for name, value in log_metrics(rows).items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """Values in a W&B run (a new one, or ``run_id`` resumed), against ``train/global_step``."""

    def __init__(self, run_id: str | None):
        try:
            import wandb
        except ImportError:
            raise RunError("log_to: wandb needs the wandb package "
                           "(pip install 'ift-harness[tracking]' or pip install wandb)") from None
        # A run of its own even when the caller (a training script) has one open: wandb.init
        # would otherwise hand back the caller's run, and close() would finish it.
        self.run: Any = wandb.init(id=run_id, resume="allow" if run_id else None, reinit="create_new")
        self.run.define_metric(STEP_METRIC)
        self.run.define_metric(f"{LOG_PREFIX}/*", step_metric=STEP_METRIC)

    def log(self, checkpoint: Checkpoint, rows: list[SummaryRow]) -> None:
        if not rows:  # a skipped checkpoint: nothing to log
            return
        step = known_step(checkpoint)
        if step is not None:
            self.run.log({**log_metrics(rows), STEP_METRIC: step})

    def close(self) -> None:
        self.run.finish()


def make_trackers(specs: Sequence[str]) -> list[Tracker]:
    """The trackers ``--log-to`` names (module docstring); a bad spec or a missing package is
    a :class:`~harness.errors.RunError`."""
    trackers: list[Tracker] = []
    for spec in specs:
        name, _, value = spec.partition("=")
        if name == "tensorboard" and value:
            trackers.append(TensorBoardTracker(value))
        elif name == "wandb":
            trackers.append(WandbTracker(value or None))
        else:
            raise RunError(f"log_to: {spec!r}: expected tensorboard=DIR, wandb or wandb=RUN_ID")
    return trackers
