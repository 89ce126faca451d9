"""Files written whole or line by line: atomic replacement, JSON Lines.

Every file the harness rewrites (run.json, summaries, reports, plots, data files) goes
through :func:`atomic_write_text` / :func:`atomic_write_bytes`: a sibling temporary file is
written, flushed to disk and renamed over the old one, so a reader never sees half a file and
a crash leaves either the old or the new version. JSON Lines files that grow a record at a
time (per-sample logs) are appended with :func:`append_jsonl`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonlines

log = logging.getLogger("harness")


def dumps(record: Mapping[str, Any]) -> str:
    """One JSON Lines line's text (no newline): UTF-8 as is, NaN allowed."""
    return json.dumps(record, ensure_ascii=False, allow_nan=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once (write a sibling temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp makes the file private (0600); give it the mode an ordinary write would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) all at once; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any) -> None:
    """``value`` as indented JSON, written atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """A whole JSON Lines file, written atomically."""
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))


def append_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records in one write, flushed to disk before returning.

    The write starts on a fresh line whatever the file ends with: after a writer died
    mid-line, the torn fragment stays a line of its own (which readers skip) instead of
    swallowing the first new record.
    """
    text = "".join(dumps(r) + "\n" for r in records)
    if not text:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab+") as stream:
        if stream.tell() > 0:
            stream.seek(-1, os.SEEK_END)
            if stream.read(1) != b"\n":
                text = "\n" + text
        stream.write(text.encode("utf-8"))
        stream.flush()
        os.fsync(stream.fileno())


def read_jsonl(path: str | Path, *, strict: bool = False) -> list[dict[str, Any]]:
    """Every record of a JSON Lines file ([] when it does not exist); blank lines are skipped.

    Each line is decoded on its own (bytes, then UTF-8, then JSON), so a line cut inside a
    multi-byte character spoils only itself. A line that is not a JSON object is a
    ``ValueError`` naming the file and line when ``strict``; otherwise it is logged (file and
    line) and skipped: a torn fragment of a writer that died mid-line. Reading never changes
    the file (:func:`repair_jsonl` does).
    """
    path = Path(path)
    if not path.is_file():
        return []
    records: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        record = _decoded(line)
        if record is None:
            if strict:
                raise ValueError(f"{path}: line {number}: not valid JSON, or not an object")
            log.warning("%s: line %d is not a complete record (a write cut short); skipped", path, number)
            continue
        records.append(record)
    return records


def repair_jsonl(path: str | Path) -> int:
    """Rewrite ``path`` (atomically) without the lines that are not JSON objects (torn
    fragments of a writer that died mid-line); the number of lines dropped, each logged with
    its size. Files without such lines are not touched."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    kept = [line for line in lines if _decoded(line) is not None]
    if len(kept) == len(lines):
        return 0
    for line in lines:
        if _decoded(line) is None:
            log.warning("%s: dropped a fragment of %d bytes that a write cut short (its sample is computed again)",
                        path, len(line))
    atomic_write_bytes(path, b"".join(line + b"\n" for line in kept))
    return len(lines) - len(kept)


def _decoded(line: bytes) -> dict[str, Any] | None:
    """The JSON object one line holds; None when it holds none (or not valid UTF-8)."""
    try:
        return jsonlines.Reader([line.decode("utf-8")]).read(type=dict)
    except (UnicodeDecodeError, jsonlines.InvalidLineError):
        return None


def check_output_folder(path: str | Path, error: type[Exception], field: str = "output",
                        what: str = "the results") -> Path:
    """``path`` as a folder to write ``what`` into: ``error`` naming ``field`` when it, or a
    folder above it, is a file (before anything is written, instead of an OS error halfway)."""
    folder = Path(path)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise error(f"{field}: {existing} is a file; give a folder to write {what} into")
    return folder
