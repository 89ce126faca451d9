"""The results folder of a run: its layout, its typed records, crash-safe writes.

Layout (one folder a run)::

    run.json                          config, task hashes, package versions, seed, command line
    samples/<checkpoint>/<task>.jsonl one line a (example, conjugate): a :class:`SampleRecord`
    summary.jsonl                     one line a (checkpoint, task, condition, conjugate, mode,
                                      metric): a :class:`SummaryRow`
    report.html, plots/*.png          written by ``harness report``

Sample lines are appended a batch at a time and flushed, so a killed run loses at most the
batch in flight: a torn line (the process died mid-write) is skipped by readers, and its
sample is computed again; reading never changes a file. When a resume adds a scoring mode to
a sample, the completed sample is appended and the later line of a key wins. Files rewritten
whole (``run.json``, ``summary.jsonl``) are replaced atomically (:mod:`harness.io`), so
readers never see half a file.

One process writes a folder at a time: writers hold :meth:`RunDirectory.lock`, an OS lock
that the operating system releases when its holder dies. Readers need no lock.

Every reader goes through the typed records: :class:`~harness.results.record.RunRecord` for
run.json, :class:`~harness.results.rows.SampleRecord` and
:class:`~harness.results.rows.SummaryRow` for the lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

from harness.errors import RunError
from harness.io import append_jsonl, read_jsonl, repair_jsonl, write_json, write_jsonl
from harness.results.record import RunRecord, now
from harness.results.rows import SampleRecord, SummaryRow

SAMPLES = "samples"
RUN_JSON = "run.json"
SUMMARY = "summary.jsonl"
#: Which recipe a training run is a seed of, beside its checkpoints (``harness finetune``
#: writes it): {"recipe": its settings' hash, "seed": N}.
RECIPE_JSON = "recipe.json"
LOCK = ".lock"


def run_folders(runs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Results folders named by a path, a glob (``results/*``), or a list of either.

    A glob keeps only the folders that hold a ``summary.jsonl``, so ``results/*`` skips
    stray files; a path named outright is kept as given, for the reader to say what is
    wrong with it. Raises :class:`RunError` when a glob matches no results folder.
    """
    names = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    folders: list[Path] = []
    for name in map(str, names):
        if glob.has_magic(name):
            matched = [Path(p) for p in sorted(glob.glob(name)) if (Path(p) / SUMMARY).is_file()]
            if not matched:
                raise RunError(f"{name}: matches no results folder (a folder with {SUMMARY})")
            folders += matched
        else:
            folders.append(Path(name))
    return list(dict.fromkeys(folders))


class RunDirectory:
    """One run's results folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ----------------------------------------------------------------- run.json
    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    def read_record(self) -> RunRecord | None:
        """The folder's run.json as a :class:`RunRecord`; None when it has none yet. A file that
        is not JSON, or of a newer format, is a :class:`RunError` naming it."""
        if not self.run_json.is_file():
            return None
        try:
            data = json.loads(self.run_json.read_text(encoding="utf-8"))
        except ValueError as error:
            raise RunError(f"{self.run_json}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise RunError(f"{self.run_json}: expected a JSON object")
        return RunRecord.from_dict(data, str(self.run_json))

    def write_record(self, record: RunRecord) -> None:
        """Replace run.json with ``record`` (atomically)."""
        write_json(self.run_json, record.to_dict())

    # ----------------------------------------------------------------- samples
    def samples_file(self, checkpoint: str, task: str) -> Path:
        return self.path / SAMPLES / checkpoint / f"{task}.jsonl"

    def read_samples(self, checkpoint: str, task: str) -> list[SampleRecord]:
        """The samples of one (checkpoint, task), one a key: the last line of a key wins."""
        records = [SampleRecord.from_dict(line) for line in read_jsonl(self.samples_file(checkpoint, task))]
        return list({record.key: record for record in records}.values())

    def append_samples(self, checkpoint: str, task: str, records: Iterable[SampleRecord]) -> None:
        """Append finished sample lines in one write, flushed to disk before returning."""
        append_jsonl(self.samples_file(checkpoint, task), [record.to_dict() for record in records])

    def rewrite_samples(self, checkpoint: str, task: str, records: Iterable[SampleRecord]) -> None:
        """Replace the samples file of one (checkpoint, task) with ``records`` (atomically)."""
        write_jsonl(self.samples_file(checkpoint, task), [record.to_dict() for record in records])

    def has_samples(self, checkpoint: str) -> bool:
        """Whether any sample of the checkpoint label is on disk."""
        folder = self.path / SAMPLES / checkpoint
        return folder.is_dir() and any(path.stat().st_size for path in folder.glob("*.jsonl"))

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

    def read_summary(self) -> list[SummaryRow]:
        return [SummaryRow.from_dict(line) for line in read_jsonl(self.summary_file)]

    def write_summary(self, rows: Iterable[SummaryRow]) -> None:
        write_jsonl(self.summary_file, [row.to_dict() for row in rows])

    def repair(self) -> int:
        """Drop the lines a killed writer left torn in the samples and summary files, so every
        file is valid JSON Lines again (their samples are computed again); lines dropped."""
        return sum(repair_jsonl(path) for *_, path in self.sample_files()) + repair_jsonl(self.summary_file)

    def discard(self, checkpoint: str) -> None:
        """Delete every sample and summary row of one checkpoint label (``--overwrite``)."""
        folder = self.path / SAMPLES / checkpoint
        if folder.is_dir():
            for path in folder.glob("*.jsonl"):
                path.unlink()
        if self.summary_file.is_file():
            self.write_summary(row for row in self.read_summary() if row.checkpoint != checkpoint)

    # ----------------------------------------------------------------- one writer
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's writer lock for the duration; a second writer fails at once.

        The lock is ``fcntl.flock`` on ``.lock``, which also holds the holder's pid and
        command line for the message a second writer gets. The operating system releases it
        when the holder exits, killed or not: there is never a stale lock to remove by hand.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / LOCK, "a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown process"
                raise RunError(f"{self.path}: another harness process is writing this results folder "
                               f"({holder}); wait for it to finish, or write to another --output") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}, started {now()}: {' '.join(sys.argv)}\n")
            handle.flush()
            yield
        finally:
            handle.close()  # releases the lock
