"""An evaluator process beside a training run: ``harness evaluate --follow`` (whose checkpoint
source is a :class:`~harness.checkpoints.sources.Follower` of the trainer's folder), started and
stopped by the training callback, so that training never waits for evaluation.

The evaluator gets the run's settings in a config file in its results folder
(``follow-config.yaml``), follows the trainer's output folder, and stops once the
callback writes the until-file (``.training-finished``, holding the last step) and every
complete checkpoint has been evaluated. Its console output goes to
``<results>/logs/follower.log``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from harness.checkpoints import TRAINER_STATE
from harness.errors import RunError
from harness.io import atomic_write_text
from harness.results import RunDirectory
from harness.sweep.config import RunConfig
from harness.sweep.lag import read_lag
from harness.sweep.trackers import log_metrics

CONFIG_FILE = "follow-config.yaml"
UNTIL_FILE = ".training-finished"
LOG_FILE = "follower.log"
#: The starting model, saved where the follower finds it with the trainer's own saves.
START = "checkpoint-0"


def save_starting_model(model: Any, tokenizer: Any, state: Any, run_dir: Path) -> Path:
    """Save the model training starts from as ``checkpoint-0`` of the run folder, its
    ``trainer_state.json`` last (that is when a follower takes a checkpoint to be complete)."""
    folder = run_dir / START
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    state.save_to_json(str(folder / TRAINER_STATE))
    return folder


class EvaluatorProcess:
    """A ``harness evaluate --follow`` process for one training run (module docstring)."""

    def __init__(self, process: subprocess.Popen, output: Path, until_file: Path):
        self.process, self.output, self.until_file = process, output, until_file

    @classmethod
    def start(cls, config: RunConfig, *, run_dir: str | Path, output: str | Path, poll: float = 2.0) -> "EvaluatorProcess":
        """Start following ``run_dir`` into ``output`` with ``config``'s tasks and engine."""
        output = Path(output)
        until_file = output / UNTIL_FILE
        until_file.unlink(missing_ok=True)
        followed = dataclasses.replace(config, output=str(output), checkpoints=str(run_dir), model=None,
                                       follow=True, poll=poll, until_file=str(until_file))
        followed.validate()
        atomic_write_text(output / CONFIG_FILE, yaml.safe_dump(dataclasses.asdict(followed), sort_keys=False))
        log_path = output / "logs" / LOG_FILE
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "harness.cli", "evaluate", "--config",
                                        str(output / CONFIG_FILE)], stdout=log_file, stderr=subprocess.STDOUT)
        return cls(process, output, until_file)

    def no_more_checkpoints(self, last_step: int) -> None:
        """Tell the follower that training ended: it stops once every saved checkpoint is done."""
        atomic_write_text(self.until_file, f"{last_step}\n")

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the follower to finish; a follower that failed is a :class:`RunError`."""
        code = self.process.wait(timeout=timeout)
        if code != 0:
            raise RunError(f"the follower evaluating {self.output} exited with status {code}; see "
                           f"{self.output / 'logs' / LOG_FILE}")

    def metrics_by_step(self) -> list[tuple[int, dict[str, float]]]:
        """Each evaluated checkpoint's metrics under their log names, by training step, with how
        far the follower lagged behind training there (``follow/lag_steps``, ``follow/lag_seconds``);
        checkpoints without a known step are left out (never merged into step 0's)."""
        by_step: dict[int, list] = defaultdict(list)
        for row in RunDirectory(self.output).read_summary():
            if row.step is not None:
                by_step[row.step].append(row)
        metrics = {step: log_metrics(rows) for step, rows in by_step.items()}
        for line in read_lag(self.output):  # how far behind training the follower was (harness.sweep.lag)
            lag = {f"follow/{key}": line[key] for key in ("lag_steps", "lag_seconds") if line[key] is not None}
            if line["step"] is not None:
                metrics.setdefault(line["step"], {}).update(lag)
        return sorted(metrics.items())
