"""The settings of a run: what ``harness evaluate`` flags and ``--config`` YAML keys set."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import RunError
from harness.prompts import FORMATS
from harness.schema import load_config
from harness.scoring import SCORING_MODES

DEFAULT_TASKS = ["capitals", "world_facts", "proverbs", "icl_vs_if"]
#: ``truncate`` values: refuse prompts that do not fit (None), or cut them from the left.
TRUNCATE = (None, "left")


@dataclass
class RunConfig:
    """Every setting of a run; ``harness evaluate`` flags and ``--config`` YAML keys alike.

    ``checkpoints`` is what :func:`harness.checkpoints.discover` takes; with neither it nor
    ``model``, the bundled SmolLM2-135M-Instruct is evaluated. ``conjugates``/``modes``
    restrict what each task declares (None: all it declares). ``backend_options`` are passed
    to the engine (vLLM: ``max_model_len``, ``gpu_memory_utilization``, ``dtype``, ...).

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
    limit: int | None = None
    seed: int = 0
    batch_size: int = 64
    bootstrap_resamples: int = 1000
    include_path: list[str] = field(default_factory=list)
    trust_remote_code: bool = False
    backend_options: dict[str, Any] = field(default_factory=dict)
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
        if self.limit is not None and self.limit < 1:
            raise RunError("limit: must be at least 1")
        if self.checkpoints and self.model:
            raise RunError("give --checkpoints or --model, not both")
        if self.truncate not in TRUNCATE:
            raise RunError(f"truncate: {self.truncate!r} is not a way to truncate (expected: left, or none to refuse)")
