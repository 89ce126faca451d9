"""Checkpoints kept until evaluated: the marker-file protocol between a follower and a trainer.

A trainer that rotates checkpoints (``save_total_limit``) would delete a checkpoint before a
follower (``harness evaluate --follow``) gets to it. The protocol, for any training loop:

- the follower, once it is done with a checkpoint folder (evaluated, or given up on because it
  does not load), writes the empty file ``.harness-evaluated`` into it (:func:`mark_evaluated`);
- the training loop, when it would delete checkpoints to keep ``save_total_limit``, deletes
  only those with the marker (:func:`is_evaluated`) and keeps the others, at most ``max_held``
  of them beyond the limit; past that bound it deletes the oldest unevaluated ones anyway and
  says so, so that disk use stays bounded and training never waits.

:class:`harness.training.keep.CheckpointKeeper` is this loop side for the HF Trainer (the
``ContextRelianceCallback`` uses it when a follower evaluates the saves).
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.checkpoints.discovery import Checkpoint

log = logging.getLogger("harness")

EVALUATED = ".harness-evaluated"


def mark_evaluated(checkpoint: Checkpoint) -> None:
    """Tell the training loop that ``checkpoint``'s folder may go (a folder already gone, or a
    hub model, is left alone)."""
    folder = Path(checkpoint.adapter or checkpoint.model)
    if folder.is_dir():
        try:
            (folder / EVALUATED).touch()
        except OSError as error:  # a read-only run folder: the trainer keeps it until the bound
            log.warning("%s: could not mark it evaluated (%s)", folder, error)


def is_evaluated(folder: str | Path) -> bool:
    """Whether the follower is done with the checkpoint ``folder``."""
    return (Path(folder) / EVALUATED).is_file()
