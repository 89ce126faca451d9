"""How far a follower lags behind the training run it follows (``harness evaluate --follow``).

After each checkpoint the follower evaluates, :class:`FollowLag` writes one line to the
console log and to ``<output>/logs/follow-lag.jsonl``, at the checkpoint's training step:
how many steps training has saved beyond it (``lag_steps``: the newest saved checkpoint's step
minus this one's) and how long after its save its evaluation finished (``lag_seconds``: now
minus the modification time of its ``trainer_state.json``, which the Trainer writes last).
A lag that grows from line to line means the follower cannot keep up. It also marks the
checkpoint evaluated for the training loop (:mod:`harness.checkpoints.holds`), so a trainer
that keeps checkpoints until evaluated may let it go; a skipped checkpoint is marked too (the
follower has given up on it) but has no lag line.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from harness.checkpoints import TRAINER_STATE, Checkpoint
from harness.checkpoints.holds import mark_evaluated
from harness.checkpoints.sources import TRAINER_CHECKPOINT
from harness.results import SummaryRow

log = logging.getLogger("harness")

LAG_FILE = "follow-lag.jsonl"


def newest_saved_step(run_dir: Path) -> int | None:
    """The step of the newest complete Trainer checkpoint in ``run_dir``."""
    steps = [int(path.name.rsplit("-", 1)[1]) for path in run_dir.glob("checkpoint-*")
             if TRAINER_CHECKPOINT.match(path.name) and (path / TRAINER_STATE).is_file()]
    return max(steps, default=None)


class FollowLag:
    """An observer of a followed sweep (module docstring)."""

    def __init__(self, run_dir: str | Path | list[str], output: str | Path):
        self.run_dir = Path(run_dir[0] if isinstance(run_dir, list) else run_dir)
        self.path = Path(output) / "logs" / LAG_FILE

    def __call__(self, checkpoint: Checkpoint, rows: list[SummaryRow]) -> None:
        mark_evaluated(checkpoint)  # evaluated, or given up on (skipped): the trainer may let it go
        if not rows:  # skipped: no evaluation to lag
            return
        state = Path(checkpoint.adapter or checkpoint.model) / TRAINER_STATE
        try:
            seconds = round(time.time() - state.stat().st_mtime, 1)
        except OSError:  # no trainer state (the final model) or already gone
            seconds = None
        newest = newest_saved_step(self.run_dir)
        steps = None if newest is None or checkpoint.step is None else max(newest - checkpoint.step, 0)
        line = {"label": checkpoint.label, "step": checkpoint.step, "training_step": newest,
                "lag_steps": steps, "lag_seconds": seconds}
        since = "" if seconds is None else f" {seconds} s after it was saved"  # the final model: no save time
        log.info("follow: %s (step %s) evaluated%s; training has saved step %s (%s steps ahead)", checkpoint.label,
                 checkpoint.step, since, newest, steps)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(line) + "\n")


def read_lag(output: str | Path) -> list[dict]:
    """The lag lines a follower wrote into ``output``."""
    path = Path(output) / "logs" / LAG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
