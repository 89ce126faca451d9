"""The results folder of a run: layout, crash-safe writes, and reading it back.

Layout (one folder a run)::

    run.json                         config, task hashes, package versions, seed, command line
    samples/<checkpoint>/<task>.jsonl one line a (example, conjugate): prompt, output, scores
    summary.jsonl                    one line a (checkpoint, task, condition, conjugate, metric)
    report.html, plots/*.png         written by ``harness report``

Sample lines are appended a batch at a time and flushed, so a killed run loses at most the
batch in flight; a torn last line (the process died mid-write) is dropped when the file is
next read. JSON files that are rewritten whole (``run.json``, ``summary.jsonl``) are written
to a temporary file and renamed over the old one, so readers never see half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

SAMPLES = "samples"
RUN_JSON = "run.json"
SUMMARY = "summary.jsonl"


def sample_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """What makes a sample line unique within its (checkpoint, task) file."""
    return (str(record["id"]), str(record["condition"]), str(record["conjugate"]))


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once (write a sibling temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp makes the file private (0600); give it the mode an ordinary write would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, allow_nan=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSONL file; a torn last line is ignored (and trimmed)."""
    if not path.is_file():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                # The process died mid-write: drop the fragment so appends start clean.
                atomic_write_text(path, "".join(lines[:-1]))
                break
            raise ValueError(f"{path}: line {number + 1}: not valid JSON") from None
    return records


class RunDirectory:
    """One run's results folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ----------------------------------------------------------------- run.json
    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    def read_run(self) -> dict[str, Any] | None:
        if not self.run_json.is_file():
            return None
        return json.loads(self.run_json.read_text(encoding="utf-8"))

    def write_run(self, run: Mapping[str, Any]) -> None:
        atomic_write_text(self.run_json, json.dumps(run, indent=2, ensure_ascii=False, default=str) + "\n")

    # ----------------------------------------------------------------- samples
    def samples_file(self, checkpoint: str, task: str) -> Path:
        return self.path / SAMPLES / checkpoint / f"{task}.jsonl"

    def read_samples(self, checkpoint: str, task: str) -> list[dict[str, Any]]:
        return read_jsonl(self.samples_file(checkpoint, task))

    def done_keys(self, checkpoint: str, task: str) -> set[tuple[str, str, str]]:
        return {sample_key(r) for r in self.read_samples(checkpoint, task)}

    def append_samples(self, checkpoint: str, task: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Append finished sample lines in one write, flushed to disk before returning."""
        text = "".join(_dumps(r) + "\n" for r in records)
        if not text:
            return
        path = self.samples_file(checkpoint, task)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())

    def sample_files(self) -> Iterator[tuple[str, str, Path]]:
        """(checkpoint label, task name, path) of every samples file."""
        root = self.path / SAMPLES
        if not root.is_dir():
            return
        for path in sorted(root.rglob("*.jsonl")):
            yield path.parent.relative_to(root).as_posix(), path.stem, path

    # ----------------------------------------------------------------- summary
    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY

    def read_summary(self) -> list[dict[str, Any]]:
        return read_jsonl(self.summary_file)

    def write_summary(self, rows: Iterable[Mapping[str, Any]]) -> None:
        atomic_write_text(self.summary_file, "".join(_dumps(r) + "\n" for r in rows))


def checkpoint_progress(run: RunDirectory) -> dict[str, dict[str, int | float]]:
    """Each checkpoint's training progress (label -> :func:`harness.checkpoints.training_progress`).

    Read from the ``trainer_state.json`` of the checkpoint folders that ``run.json`` lists
    (the adapter folder of an adapter checkpoint); a folder that is gone or has no such file
    gives an empty dict.
    """
    from harness.checkpoints import training_progress

    record = run.read_run() or {}
    return {
        entry["label"]: training_progress(entry.get("adapter") or entry["model"])
        for entry in record.get("checkpoints", [])
    }


def load(run_dir: str | Path):
    """A run's ``summary.jsonl`` as a pandas DataFrame (one row a metric value).

    Columns: checkpoint, step, task, task_hash, condition, conjugate, mode, metric, value,
    ci_low, ci_high, n, plus the run's name in ``run`` and each checkpoint's training
    progress in ``epoch`` and ``tokens`` (input tokens seen), both from the checkpoint's
    ``trainer_state.json`` and NaN where it has none.
    """
    import pandas as pd

    run = RunDirectory(run_dir)
    rows = run.read_summary()
    if not rows and not run.summary_file.is_file():
        raise FileNotFoundError(f"{run.summary_file}: no summary (is {run_dir} a results folder?)")
    frame = pd.DataFrame(rows)
    frame.insert(0, "run", run.path.name)
    progress = checkpoint_progress(run)
    labels = frame["checkpoint"] if "checkpoint" in frame else []
    for column, key in (("epoch", "epoch"), ("tokens", "num_input_tokens_seen")):
        frame[column] = [float(progress.get(label, {}).get(key, math.nan)) for label in labels]
    return frame
