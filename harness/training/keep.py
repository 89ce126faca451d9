"""The HF Trainer's side of the keep-until-evaluated protocol (:mod:`harness.checkpoints.holds`).

The Trainer deletes old checkpoints (``save_total_limit``) inside its own save, before any
callback runs, with no hook to veto a deletion. So :class:`CheckpointKeeper` takes rotation
over for the run: it sets ``args.save_total_limit`` to None when training begins, and after
each save (and at the end) deletes, oldest first, the checkpoints beyond the limit that the
follower marked evaluated, never the newest (resuming needs it) nor the best
(``load_best_model_at_end``), using the Trainer's own ordering
(``transformers.trainer_utils.sort_checkpoints``). Unevaluated checkpoints are kept, at most
``max_held`` beyond the limit; past that the oldest of them is deleted anyway, with a warning
that the follower is behind: disk use stays bounded and training never waits. The limit is
put back on ``args`` when training ends.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from transformers.trainer_utils import sort_checkpoints

from harness.checkpoints.holds import is_evaluated

log = logging.getLogger("harness")

#: Unevaluated checkpoints kept beyond save_total_limit by default.
MAX_HELD = 4


class CheckpointKeeper:
    """Rotates a Trainer's checkpoints as ``save_total_limit`` does, keeping those the
    follower has not evaluated yet (module docstring). ``deleted_unevaluated`` lists the
    folders it had to delete before they were evaluated (the bound was hit)."""

    def __init__(self, max_held: int = MAX_HELD):
        if max_held < 0:
            raise ValueError(f"CheckpointKeeper: max_held must be 0 or more, got {max_held}")
        self.max_held = max_held
        self.limit: int | None = None
        self.deleted_unevaluated: list[str] = []

    def take_over(self, args: Any) -> None:
        """Take rotation over from the Trainer (at the start of training)."""
        limit = args.save_total_limit
        self.limit = limit if limit is not None and limit > 0 else None
        if self.limit is not None:
            args.save_total_limit = None

    def give_back(self, args: Any) -> None:
        """Put the limit back on the Trainer's arguments (at the end of training)."""
        if self.limit is not None:
            args.save_total_limit = self.limit

    def rotate(self, run_dir: str | Path, best: str | None = None) -> None:
        """Delete what ``save_total_limit`` would, except unevaluated checkpoints within the bound."""
        if self.limit is None:
            return
        checkpoints = sort_checkpoints(str(run_dir), use_mtime=False)
        protected = {checkpoints[-1]} if checkpoints else set()
        if best is not None:
            protected.add(str(Path(best)))
        excess = len(checkpoints) - max(self.limit, len(protected))
        candidates = [c for c in checkpoints if c not in protected]
        evaluated = [c for c in candidates if is_evaluated(c)]
        for folder in evaluated[:max(excess, 0)]:
            shutil.rmtree(folder, ignore_errors=True)
        excess -= len(evaluated[:max(excess, 0)])
        waiting = [c for c in candidates if not is_evaluated(c)]
        over = min(excess - self.max_held, len(waiting))
        for folder in waiting[:max(over, 0)]:
            log.warning("%s: deleted before the follower evaluated it: %d checkpoints were waiting beyond "
                        "save_total_limit=%d, the bound (max_held=%d); the follower is behind training, give it a "
                        "faster engine, fewer tasks or a smaller --limit, or raise max_held if the disk allows",
                        folder, len(waiting), self.limit, self.max_held)
            shutil.rmtree(folder, ignore_errors=True)
            self.deleted_unevaluated.append(folder)
