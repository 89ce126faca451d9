"""Where a sweep's checkpoints come from: a fixed list, or a training run followed as it saves.

A sweep pulls checkpoints from a :class:`CheckpointSource` (:class:`FixedCheckpoints` or
:class:`Follower`): ``poll()`` returns the checkpoints ready to evaluate since the last call,
in step order, and the checkpoints that went away before they could be; ``finished`` says
when no more will come; ``total`` is how many there will be, when that is known up front.

Following (``harness evaluate --checkpoints RUN_DIR --follow``): every ``poll`` seconds the run
folder is discovered again. A checkpoint is ready once its files pass
:func:`harness.checkpoints.inspect_checkpoint` (a config and weights) and it is **complete**
by the first of these rules that applies to it:

1. its ``trainer_state.json`` exists: the HF Trainer writes the weights, the tokenizer and the
   optimizer state first and that file last;
2. in a run where the Trainer saved before (some checkpoint has ``trainer_state.json``), a
   ``checkpoint-N`` without that file is still being written: it waits for it;
3. ``complete_marker`` (``--complete-marker NAME``) is named: the folder holds a file of that
   name, which the user's saving code writes last (custom loops, TRL scripts, conversions);
4. otherwise (``save_pretrained`` folders, the final model ``trainer.save_model`` writes at the
   top of the run folder): the sizes and modification times of its files have not changed
   for ``settle_seconds`` (twice the poll interval, 2 s at least).

Following stops after the checkpoint of step ``until_step`` (or once one past it appears), once
``until_file`` exists and every complete checkpoint has been handed out (the training
callback writes it when training ends), once the final model is handed out, or after
``idle_timeout`` seconds without a new checkpoint. A checkpoint seen but deleted before it
was complete or evaluated (the Trainer's ``save_total_limit``) is reported as gone, and so is
one still incomplete when following stops, with what it was waiting for: the sweep records
both as skipped, never drops them.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from harness.checkpoints import TRAINER_STATE, Checkpoint, discover, inspect_checkpoint
from harness.errors import CheckpointError

log = logging.getLogger("harness")

#: The folders HF Trainer saves (transformers.trainer_utils.PREFIX_CHECKPOINT_DIR).
TRAINER_CHECKPOINT = re.compile(r"^checkpoint-\d+$")
#: Why a followed checkpoint could not be evaluated when it went away.
DELETED = "deleted before it was evaluated (the trainer's save_total_limit?)"


#: What a poll returns: the checkpoints ready, and those gone before they could be, with why.
Polled = tuple[list[Checkpoint], list[tuple[Checkpoint, str]]]


class CheckpointSource(Protocol):
    """Where a sweep gets its checkpoints (module docstring)."""

    #: Seconds to wait between polls while the source is not finished.
    poll_seconds: float
    #: Whether no more checkpoints will come.
    finished: bool

    @property
    def total(self) -> int | None:
        """How many checkpoints the source will give in all; None when not known up front."""
        ...

    def poll(self) -> Polled:
        """The checkpoints ready since the last poll (step order) and those gone before they could be."""
        ...


@dataclass
class FixedCheckpoints:
    """A list of checkpoints known up front: all of them at the first poll."""

    checkpoints: Sequence[Checkpoint]
    poll_seconds: float = 0.0
    finished: bool = False

    @property
    def total(self) -> int:
        return len(self.checkpoints)

    def poll(self) -> Polled:
        ready, self.finished = ([] if self.finished else list(self.checkpoints)), True
        return ready, []


@dataclass
class Follower:
    """A training run's folder, discovered again at every poll (module docstring)."""

    spec: str | list[str]
    base_model: str | None = None
    poll_seconds: float = 10.0
    until_step: int | None = None
    until_file: str | None = None
    idle_timeout: float | None = None
    complete_marker: str | None = None
    finished: bool = False
    _handed: set[str] = field(default_factory=set)
    _waiting: dict[str, tuple[Checkpoint, str]] = field(default_factory=dict)  # and what each lacks
    _trainer_run: bool = False
    _signatures: dict[str, tuple[tuple, float]] = field(default_factory=dict)
    _last_new: float = field(default_factory=time.monotonic)

    total = None  # a training run still saving: not known

    def poll(self) -> Polled:
        """The checkpoints that became complete since the last poll (step order), and those
        that were deleted before they were."""
        until_file_seen = self.until_file is not None and Path(self.until_file).exists()
        found = {c.label: c for c in self._discover() if c.label not in self._handed}
        gone = [(self._waiting.pop(label)[0], DELETED) for label in list(self._waiting) if label not in found]
        self._trainer_run = self._trainer_run or any(
            (Path(c.adapter or c.model) / TRAINER_STATE).is_file() for c in found.values())
        ready = []
        for label, checkpoint in found.items():
            missing = self._missing(checkpoint)
            if missing is None:
                ready.append(checkpoint)
                self._waiting.pop(label, None)
            else:
                self._waiting[label] = checkpoint, missing
        ready.sort(key=lambda c: (c.step is None, c.step or 0, c.label))
        beyond = [c for c in ready if self._after_the_last_step(c)]
        ready = [c for c in ready if c not in beyond]
        self._handed.update(c.label for c in ready)
        now = time.monotonic()
        if ready:
            self._last_new = now
        reached = self.until_step is not None and any(c.step is not None and c.step >= self.until_step for c in ready)
        idle = self.idle_timeout is not None and now - self._last_new > self.idle_timeout
        self.finished = (
            reached or bool(beyond)
            or any(_is_final(c) for c in ready)
            or (until_file_seen and not self._waiting)
            or idle
        )
        if self.finished:  # what is still being written will not be evaluated: say so
            stop = f"no new checkpoint for {self.idle_timeout:g} s" if idle else "following stopped"
            for _, (checkpoint, missing) in sorted(self._waiting.items()):
                if not self._after_the_last_step(checkpoint):
                    gone.append((checkpoint, f"still incomplete when {stop}: {missing}"))
            self._waiting.clear()
        return ready, gone

    def _after_the_last_step(self, checkpoint: Checkpoint) -> bool:
        return self.until_step is not None and checkpoint.step is not None and checkpoint.step > self.until_step

    def _discover(self) -> list[Checkpoint]:
        try:
            return discover(self.spec, base_model=self.base_model)
        except CheckpointError:  # nothing saved yet (or the folder does not exist yet)
            return []

    @property
    def settle_seconds(self) -> float:
        return max(2 * self.poll_seconds, 2.0)

    def _missing(self, checkpoint: Checkpoint) -> str | None:
        """What ``checkpoint`` still lacks to be complete (module docstring), None when nothing."""
        folder = Path(checkpoint.adapter or checkpoint.model)
        problem = inspect_checkpoint(folder)
        if problem is not None:
            return problem
        if (folder / TRAINER_STATE).is_file():
            return None
        if self._trainer_run and TRAINER_CHECKPOINT.match(folder.name):
            return f"no {TRAINER_STATE} yet (the Trainer writes it last)"
        if self.complete_marker is not None:
            return None if (folder / self.complete_marker).exists() else f"no {self.complete_marker} yet"
        signature = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))
        now = time.monotonic()
        seen, since = self._signatures.get(checkpoint.label, (None, now))
        if seen != signature:
            self._signatures[checkpoint.label] = (signature, now)
        if seen != signature or now - since < self.settle_seconds:
            return f"its files were still changing (complete once unchanged for {self.settle_seconds:g} s)"
        return None


def _is_final(checkpoint: Checkpoint) -> bool:
    """The model ``trainer.save_model`` writes at the end of a run (discovery labels it)."""
    return checkpoint.label == "final"
