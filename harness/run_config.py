"""The settings of a run: what ``harness evaluate`` flags and ``--config`` YAML keys set."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.engine_args import check_engine_options
from harness.errors import RunError
from harness.prompts import FORMATS
from harness.schema import load_config
from harness.scoring import SCORING_MODES

DEFAULT_TASKS = ["capitals", "world_facts", "proverbs", "icl_vs_if"]
#: ``truncate`` values: refuse prompts that do not fit (None), or cut them from the left.
TRUNCATE = (None, "left")
#: Examples per transformers engine call when ``batch_size`` is not set.
DEFAULT_BATCH_SIZE = 64


@dataclass
class RunConfig:
    """Every setting of a run; ``harness evaluate`` flags and ``--config`` YAML keys alike.

    ``limit``: a seeded sample of each task condition, N examples (an int) or a share of them
    (a float below 1), the same for every checkpoint (:func:`harness.plan.limited`).

    ``checkpoints`` is what :func:`harness.checkpoints.discover` takes; with neither it nor
    ``model``, the bundled SmolLM2-135M-Instruct is evaluated. ``conjugates``/``modes``
    restrict what each task declares (None: all it declares). ``backend_options`` are passed
    to the engine (vLLM: ``max_model_len``, ``gpu_memory_utilization``, ``dtype``, ...).

    Engine calls: ``batch_size`` examples at a time when set; otherwise 64 for transformers
    and up to ``flush_every`` for vLLM, whose scheduler uses as many requests as it is given.
    Results reach disk after every call, so a kill loses at most one call's work.

    ``workers``: spread the checkpoints over that many Ray actors, each owning one engine for
    its whole life (None: one engine in this process); ``ray_address`` joins an existing Ray
    cluster instead of starting a local one.

    ``follow``: evaluate the checkpoints of the ``checkpoints`` run folder as a training run
    writes them, checking every ``poll`` seconds, until ``until_step``, ``until_file`` exists,
    the final model is written, or ``idle_timeout`` seconds pass with nothing new
    (:mod:`harness.follow`). ``log_to``: trackers that receive every summary value at the
    checkpoint's training step (``tensorboard=DIR``, ``wandb``, ``wandb=RUN_ID``).

    Resuming: ``overwrite`` lists checkpoint labels whose earlier samples are discarded and
    evaluated again (a label whose weights, engine or dtype changed is otherwise refused);
    ``verify_weights`` adds a full content hash of every weight file to each checkpoint's
    identity. ``truncate``: ``None`` refuses prompts longer than the model's window before
    the sweep starts; ``"left"`` cuts them from the left and marks their samples.
    """

    output: str = "results/run"
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    checkpoints: str | list[str] | None = None
    model: str | None = None
    base_model: str | None = None
    backend: str = "auto"
    format: str = "plain"
    conjugates: list[str] | None = None
    modes: list[str] | None = None
    limit: int | float | None = None
    seed: int = 0
    batch_size: int | None = None
    flush_every: int = 1024
    bootstrap_resamples: int = 1000
    include_path: list[str] = field(default_factory=list)
    trust_remote_code: bool = False
    backend_options: dict[str, Any] = field(default_factory=dict)
    workers: int | None = None
    ray_address: str | None = None
    follow: bool = False
    poll: float = 10.0
    until_step: int | None = None
    until_file: str | None = None
    idle_timeout: float | None = None
    log_to: list[str] = field(default_factory=list)
    overwrite: list[str] = field(default_factory=list)
    verify_weights: bool = False
    truncate: str | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        """Read a run config file; ``overrides`` (from the command line) win over it."""
        return load_config(cls, path, RunError, **overrides)

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise RunError(f"format: unknown prompt format {self.format!r} (expected: {', '.join(FORMATS)})")
        for mode in self.modes or []:
            if mode not in SCORING_MODES:
                raise RunError(f"modes: unknown mode {mode!r} (expected: {', '.join(SCORING_MODES)})")
        if isinstance(self.limit, float) and not 0 < self.limit < 1:
            raise RunError(f"limit: a share of the examples lies between 0 and 1, got {self.limit}")
        if isinstance(self.limit, int) and self.limit < 1:
            raise RunError("limit: must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise RunError(f"workers: must be at least 1, got {self.workers}")
        if self.ray_address is not None and self.workers is None:
            raise RunError("ray_address: goes with workers (--workers N)")
        if self.follow and not self.checkpoints:
            raise RunError("follow: give the training run's folder to follow (--checkpoints RUN_DIR --follow)")
        if self.poll <= 0:
            raise RunError(f"poll: must be a positive number of seconds, got {self.poll}")
        for key in ("until_step", "until_file", "idle_timeout"):
            if getattr(self, key) is not None and not self.follow:
                raise RunError(f"{key}: goes with follow (--follow)")
        for key in ("batch_size", "flush_every"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise RunError(f"{key}: must be at least 1")
        if self.checkpoints and self.model:
            raise RunError("give --checkpoints or --model, not both")
        if self.truncate not in TRUNCATE:
            raise RunError(f"truncate: {self.truncate!r} is not a way to truncate (expected: left, or none to refuse)")
        # Checked here, before any model loads; names only vLLM's EngineArgs knows move into engine_kwargs.
        self.backend_options = check_engine_options(self.backend_options)
